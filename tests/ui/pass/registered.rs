//! What the attribute registers is what the runtime builds: names (given or derived from the module
//! path), schedules and time zones.
#![deny(warnings)]

use scheduler::{background_service, JobContext, ServiceManager};

#[background_service(
    interval = "0 9 * * MON-FRI",
    tz = "Europe/Berlin",
    name = "daily-report"
)]
async fn report(_ctx: JobContext) {}

mod cache {
    #[scheduler::background_service(interval = 0.5, on_start)]
    pub fn refresh() -> Result<(), String> {
        Ok(())
    }
}

fn main() {
    let manager = ServiceManager::from_registry().expect("the registrations are valid");
    let report = manager
        .service("daily-report")
        .expect("registered under its name");
    assert_eq!(report.schedule, "0 9 * * MON-FRI (Europe/Berlin)");
    // The default name is the function's path: `<crate>::cache::refresh`.
    let refresh = manager
        .service(concat!(module_path!(), "::cache::refresh"))
        .expect("registered under its module path");
    assert_eq!(refresh.schedule, "every 0.5s");
}
