use scheduler::background_service;

#[background_service(interval = "0 0 30 2 *")]
async fn job() {}

fn main() {}
