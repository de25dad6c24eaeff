use scheduler::background_service;

#[background_service(interval = 5)]
async fn job<T: Default>() {
    let _ = T::default();
}

fn main() {}
