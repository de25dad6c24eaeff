//! `scheduler-bench fleet`: R replicas × N services, every one due each second, on one PostgreSQL
//! server. Every replica claims every tick (R × N claims a second); each tick must run exactly once.
//!
//! The replicas are `ServiceManager`s in this one process, each with its own
//! `PostgresCoordinator` (its own connections), on one runtime. Without `--database-url` a
//! throw-away server is started (the tests' `support/postgres.rs`: `initdb` into a temporary
//! directory, `synchronous_commit=off`), and its CPU is read from `/proc`: the postmaster with the
//! backends it reaped, plus the live ones.
//!
//! For each (R, N): a table of its own, `--warmup` seconds, then the ticks of `--measure` seconds
//! are checked: ran twice (duplicates), never ran (missed), and how late each started after its
//! tick (p50, p99, max).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scheduler::coordinator::Coordinator as _;
use scheduler::{PostgresCoordinator, Schedule, Service, ServiceManager};

use crate::stats::{next_whole_second, now_ns, rusage, Recorder, SECOND_NS};
use crate::{number, value};

#[path = "../../tests/tests/support/postgres.rs"]
mod postgres;

pub(crate) const USAGE: &str = "\
       scheduler-bench fleet [--replicas 1,2,4] [--services 1000,5000] [--warmup 3] [--measure 10]
                       [--database-url URL] [--claim-connections 2] [--claim-batch 256]
                       [--threads 2] [--claim-ahead 0,300]
                                         (R replicas x N services at 1 Hz on one PostgreSQL;
                                          --claim-ahead: milliseconds, one run each)";

struct FleetOptions {
    replicas: Vec<usize>,
    services: Vec<usize>,
    warmup: u64,
    measure: u64,
    url: Option<String>,
    claim_connections: usize,
    claim_batch: usize,
    threads: usize,
    /// `ServiceManagerBuilder::claim_ahead` values to run, in milliseconds.
    claim_ahead: Vec<usize>,
}

fn parse(args: &[String]) -> Result<FleetOptions, String> {
    let mut options = FleetOptions {
        replicas: vec![1, 2, 4],
        services: vec![1_000, 5_000],
        warmup: 3,
        measure: 10,
        url: None,
        claim_connections: 2,
        claim_batch: 256,
        threads: 2,
        claim_ahead: vec![0],
    };
    let list = |text: &str| -> Result<Vec<usize>, String> { text.split(',').map(number).collect() };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--replicas" => options.replicas = list(value(args, &mut i)?)?,
            "--services" => options.services = list(value(args, &mut i)?)?,
            "--warmup" => options.warmup = number(value(args, &mut i)?)?,
            "--measure" => options.measure = number(value(args, &mut i)?)?,
            "--database-url" => options.url = Some(value(args, &mut i)?.to_owned()),
            "--claim-connections" => options.claim_connections = number(value(args, &mut i)?)?,
            "--claim-batch" => options.claim_batch = number(value(args, &mut i)?)?,
            "--threads" => options.threads = number(value(args, &mut i)?)?,
            "--claim-ahead" => options.claim_ahead = list(value(args, &mut i)?)?,
            other => return Err(format!("fleet: unknown argument {other:?}")),
        }
        i += 1;
    }
    let positive = |v: &[usize]| !v.is_empty() && v.iter().all(|n| *n > 0);
    if !positive(&options.replicas) || !positive(&options.services) || options.measure == 0 {
        return Err("fleet: --replicas, --services and --measure must be positive".to_owned());
    }
    if options.threads == 0 {
        return Err("fleet: --threads must be positive".to_owned());
    }
    Ok(options)
}

/// What one (R, N) run measured.
struct FleetResult {
    claim_ahead_ms: usize,
    replicas: usize,
    services: usize,
    ticks: u64,
    ran: u64,
    duplicates: u64,
    missed: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// CPU seconds per second of the measured window.
    bench_cpu: f64,
    server_cpu: Option<f64>,
}

