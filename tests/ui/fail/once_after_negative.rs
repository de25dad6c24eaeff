use scheduler::background_service;

#[background_service(once_after = -5)]
async fn job() {}

fn main() {}
