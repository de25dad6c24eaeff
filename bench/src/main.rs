//! `scheduler-bench`: what firing costs, for plain tokio tasks (the floor), this project's
//! `ServiceManager` (fixed period and cron) and `tokio-cron-scheduler`, in one interleaved run.
//!
//! The parent process runs every system × N × round as a fresh child (`scheduler-bench run ...`),
//! reads the child's JSON line and prints markdown tables of medians with ratios to the floor.
//! See `bench/README.md`.

// Counts, nanoseconds and KiB convert to f64 for reporting; the values are far below 2^52.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

mod alloc;
mod fleet;
mod stats;
mod systems;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stats::median;
use systems::{RunResult, RunSpec, DEFAULT_SYSTEMS, SYSTEMS};

const USAGE: &str = "\
usage: scheduler-bench [--n 1000,10000,100000] [--rounds 3] [--warmup 2] [--measure 10]
                       [--systems floor,ours-every,ours-cron,peer] [--skip-idle] [--idle-only]
                       [--idle-secs 10] [--register-cap 120] [--no-metrics-bin PATH]
                       [--threads 2]     (tokio worker threads of every child)
         systems: floor, ours-every, ours-cron, peer (the default set), ours-blocking (ours-every
         with blocking jobs), ours-prom (ours-every with a Prometheus recorder), ours-every-nometrics
         (ours-every run by PATH, a build with --no-default-features: needs --no-metrics-bin),
         ours-state (ours-every whose job takes its recorder as a State parameter)
       scheduler-bench run --system SYSTEM --n N [--warmup 2] [--measure 10] [--idle]
                       [--register-cap 120] [--threads 2]     (one measurement; prints one JSON line)";

struct Options {
    ns: Vec<u64>,
    rounds: usize,
    warmup: u64,
    measure: u64,
    systems: Vec<String>,
    fire: bool,
    idle: bool,
    idle_secs: u64,
    register_cap: u64,
    no_metrics_bin: Option<std::path::PathBuf>,
    threads: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("run") {
        child(&args[1..])
    } else if args.first().map(String::as_str) == Some("fleet") {
        fleet::main(&args[1..])
    } else {
        parent(&args)
    };
    if let Err(message) = result {
        eprintln!("scheduler-bench: {message}\n{USAGE}\n{}", fleet::USAGE);
        std::process::exit(2);
    }
}

fn value<'a>(args: &'a [String], i: &mut usize) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{} needs a value", args[*i - 1]))
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("not a number: {text:?}"))
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        ns: vec![1_000, 10_000, 100_000],
        rounds: 3,
        warmup: 2,
        measure: 10,
        systems: DEFAULT_SYSTEMS.iter().map(|s| (*s).to_owned()).collect(),
        fire: true,
        idle: true,
        idle_secs: 10,
        register_cap: 120,
        no_metrics_bin: None,
        threads: 2,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--n" => {
                options.ns = value(args, &mut i)?
                    .split(',')
                    .map(number)
                    .collect::<Result<_, _>>()?;
            }
            "--rounds" => options.rounds = number(value(args, &mut i)?)?,
            "--warmup" => options.warmup = number(value(args, &mut i)?)?,
            "--measure" => options.measure = number(value(args, &mut i)?)?,
            "--idle-secs" => options.idle_secs = number(value(args, &mut i)?)?,
            "--register-cap" => options.register_cap = number(value(args, &mut i)?)?,
            "--systems" => {
                options.systems = value(args, &mut i)?.split(',').map(str::to_owned).collect();
                if let Some(bad) = options
                    .systems
                    .iter()
                    .find(|s| !SYSTEMS.contains(&s.as_str()))
                {
                    return Err(format!("unknown system {bad:?}"));
                }
            }
            "--no-metrics-bin" => options.no_metrics_bin = Some(value(args, &mut i)?.into()),
            "--threads" => options.threads = number(value(args, &mut i)?)?,
            "--skip-idle" => options.idle = false,
            "--idle-only" => options.fire = false,
            "-h" | "--help" => {
                println!("{USAGE}\n{}", fleet::USAGE);
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 1;
    }
    if options.systems.iter().any(|s| s == "ours-every-nometrics")
        && options.no_metrics_bin.is_none()
    {
        return Err("ours-every-nometrics needs --no-metrics-bin PATH".to_owned());
    }
    if options.rounds == 0 || options.measure == 0 || options.ns.is_empty() {
        return Err("--rounds, --measure and --n must be positive".to_owned());
    }
    Ok(options)
}

