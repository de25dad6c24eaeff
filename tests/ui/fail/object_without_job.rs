use scheduler::background_service;

struct Poller;

#[background_service(interval = 5)]
impl Poller {
    async fn run(&self) {}
}

fn main() {}
