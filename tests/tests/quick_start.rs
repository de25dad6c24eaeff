//! A failing job is never silent: with the README's quick-start subscriber its error is logged to
//! stderr, and with no subscriber at all the manager prints it to stderr itself.
//!
//! Whether a subscriber was ever installed is process-wide, so each case runs in a child process:
//! this test binary again, running only the ignored `child` test with the case in an environment
//! variable.

use std::process::Command;
use std::time::{Duration, Instant};

use scheduler::{Service, ServiceManager, ServiceState};

const CASE: &str = "SCHEDULER_QUICK_START_CASE";

/// Runs `child` in a fresh process with `case`; returns its stderr.
fn child_stderr(case: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE, case)
        .env_remove("RUST_LOG")
        .output()
        .expect("the test binary runs again");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the child failed: {}\n{stderr}",
        output.status
    );
    stderr
}

#[test]
fn with_the_quick_start_subscriber_a_failure_is_logged_to_stderr_with_its_error() {
    let stderr = child_stderr("quick-start");
    let line = stderr
        .lines()
        .find(|line| line.contains("run failed"))
        .unwrap_or_else(|| panic!("no failure line in:\n{stderr}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("payments-sync"), "{line}");
    assert!(line.contains("connection refused by db.internal"), "{line}");
}

#[test]
fn with_no_subscriber_a_failure_is_printed_to_stderr_all_the_same() {
    let stderr = child_stderr("no-subscriber");
    assert!(
        stderr.contains(
            "scheduler: service 'payments-sync' failed: connection refused by db.internal"
        ),
        "{stderr}"
    );
}

/// The child's side: the quick start's `main`, with one job that fails once, right at start.
#[test]
#[ignore = "run by the tests above, in a child process"]
fn child() {
    let case = std::env::var(CASE).expect("run by the tests above");
    if case == "quick-start" {
        // The README's quick start, as written there.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .init();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let manager = ServiceManager::new();
        manager.add_service(
            "payments-sync",
            Service::once_after(Duration::ZERO, |_ctx| async {
                anyhow::Result::<()>::Err(anyhow::anyhow!("connection refused by db.internal"))
            }),
        );
        manager.start().unwrap();
        // The run is immediate; this bounds the wait if it were not, and then the test fails.
        let give_up = Instant::now() + Duration::from_secs(10);
        while manager.service("payments-sync").unwrap().state != ServiceState::Finished
            && Instant::now() < give_up
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        manager.stop().await;
    });
}
