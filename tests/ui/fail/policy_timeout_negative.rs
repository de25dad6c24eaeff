use scheduler::background_service;

#[background_service(interval = 60, timeout = -5)]
async fn job() {}

fn main() {}
