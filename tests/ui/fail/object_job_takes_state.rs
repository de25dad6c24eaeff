use scheduler::{background_service, State};

struct Db;
struct Poller;

#[background_service(interval = 5)]
impl Poller {
    async fn job(&self, db: State<Db>) {
        let _ = db;
    }
}

fn main() {}
