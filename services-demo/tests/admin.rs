//! The demo serves the admin dashboard: it prints the address at start, and the page and the JSON
//! API answer there with the demo's services. Waits for what it needs, never for luck.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A plain HTTP/1.1 request; the status line and the body.
fn http(address: &str, method: &str, path: &str, headers: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("the dashboard accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[cfg(unix)]
#[test]
fn demo_serves_the_dashboard_at_the_address_it_prints() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_services-demo"))
        .args(["--admin", "127.0.0.1:0", "--status-every", "1"])
        .env("RUST_LOG", "warn")
        .env("SCHEDULER_ADMIN_TOKEN", "demo-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let line = std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(60)).ok())
        .find(|line| line.starts_with("admin dashboard: "))
        .expect("the demo prints the dashboard's address");
    let address = line
        .strip_prefix("admin dashboard: http://")
        .and_then(|rest| rest.split_once('/'))
        .map_or_else(
            || panic!("not the dashboard's address: {line}"),
            |(address, _)| address.to_owned(),
        );
    assert!(
        line.ends_with("(actions need SCHEDULER_ADMIN_TOKEN)"),
        "{line}"
    );

    let (status, page) = http(&address, "GET", "/", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.contains("<title>Background services</title>"));
    let (status, list) = http(&address, "GET", "/api/services", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    for service in [
        "cache-warm-up",
        "compact-files",
        "heartbeat",
        "payment-sync",
    ] {
        assert!(
            list.contains(&format!("\"name\":\"{service}\"")),
            "{service}: {list}"
        );
    }
    let (status, _) = http(&address, "POST", "/api/reload", "");
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let (status, reload) = http(
        &address,
        "POST",
        "/api/reload",
        "Authorization: Bearer demo-token\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "{reload}");
    let (status, run) = http(
        &address,
        "POST",
        "/api/services/heartbeat/run-now",
        "Authorization: Bearer demo-token\r\n",
    );
    assert!(
        status == "HTTP/1.1 202 Accepted" || run.contains("already_running"),
        "{status} {run}"
    );

    the_operator_is_told_the_whole_truth(&address);

    let (status, metrics) = http(&address, "GET", "/metrics", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // heartbeat runs on start and every 2 s: by now it has succeeded at least once.
    let line = metrics
        .lines()
        .find(|line| {
            line.starts_with("scheduler_runs_total{")
                && line.contains("service=\"heartbeat\"")
                && line.contains("outcome=\"succeeded\"")
        })
        .unwrap_or_else(|| panic!("no heartbeat run count in:\n{metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{line}");
    assert!(
        metrics.contains("scheduler_last_success_timestamp_seconds{service=\"heartbeat\"}"),
        "{metrics}"
    );

    // The status table is printed from the main loop, which also listens for SIGTERM.
    std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(60)).ok())
        .find(|line| line.starts_with("SERVICE"))
        .expect("the demo prints its status table");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().expect("the demo exits");
    assert!(exit.success(), "clean exit after SIGTERM, got {exit}");
}

/// What issue 22 asked the operator be told, against the real demo: the favicon is there, a wrong
/// token is called refused by `/api/access`, the scheme name is read in any case, and
/// payment-sync's retries are in the history beside their failed attempts, filterable by outcome.
fn the_operator_is_told_the_whole_truth(address: &str) {
    let (status, icon) = http(address, "GET", "/favicon.ico", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(icon.starts_with("<svg"), "{icon}");
    let (_, access) = http(
        address,
        "GET",
        "/api/access",
        "Authorization: bearer wrong-token\r\n",
    );
    assert!(access.contains("\"token\":\"refused\""), "{access}");
    let (status, reload) = http(
        address,
        "POST",
        "/api/reload",
        "Authorization: bearer demo-token\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "lower-case scheme: {reload}");
    // payment-sync fails every other attempt and retries it: once a retry is recorded, the
    // history has it as attempt 2, beside the failed attempt 1 with its error.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let history = loop {
        let (status, history) = http(
            address,
            "GET",
            "/api/services/payment-sync/history?limit=50",
            "",
        );
        assert_eq!(status, "HTTP/1.1 200 OK", "{history}");
        if history.contains("\"attempt\":2") {
            break history;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retry recorded: {history}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        history.contains("\"attempt\":1") && history.contains("connection timed out after 2s"),
        "{history}"
    );
    let (status, failures) = http(
        address,
        "GET",
        "/api/services/payment-sync/history?outcome=failed&limit=1",
        "",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        failures.contains("\"outcome\":\"failed\"") && !failures.contains("\"succeeded\""),
        "{failures}"
    );
}
