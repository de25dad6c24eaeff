//! The shared control state under faults, against a real PostgreSQL server and driven through each
//! replica's admin API: the database restarted while a service is paused, a replica `SIGKILL`ed
//! in the middle of a run, and a replica behind a slow link to the database. In each: no tick runs
//! twice, no pause is lost, no resume is lost.
//!
//! Every wait is on a condition with a deadline (`wait_for`); the only fixed waits are the
//! windows in which a test checks that nothing runs.
//!
//! ```text
//! cargo test -p scheduler-tests --test cluster_control_faults -- --nocapture   # shows the figures
//! ```

#[path = "support/delay_proxy.rs"]
mod delay_proxy;
#[path = "support/http.rs"]
mod http;
#[path = "support/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use scheduler::clock::Clock;
use scheduler::coordinator::Coordinator;
use scheduler::health::Reachability;
use scheduler::status::Trigger;
use scheduler::{Delivery, PostgresCoordinator, Schedule, Service, ServiceManager};

use delay_proxy::DelayProxy;
use http::{act, api_state, http, serve_admin};
use postgres::{wait_for, Postgres};

/// One run as its job saw it.
#[derive(Debug, Clone)]
struct Run {
    replica: String,
    service: &'static str,
    tick: DateTime<Utc>,
    trigger: Trigger,
    began: Instant,
    ended: bool,
}

type Ran = Arc<Mutex<Vec<Run>>>;

/// A service every `every` s whose job works `work` ms (or until cancelled), logged in `ran`.
fn logged(ran: &Ran, replica: &str, service: &'static str, every: u64, work: u64) -> Service {
    let (ran, replica) = (ran.clone(), replica.to_owned());
    Service::new(
        Schedule::every(Duration::from_secs(every)).unwrap(),
        move |ctx| {
            let index = {
                let mut ran = ran.lock().unwrap();
                ran.push(Run {
                    replica: replica.clone(),
                    service,
                    tick: ctx.tick(),
                    trigger: ctx.trigger(),
                    began: Instant::now(),
                    ended: false,
                });
                ran.len() - 1
            };
            let ran = ran.clone();
            async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(work)) => {
                        ran.lock().unwrap()[index].ended = true;
                    }
                    () = ctx.cancelled() => {}
                }
            }
        },
    )
}

/// A wall clock `behind` the system's, as a replica whose clock is off would read it.
struct Behind(chrono::TimeDelta);

impl Clock for Behind {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() - self.0
    }
}

/// A started replica with `beat` (every second, instant) and its admin API.
async fn replica(url: &str, name: &str, ran: &Ran) -> (ServiceManager, SocketAddr) {
    replica_behind(url, name, ran, chrono::TimeDelta::zero()).await
}

/// [`replica`], its clock `behind` the system's.
async fn replica_behind(
    url: &str,
    name: &str,
    ran: &Ran,
    behind: chrono::TimeDelta,
) -> (ServiceManager, SocketAddr) {
    let manager = ServiceManager::builder()
        .clock(Behind(behind))
        .coordinator(PostgresCoordinator::connect(url, name).timeout(Duration::from_secs(5)))
        .lease(Duration::from_secs(3))
        .build()
        .unwrap();
    manager.add_service("beat", logged(ran, name, "beat", 1, 0));
    manager.start().unwrap();
    let api = serve_admin(&manager).await;
    (manager, api)
}

