use scheduler::background_service;

#[background_service(interval = 5, name = "")]
async fn job() {}

fn main() {}