fn child(args: &[String]) -> Result<(), String> {
    let mut spec = RunSpec {
        system: String::new(),
        n: 0,
        warmup: 2,
        measure: 10,
        idle: false,
        register_cap: Duration::from_secs(120),
        threads: 2,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--system" => value(args, &mut i)?.clone_into(&mut spec.system),
            "--n" => spec.n = number(value(args, &mut i)?)?,
            "--warmup" => spec.warmup = number(value(args, &mut i)?)?,
            "--measure" => spec.measure = number(value(args, &mut i)?)?,
            "--register-cap" => {
                spec.register_cap = Duration::from_secs(number(value(args, &mut i)?)?);
            }
            "--idle" => spec.idle = true,
            "--threads" => spec.threads = number(value(args, &mut i)?)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
        i += 1;
    }
    let result = systems::run(&spec)?;
    let line = serde_json::to_string(&result).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    // Exit at once: tearing down 100 000 tasks or a peer's actors measures nothing.
    std::process::exit(0);
}

/// Runs one child, killing it if it outlives `limit`.
/// `ours-every-nometrics` is `ours-every` run by the build without metrics, `no_metrics_bin`.
fn run_child(
    spec: &RunSpec,
    limit: Duration,
    no_metrics_bin: Option<&std::path::Path>,
) -> Result<RunResult, String> {
    let (exe, system) = match (spec.system.as_str(), no_metrics_bin) {
        ("ours-every-nometrics", Some(bin)) => (bin.to_owned(), "ours-every"),
        _ => (
            std::env::current_exe().map_err(|e| e.to_string())?,
            spec.system.as_str(),
        ),
    };
    let mut command = Command::new(exe);
    command.args([
        "run",
        "--system",
        system,
        "--n",
        &spec.n.to_string(),
        "--warmup",
        &spec.warmup.to_string(),
        "--measure",
        &spec.measure.to_string(),
        "--register-cap",
        &spec.register_cap.as_secs().to_string(),
        "--threads",
        &spec.threads.to_string(),
    ]);
    if spec.idle {
        command.arg("--idle");
    }
    let mut process = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let stdout = process.stdout.take().ok_or("no child stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.starts_with('{'))
            .last()
    });
    let began = Instant::now();
    loop {
        match process.try_wait() {
            Ok(Some(status)) => {
                let line = reader.join().ok().flatten();
                return match line {
                    Some(line) => serde_json::from_str(&line).map_err(|e| format!("bad line: {e}")),
                    None => Err(format!("child exited with {status} and no result")),
                };
            }
            Ok(None) if began.elapsed() > limit => {
                let _ = process.kill();
                let _ = process.wait();
                return Err(format!("child killed after {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    }
}

fn parent(args: &[String]) -> Result<(), String> {
    let options = parse_options(args)?;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    println!(
        "# scheduler-bench: N = {:?}, {} rounds, {} s warm-up + {} s measured, idle {} s; {cpus} CPUs, 2 runtime workers\n",
        options.ns, options.rounds, options.warmup, options.measure, options.idle_secs
    );
    let mut modes = Vec::new();
    if options.fire {
        modes.push(false);
    }
    if options.idle {
        modes.push(true);
    }
    let mut results: Vec<RunResult> = Vec::new();
    for &idle in &modes {
        for &n in &options.ns {
            for round in 1..=options.rounds {
                for system in &options.systems {
                    let spec = RunSpec {
                        system: system.clone(),
                        n,
                        warmup: if idle { 0 } else { options.warmup },
                        measure: if idle {
                            options.idle_secs
                        } else {
                            options.measure
                        },
                        idle,
                        register_cap: Duration::from_secs(options.register_cap),
                        threads: options.threads,
                    };
                    let limit = Duration::from_secs(
                        options.register_cap + 2 * (spec.warmup + spec.measure) + 60,
                    );
                    let mode = if idle { "idle" } else { "fire" };
                    eprint!("[{mode} N={n} round {round}] {system} ... ");
                    match run_child(&spec, limit, options.no_metrics_bin.as_deref()) {
                        Ok(mut result) => {
                            result.system.clone_from(system);
                            eprintln!(
                                "fires {}/{}, p99 {:.1} ms, CPU {:.3} s, register {:.3} s, allocs {} (dispatcher {})",
                                result.fires,
                                result.expected,
                                result.late_p99_ms,
                                result.cpu_secs,
                                result.add_secs + result.start_secs,
                                result.allocations,
                                result.dispatcher_allocations,
                            );
                            results.push(result);
                        }
                        Err(e) => eprintln!("FAILED: {e}"),
                    }
                }
            }
        }
    }
    print!("{}", report(&options, &results));
    Ok(())
}

/// Per-system medians for one N and mode.
struct Row {
    system: String,
    runs: usize,
    fires: f64,
    expected: f64,
    p50: f64,
    p99: f64,
    p99_range: (f64, f64),
    max: f64,
    cpu_per_1000: f64,
    cpu_range: (f64, f64),
    cpu_secs: f64,
    peak_rss_mib: f64,
    per_service_b: f64,
    register_ms: f64,
    capped: Option<(f64, f64)>,
    /// Allocator calls per fire in the window: all, and the dispatcher's.
    allocs_per_fire: f64,
    dispatcher_allocs_per_fire: f64,
    /// The dispatcher's allocator calls over the whole run.
    dispatcher_allocs_run: f64,
    allocations: f64,
}

fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|v| !v.is_nan())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

fn row(system: &str, runs: &[&RunResult]) -> Row {
    let collect =
        |f: &dyn Fn(&RunResult) -> f64| -> Vec<f64> { runs.iter().map(|r| f(r)).collect() };
    let med = |f: &dyn Fn(&RunResult) -> f64| median(&mut collect(f));
    let p99s = collect(&|r| r.late_p99_ms);
    let cpu_per_1000 = |r: &RunResult| {
        if r.fires == 0 {
            f64::NAN
        } else {
            r.cpu_secs / r.fires as f64 * 1000.0
        }
    };
    let cpus = collect(&cpu_per_1000);
    let capped = runs.iter().any(|r| r.register_capped).then(|| {
        (
            med(&|r| r.registered as f64),
            med(&|r| r.add_secs + r.start_secs),
        )
    });
    Row {
        system: system.to_owned(),
        runs: runs.len(),
        fires: med(&|r| r.fires as f64),
        expected: med(&|r| r.expected as f64),
        p50: med(&|r| r.late_p50_ms),
        p99: median(&mut p99s.clone()),
        p99_range: range(&p99s),
        max: med(&|r| r.late_max_ms),
        cpu_per_1000: median(&mut cpus.clone()),
        cpu_range: range(&cpus),
        cpu_secs: med(&|r| r.cpu_secs),
        peak_rss_mib: med(&|r| r.peak_rss_kib as f64 / 1024.0),
        per_service_b: med(&|r| {
            (r.rss_running_kib as f64 - r.rss_before_kib as f64) * 1024.0
                / r.registered.max(1) as f64
        }),
        register_ms: med(&|r| (r.add_secs + r.start_secs) * 1000.0),
        capped,
        allocs_per_fire: med(&|r| per_fire(r.allocations, r.fires)),
        dispatcher_allocs_per_fire: med(&|r| per_fire(r.dispatcher_allocations, r.fires)),
        dispatcher_allocs_run: med(&|r| r.dispatcher_allocations_run as f64),
        allocations: med(&|r| r.allocations as f64),
    }
}

fn per_fire(count: u64, fires: u64) -> f64 {
    if fires == 0 {
        f64::NAN
    } else {
        count as f64 / fires as f64
    }
}

fn ratio(value: f64, floor: Option<f64>) -> String {
    match floor {
        Some(floor) if floor > 0.0 && !value.is_nan() => format!("{:.2}×", value / floor),
        _ => "–".to_owned(),
    }
}

fn report(options: &Options, results: &[RunResult]) -> String {
    let mut out = String::new();
    for idle in [false, true] {
        for &n in &options.ns {
            let rows: Vec<Row> = options
                .systems
                .iter()
                .filter_map(|system| {
                    let runs: Vec<&RunResult> = results
                        .iter()
                        .filter(|r| r.n == n && r.idle == idle && &r.system == system)
                        .collect();
                    (!runs.is_empty()).then(|| row(system, &runs))
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            let floor = rows.iter().find(|r| r.system == "floor");
            if idle {
                write_idle(&mut out, n, options, &rows, floor);
            } else {
                write_fire(&mut out, n, &rows, floor);
            }
        }
    }
    out
}

fn write_fire(out: &mut String, n: u64, rows: &[Row], floor: Option<&Row>) {
    let _ = writeln!(
        out,
        "## Firing every second, N = {n} (medians of {} rounds)\n",
        rows.iter().map(|r| r.runs).max().unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "| system | fires / expected | missed | late p50 ms | late p99 ms (range) | late max ms | CPU s / 1000 fires (range) | peak RSS MiB | RSS / service B | register ms | p99 × floor | CPU × floor | RSS / svc above floor B | register × floor | allocs / fire | dispatcher allocs / fire (whole run) |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let register = register_cell(r);
        let _ = writeln!(
            out,
            "| {} | {:.0} / {:.0} | {:.0} | {:.2} | {:.2} ({:.2}–{:.2}) | {:.1} | {:.4} ({:.4}–{:.4}) | {:.1} | {:.0} | {} | {} | {} | {} | {} | {:.3} | {:.4} ({:.0}) |",
            r.system,
            r.fires,
            r.expected,
            r.expected - r.fires,
            r.p50,
            r.p99,
            r.p99_range.0,
            r.p99_range.1,
            r.max,
            r.cpu_per_1000,
            r.cpu_range.0,
            r.cpu_range.1,
            r.peak_rss_mib,
            r.per_service_b,
            register,
            ratio(r.p99, floor.map(|f| f.p99)),
            ratio(r.cpu_per_1000, floor.map(|f| f.cpu_per_1000)),
            floor.map_or("–".to_owned(), |f| format!("{:+.0}", r.per_service_b - f.per_service_b)),
            if r.capped.is_some() {
                "–".to_owned()
            } else {
                ratio(r.register_ms, floor.map(|f| f.register_ms))
            },
            r.allocs_per_fire,
            r.dispatcher_allocs_per_fire,
            r.dispatcher_allocs_run,
        );
    }
    out.push('\n');
}

/// The registration time, or how far a capped registration got.
fn register_cell(r: &Row) -> String {
    match r.capped {
        Some((registered, secs)) => format!("capped: {registered:.0} in {secs:.0} s"),
        None => format!("{:.1}", r.register_ms),
    }
}

fn write_idle(out: &mut String, n: u64, options: &Options, rows: &[Row], floor: Option<&Row>) {
    let _ = writeln!(
        out,
        "## Idle: N = {n} services on a 1-hour period, CPU over {} s (medians of {} rounds)\n",
        options.idle_secs,
        rows.iter().map(|r| r.runs).max().unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "| system | idle CPU s | idle CPU × floor | peak RSS MiB | RSS / service B | RSS / svc above floor B | register ms | register × floor | allocs in the window |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let register = register_cell(r);
        let _ = writeln!(
            out,
            "| {} | {:.4} | {} | {:.1} | {:.0} | {} | {} | {} | {:.0} |",
            r.system,
            r.cpu_secs,
            ratio(r.cpu_secs, floor.map(|f| f.cpu_secs)),
            r.peak_rss_mib,
            r.per_service_b,
            floor.map_or("–".to_owned(), |f| format!(
                "{:+.0}",
                r.per_service_b - f.per_service_b
            )),
            register,
            if r.capped.is_some() {
                "–".to_owned()
            } else {
                ratio(r.register_ms, floor.map(|f| f.register_ms))
            },
            r.allocations,
        );
    }
    out.push('\n');
}
