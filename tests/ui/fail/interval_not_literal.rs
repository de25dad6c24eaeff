use scheduler::background_service;

const FIVE_MINUTES: u64 = 300;

#[background_service(interval = FIVE_MINUTES)]
async fn job() {}

fn main() {
    let _ = FIVE_MINUTES;
}
