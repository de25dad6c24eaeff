use scheduler::background_service;

#[background_service(interval = "0 9 * * MON-FRI", tz = "Europe/Berln")]
async fn report() {}

fn main() {}
