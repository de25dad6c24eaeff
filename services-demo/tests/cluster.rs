//! Three processes of the demo in cluster mode against one real PostgreSQL server (started by the
//! test, see `tests/tests/support/postgres.rs`); one is killed (`SIGKILL`) in the middle of a run.
//!
//! What ran is read twice: from each process's log (every run logs `run succeeded` / `run failed`
//! inside its `service_run{service=… tick=…}` span) and from the runs table. Like `e2e.rs`, it never
//! sleeps for luck: it waits for rows and exits, with deadlines only a hung process would reach.

#[path = "../../tests/tests/support/postgres.rs"]
mod postgres;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use scheduler::{Coordinator, PostgresCoordinator, RunRecord};

use postgres::Postgres;

const DEADLINE: Duration = Duration::from_secs(40);
const LEASE_SECS: i64 = 2;
/// The services whose ticks are checked one by one: both every second here.
const EVERY_SECOND: [&str; 2] = ["heartbeat", "cache-warm-up"];
const ALL: [&str; 5] = [
    "heartbeat",
    "cache-warm-up",
    "payment-sync",
    "compact-files",
    "report-export",
];

/// One demo process and the lines it printed.
struct Replica {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// Kills whatever is still running if the test fails half-way.
struct Cluster(Vec<Replica>);

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in &mut self.0 {
            let _ = replica.child.kill();
            let _ = replica.child.wait();
        }
    }
}

fn start(url: &str, name: &str) -> Replica {
    let lease = LEASE_SECS.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_services-demo"))
        .args(["--database-url", url, "--replica", name, "--lease", &lease])
        .args(["--status-every", "3600", "--stop-deadline", "5"])
        .env("RUST_LOG", "info,scheduler=debug")
        .env("NO_COLOR", "1")
        // Two services every second; the warm-up takes 300 ms, so a kill can land inside a run.
        .env("SCHEDULER_SERVICE__HEARTBEAT__INTERVAL", "1")
        .env("SCHEDULER_SERVICE__CACHE_WARM_UP__INTERVAL", "1")
        .env("SCHEDULER_SERVICE__CACHE_WARM_UP__ON_START", "false")
        // The demo retries payment-sync's failures as attempt 2 of a tick; off here, so that every
        // attempt above 1 in the table could only be a takeover, which at-most-once never makes.
        .env("SCHEDULER_SERVICE__PAYMENT_SYNC__RETRIES", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Replica {
        name: name.to_owned(),
        child,
        lines,
    }
}

/// (service, tick) of every run a log reports as ended.
fn runs_in_log(lines: &[String]) -> Vec<(String, DateTime<Utc>)> {
    let ended = ["run succeeded", "run failed", "run panicked", "run aborted"];
    lines
        .iter()
        .filter(|line| ended.iter().any(|e| line.contains(e)))
        .filter_map(|line| {
            // The span: `service_run{service=NAME tick=RFC 3339 trigger=… attempt=…}`.
            let span = line.split_once("service_run{service=")?.1;
            let (service, rest) = span.split_once(" tick=")?;
            let tick = rest.split([' ', '}']).next()?;
            let tick = DateTime::parse_from_rfc3339(tick).ok()?.with_timezone(&Utc);
            Some((service.to_owned(), tick))
        })
        .collect()
}

/// The ticks a log says were not run, with the reason it gives: a claim answered busy (another
/// replica still ran an earlier tick), a previous run whose end was not recorded yet, a claim granted
/// too late, a misfire, ticks due while this replica ran or claimed the service. Each is a documented skip; a tick that no log accounts for is lost.
fn skips_in_log(lines: &[String]) -> BTreeMap<(String, DateTime<Utc>), String> {
    let parse_tick = |text: &str| {
        let (tick, _) = text.split_once(" UTC")?;
        NaiveDateTime::parse_from_str(tick, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc())
    };
    let mut skips = BTreeMap::new();
    for line in lines {
        if let Some(at) = ["tick skipped: ", "tick not run: "]
            .iter()
            .find_map(|m| line.find(m))
        {
            let message = &line[at..];
            let Some((reason, fields)) = message.split_once(" service=") else {
                continue;
            };
            let Some((service, rest)) = fields.split_once(" tick=") else {
                continue;
            };
            if let Some(tick) = parse_tick(rest) {
                skips.insert((service.to_owned(), tick), reason.to_owned());
            }
        } else if let Some((at, reason, count)) = [
            ("misfired: ticks could not start", " due="),
            ("ticks skipped: due while the service was busy", " skipped="),
        ]
        .iter()
        .find_map(|(m, count)| Some((line.find(m)?, *m, *count)))
        {
            // `first=T` and a count N: the N ticks from T (every second here).
            let fields = &line[at..];
            let field = |name: &str| fields.split_once(name).map(|(_, rest)| rest);
            let service = field(" service=")
                .and_then(|r| r.split_whitespace().next())
                .map(|s| s.trim_matches('"'));
            let first = field(" first=").and_then(parse_tick);
            let count = field(count)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<i64>().ok());
            if let (Some(service), Some(first), Some(count)) = (service, first, count) {
                for n in 0..count {
                    let tick = first + TimeDelta::seconds(n);
                    skips.insert((service.to_owned(), tick), reason.to_owned());
                }
            }
        }
    }
    skips
}

