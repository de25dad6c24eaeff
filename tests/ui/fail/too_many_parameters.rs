use scheduler::{background_service, JobContext, State};

#[background_service(interval = 5)]
async fn job(
    ctx: JobContext,
    a: State<u8>,
    b: State<u16>,
    c: State<u32>,
    d: State<u64>,
    e: State<i8>,
    f: State<i16>,
    g: State<i32>,
    h: State<i64>,
) {
    let _ = (ctx, a, b, c, d, e, f, g, h);
}

fn main() {}
