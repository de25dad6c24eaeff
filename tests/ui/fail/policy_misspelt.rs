use scheduler::background_service;

#[background_service(interval = 60, max_retries = 3, timout = 5)]
async fn job() {}

fn main() {}
