//! File housekeeping: blocking work, so a plain `fn` on tokio's blocking pool.

use scheduler::{background_service, JobContext};

/// A cron job on the seconds field: at :00, :05, :10, … of every minute.
#[background_service(interval = "*/5 * * * * *", name = "compact-files")]
fn compact_files(ctx: JobContext) -> std::io::Result<()> {
    let dir = std::env::temp_dir();
    let files = std::fs::read_dir(&dir)?.count();
    if ctx.is_cancelled() {
        return Ok(());
    }
    tracing::info!(dir = %dir.display(), files, "compaction scan done");
    Ok(())
}
