use scheduler::background_service;

#[background_service(interval = 60, timeout = 0)]
async fn job() {}

fn main() {}