fn rows(runtime: &tokio::runtime::Runtime, observer: &PostgresCoordinator) -> Vec<RunRecord> {
    runtime.block_on(async {
        let mut all = Vec::new();
        for service in ALL {
            all.extend(observer.history(service, 10_000).await.unwrap());
        }
        all
    })
}

/// Polls the runs table until `check` finds what it needs.
fn wait_for<T>(
    what: &str,
    runtime: &tokio::runtime::Runtime,
    observer: &PostgresCoordinator,
    mut check: impl FnMut(&[RunRecord]) -> Option<T>,
) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check(&rows(runtime, observer)) {
            return found;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_running(row: &RunRecord) -> bool {
    row.finished.is_none() && row.outcome.is_none()
}

#[cfg(unix)]
#[test]
fn killing_a_replica_mid_run_runs_nothing_twice_and_the_others_keep_the_schedule() {
    let Some(server) = Postgres::launch("demo_kill") else {
        return;
    };
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let observer = PostgresCoordinator::connect(&url, "observer");
    let mut cluster = Cluster(
        ["r0", "r1", "r2"]
            .iter()
            .map(|name| start(&url, name))
            .collect(),
    );

    // Kill r0 while it is inside a warm-up run (claimed, not finished), after it finished one.
    let victim = wait_for("r0 in the middle of a run", &runtime, &observer, |rows| {
        let by_r0 = |row: &&RunRecord| row.service == "cache-warm-up" && row.replica == "r0";
        let finished_one = rows.iter().filter(by_r0).any(|row| !is_running(row));
        let running = rows.iter().filter(by_r0).find(|row| is_running(row))?;
        finished_one.then_some(running.tick)
    });
    cluster.0[0].child.kill().expect("SIGKILL r0");
    let killed_at = Utc::now();
    cluster.0[0].child.wait().unwrap();
    println!("r0 killed at {killed_at} inside its run of cache-warm-up@{victim}");

    // The others go on: wait for ticks well past the dead run's lease.
    let resume_by = killed_at + TimeDelta::seconds(LEASE_SECS + 5);
    wait_for("ticks after the kill", &runtime, &observer, |rows| {
        EVERY_SECOND
            .iter()
            .all(|service| {
                rows.iter()
                    .any(|r| r.service == *service && r.tick >= resume_by && !is_running(r))
            })
            .then_some(())
    });
    for replica in &cluster.0[1..] {
        let status = Command::new("kill")
            .args(["-TERM", &replica.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for replica in &mut cluster.0[1..] {
        let exit = replica.child.wait().unwrap();
        assert!(exit.success(), "{} exits cleanly: {exit}", replica.name);
    }

    let table = rows(&runtime, &observer);
    // Every run that any process logged, and by whom.
    let mut logged: BTreeMap<(String, DateTime<Utc>), Vec<String>> = BTreeMap::new();
    for replica in &cluster.0 {
        let lines = replica.lines.lock().unwrap().clone();
        for key in runs_in_log(&lines) {
            logged.entry(key).or_default().push(replica.name.clone());
        }
    }
    // Every tick a process logged as not run, and why.
    let mut explained: BTreeMap<(String, DateTime<Utc>), String> = BTreeMap::new();
    for replica in &cluster.0 {
        let lines = replica.lines.lock().unwrap().clone();
        for (key, reason) in skips_in_log(&lines) {
            explained.insert(key, format!("{}: {reason}", replica.name));
        }
    }
    // The logs are read at all: every run the table holds as ended by a live replica is in one.
    let ended_by_survivors = table
        .iter()
        .filter(|r| r.replica != "r0" && r.finished.is_some())
        .count();
    assert!(
        logged.len() >= ended_by_survivors,
        "{} runs in the logs, {ended_by_survivors} ended in the table",
        logged.len()
    );
    let twice: Vec<_> = logged.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(twice.is_empty(), "ticks run twice: {twice:?}");
    for ((service, tick), who) in &logged {
        let row = table
            .iter()
            .find(|r| r.service == *service && r.tick == *tick)
            .unwrap_or_else(|| panic!("{service}@{tick} ran on {who:?} without a claim"));
        assert_eq!(row.replica, who[0], "{row:?}");
    }
    assert!(
        table.iter().all(|r| r.attempt == 1),
        "at most once: no takeover"
    );
    // The dead run stays visible, marked abandoned by the next claim, and was not run again.
    let dead = table
        .iter()
        .find(|r| r.service == "cache-warm-up" && r.tick == victim)
        .unwrap();
    assert_eq!(
        (dead.replica.as_str(), dead.outcome.as_deref()),
        ("r0", Some("abandoned")),
        "{dead:?}"
    );
    assert!(!logged.contains_key(&("cache-warm-up".to_owned(), victim)));

    for service in EVERY_SECOND {
        check_schedule(service, &table, &logged, &explained, killed_at);
    }
}

/// Every tick of `service` (every second) ran, except those the dead replica's run blocked until
/// its lease ran out and those a live replica logged as skipped with a documented reason (on a
/// loaded machine a run can outlast its period); prints the figures.
fn check_schedule(
    service: &str,
    table: &[RunRecord],
    logged: &BTreeMap<(String, DateTime<Utc>), Vec<String>>,
    explained: &BTreeMap<(String, DateTime<Utc>), String>,
    killed_at: DateTime<Utc>,
) {
    let rows: Vec<_> = table.iter().filter(|r| r.service == service).collect();
    let abandoned: BTreeSet<_> = rows
        .iter()
        .filter(|r| r.outcome.as_deref() == Some("abandoned"))
        .map(|r| r.tick)
        .collect();
    let ran: BTreeSet<_> = rows
        .iter()
        .filter(|r| !abandoned.contains(&r.tick))
        .map(|r| r.tick)
        .collect();
    let (first_tick, last_tick) = (*ran.first().unwrap(), *ran.last().unwrap());
    let mut expected = Vec::new();
    let mut tick = first_tick;
    while tick <= last_tick {
        expected.push(tick);
        tick += TimeDelta::seconds(1);
    }
    // While r0's run was dead but its lease alive (at most LEASE_SECS after the kill), the service
    // was busy cluster-wide: those ticks are skipped by design. Any other gap is a lost tick.
    let busy_until = killed_at + TimeDelta::seconds(LEASE_SECS + 1);
    let (skipped, not_run): (Vec<DateTime<Utc>>, Vec<_>) = expected
        .iter()
        .filter(|t| !ran.contains(t) && !abandoned.contains(t))
        .partition(|t| **t > killed_at - TimeDelta::seconds(1) && **t <= busy_until);
    // The lease's skips are warned about too: a replica that skips silently would hide lost ticks.
    for tick in &skipped {
        let why = explained.get(&(service.to_owned(), *tick));
        assert!(
            why.is_some_and(|why| why.contains("another replica is still running")),
            "{service}@{tick}: skipped while the dead run's lease held, but logged as {why:?}"
        );
    }
    let (logged_skips, lost): (Vec<_>, Vec<_>) = not_run
        .into_iter()
        .partition(|t| explained.contains_key(&(service.to_owned(), *t)));
    for tick in &logged_skips {
        println!(
            "{service}@{tick} not run, as logged by {}",
            explained[&(service.to_owned(), *tick)]
        );
    }
    let after_kill = ran.iter().filter(|t| **t > killed_at).count();
    let duplicated = logged
        .iter()
        .filter(|((s, _), who)| s == service && who.len() > 1)
        .count();
    println!(
        "{service}: ticks expected {}, ran {}, duplicated {duplicated}, lost {}, abandoned by the \
         killed replica {}, skipped while its lease held {}, skipped as logged {}, ran after the kill {after_kill}",
        expected.len(),
        ran.len(),
        lost.len(),
        abandoned.len(),
        skipped.len(),
        logged_skips.len(),
    );
    assert!(lost.is_empty(), "{service}: ticks lost {lost:?}");
    assert!(after_kill >= 5, "{service}: the schedule went on");
}
