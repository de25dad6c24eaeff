//! One measured run, in a child process: register N services on one system, fire them (or let them
//! idle), and report one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use scheduler::{JobContext, Schedule, Service, ServiceManager, State};
use serde::{Deserialize, Serialize};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::alloc;
use crate::stats::{self, next_whole_second, now_ns, Recorder, SECOND_NS};

/// The systems under test.
pub(crate) const SYSTEMS: [&str; 8] = [
    "floor",
    "ours-every",
    "ours-cron",
    "ours-blocking",
    "peer",
    "ours-prom",
    "ours-every-nometrics",
    "ours-state",
];

/// The systems run by default; `ours-blocking` (`ours-every` with blocking jobs), `ours-prom` (with a
/// Prometheus recorder installed), `ours-every-nometrics` (a build without the `metrics` feature,
/// `--no-metrics-bin`) and `ours-state` (`ours-every` whose job takes its recorder as a `State`
/// parameter) are asked for.
pub(crate) const DEFAULT_SYSTEMS: [&str; 4] = ["floor", "ours-every", "ours-cron", "peer"];

/// How long to wait after the window for late fires meant for it.
const GRACE: Duration = Duration::from_secs(2);

/// What a child was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    pub(crate) system: String,
    pub(crate) n: u64,
    pub(crate) warmup: u64,
    pub(crate) measure: u64,
    pub(crate) idle: bool,
    /// Stop registering the peer's jobs after this long.
    pub(crate) register_cap: Duration,
    /// The runtime's worker threads.
    pub(crate) threads: usize,
}

/// One run's results, the line a child prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunResult {
    pub(crate) system: String,
    pub(crate) idle: bool,
    pub(crate) n: u64,
    /// Services actually registered (less than `n` only when the registration cap hit).
    pub(crate) registered: u64,
    pub(crate) register_capped: bool,
    /// Adding the services.
    pub(crate) add_secs: f64,
    /// Starting them (`start()`; 0 for the floor, whose tasks start as they are spawned).
    pub(crate) start_secs: f64,
    pub(crate) expected: u64,
    pub(crate) fires: u64,
    /// Fires meant for instants outside the window (warm-up, grace).
    pub(crate) fires_outside: u64,
    pub(crate) early: u64,
    pub(crate) late_p50_ms: f64,
    pub(crate) late_p99_ms: f64,
    pub(crate) late_max_ms: f64,
    /// CPU seconds over the measured window (fire mode) or the idle window.
    pub(crate) cpu_secs: f64,
    pub(crate) window_secs: f64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_running_kib: u64,
    pub(crate) peak_rss_kib: u64,
    /// Allocator calls over the same window as `cpu_secs`: all, and the dispatcher's.
    #[serde(default)]
    pub(crate) allocations: u64,
    #[serde(default)]
    pub(crate) dispatcher_allocations: u64,
    /// The dispatcher's allocator calls over the whole run (its first wake-ups grow its buffers), which
    /// shows the dispatcher was recognised even when it allocates nothing in the window.
    #[serde(default)]
    pub(crate) dispatcher_allocations_run: u64,
}

/// Runs one measurement on a fresh runtime of `spec.threads` workers.
pub(crate) fn run(spec: &RunSpec) -> Result<RunResult, String> {
    if spec.threads == 0 {
        return Err("--threads must be positive".to_owned());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.threads)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(measure(spec))
}

/// Keeps whatever must stay alive for the services to keep firing.
enum Running {
    Floor,
    Ours(ServiceManager),
    Peer(JobScheduler),
}

async fn sleep_until_ns(ns: i64) {
    let wait = ns - now_ns();
    if wait > 0 {
        tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
    }
}

