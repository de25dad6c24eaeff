//! Coordinated replicas against a real PostgreSQL server (started by the test: see
//! `support/postgres.rs`), on the real clock. The rules are those of `cluster_memory.rs`; here they
//! are held against the database, with real connections, real time and a real outage.
//!
//! No test sleeps for luck: each waits for what it needs (rows in the database, a status) with a
//! deadline that only a broken build reaches. Each test has its own server, so they run in parallel.
//!
//! ```text
//! cargo test -p scheduler-tests --test cluster_postgres -- --nocapture   # shows the figures
//! ```

#[path = "support/postgres.rs"]
mod postgres;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use scheduler::{
    Claim, ClaimPolicy, Coordinator, Delivery, FinishedRun, InMemoryCoordinator, Outcome,
    PostgresCoordinator, RunRecord, Schedule, Service, ServiceManager,
};

use postgres::{wait_for, Postgres};

type Ran = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// A service every `period` whose (instant) job records (replica, tick).
fn recording(replica: &str, period: Duration, ran: &Ran) -> Service {
    let (replica, ran) = (replica.to_owned(), ran.clone());
    Service::new(Schedule::every(period).unwrap(), move |ctx| {
        ran.lock().unwrap().push((replica.clone(), ctx.tick()));
        async {}
    })
}

fn replica(url: &str, name: &str, lease: Duration) -> ServiceManager {
    ServiceManager::builder()
        .coordinator(PostgresCoordinator::connect(url, name))
        .lease(lease)
        .build()
        .unwrap()
}

async fn history(observer: &PostgresCoordinator, service: &str) -> Vec<RunRecord> {
    observer.history(service, 10_000).await.unwrap()
}

/// Executions per tick, and what is missing between the first and the last tick.
struct Tally {
    expected: usize,
    ran: usize,
    duplicated: usize,
    lost: Vec<DateTime<Utc>>,
}

fn tally(executions: &[DateTime<Utc>], period: Duration) -> Tally {
    let mut per_tick: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for tick in executions {
        *per_tick.entry(*tick).or_default() += 1;
    }
    let (Some(first), Some(last)) = (per_tick.keys().next(), per_tick.keys().last()) else {
        return Tally {
            expected: 0,
            ran: 0,
            duplicated: 0,
            lost: Vec::new(),
        };
    };
    let step = TimeDelta::from_std(period).unwrap();
    let mut expected = Vec::new();
    let mut tick = *first;
    while tick <= *last {
        expected.push(tick);
        tick += step;
    }
    Tally {
        expected: expected.len(),
        ran: executions.len(),
        duplicated: per_tick.values().filter(|n| **n > 1).count(),
        lost: expected
            .into_iter()
            .filter(|t| !per_tick.contains_key(t))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_every_tick_exactly_once() {
    let Some(server) = Postgres::launch("three_replicas") else {
        return;
    };
    let url = server.url();
    let period = Duration::from_secs(1);
    let ran = Ran::default();
    let managers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let manager = replica(&url, name, Duration::from_secs(10));
            manager.add_service("report", recording(name, period, &ran));
            manager.start().unwrap();
            manager
        })
        .collect();
    let observer = PostgresCoordinator::connect(&url, "observer");
    wait_for("20 finished ticks in the runs table", || async {
        let done = history(&observer, "report")
            .await
            .iter()
            .filter(|r| r.outcome.as_deref() == Some("ok"))
            .count();
        (done >= 20).then_some(())
    })
    .await;
    for manager in &managers {
        manager.stop().await;
    }

    let ran = ran.lock().unwrap().clone();
    let ticks: Vec<_> = ran.iter().map(|(_, t)| *t).collect();
    let figures = tally(&ticks, period);
    let mut per_replica: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, _) in &ran {
        *per_replica.entry(name).or_default() += 1;
    }
    println!(
        "three replicas, 1 s period: ticks expected {}, ran {}, duplicated {}, lost {} \
         (runs per replica: {per_replica:?})",
        figures.expected,
        figures.ran,
        figures.duplicated,
        figures.lost.len()
    );
    assert!(figures.ran >= 20, "{ran:?}");
    assert_eq!(figures.duplicated, 0, "no tick ran twice: {ran:?}");
    assert!(
        figures.lost.is_empty(),
        "no tick was lost: {:?}",
        figures.lost
    );
    assert_eq!(figures.expected, figures.ran);

    // The table agrees with what ran, and shows it: one finished row per tick, first attempts.
    let rows = history(&observer, "report").await;
    let in_table: BTreeSet<_> = rows.iter().map(|r| r.tick).collect();
    assert_eq!(in_table, ticks.iter().copied().collect::<BTreeSet<_>>());
    for row in &rows {
        assert_eq!(
            (row.attempt, row.outcome.as_deref()),
            (1, Some("ok")),
            "{row:?}"
        );
        assert!(row.finished.is_some_and(|f| f >= row.started), "{row:?}");
        assert!(
            ran.contains(&(row.replica.clone(), row.tick)),
            "the row names the replica that ran it: {row:?}"
        );
    }
    let from_manager = managers[1].cluster_history("report", 3).await.unwrap();
    assert_eq!(from_manager, rows[..3]);
}

