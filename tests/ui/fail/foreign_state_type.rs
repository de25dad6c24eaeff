use scheduler::background_service;

mod web {
    // Another framework's extractor of the same name (axum has one).
    pub struct State<T>(pub T);
}

struct Db;

#[background_service(interval = 5)]
async fn job(db: web::State<Db>) {
    let _ = db;
}

fn main() {}
