use scheduler::background_service;

#[background_service(once_after = 30, on_start)]
async fn job() {}

fn main() {}
