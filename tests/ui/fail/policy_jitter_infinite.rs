use scheduler::background_service;

#[background_service(interval = 60, jitter = 1e999)]
async fn job() {}

fn main() {}
