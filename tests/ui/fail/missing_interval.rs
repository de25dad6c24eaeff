use scheduler::background_service;

#[background_service]
async fn job() {}

fn main() {}
