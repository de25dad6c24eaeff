use scheduler::background_service;

#[background_service(interval = 500ms)]
async fn job() {}

fn main() {}
