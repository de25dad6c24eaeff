use scheduler::background_service;

struct Poller<T>(T);

#[background_service(interval = 5)]
impl<T: Send + Sync + 'static> Poller<T> {
    async fn job(&self) {}
}

fn main() {}
