//! Measuring inside a child: a sharded lateness histogram and process probes (CPU, RSS).

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::resource::{getrusage, UsageWho};

/// Histogram resolution: 0.1 ms.
const BUCKET_NS: i64 = 100_000;
/// Buckets up to 2 s; one more for everything later.
const BUCKETS: usize = 20_000;
/// Enough shards that the two runtime workers (and the main thread) rarely share one.
const SHARDS: usize = 8;

/// Nanoseconds since the Unix epoch on the wall clock (the clock `Utc::now` reads).
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub(crate) const SECOND_NS: i64 = 1_000_000_000;

/// The first whole second strictly after `ns`.
pub(crate) fn next_whole_second(ns: i64) -> i64 {
    (ns / SECOND_NS + 1) * SECOND_NS
}

struct Shard {
    buckets: Box<[AtomicU64]>,
    fires: AtomicU64,
    outside: AtomicU64,
    early: AtomicU64,
    max_ns: AtomicI64,
}

impl Shard {
    fn new() -> Self {
        Shard {
            buckets: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            fires: AtomicU64::new(0),
            outside: AtomicU64::new(0),
            early: AtomicU64::new(0),
            max_ns: AtomicI64::new(i64::MIN),
        }
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn my_shard() -> usize {
    MY_SHARD.with(|cell| {
        if cell.get() == usize::MAX {
            cell.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        cell.get()
    })
}

/// Counts fires whose intended instant lies in the measured window and records their lateness.
pub(crate) struct Recorder {
    window_start: AtomicI64,
    window_end: AtomicI64,
    shards: Vec<Shard>,
}

/// What a [`Recorder`] saw.
pub(crate) struct Summary {
    pub(crate) fires: u64,
    pub(crate) outside: u64,
    pub(crate) early: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Recorder {
            window_start: AtomicI64::new(i64::MAX),
            window_end: AtomicI64::new(i64::MAX),
            shards: (0..SHARDS).map(|_| Shard::new()).collect(),
        }
    }

    /// Fires meant for `[start, end)` (wall-clock ns) are counted; others only tallied as outside.
    pub(crate) fn set_window(&self, start: i64, end: i64) {
        self.window_end.store(end, Ordering::Relaxed);
        self.window_start.store(start, Ordering::Relaxed);
    }

    /// A fire meant for `intended` (wall-clock ns) happening now.
    pub(crate) fn record(&self, intended: i64) {
        self.record_at(intended, now_ns());
    }

    /// A fire meant for `intended` that happened at `actual` (both wall-clock ns).
    pub(crate) fn record_at(&self, intended: i64, actual: i64) {
        let shard = &self.shards[my_shard()];
        if intended < self.window_start.load(Ordering::Relaxed)
            || intended >= self.window_end.load(Ordering::Relaxed)
        {
            shard.outside.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let late = actual - intended;
        shard.fires.fetch_add(1, Ordering::Relaxed);
        if late < 0 {
            shard.early.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = (late.max(0) / BUCKET_NS).min(BUCKETS as i64) as usize;
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.max_ns.fetch_max(late, Ordering::Relaxed);
    }

    pub(crate) fn summary(&self) -> Summary {
        let mut merged = vec![0_u64; BUCKETS + 1];
        let (mut fires, mut outside, mut early, mut max_ns) = (0, 0, 0, i64::MIN);
        for shard in &self.shards {
            for (sum, bucket) in merged.iter_mut().zip(shard.buckets.iter()) {
                *sum += bucket.load(Ordering::Relaxed);
            }
            fires += shard.fires.load(Ordering::Relaxed);
            outside += shard.outside.load(Ordering::Relaxed);
            early += shard.early.load(Ordering::Relaxed);
            max_ns = max_ns.max(shard.max_ns.load(Ordering::Relaxed));
        }
        let worst_ms = if fires == 0 { 0.0 } else { max_ns as f64 / 1e6 };
        let quantile = |q: f64| -> f64 {
            if fires == 0 {
                return 0.0;
            }
            let rank = ((fires as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, count) in merged.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    if i == BUCKETS {
                        return worst_ms;
                    }
                    // The bucket's upper edge, but never above the exact maximum.
                    return ((i as i64 + 1) * BUCKET_NS) as f64 / 1e6;
                }
            }
            worst_ms
        };
        Summary {
            fires,
            outside,
            early,
            p50_ms: quantile(0.50).min(worst_ms.max(0.0)),
            p99_ms: quantile(0.99).min(worst_ms.max(0.0)),
            max_ms: worst_ms,
        }
    }
}

/// User + system CPU seconds of this process so far, and its peak RSS in KiB.
pub(crate) fn rusage() -> (f64, u64) {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let secs = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            (
                secs(usage.user_time()) + secs(usage.system_time()),
                // Linux reports ru_maxrss in KiB.
                usage.max_rss().max(0) as u64,
            )
        }
        Err(_) => (f64::NAN, 0),
    }
}

/// The current resident set size in KiB, from /proc/self/status (0 where unavailable).
pub(crate) fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

/// The peak resident set size in KiB: the larger of `ru_maxrss` and /proc's `VmHWM`.
pub(crate) fn peak_rss_kib() -> u64 {
    rusage().1.max(proc_status_kib("VmHWM:"))
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The median of `values` (NaN for none).
pub(crate) fn median(values: &mut Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}
