use scheduler::background_service;

#[background_service(interval = "0 0 0 29 2 * 2025-2027")]
async fn job() {}

fn main() {}
