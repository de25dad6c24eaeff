use scheduler::background_service;

#[background_service(interval = 60, once_after = 30)]
async fn job() {}

fn main() {}
