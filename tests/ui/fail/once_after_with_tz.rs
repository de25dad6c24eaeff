use scheduler::background_service;

#[background_service(once_after = 30, tz = "Europe/Berlin")]
async fn job() {}

fn main() {}
