//! One-shot services (`once_after`): whole, fractional and zero delays, sync and `async`, with a
//! name and a `JobContext`.
#![deny(warnings)]

use scheduler::{background_service, JobContext, ServiceManager};

#[background_service(once_after = 30)]
async fn migrate() -> anyhow::Result<()> {
    Ok(())
}

#[background_service(once_after = 0)]
fn right_at_start() {}

#[background_service(once_after = 2.5, name = "warm-up")]
async fn warm_up(ctx: JobContext) {
    let _ = ctx.name();
}

#[background_service(name = "seed", once_after = 1e2)]
fn seed(_: scheduler::JobContext) -> Result<(), String> {
    Ok(())
}

fn main() {
    // The annotated functions stay ordinary functions.
    let _migrate: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>> =
        Box::pin(migrate());
    right_at_start();
    let _ = warm_up;
    let _ = seed;

    // What is registered is what the runtime builds.
    let manager = ServiceManager::from_registry().expect("the registrations are valid");
    for (name, schedule) in [
        ("warm-up", "once after 2.5s"),
        ("seed", "once after 100s"),
        (concat!(module_path!(), "::migrate"), "once after 30s"),
        (concat!(module_path!(), "::right_at_start"), "once after 0s"),
    ] {
        let service = manager.service(name).expect("registered");
        assert_eq!(service.schedule, schedule, "{name}");
    }
}
