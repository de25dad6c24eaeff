use scheduler::background_service;

#[background_service(once_after = "30")]
async fn job() {}

fn main() {}
