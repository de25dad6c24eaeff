use scheduler::background_service;

#[background_service(interval = "61 * * * *")]
async fn job() {}

fn main() {}
