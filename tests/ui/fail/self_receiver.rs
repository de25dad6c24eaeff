use scheduler::background_service;

struct Cache;

impl Cache {
    #[background_service(interval = 5)]
    async fn refresh(&self) {}
}

fn main() {
    let _ = Cache.refresh();
}
