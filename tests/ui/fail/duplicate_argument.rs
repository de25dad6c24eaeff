use scheduler::background_service;

#[background_service(interval = 5, on_start, interval = 10)]
async fn job() {}

fn main() {}
