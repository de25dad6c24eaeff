//! Fixed intervals on `async fn`s: whole and fractional seconds, every `on_start` form, and the
//! return types a job may have.
#![deny(warnings)]

use scheduler::background_service;

#[background_service(interval = 30)]
async fn refresh_cache() -> anyhow::Result<()> {
    Ok(())
}

#[background_service(interval = 0.5, on_start)]
async fn heartbeat() {}

#[background_service(interval = 1e3, on_start = true, name = "flush")]
async fn flush() -> Result<(), String> {
    Ok(())
}

#[background_service(interval = 86400, on_start = false)]
async fn rotate_logs() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    // The annotated functions stay ordinary functions.
    let _cache: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>> =
        Box::pin(refresh_cache());
    drop((heartbeat(), flush(), rotate_logs()));
}