/// The same calls on the in-memory reference and on PostgreSQL give the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_the_in_memory_reference() {
    let Some(server) = Postgres::launch("reference") else {
        return;
    };
    let memory = InMemoryCoordinator::new();
    let pg = (
        PostgresCoordinator::connect(&server.url(), "a"),
        PostgresCoordinator::connect(&server.url(), "b"),
    );
    // Recent ticks: older ones would be pruned (the history horizon is 7 days).
    let base = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let on_memory = script(base, &memory.replica("a"), &memory.replica("b")).await;
    let on_postgres = script(base, &pg.0, &pg.1).await;
    assert_eq!(on_postgres, on_memory);
    println!("{}", on_memory.join("\n"));
}

/// A claim sequence through every rule: taken, busy, abandoned (at most once), takeover (at least
/// once), fencing (renewals and reports of an attempt that was taken over), a report after an
/// abandoned mark, releases, and the history it leaves.
async fn script(base: DateTime<Utc>, a: &dyn Coordinator, b: &dyn Coordinator) -> Vec<String> {
    let t = |s: i64| base + TimeDelta::seconds(s);
    let short = |delivery| ClaimPolicy::new(Duration::from_millis(300), delivery);
    let expire = || tokio::time::sleep(Duration::from_millis(450));
    let run = FinishedRun::new(t(0), t(1), Outcome::Failed("boom".into()));
    let mut log = Vec::new();
    let note = |log: &mut Vec<String>, what: &str, answer: &dyn std::fmt::Debug| {
        log.push(format!("{what}: {answer:?}"));
    };
    let (most, least) = (Delivery::AtMostOnce, Delivery::AtLeastOnce);
    a.prepare().await.unwrap();
    b.prepare().await.unwrap();

    // At most once.
    let claim = a.claim("s", t(10), short(most)).await.unwrap();
    note(&mut log, "a claims s@10", &claim);
    note(
        &mut log,
        "b claims s@10",
        &b.claim("s", t(10), short(most)).await.unwrap(),
    );
    note(
        &mut log,
        "b claims s@20",
        &b.claim("s", t(20), short(most)).await.unwrap(),
    );
    let Claim::Granted(ticket) = claim else {
        panic!("{claim:?}")
    };
    for _ in 0..3 {
        // Renewed by its holder, a lease outlives its first term.
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.renew(&ticket).await.unwrap();
    }
    note(
        &mut log,
        "b claims s@20 (renewed)",
        &b.claim("s", t(20), short(most)).await.unwrap(),
    );
    expire().await;
    note(
        &mut log,
        "b claims s@20 (expired)",
        &b.claim("s", t(20), short(most)).await.unwrap(),
    );
    // a's run of 10 did end: its report replaces the abandoned mark (the same attempt), and
    // releases nothing else.
    note(
        &mut log,
        "a renews s@10 (abandoned)",
        &a.renew(&ticket).await.unwrap(),
    );
    note(
        &mut log,
        "a reports s@10 (abandoned)",
        &a.finish(&ticket, &run).await.unwrap(),
    );
    note(
        &mut log,
        "a claims s@30 (b runs 20)",
        &a.claim("s", t(30), short(most)).await.unwrap(),
    );

    // At least once.
    let claim = a.claim("l", t(10), short(least)).await.unwrap();
    note(&mut log, "a claims l@10", &claim);
    let Claim::Granted(old) = claim else {
        panic!("{claim:?}")
    };
    expire().await;
    let claim = b.claim("l", t(20), short(least)).await.unwrap();
    note(&mut log, "b claims l@20 (a died)", &claim);
    note(
        &mut log,
        "b claims l@20 again",
        &b.claim("l", t(20), short(least)).await.unwrap(),
    );
    // No longer a's (fenced by the attempt): a's renewal and report change nothing.
    note(
        &mut log,
        "a renews l@10 (taken over)",
        &a.renew(&old).await.unwrap(),
    );
    note(
        &mut log,
        "a reports l@10 (taken over)",
        &a.finish(&old, &run).await.unwrap(),
    );
    expire().await;
    let claim2 = b.claim("l", t(20), short(least)).await.unwrap();
    note(&mut log, "b claims l@20 (b's takeover expired)", &claim2);
    if let Claim::Granted(ticket) = claim2 {
        b.finish(&ticket, &run).await.unwrap();
    }
    note(
        &mut log,
        "b claims l@20 (done)",
        &b.claim("l", t(20), short(least)).await.unwrap(),
    );

    releases_and_retries(base, a, b, &mut log).await;

    history_lines(a, &mut log).await;
    log
}

