use scheduler::background_service;

#[background_service(interval = 60, retries = "3")]
async fn job() {}

fn main() {}
