use scheduler::{background_service, State};

struct Db;

#[background_service(interval = 5)]
async fn job(db: &State<Db>) {
    let _ = db;
}

fn main() {}
