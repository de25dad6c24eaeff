use scheduler::background_service;

#[background_service(interval = "  ")]
async fn job() {}

fn main() {}
