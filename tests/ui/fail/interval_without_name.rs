use scheduler::background_service;

#[background_service("*/5 * * * *")]
async fn job() {}

fn main() {}
