use scheduler::{background_service, State};
use std::rc::Rc;

#[background_service(interval = 5)]
fn job(counter: State<Rc<u32>>) {
    let _ = counter;
}

fn main() {}
