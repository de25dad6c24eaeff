use scheduler::background_service;

#[background_service(interval = 60, jitter = 1, jitter = 2)]
async fn job() {}

fn main() {}
