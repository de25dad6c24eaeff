use scheduler::{background_service, State};

#[background_service(interval = 5)]
async fn job(db: State) {
    let _ = db;
}

fn main() {}
