use scheduler::{background_service, JobContext};

#[background_service(interval = 5)]
async fn job(ctx: JobContext, retries: u32, verbose: bool) {
    let _ = (ctx, retries, verbose);
}

fn main() {}
