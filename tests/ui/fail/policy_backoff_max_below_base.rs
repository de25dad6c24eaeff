use scheduler::background_service;

#[background_service(interval = 60, retries = 3, retry_backoff = 10, retry_backoff_max = 5)]
async fn job() {}

#[background_service(interval = 60, retries = 3, retry_backoff_max = 0.5)]
async fn other() {}

fn main() {}
