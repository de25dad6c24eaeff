use scheduler::background_service;

#[background_service(interval = 60, retries = -1)]
async fn job() {}

fn main() {}