fn tick_ns(tick: DateTime<Utc>) -> i64 {
    tick.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A cron expression that fires once an hour, at a minute half an hour away from now.
fn hourly_cron() -> String {
    let minute = (Utc::now().minute() + 30) % 60;
    format!("0 {minute} * * * *")
}

fn period(idle: bool) -> Duration {
    Duration::from_secs(if idle { 3600 } else { 1 })
}

async fn measure(spec: &RunSpec) -> Result<RunResult, String> {
    let recorder = Arc::new(Recorder::new());
    let rss_before_kib = stats::rss_kib();

    let added = Instant::now();
    let (running, registered, register_capped) = register(spec, &recorder).await?;
    let add_secs = added.elapsed().as_secs_f64();

    // Start on a whole second, so that fixed periods anchored at the start tick on whole seconds
    // (almost: each runner reads the clock when it first runs), like cron.
    let t0 = next_whole_second(now_ns());
    let window_start = t0 + spec.warmup as i64 * SECOND_NS;
    let window_end = window_start + spec.measure as i64 * SECOND_NS;
    recorder.set_window(window_start, window_end);
    sleep_until_ns(t0).await;
    let started = Instant::now();
    match &running {
        Running::Floor => {}
        Running::Ours(manager) => {
            // The dispatcher is the first task `start` spawns: the one after this probe.
            let probe = tokio::spawn(async {}).id();
            manager.start().map_err(|e| format!("start: {e}"))?;
            alloc::watch_dispatcher(alloc::task_number(probe) + 1);
        }
        Running::Peer(scheduler) => scheduler
            .start()
            .await
            .map_err(|e| format!("peer start: {e:?}"))?,
    }
    let start_secs = started.elapsed().as_secs_f64();

    let (cpu_secs, window_secs, rss_running_kib, allocations) = if spec.idle {
        // Let every task reach its first sleep, then watch the process do nothing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = stats::rss_kib();
        let (cpu0, _) = stats::rusage();
        let allocations0 = alloc::allocations();
        let from = Instant::now();
        tokio::time::sleep(Duration::from_secs(spec.measure)).await;
        let allocations = alloc::allocations() - allocations0;
        let (cpu1, _) = stats::rusage();
        (cpu1 - cpu0, from.elapsed().as_secs_f64(), rss, allocations)
    } else {
        // Sample half a second before the window's first and last-plus-one ticks: the CPU between
        // them is the steady cost of `measure` seconds of ticks.
        sleep_until_ns(window_start - SECOND_NS / 2).await;
        let rss = stats::rss_kib();
        let (cpu0, _) = stats::rusage();
        let allocations0 = alloc::allocations();
        let from = Instant::now();
        sleep_until_ns(window_end - SECOND_NS / 2).await;
        let allocations = alloc::allocations() - allocations0;
        let (cpu1, _) = stats::rusage();
        let window = from.elapsed().as_secs_f64();
        sleep_until_ns(window_end).await;
        tokio::time::sleep(GRACE).await;
        (cpu1 - cpu0, window, rss, allocations)
    };
    let summary = recorder.summary();
    let peak_rss_kib = stats::peak_rss_kib();
    drop(running);
    Ok(RunResult {
        system: spec.system.clone(),
        idle: spec.idle,
        n: spec.n,
        registered,
        register_capped,
        add_secs,
        start_secs,
        expected: if spec.idle {
            0
        } else {
            registered * spec.measure
        },
        fires: summary.fires,
        fires_outside: summary.outside,
        early: summary.early,
        late_p50_ms: summary.p50_ms,
        late_p99_ms: summary.p99_ms,
        late_max_ms: summary.max_ms,
        cpu_secs,
        window_secs,
        rss_before_kib,
        rss_running_kib,
        peak_rss_kib,
        allocations: allocations.total,
        dispatcher_allocations: allocations.dispatcher,
        dispatcher_allocations_run: alloc::allocations().dispatcher,
    })
}

async fn register(
    spec: &RunSpec,
    recorder: &Arc<Recorder>,
) -> Result<(Running, u64, bool), String> {
    let n = spec.n;
    match spec.system.as_str() {
        "floor" => {
            for _ in 0..n {
                let recorder = recorder.clone();
                let idle = spec.idle;
                tokio::spawn(async move {
                    // The floor ticks on whole seconds from the first one after the task starts.
                    let mut next = if idle {
                        now_ns() + period(true).as_nanos() as i64
                    } else {
                        next_whole_second(now_ns())
                    };
                    let base = (tokio::time::Instant::now(), now_ns());
                    loop {
                        let at = base.0 + Duration::from_nanos((next - base.1).max(0) as u64);
                        tokio::time::sleep_until(at).await;
                        recorder.record(next);
                        next += period(idle).as_nanos() as i64;
                    }
                });
            }
            Ok((Running::Floor, n, false))
        }
        "ours-every" | "ours-cron" | "ours-blocking" | "ours-prom" => {
            if spec.system == "ours-prom" {
                install_prometheus()?;
            }
            let schedule = if spec.system != "ours-cron" {
                Schedule::every(period(spec.idle))
            } else if spec.idle {
                Schedule::cron(&hourly_cron())
            } else {
                Schedule::cron("* * * * * *")
            }
            .map_err(|e| format!("schedule: {e}"))?;
            // The default pool size (the number of CPUs) is kept on purpose: it is what users get.
            let manager = ServiceManager::builder()
                .build()
                .map_err(|e| format!("build: {e}"))?;
            for i in 0..n {
                let recorder = recorder.clone();
                let service = if spec.system == "ours-blocking" {
                    Service::blocking(schedule.clone(), move |ctx| {
                        recorder.record(tick_ns(ctx.tick()));
                    })
                } else {
                    Service::new(schedule.clone(), move |ctx| {
                        let recorder = recorder.clone();
                        async move { recorder.record(tick_ns(ctx.tick())) }
                    })
                };
                manager.add_service(format!("svc-{i}"), service);
            }
            Ok((Running::Ours(manager), n, false))
        }
        "ours-state" => register_with_state(spec, recorder),
        "peer" => {
            let scheduler = JobScheduler::new()
                .await
                .map_err(|e| format!("peer new: {e:?}"))?;
            let expression = if spec.idle {
                hourly_cron()
            } else {
                "* * * * * *".to_owned()
            };
            let began = Instant::now();
            let mut registered = 0;
            for _ in 0..n {
                if began.elapsed() > spec.register_cap {
                    return Ok((Running::Peer(scheduler), registered, true));
                }
                let recorder = recorder.clone();
                let job = Job::new_async(expression.as_str(), move |_id, _scheduler| {
                    let recorder = recorder.clone();
                    Box::pin(async move {
                        // The job is not told which tick it runs for; its ticks are whole seconds,
                        // so the tick is the actual time rounded down to the second. That is exact
                        // while lateness stays under 1 s, and a lower bound beyond it.
                        let actual = now_ns();
                        recorder.record_at(actual - actual.rem_euclid(SECOND_NS), actual);
                    })
                })
                .map_err(|e| format!("peer job: {e:?}"))?;
                scheduler
                    .add(job)
                    .await
                    .map_err(|e| format!("peer add: {e:?}"))?;
                registered += 1;
            }
            Ok((Running::Peer(scheduler), registered, false))
        }
        other => Err(format!(
            "unknown system {other:?} (expected one of {})",
            SYSTEMS.join(", ")
        )),
    }
}

/// `ours-every` with the recorder reached through `State` instead of a captured `Arc`: the same
/// work per fire (one `Arc` clone), so the two should measure alike.
fn register_with_state(
    spec: &RunSpec,
    recorder: &Arc<Recorder>,
) -> Result<(Running, u64, bool), String> {
    let n = spec.n;
    let manager = ServiceManager::builder()
        .state(recorder.clone())
        .build()
        .map_err(|e| format!("build: {e}"))?;
    let schedule = Schedule::every(period(spec.idle)).map_err(|e| format!("schedule: {e}"))?;
    for i in 0..n {
        let job = |ctx: JobContext, recorder: State<Arc<Recorder>>| async move {
            recorder.record(tick_ns(ctx.tick()));
        };
        manager
            .try_add_service(format!("svc-{i}"), Service::from_fn(schedule.clone(), job))
            .map_err(|e| format!("add: {e}"))?;
    }
    Ok((Running::Ours(manager), n, false))
}

/// Installs the Prometheus recorder, as an application exporting the metrics would.
#[cfg(feature = "metrics")]
fn install_prometheus() -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map(drop)
        .map_err(|e| format!("prometheus: {e}"))
}

#[cfg(not(feature = "metrics"))]
fn install_prometheus() -> Result<(), String> {
    Err("ours-prom needs the `metrics` feature".to_owned())
}
