use scheduler::background_service;

#[background_service(interval = 60, misfire = "all", misfire_limit = 0)]
async fn job() {}

fn main() {}
