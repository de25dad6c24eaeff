use scheduler::background_service;

#[background_service(interval = "0 0 0 1 1 * 2024-2100")]
async fn job() {}

fn main() {}
