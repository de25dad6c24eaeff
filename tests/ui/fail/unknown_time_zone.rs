use scheduler::background_service;

#[background_service(interval = "0 9 * * *", tz = "Mars/Olympus")]
async fn job() {}

fn main() {}
