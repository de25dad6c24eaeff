use scheduler::background_service;

#[background_service(interval = 5, on_start = "yes")]
async fn job() {}

fn main() {}
