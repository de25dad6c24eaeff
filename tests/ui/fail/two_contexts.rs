use scheduler::{background_service, JobContext};

#[background_service(interval = 5)]
async fn job(ctx: JobContext, again: JobContext) {
    let _ = (ctx, again);
}

fn main() {}
