use scheduler::background_service;

#[background_service(interval = "0 0 * * FRI#6")]
async fn job() {}

fn main() {}
