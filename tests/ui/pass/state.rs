//! Registered services that take the application's state, in any order, async and blocking.

use std::sync::atomic::{AtomicU32, Ordering};

use scheduler::{background_service, JobContext, ServiceManager, State};

#[derive(Default)]
struct Counter(AtomicU32);

struct Settings {
    step: u32,
}

#[background_service(once_after = 0, name = "async-state")]
async fn bump(counter: State<Counter>, ctx: JobContext, settings: State<Settings>) -> Result<(), String> {
    let _ = ctx.name();
    counter.0.fetch_add(settings.step, Ordering::SeqCst);
    Ok(())
}

#[background_service(once_after = 0, name = "blocking-state")]
fn bump_blocking(counter: scheduler::State<Counter>) {
    counter.0.fetch_add(100, Ordering::SeqCst);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let manager = ServiceManager::builder()
        .state(Counter::default())
        .state(Settings { step: 3 })
        .with_registered_services()
        .build()
        .unwrap();
    manager.start().unwrap();
    for _ in 0..200 {
        let counter: State<Counter> = manager.state().unwrap();
        if counter.0.load(Ordering::SeqCst) == 103 {
            manager.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the registered services did not both run");
}
