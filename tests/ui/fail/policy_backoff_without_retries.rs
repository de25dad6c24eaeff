use scheduler::background_service;

#[background_service(interval = 60, retry_backoff = 2, retry_backoff_max = 30)]
async fn job() {}

fn main() {}