/// Waits until every API shows `service` in `state` (or, with a leading `!`, in any other);
/// how long it took.
async fn until_all(apis: &[SocketAddr], service: &str, state: &str) -> Duration {
    let began = Instant::now();
    let (negated, wanted) = match state.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, state),
    };
    wait_for(
        &format!("every replica to show {service} {state}"),
        || async {
            for api in apis {
                if (api_state(*api, service).await == wanted) == negated {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    began.elapsed()
}

fn runs_of(ran: &Ran, service: &str, after: Instant) -> Vec<Run> {
    ran.lock()
        .unwrap()
        .iter()
        .filter(|run| run.service == service && run.began > after)
        .cloned()
        .collect()
}

/// How many runs of `service` began so far.
fn count(ran: &Ran, service: &str) -> usize {
    ran.lock()
        .unwrap()
        .iter()
        .filter(|run| run.service == service)
        .count()
}

/// Every scheduled tick of `service` that began more than once, across the replicas.
fn ticks_run_twice(ran: &Ran, service: &str) -> Vec<(DateTime<Utc>, Vec<String>)> {
    let mut by_tick: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for run in ran.lock().unwrap().iter() {
        if run.service == service && run.trigger == Trigger::Schedule {
            by_tick
                .entry(run.tick)
                .or_default()
                .push(run.replica.clone());
        }
    }
    by_tick
        .into_iter()
        .filter(|(_, who)| who.len() > 1)
        .collect()
}

/// How long to watch for a run that must not happen: three ticks of `beat`.
const QUIET: Duration = Duration::from_secs(3);

/// (a) The database restarts while `beat` is paused: both replicas keep it paused through the
/// outage and after it, nothing runs; a resume issued on A as soon as the server is back reaches
/// both (A's write reconnects; B learns it by notification on its new listening connection, or by
/// its poll), and the ticks run again, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_outlives_a_database_restart_and_a_resume_right_after_one_reaches_both() {
    let Some(mut server) = Postgres::launch("ctlrestart") else {
        return;
    };
    let url = server.url();
    let ran = Ran::default();
    let (a, a_api) = replica(&url, "a", &ran).await;
    let (b, b_api) = replica(&url, "b", &ran).await;
    let both = [a_api, b_api];
    wait_for("runs on the cluster", || async {
        (count(&ran, "beat") >= 2).then_some(())
    })
    .await;
    act(a_api, "beat", "pause").await;
    until_all(&both, "beat", "paused").await;
    let paused = Instant::now();

    // Restart 1: down for 2 s, then up; both reconnect (their health says so), and it stays
    // paused with nothing run.
    tokio::task::block_in_place(|| server.stop());
    wait_for("both replicas to see the outage", || async {
        [&a, &b]
            .iter()
            .all(|m| m.coordinator_health().unwrap().state == Reachability::Unreachable)
            .then_some(())
    })
    .await;
    assert_eq!(api_state(a_api, "beat").await, "paused");
    assert_eq!(api_state(b_api, "beat").await, "paused");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| server.start());
    let back = Instant::now();
    wait_for("both replicas to reach the database again", || async {
        [&a, &b]
            .iter()
            .all(|m| {
                let health = m.coordinator_health().unwrap();
                health.state == Reachability::Reachable
            })
            .then_some(())
    })
    .await;
    println!(
        "both replicas reconnected {:?} after the restart",
        back.elapsed()
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(api_state(a_api, "beat").await, "paused");
    assert_eq!(api_state(b_api, "beat").await, "paused");
    assert!(
        runs_of(&ran, "beat", paused).is_empty(),
        "{:?}",
        runs_of(&ran, "beat", paused)
    );

    // Restart 2: the resume is issued on A the moment the server is back.
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| server.start());
    act(a_api, "beat", "resume").await;
    let resumed = Instant::now();
    let took = until_all(&both, "beat", "!paused").await;
    println!("a resume issued on A right after a database restart reached both after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        runs_of(&ran, "beat", paused)
            .iter()
            .all(|run| run.began > resumed),
        "nothing ran before the resume"
    );
    wait_for("ticks after the resume", || async {
        (runs_of(&ran, "beat", resumed).len() >= 3).then_some(())
    })
    .await;
    assert_eq!(ticks_run_twice(&ran, "beat"), vec![]);
    a.stop().await;
    b.stop().await;
}

/// What the `SIGKILL` test's child runs, and the line it prints once its API listens.
const CHILD_URL: &str = "SCHEDULER_FAULT_CHILD_URL";
const CHILD_API: &str = "child api ";

/// The services of the `SIGKILL` test, on every replica: `work` every 2 s, 1.2 s long, at least
/// once (a dead replica's tick is taken over); `held`, every second, paused by the test.
/// A started replica of the `SIGKILL` test (lease 3 s).
fn kill_replica(url: &str, name: &str, ran: &Ran) -> ServiceManager {
    let manager = ServiceManager::builder()
        .coordinator(PostgresCoordinator::connect(url, name).timeout(Duration::from_secs(5)))
        .lease(Duration::from_secs(3))
        .build()
        .unwrap();
    let work = logged(ran, name, "work", 2, 1_200).delivery(Delivery::AtLeastOnce);
    manager.add_service("work", work);
    manager.add_service("held", logged(ran, name, "held", 1, 0));
    manager.start().unwrap();
    manager
}

/// Replica "c" of the `SIGKILL` test, in a process of its own (this test binary again, running
/// only this ignored test): it prints its API's address and each run's start and end, and runs
/// until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the SIGKILL test"]
async fn child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let ran = Ran::default();
    let manager = kill_replica(&url, "c", &ran);
    let api = serve_admin(&manager).await;
    println!("{CHILD_API}{api}");
    let mut printed = (0, 0);
    loop {
        // Each run's start, then its end, in the order they happened.
        {
            let ran = ran.lock().unwrap();
            for run in &ran[printed.0..] {
                println!("began {} {}", run.service, run.tick.to_rfc3339());
            }
            printed.0 = ran.len();
            let ended: Vec<&Run> = ran.iter().filter(|run| run.ended).collect();
            for run in &ended[printed.1..] {
                println!("ended {} {}", run.service, run.tick.to_rfc3339());
            }
            printed.1 = ended.len();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The child process and the lines it printed; killed on drop if the test fails half-way.
struct ChildReplica {
    process: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for ChildReplica {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl ChildReplica {
    fn start(url: &str) -> ChildReplica {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child", "--nocapture"])
            .env(CHILD_URL, url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test binary runs again");
        let stdout = process.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ChildReplica { process, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The (service, tick) of each line starting with `what ` ("began", "ended").
    fn runs(&self, what: &str) -> Vec<(String, DateTime<Utc>)> {
        self.lines()
            .iter()
            .filter_map(|line| {
                let rest = line.strip_prefix(what)?.strip_prefix(' ')?;
                let (service, tick) = rest.split_once(' ')?;
                let tick = DateTime::parse_from_rfc3339(tick).ok()?.to_utc();
                Some((service.to_owned(), tick))
            })
            .collect()
    }
}

/// (b) Replica c, a process of its own, is `SIGKILL`ed in the middle of a run of `work` (at least
/// once) while `held` is paused cluster-wide: A takes the tick over once c's lease runs out and
/// runs it once (attempt 2), no tick of `work` completes twice, c is shown dead, and `held` stays
/// paused with no run.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_is_taken_over_once_and_the_pause_holds() {
    let Some(server) = Postgres::launch("ctlkill") else {
        return;
    };
    let url = server.url();
    PostgresCoordinator::connect(&url, "setup")
        .prepare()
        .await
        .unwrap();
    let ran = Ran::default();
    let a = kill_replica(&url, "a", &ran);
    let a_api = serve_admin(&a).await;
    let mut c = ChildReplica::start(&url);
    let c_api: SocketAddr = wait_for("the child's API", || async {
        c.lines()
            .iter()
            .find_map(|line| line.strip_prefix(CHILD_API)?.parse().ok())
    })
    .await;

    act(a_api, "held", "pause").await;
    let took = until_all(&[a_api, c_api], "held", "paused").await;
    println!("pause on A reached the child after {took:?}");
    let paused = Instant::now();
    let observer = PostgresCoordinator::connect(&url, "observer");
    let held_rows = observer.history("held", 1_000).await.unwrap().len();

    // c in the middle of a run of `work`, 300 ms in (of 1.2 s).
    let victim = wait_for("c in the middle of a run of work", || async {
        let began = c.runs("began");
        let ended = c.runs("ended");
        let (_, tick) = began
            .iter()
            .rev()
            .find(|run| run.0 == "work" && !ended.contains(run))?;
        let row = observer
            .history("work", 10)
            .await
            .ok()?
            .into_iter()
            .find(|row| row.tick == *tick && row.replica == "c")?;
        (Utc::now() - row.started >= chrono::TimeDelta::milliseconds(300)).then_some(*tick)
    })
    .await;
    c.process.kill().expect("SIGKILL c");
    c.process.wait().unwrap();
    let killed = Instant::now();
    println!("c killed in the middle of work's tick {victim}");

    let takeover = wait_for("A to take the killed tick over", || async {
        let history = observer.history("work", 100).await.ok()?;
        history
            .into_iter()
            .find(|row| row.tick == victim && row.replica == "a" && row.outcome.is_some())
    })
    .await;
    println!(
        "taken over by A {:?} after the kill: {takeover:?}",
        killed.elapsed()
    );
    assert_eq!(
        (takeover.attempt, takeover.outcome.as_deref()),
        (2, Some("ok"))
    );
    wait_for("c shown dead on A's API", || async {
        let (_, body) = http(a_api, "GET", "/api/replicas").await;
        let c_row = body.split("\"name\":\"c\"").nth(1)?;
        c_row.contains("\"status\":\"dead\"").then_some(())
    })
    .await;
    // A few more ticks of work on A alone.
    let after_kill = Instant::now();
    wait_for("work to go on on A", || async {
        (runs_of(&ran, "work", after_kill)
            .iter()
            .filter(|run| run.ended)
            .count()
            >= 2)
            .then_some(())
    })
    .await;

    let completed = completions_of_work(&c, &ran);
    let twice: Vec<_> = completed.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(twice.is_empty(), "ticks completed twice: {twice:?}");
    assert_eq!(completed.get(&victim), Some(&vec!["a".to_owned()]));

    // The pause held through the kill: A still shows it, the record says it, nothing ran.
    assert_eq!(api_state(a_api, "held").await, "paused");
    let record = observer
        .controls(0)
        .await
        .unwrap()
        .into_iter()
        .find(|record| record.service == "held")
        .expect("held's control record");
    assert_eq!(record.paused, Some(true), "{record:?}");
    assert!(runs_of(&ran, "held", paused).is_empty());
    assert_eq!(
        observer.history("held", 1_000).await.unwrap().len(),
        held_rows,
        "no run of held anywhere while paused"
    );
    a.stop().await;
}

/// Who completed each tick of `work`: c's ended runs (from its output) and A's, together.
fn completions_of_work(c: &ChildReplica, ran: &Ran) -> BTreeMap<DateTime<Utc>, Vec<String>> {
    let mut completed: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for (service, tick) in c.runs("ended") {
        if service == "work" {
            completed.entry(tick).or_default().push("c".into());
        }
    }
    for run in ran.lock().unwrap().iter() {
        if run.service == "work" && run.ended {
            completed
                .entry(run.tick)
                .or_default()
                .push(run.replica.clone());
        }
    }
    completed
}

/// (c) B reaches the database through a link that delays every chunk 150 ms each way (every round
/// trip at least 300 ms). A pause on A (direct) still reaches B, and a resume on B reaches A; no
/// tick runs twice and nothing runs while paused; B's slow calls are not an outage. A's clock is
/// 250 ms behind, so that B's claims (150 ms on the way) usually reach the database first and B
/// runs ticks; A claims every tick too and finds most taken (with both clocks right, A would win
/// every tick by its head start; at 150 ms behind the two tie, and B won one tick in 13 to 36).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_link_still_carries_pause_and_resume_and_runs_nothing_twice() {
    let Some(server) = Postgres::launch("ctlslow") else {
        return;
    };
    let url = server.url();
    let proxy = DelayProxy::start(server.port(), Duration::from_millis(150)).await;
    let slow_url = url.replace(
        &format!(":{}/", server.port()),
        &format!(":{}/", proxy.port()),
    );
    assert_ne!(slow_url, url);
    let ran = Ran::default();
    let behind = chrono::TimeDelta::milliseconds(250);
    let (a, a_api) = replica_behind(&url, "a", &ran, behind).await;
    let (b, b_api) = replica(&slow_url, "b", &ran).await;
    let both = [a_api, b_api];
    wait_for(
        "both replicas reachable, runs on the slow one, and the fast one claiming too",
        || async {
            let reachable = [&a, &b]
                .iter()
                .all(|m| m.coordinator_health().unwrap().state == Reachability::Reachable);
            let on = |name: &str| ran.lock().unwrap().iter().any(|run| run.replica == name);
            let a_claims = a
                .service("beat")
                .is_some_and(|s| s.claimed_elsewhere > 0 || on("a"));
            (reachable && count(&ran, "beat") >= 3 && on("b") && a_claims).then_some(())
        },
    )
    .await;

    act(a_api, "beat", "pause").await;
    let took = until_all(&both, "beat", "paused").await;
    println!("pause on the fast replica reached the slow one after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let paused = Instant::now();
    tokio::time::sleep(QUIET).await;
    // A claim B sent just before the pause landed may still be answered after it: the claim
    // function checked the record, so it was refused, and nothing begins once both show paused.
    assert!(
        runs_of(&ran, "beat", paused).is_empty(),
        "{:?}",
        runs_of(&ran, "beat", paused)
    );

    act(b_api, "beat", "resume").await;
    let took = until_all(&both, "beat", "!paused").await;
    println!("resume on the slow replica reached the fast one after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let resumed = Instant::now();
    wait_for("ticks after the resume", || async {
        (runs_of(&ran, "beat", resumed).len() >= 3).then_some(())
    })
    .await;
    assert_eq!(ticks_run_twice(&ran, "beat"), vec![]);
    let slow = b.coordinator_health().unwrap();
    assert_eq!(
        (slow.state, slow.errors),
        (Reachability::Reachable, 0),
        "slow is not down: {slow:?}"
    );
    let by_b = ran
        .lock()
        .unwrap()
        .iter()
        .filter(|run| run.replica == "b")
        .count();
    println!(
        "runs: {} in all, {by_b} on the slow replica",
        ran.lock().unwrap().len()
    );
    a.stop().await;
    b.stop().await;
}
