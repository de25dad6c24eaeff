use scheduler::background_service;

#[background_service(interval = 60, misfire = "coalese")]
async fn job() {}

fn main() {}
