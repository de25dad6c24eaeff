use scheduler::{background_service, JobContext};

struct Poller {
    polls: u64,
}

#[background_service(interval = 5)]
impl Poller {
    async fn job(&mut self, ctx: JobContext) {
        let _ = ctx;
        self.polls += 1;
    }
}

fn main() {}
