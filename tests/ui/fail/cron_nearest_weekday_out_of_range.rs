use scheduler::background_service;

#[background_service(interval = "0 0 32W * *")]
async fn job() {}

fn main() {}
