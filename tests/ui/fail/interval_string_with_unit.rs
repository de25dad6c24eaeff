use scheduler::background_service;

#[background_service(interval = "30s")]
async fn refresh_cache() {}

fn main() {}