/// Runs the scenario: prints the table to stdout.
pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let server = if options.url.is_some() {
        None
    } else {
        let setup = postgres::Setup {
            options: "-c synchronous_commit=off -c max_connections=200",
            ..postgres::Setup::default()
        };
        let server = postgres::Postgres::launch_with("fleet", &setup).ok_or(
            "fleet: no PostgreSQL server binaries; install postgresql or give --database-url",
        )?;
        Some(server)
    };
    let url = options
        .url
        .clone()
        .or_else(|| server.as_ref().map(postgres::Postgres::url))
        .unwrap_or_default();
    let postmaster = server.as_ref().and_then(|s| postmaster_pid(&s.data_dir()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut results = Vec::new();
    for &ahead in &options.claim_ahead {
        for &services in &options.services {
            for &replicas in &options.replicas {
                eprintln!(
                    "fleet: {replicas} replicas x {services} services, claimed {ahead} ms ahead ..."
                );
                let shape = Shape {
                    replicas,
                    services,
                    claim_ahead_ms: ahead,
                };
                let result = runtime.block_on(run_one(&options, &url, shape, postmaster))?;
                results.push(result);
            }
        }
    }
    print!("{}", table(&options, &results));
    Ok(())
}

/// Which of `services` × the measured seconds ran how often.
struct Ledger {
    window_start: i64,
    seconds: usize,
    counts: Vec<AtomicU8>,
}

impl Ledger {
    fn record(&self, service: usize, tick_ns: i64) {
        let offset = tick_ns - self.window_start;
        if offset < 0 || offset % SECOND_NS != 0 {
            return;
        }
        let second = (offset / SECOND_NS) as usize;
        if second < self.seconds {
            let _ = self.counts[service * self.seconds + second].fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |n| Some(n.saturating_add(1)),
            );
        }
    }
}

/// One row of the table: how many replicas, services each, and how far ahead ticks are claimed.
#[derive(Clone, Copy)]
struct Shape {
    replicas: usize,
    services: usize,
    claim_ahead_ms: usize,
}

