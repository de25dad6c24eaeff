use scheduler::background_service;

#[background_service(interval = 60, misfire = skip)]
async fn job() {}

fn main() {}