/// What the script left in the history, a line per run.
async fn history_lines(a: &dyn Coordinator, log: &mut Vec<String>) {
    for service in ["s", "l", "r", "q"] {
        for record in a.history(service, 10).await.unwrap() {
            log.push(format!(
                "history {service}: tick {} replica {} attempt {} outcome {:?} error {:?} finished {:?}",
                record.tick, record.replica, record.attempt, record.outcome, record.error,
                record.finished
            ));
        }
    }
}

/// The script's second part: releases, and retries of a failed tick.
async fn releases_and_retries(
    base: DateTime<Utc>,
    a: &dyn Coordinator,
    b: &dyn Coordinator,
    log: &mut Vec<String>,
) {
    let t = |s: i64| base + TimeDelta::seconds(s);
    let most = ClaimPolicy::new(Duration::from_millis(300), Delivery::AtMostOnce);
    let short = |_| most;
    let retry = most.attempt(2);
    let run = FinishedRun::new(t(0), t(1), Outcome::Failed("boom".into()));
    let note = |log: &mut Vec<String>, what: &str, answer: &dyn std::fmt::Debug| {
        log.push(format!("{what}: {answer:?}"));
    };
    // Released: recorded as skipped, and the next tick need not wait for the lease.
    let claim = a.claim("r", t(10), short(most)).await.unwrap();
    note(log, "a claims r@10", &claim);
    let Claim::Granted(skipped) = claim else {
        panic!("{claim:?}")
    };
    note(
        log,
        "a releases r@10",
        &a.release(&skipped, "late").await.unwrap(),
    );
    note(
        log,
        "a releases r@10 again",
        &a.release(&skipped, "late").await.unwrap(),
    );
    note(
        log,
        "b claims r@20 (10 released)",
        &b.claim("r", t(20), short(most)).await.unwrap(),
    );
    note(
        log,
        "a renews r@10 (released)",
        &a.renew(&skipped).await.unwrap(),
    );

    // A retry (attempt 2) claims its own failed tick again; another replica's retry, or a first
    // attempt, finds it taken; a tick that succeeded is not retried.
    let claim = a.claim("q", t(10), short(most)).await.unwrap();
    note(log, "a claims q@10", &claim);
    let Claim::Granted(first) = claim else {
        panic!("{claim:?}")
    };
    note(
        log,
        "a reports q@10 failed",
        &a.finish(&first, &run).await.unwrap(),
    );
    note(
        log,
        "b retries q@10",
        &b.claim("q", t(10), retry).await.unwrap(),
    );
    note(
        log,
        "a claims q@10 again",
        &a.claim("q", t(10), short(most)).await.unwrap(),
    );
    let claim = a.claim("q", t(10), retry).await.unwrap();
    note(log, "a retries q@10", &claim);
    let Claim::Granted(second) = claim else {
        panic!("{claim:?}")
    };
    note(
        log,
        "a reports q@10 (first attempt, fenced)",
        &a.finish(&first, &run).await.unwrap(),
    );
    let ok = FinishedRun::new(run.started, run.finished, Outcome::Succeeded);
    note(
        log,
        "a reports q@10 ok",
        &a.finish(&second, &ok).await.unwrap(),
    );
    note(
        log,
        "a retries q@10 (it succeeded)",
        &a.claim("q", t(10), retry).await.unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_pauses_coordinated_runs_and_they_resume_by_themselves() {
    let Some(mut server) = Postgres::launch("outage") else {
        return;
    };
    let url = server.url();
    let period = Duration::from_millis(500);
    let ran = Ran::default();
    let managers: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let manager = replica(&url, name, Duration::from_secs(3));
            manager.add_service("tick", recording(name, period, &ran));
            manager.start().unwrap();
            manager
        })
        .collect();
    let count = || ran.lock().unwrap().len();
    wait_for("3 runs before the outage", || async {
        (count() >= 3).then_some(())
    })
    .await;

    tokio::task::block_in_place(|| server.stop());
    let stopped = Instant::now();
    let errors = wait_for("both replicas to report the outage", || async {
        let errors: Vec<_> = managers
            .iter()
            .filter_map(|m| m.service("tick").unwrap().coordinator_error)
            .collect();
        (errors.len() == 2).then_some(errors)
    })
    .await;
    println!("outage reported: {errors:?}");
    let paused_at = count();
    // A planned outage of three seconds, not a wait for luck.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed())).await;
    assert_eq!(
        count(),
        paused_at,
        "nothing ran while the database was down"
    );
    tokio::task::block_in_place(|| server.start());
    let restarted = Utc::now();
    println!(
        "database down for {:?}; {paused_at} runs before",
        stopped.elapsed()
    );

    wait_for("runs to resume on their own", || async {
        let healthy = managers
            .iter()
            .all(|m| m.service("tick").unwrap().coordinator_error.is_none());
        let resumed = ran
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| *t > restarted)
            .count();
        (healthy && resumed >= 3).then_some(())
    })
    .await;
    let resumed_after = stopped.elapsed();
    for manager in &managers {
        manager.stop().await;
    }
    let ticks: Vec<_> = ran.lock().unwrap().iter().map(|(_, t)| *t).collect();
    let figures = tally(&ticks, period);
    println!(
        "outage: resumed {resumed_after:?} after the stop; ran {}, duplicated {}, \
         skipped during the outage {}",
        figures.ran,
        figures.duplicated,
        figures.lost.len()
    );
    assert_eq!(figures.duplicated, 0, "no tick ran twice: {ticks:?}");
    let observer = PostgresCoordinator::connect(&url, "observer");
    let rows = history(&observer, "tick").await;
    let in_table: BTreeSet<_> = rows.iter().map(|r| r.tick).collect();
    assert!(
        ticks.iter().all(|t| in_table.contains(t)),
        "every run was claimed in the table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_all_prepare_it() {
    let Some(server) = Postgres::launch("migration_race") else {
        return;
    };
    for round in 0..5 {
        let table = format!("race_{round}");
        let replicas: Vec<_> = (0..3)
            .map(|n| PostgresCoordinator::connect(&server.url(), format!("r{n}")).table(&table))
            .collect();
        // Polled together: the three connect and migrate at the same instant.
        let results = tokio::join!(
            replicas[0].prepare(),
            replicas[1].prepare(),
            replicas[2].prepare()
        );
        assert!(
            results.0.is_ok() && results.1.is_ok() && results.2.is_ok(),
            "round {round}: {results:?}"
        );
        // Prepared once, prepared again: idempotent.
        replicas[0].prepare().await.unwrap();
        let granted = replicas[1]
            .claim(
                "svc",
                Utc::now(),
                ClaimPolicy::new(Duration::from_secs(5), Delivery::AtMostOnce),
            )
            .await
            .unwrap();
        assert!(matches!(granted, Claim::Granted(_)), "{granted:?}");
    }
    // A lease of "forever" fits PostgreSQL's intervals (it is taken as 1000 years).
    let forever = ClaimPolicy::new(Duration::MAX, Delivery::AtMostOnce);
    let claim = PostgresCoordinator::connect(&server.url(), "f")
        .history_horizon(Duration::MAX)
        .claim("forever", Utc::now(), forever)
        .await;
    assert!(matches!(claim, Ok(Claim::Granted(_))), "{claim:?}");
    // A table in its own schema, created on demand.
    let qualified = PostgresCoordinator::connect(&server.url(), "q").table("cluster_x.runs");
    qualified.prepare().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_latency_against_a_local_server() {
    let Some(server) = Postgres::launch("latency") else {
        return;
    };
    let coordinator = PostgresCoordinator::connect(&server.url(), "bench");
    coordinator.prepare().await.unwrap();
    let policy = ClaimPolicy::new(Duration::from_secs(30), Delivery::AtMostOnce);
    let base = Utc::now();
    let (mut claims, mut finishes) = (Vec::new(), Vec::new());
    for k in 0..2_000 {
        let tick = base + TimeDelta::seconds(k);
        let began = Instant::now();
        let claim = coordinator.claim("latency", tick, policy).await.unwrap();
        claims.push(began.elapsed());
        let Claim::Granted(ticket) = claim else {
            panic!("tick {k}: {claim:?}")
        };
        let run = FinishedRun::new(tick, tick, Outcome::Succeeded);
        let began = Instant::now();
        coordinator.finish(&ticket, &run).await.unwrap();
        finishes.push(began.elapsed());
    }
    let taken_began = Instant::now();
    let taken = coordinator.claim("latency", base, policy).await.unwrap();
    let taken_latency = taken_began.elapsed();
    assert!(matches!(taken, Claim::Taken { .. }), "{taken:?}");
    let percentile = |samples: &mut Vec<Duration>, p: usize| {
        samples.sort();
        samples[(samples.len() * p / 100).min(samples.len() - 1)]
    };
    println!(
        "claim latency over {} claims: p50 {:?}, p99 {:?}, max {:?}; finish p50 {:?}, p99 {:?}; \
         a taken claim {taken_latency:?}",
        claims.len(),
        percentile(&mut claims, 50),
        percentile(&mut claims, 99),
        claims.last().unwrap(),
        percentile(&mut finishes, 50),
        percentile(&mut finishes, 99),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_tick_is_the_latest_one_claimed_as_in_memory() {
    let Some(server) = Postgres::launch("last_tick") else {
        return;
    };
    let memory = InMemoryCoordinator::new();
    let pg = PostgresCoordinator::connect(&server.url(), "a");
    let base = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let t = |s: i64| base + TimeDelta::seconds(s);
    let policy = ClaimPolicy::new(Duration::from_secs(30), Delivery::AtMostOnce);
    for coordinator in [&memory as &dyn Coordinator, &pg] {
        coordinator.prepare().await.unwrap();
        assert_eq!(coordinator.last_tick("s").await.unwrap(), None);
        for tick in [t(10), t(30), t(20)] {
            let Claim::Granted(ticket) = coordinator.claim("s", tick, policy).await.unwrap() else {
                panic!("{tick} not granted");
            };
            let run = FinishedRun::new(tick, tick, Outcome::Succeeded);
            assert!(coordinator.finish(&ticket, &run).await.unwrap());
        }
        coordinator.claim("other", t(40), policy).await.unwrap();
        assert_eq!(coordinator.last_tick("s").await.unwrap(), Some(t(30)));
        assert_eq!(coordinator.last_tick("other").await.unwrap(), Some(t(40)));
        assert_eq!(coordinator.last_tick("none").await.unwrap(), None);
    }
}
