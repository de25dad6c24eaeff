use scheduler::background_service;

#[background_service(interval = 60, timeout = "30s")]
async fn job() {}

fn main() {}
