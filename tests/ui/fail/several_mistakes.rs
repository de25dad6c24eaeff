use scheduler::background_service;

#[background_service(interval = "61 * * * *", tz = "Mars/Olympus", name = 5)]
async fn job<T>(retries: u32) {
    let _ = retries;
}

fn main() {}
