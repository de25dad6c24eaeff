use scheduler::background_service;

#[background_service(interval = 60, misfire = "coalesce", misfire_grace = 0)]
async fn job() {}

fn main() {}
