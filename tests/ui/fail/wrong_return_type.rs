use scheduler::background_service;

#[background_service(interval = 5)]
async fn job() -> u32 {
    42
}

fn main() {}
