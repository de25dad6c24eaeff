use scheduler::background_service;

#[background_service(once_after = 30, timeout = 10, retries = 2, jitter = 5, misfire = "skip", misfire_grace = 2)]
async fn job() {}

fn main() {}
