use scheduler::background_service;

#[background_service(interval = 5, timezone = "UTC")]
async fn job() {}

fn main() {}
