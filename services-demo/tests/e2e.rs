//! Runs the demo binary for real: its services fire, failures raise alerts, and SIGTERM stops it
//! cleanly after running jobs finish.
//!
//! This test uses the real clock (it is a process), but it never sleeps for luck: it waits for the
//! log lines it needs, with a generous deadline that only a hung process would reach.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

struct Log {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Log {
    /// Waits until `count` lines containing `needle` have been printed.
    fn wait_for(&mut self, needle: &str, count: usize) {
        let until = Instant::now() + DEADLINE;
        while self.seen.iter().filter(|l| l.contains(needle)).count() < count {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(error) => panic!(
                    "no {count} lines with '{needle}' within {DEADLINE:?} ({error}); output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for a line, printed after the first `skip` lines, for which `wanted` holds.
    fn wait_for_line(&mut self, skip: usize, wanted: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self.seen.iter().skip(skip).find(|l| wanted(l)) {
                return line.clone();
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(error) => panic!(
                    "no such line within {DEADLINE:?} ({error}); output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn rest(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            self.seen.push(line);
        }
    }
}

fn start_demo(args: &[&str]) -> (Child, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_services-demo"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let log = Log {
        lines,
        seen: Vec::new(),
    };
    (child, log)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn demo_fires_alerts_and_stops_cleanly_on_sigterm() {
    let (mut child, mut log) = start_demo(&["--status-every", "1"]);

    log.wait_for("cache warmed", 1); // on_start
    log.wait_for("alive", 2); // fixed period
    log.wait_for("compaction scan done", 1); // cron, blocking pool
    log.wait_for("ALERT raised", 1); // a failing run alerts…
    log.wait_for("payments in sync", 2); // …and the schedule goes on
    log.wait_for("SERVICE", 1); // the status table

    signal(&child, "TERM");
    log.wait_for("service manager stopped", 1);
    log.rest();
    let exit = child.wait().expect("the demo exits");
    assert!(exit.success(), "clean exit after SIGTERM, got {exit}");
    let output = log.seen.join("\n");
    let stopped_at = output.find("service manager stopped").unwrap();
    let table_after = &output[stopped_at..];
    assert!(
        table_after.contains("heartbeat") && table_after.contains("stopped"),
        "a final table shows every service stopped:\n{table_after}"
    );
}

#[cfg(unix)]
#[test]
fn demo_follows_its_config_file_and_reloads_it_on_sighup() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let config = std::env::temp_dir().join(format!("services-demo-{}.toml", std::process::id()));
    std::fs::copy(example, &config).expect("the example config exists");
    let (mut child, mut log) =
        start_demo(&["--config", config.to_str().unwrap(), "--status-every", "1"]);

    // The example disables payment-sync and speeds the heartbeat up to every second.
    log.wait_for("alive", 3);
    log.wait_for("SERVICE", 2);
    let table = log
        .seen
        .iter()
        .rev()
        .find(|l| l.starts_with("payment-sync"))
        .expect("the table lists payment-sync")
        .clone();
    assert!(table.contains("disabled"), "{table}");
    assert!(
        log.seen
            .iter()
            .any(|l| l.starts_with("heartbeat") && l.contains("every 1s") && l.contains("file")),
        "the heartbeat's schedule comes from the file"
    );
    assert!(!log.seen.iter().any(|l| l.contains("payments in sync")));

    // The operator turns payment-sync back on and reloads.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("enabled = false", "enabled = true")).unwrap();
    signal(&child, "HUP");
    log.wait_for("configuration reloaded", 1);
    log.wait_for("payments in sync", 1);

    signal(&child, "TERM");
    log.wait_for("service manager stopped", 1);
    log.rest();
    let exit = child.wait().expect("the demo exits");
    let _ = std::fs::remove_file(&config);
    assert!(exit.success(), "clean exit after SIGTERM, got {exit}");
}

#[cfg(unix)]
#[test]
fn demo_shows_a_timeout_a_retry_and_a_pause_switched_by_sigusr1() {
    let (mut child, mut log) = start_demo(&["--status-every", "1", "--admin", "off"]);

    // report-export: every other export hangs and is cancelled by its 1 s time limit.
    log.wait_for("report exported", 1);
    log.wait_for("run timed out", 1);
    log.wait_for("report export cancelled", 1);
    // payment-sync: a failed attempt is retried as attempt 2 of the same tick, which gets through.
    log.wait_for("ALERT raised", 1);
    log.wait_for("attempt=2", 1);

    signal(&child, "USR1");
    log.wait_for("service paused", 1);
    // The next status table shows it paused.
    let paused_at = log.seen.len();
    log.wait_for_line(paused_at, |l| {
        l.starts_with("report-export") && l.contains("paused")
    });

    signal(&child, "USR1");
    log.wait_for("service resumed", 1);
    let resumed_at = log.seen.len();
    let row = log.wait_for_line(resumed_at, |l| l.starts_with("report-export"));
    assert!(!row.contains("paused"), "{row}");

    signal(&child, "TERM");
    log.wait_for("service manager stopped", 1);
    log.rest();
    let exit = child.wait().expect("the demo exits");
    assert!(exit.success(), "clean exit after SIGTERM, got {exit}");
}
