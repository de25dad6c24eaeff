//! Cron intervals, time zones, names, `JobContext` arguments and blocking (non-`async`) jobs.
#![deny(warnings)]

use scheduler::{background_service, JobContext};

#[background_service(interval = "*/5 * * * *", on_start)]
fn compact_files() {}

#[background_service(
    interval = "0 9 * * MON-FRI",
    tz = "Europe/Berlin",
    name = "daily-report"
)]
async fn report(ctx: JobContext) {
    let _ = ctx.name();
}

#[background_service(interval = "@hourly", tz = "UTC")]
fn blocking_with_context(ctx: scheduler::JobContext) -> anyhow::Result<()> {
    if ctx.is_cancelled() {
        anyhow::bail!("cancelled");
    }
    Ok(())
}

// Any pattern, any path ending in `JobContext`, a 6-field expression and a raw string.
#[background_service(interval = r"*/10 * * * * *", name = "ticker")]
async fn ticker(_: ::scheduler::JobContext) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[background_service(
    name = "options-in-any-order",
    on_start = false,
    interval = "0 0 1,15 * MON"
)]
fn any_order(mut ctx: JobContext) {
    ctx = ctx.clone();
    let _ = ctx.tick();
}

fn main() {
    // Still an ordinary function.
    compact_files();
}

// The generated wrapper's own names do not clash with the user's.
#[background_service(interval = 60)]
async fn ctx(ctx: JobContext) {
    let _ = ctx;
}

#[background_service(interval = 60)]
fn _ctx() {}
