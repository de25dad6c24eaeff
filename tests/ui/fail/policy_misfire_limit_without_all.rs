use scheduler::background_service;

#[background_service(interval = 60, misfire = "skip", misfire_limit = 5)]
async fn job() {}

#[background_service(interval = 60, misfire_limit = 5)]
async fn other() {}

fn main() {}
