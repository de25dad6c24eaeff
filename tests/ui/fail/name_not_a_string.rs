use scheduler::background_service;

#[background_service(interval = 5, name = 5)]
async fn job() {}

fn main() {}
