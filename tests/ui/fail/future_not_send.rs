use scheduler::background_service;

async fn yield_now() {}

#[background_service(interval = 5)]
async fn job() {
    let counter = std::rc::Rc::new(1);
    yield_now().await;
    drop(counter);
}

fn main() {}
