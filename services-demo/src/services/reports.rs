//! Exports a report to a slow partner system: the demo's job with a time limit, and the one an
//! operator pauses and resumes (SIGUSR1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scheduler::{background_service, JobContext};

static EXPORTS: AtomicU64 = AtomicU64::new(0);

/// Every four seconds, cancelled after one. Every other export hangs on the partner: the time
/// limit cancels it (outcome "timed out", a failure that raises the alert), and the next tick runs
/// as usual.
#[background_service(interval = 4, timeout = 1, name = "report-export")]
async fn export_report(ctx: JobContext) -> anyhow::Result<()> {
    let export = EXPORTS.fetch_add(1, Ordering::Relaxed) + 1;
    let partner = Duration::from_millis(if export % 2 == 0 { 5_000 } else { 100 });
    tokio::select! {
        () = tokio::time::sleep(partner) => {
            tracing::info!(export, "report exported");
            Ok(())
        }
        () = ctx.cancelled() => {
            tracing::warn!(export, "report export cancelled: the partner did not answer in time");
            Ok(())
        }
    }
}
