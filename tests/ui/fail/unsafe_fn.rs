use scheduler::background_service;

#[background_service(interval = 5)]
unsafe fn job() {}

fn main() {}
