use scheduler::background_service;

struct NotDisplay;

#[background_service(interval = "@daily")]
fn job() -> Result<(), NotDisplay> {
    Ok(())
}

fn main() {}
