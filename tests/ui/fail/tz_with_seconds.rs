use scheduler::background_service;

#[background_service(interval = 30, tz = "Europe/Berlin")]
async fn job() {}

fn main() {}
