//! What a production log shows, captured from `tracing` on the test's own thread.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use scheduler::{Schedule, Service, ServiceManager, TokioClock};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture(level: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(level)
        .with_writer(move || sink.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(start_paused = true)]
async fn an_empty_registry_warns_and_names_the_fix() {
    let (log, _guard) = capture("info");
    let manager = ServiceManager::builder().build().unwrap();
    manager.start().unwrap();
    let text = log.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("use my_jobs_crate as _;"), "{text}");
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn start_lists_the_services_and_failures_show_at_the_default_level() {
    let (log, _guard) = capture("info");
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(start))
        .build()
        .unwrap();
    manager.add_service(
        "flaky",
        Service::new(
            Schedule::every(Duration::from_secs(10)).unwrap(),
            |_ctx| async { Err::<(), _>("the bank said no") },
        ),
    );
    manager.add_service(
        "fine",
        Service::new("*/5 * * * *".parse().unwrap(), |_ctx| async {}),
    );
    manager.start().unwrap();
    tokio::time::sleep(Duration::from_secs(65)).await;
    manager.stop().await;
    let text = log.text();
    for expected in [
        "service scheduled service=fine schedule=*/5 * * * *",
        "service scheduled service=flaky schedule=every 10s",
        "service manager started services=2",
        "run failed",
        "error=the bank said no",
        "tick=2024-01-01T00:00:10.000Z",
        "runs in the last minute runs=5 succeeded=0 failed_or_aborted=5",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("run succeeded"),
        "successes are DEBUG:\n{text}"
    );
    assert_eq!(
        text.matches("run failed").count(),
        6,
        "one line per failure:\n{text}"
    );
}
