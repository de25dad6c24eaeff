use scheduler::background_service;

#[background_service(interval = 60, retries = 2.5)]
async fn job() {}

fn main() {}
