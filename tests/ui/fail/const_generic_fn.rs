use scheduler::background_service;

#[background_service(interval = 5)]
fn job<const N: usize>() {}

fn main() {}
