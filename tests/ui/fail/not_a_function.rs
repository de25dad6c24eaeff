use scheduler::background_service;

#[background_service(interval = 5)]
struct Job;

fn main() {
    let _ = Job;
}