async fn run_one(
    options: &FleetOptions,
    url: &str,
    shape: Shape,
    postmaster: Option<u32>,
) -> Result<FleetResult, String> {
    let Shape {
        replicas,
        services,
        claim_ahead_ms,
    } = shape;
    let seconds = options.measure as usize;
    let window_start = next_whole_second(now_ns()) + options.warmup as i64 * SECOND_NS;
    let ledger = Arc::new(Ledger {
        window_start,
        seconds,
        counts: (0..services * seconds).map(|_| AtomicU8::new(0)).collect(),
    });
    let recorder = Arc::new(Recorder::new());
    recorder.set_window(window_start, window_start + seconds as i64 * SECOND_NS);
    let table = format!("fleet_{replicas}_{services}_{}", std::process::id());
    // The schema first, so that the first ticks measure claims rather than a migration.
    PostgresCoordinator::connect(url, "fleet-setup")
        .table(&table)
        .prepare()
        .await
        .map_err(|e| e.to_string())?;
    let mut managers = Vec::new();
    for r in 0..replicas {
        let coordinator = PostgresCoordinator::connect(url, format!("fleet-{r}"))
            .table(&table)
            .claim_connections(options.claim_connections)
            .claim_batch(options.claim_batch);
        coordinator.validate().map_err(|e| e.to_string())?;
        let manager = ServiceManager::builder()
            .coordinator(coordinator)
            .lease(Duration::from_secs(30))
            .claim_ahead(Duration::from_millis(claim_ahead_ms as u64))
            // The history is in the database.
            .history_len(0)
            .build()
            .map_err(|e| e.to_string())?;
        for id in 0..services {
            let (ledger, recorder) = (ledger.clone(), recorder.clone());
            let every = Schedule::every(Duration::from_secs(1)).map_err(|e| e.to_string())?;
            manager.add_service(
                format!("svc-{id:06}"),
                Service::new(every, move |ctx| {
                    let tick = ctx.tick().timestamp_nanos_opt().unwrap_or(i64::MIN);
                    recorder.record(tick);
                    ledger.record(id, tick);
                    async {}
                }),
            );
        }
        manager.start().map_err(|e| e.to_string())?;
        managers.push(manager);
    }
    // Until the window opens, then through it, then a second for the last ticks to start.
    let sleep_until_ns = |ns: i64| {
        let wait = (ns - now_ns()).max(0);
        tokio::time::sleep(Duration::from_nanos(wait as u64))
    };
    sleep_until_ns(window_start).await;
    let (cpu_before, server_before, began) = (rusage().0, server_cpu(postmaster), Instant::now());
    sleep_until_ns(window_start + seconds as i64 * SECOND_NS).await;
    let elapsed = began.elapsed().as_secs_f64();
    let (cpu_after, server_after) = (rusage().0, server_cpu(postmaster));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for manager in &managers {
        manager.stop().await;
    }
    let summary = recorder.summary();
    let (mut ran, mut duplicates, mut missed) = (0, 0, 0);
    for count in &ledger.counts {
        match count.load(Ordering::Relaxed) {
            0 => missed += 1,
            1 => ran += 1,
            _ => {
                ran += 1;
                duplicates += 1;
            }
        }
    }
    Ok(FleetResult {
        claim_ahead_ms,
        replicas,
        services,
        ticks: (services * seconds) as u64,
        ran,
        duplicates,
        missed,
        p50_ms: summary.p50_ms,
        p99_ms: summary.p99_ms,
        max_ms: summary.max_ms,
        bench_cpu: (cpu_after - cpu_before) / elapsed,
        server_cpu: server_before
            .zip(server_after)
            .map(|(before, after)| (after - before) / elapsed),
    })
}

fn table(options: &FleetOptions, results: &[FleetResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nfleet: every service due each second, {} s measured after {} s, {} claim connections \
         and batches of at most {} per replica\n",
        options.measure, options.warmup, options.claim_connections, options.claim_batch
    );
    let _ = writeln!(
        out,
        "| claim ahead | replicas × services | claims/s | ticks | ran | duplicates | missed | \
         tick → start p50 | p99 | max | PostgreSQL CPU | replicas' CPU |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let server = r
            .server_cpu
            .map_or_else(|| "n/a".to_owned(), |cpu| format!("{cpu:.2} cores"));
        let _ = writeln!(
            out,
            "| {} ms | {} × {} | {} | {} | {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {server} \
             | {:.2} cores |",
            r.claim_ahead_ms,
            r.replicas,
            r.services,
            r.replicas * r.services,
            r.ticks,
            r.ran,
            r.duplicates,
            r.missed,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.bench_cpu,
        );
    }
    out
}

/// The server's process, from the first line of `postmaster.pid`.
fn postmaster_pid(data_dir: &std::path::Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// CPU seconds of the server so far: the postmaster, the children it reaped and the live ones.
/// Linux's `/proc/<pid>/stat` counts in clock ticks, 100 a second.
fn server_cpu(postmaster: Option<u32>) -> Option<f64> {
    let postmaster = postmaster?;
    let ticks = |fields: &[&str], from: usize, to: usize| -> u64 {
        fields[from..=to]
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum()
    };
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The fields after the command (which may hold spaces) in parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 15 {
            continue;
        }
        let pid: u32 = entry.file_name().to_str()?.parse().unwrap_or(0);
        // fields[1] is the parent; [11], [12] utime and stime; [13], [14] the reaped children's.
        if pid == postmaster {
            total += ticks(&fields, 11, 14);
        } else if fields[1].parse::<u32>().ok() == Some(postmaster) {
            total += ticks(&fields, 11, 12);
        }
    }
    Some(total as f64 / 100.0)
}
