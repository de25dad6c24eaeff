use scheduler::background_service;

#[background_service(interval = 0)]
async fn job() {}

fn main() {}
