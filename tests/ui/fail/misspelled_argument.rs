use scheduler::background_service;

#[background_service(intervall = 5)]
async fn job() {}

fn main() {}
