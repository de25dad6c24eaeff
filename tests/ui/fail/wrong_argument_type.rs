use scheduler::background_service;

#[background_service(interval = 5)]
async fn job(retries: u32) {
    let _ = retries;
}

fn main() {}
