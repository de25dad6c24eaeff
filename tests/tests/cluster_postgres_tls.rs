//! Cluster mode over TLS, against real PostgreSQL servers with `ssl = on` and a certificate made
//! here: a throw-away CA signs a server certificate for `localhost`, and a second CA that signed
//! nothing stands for "the wrong CA". Each test starts its own servers (see `support/postgres.rs`).
//!
//! The servers' `pg_hba.conf` decides what a connection may be, so that a test sees from the
//! outside whether TLS was used: a `hostssl`-only server admits TLS connections only, a
//! `hostnossl`-only one plain text only. The TLS server also asks for a password (SCRAM), so the
//! password in the URL is really used, and the last test checks it never shows.
//!
//! ```text
//! cargo test -p scheduler-tests --test cluster_postgres_tls -- --nocapture
//! ```

#[path = "support/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use scheduler::{Coordinator, PostgresCoordinator, Schedule, Service, ServiceManager};

use postgres::{wait_for, Postgres, Setup};

/// (replica, tick) of each run.
type Ran = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// The TLS server's superuser password; distinctive, so that a leak cannot hide.
const PASSWORD: &str = "Tls-Pa55word-never-shown";

/// TLS only, with a password.
const HBA_TLS_ONLY: &str = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
/// Plain text only, although the server offers TLS.
const HBA_PLAIN_ONLY: &str = "local all all trust\nhostnossl all all 127.0.0.1/32 trust\n";

/// The certificates of one test, in files of their own directory.
struct Pki {
    dir: PathBuf,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that signed nothing.
    other_ca: PathBuf,
    server_cert: String,
    server_key: String,
}

impl Pki {
    /// A CA and, signed by it, a certificate for `localhost` (a DNS name only, so that
    /// `127.0.0.1` is a host name it does not match); a second, unrelated CA.
    fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params("scheduler tests: throw-away CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let other_key = KeyPair::generate().unwrap();
        let other = ca_params("scheduler tests: another CA")
            .self_signed(&other_key)
            .unwrap();

        let dir = std::env::temp_dir().join(format!("sched-pki-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, other_ca) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        std::fs::write(&other_ca, other.pem()).unwrap();
        Pki {
            dir,
            ca,
            other_ca,
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A server with TLS on, admitting only TLS connections with the password.
fn tls_server(name: &str, pki: &Pki) -> Option<Postgres> {
    Postgres::launch_with(
        name,
        &Setup {
            tls: Some((&pki.server_cert, &pki.server_key)),
            hba: Some(HBA_TLS_ONLY),
            password: Some(PASSWORD),
            options: "",
        },
    )
}

/// Two servers started at once (each `initdb` takes a second or more); `None` to skip.
fn launch_two(
    first: impl FnOnce() -> Option<Postgres> + Send,
    second: impl FnOnce() -> Option<Postgres>,
) -> Option<(Postgres, Postgres)> {
    std::thread::scope(|scope| {
        let first = scope.spawn(first);
        let second = second();
        let first = first
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Some((first?, second?))
    })
}

/// A URL to `server` under the name `host` (dialled at 127.0.0.1) with these parameters.
fn url(server: &Postgres, host: &str, params: &str) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@{host}:{}/postgres?hostaddr=127.0.0.1&{params}",
        server.port()
    )
}

fn ca_param(file: &Path) -> String {
    format!("sslrootcert={}", file.display())
}

/// What `prepare` (connect, create the table) says.
async fn prepare(url: &str) -> Result<(), String> {
    PostgresCoordinator::connect(url, "probe")
        .timeout(Duration::from_secs(20))
        .prepare()
        .await
        .map_err(|error| error.to_string())
}

/// Asserts `prepare` fails with an error containing every one of `parts`.
async fn refused(url: &str, parts: &[&str]) -> String {
    let error = match prepare(url).await {
        Ok(()) => panic!("{url}: connected"),
        Err(error) => error,
    };
    for part in parts {
        assert!(error.contains(part), "{url}:\n{error}\nlacks: {part}");
    }
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_test_ca_runs_each_tick_exactly_once() {
    let pki = Pki::new("exactly-once");
    let Some(server) = tls_server("tls_once", &pki) else {
        return;
    };
    let url = url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&{}", ca_param(&pki.ca)),
    );
    let period = Duration::from_secs(1);
    let ran = Ran::default();
    let managers: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let manager = ServiceManager::builder()
                .coordinator(PostgresCoordinator::connect(&url, *name))
                .lease(Duration::from_secs(5))
                .build()
                .unwrap();
            let (name, ran) = ((*name).to_owned(), ran.clone());
            let service = Service::new(Schedule::every(period).unwrap(), move |ctx| {
                ran.lock().unwrap().push((name.clone(), ctx.tick()));
                async {}
            });
            manager.add_service("report", service);
            manager.start().unwrap();
            manager
        })
        .collect();
    let observer = PostgresCoordinator::connect(&url, "observer");
    wait_for("6 finished ticks over TLS", || async {
        let rows = observer.history("report", 1000).await.ok()?;
        (rows
            .iter()
            .filter(|r| r.outcome.as_deref() == Some("ok"))
            .count()
            >= 6)
            .then_some(())
    })
    .await;
    for manager in &managers {
        assert_eq!(manager.service("report").unwrap().coordinator_error, None);
        manager.stop().await;
    }

    let ran = ran.lock().unwrap().clone();
    let mut per_tick: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for (_, tick) in &ran {
        *per_tick.entry(*tick).or_default() += 1;
    }
    println!("verify-full: {} runs, {ran:?}", ran.len());
    assert!(per_tick.len() >= 6, "{ran:?}");
    assert!(
        per_tick.values().all(|n| *n == 1),
        "a tick ran twice: {ran:?}"
    );
    let ticks: Vec<_> = per_tick.keys().collect();
    let step = TimeDelta::from_std(period).unwrap();
    assert!(
        ticks.windows(2).all(|w| *w[1] - *w[0] == step),
        "a tick was lost: {ticks:?}"
    );

    // verify-ca checks the issuer but not the name: the address alone passes.
    let by_address = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=verify-ca&{}",
        server.port(),
        ca_param(&pki.ca)
    );
    prepare(&by_address).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_naming_the_host_and_the_ca_file() {
    let pki = Pki::new("wrong-ca");
    let Some(server) = tls_server("tls_wrong_ca", &pki) else {
        return;
    };
    let other = pki.other_ca.display().to_string();
    for mode in ["verify-full", "verify-ca", "require"] {
        let error = refused(
            &url(
                &server,
                "localhost",
                &format!("sslmode={mode}&{}", ca_param(&pki.other_ca)),
            ),
            &[
                "TLS: the certificate of localhost is not trusted by the CA in ",
                &other,
                &format!("(sslmode={mode})"),
            ],
        )
        .await;
        println!("{mode}, wrong CA: {error}");
    }
    // A CA file that is not there is named too.
    let missing = pki.dir.join("missing.pem");
    refused(
        &url(
            &server,
            "localhost",
            &format!("sslmode=verify-full&{}", ca_param(&missing)),
        ),
        &[&format!("sslrootcert {}", missing.display())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_name_is_refused() {
    let pki = Pki::new("wrong-host");
    let Some(server) = tls_server("tls_wrong_host", &pki) else {
        return;
    };
    let ca = ca_param(&pki.ca);
    let mismatch = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=verify-full&{ca}",
        server.port()
    );
    let error = refused(
        &mismatch,
        &[
            "TLS: the certificate of the server does not match the host name 127.0.0.1",
            "(sslmode=verify-full)",
            "localhost",
        ],
    )
    .await;
    println!("verify-full, wrong host name: {error}");
    refused(
        &url(
            &server,
            "db.example.invalid",
            &format!("sslmode=verify-full&{ca}"),
        ),
        &["does not match the host name db.example.invalid"],
    )
    .await;
    // The right name over the same address: the refusals above were about the name.
    prepare(&url(
        &server,
        "localhost",
        &format!("sslmode=verify-full&{ca}"),
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_server_without_tls_are_refused() {
    let Some(server) = Postgres::launch("no_tls") else {
        return;
    };
    let plain = server.url();
    for mode in ["require", "verify-ca", "verify-full"] {
        let error = refused(
            &format!("{plain}?sslmode={mode}"),
            &[&format!(
                "TLS: the server at 127.0.0.1:{} does not offer TLS, and sslmode={mode} allows no plain text",
                server.port()
            )],
        )
        .await;
        println!("{mode} without TLS: {error}");
    }
    // The same server is fine without TLS: by default (prefer, which falls back to plain text
    // when the server says no to TLS), and when asked.
    for params in ["", "?sslmode=prefer", "?sslmode=allow", "?sslmode=disable"] {
        prepare(&format!("{plain}{params}")).await.unwrap();
    }
    // Through its Unix socket, sslmode does not apply (as in libpq): not even the CA file is read.
    let socket = format!(
        "host={} port={} user=postgres dbname=postgres sslmode=verify-full \
         sslrootcert=/nonexistent/ca.pem",
        server.socket_dir().display(),
        server.port()
    );
    prepare(&socket).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plain_text_as_libpq_does() {
    let pki = Pki::new("prefer");
    let setup = Setup {
        tls: Some((&pki.server_cert, &pki.server_key)),
        hba: Some(HBA_PLAIN_ONLY),
        password: None,
        options: "",
    };
    let Some((tls_only, plain_only)) = launch_two(
        || tls_server("prefer_tls_only", &pki),
        || Postgres::launch_with("prefer_plain_only", &setup),
    ) else {
        return;
    };
    // TLS offered and required by pg_hba: prefer uses TLS (a plain connection is refused).
    prepare(&url(&tls_only, "localhost", "sslmode=prefer"))
        .await
        .unwrap();
    prepare(&url(&tls_only, "localhost", "sslmode=allow"))
        .await
        .unwrap();
    refused(
        &url(&tls_only, "localhost", "sslmode=disable"),
        &["no encryption"],
    )
    .await;

    // TLS offered but refused by pg_hba: prefer tries TLS, then plain text, as libpq does.
    prepare(&url(&plain_only, "localhost", "sslmode=prefer"))
        .await
        .unwrap();
    prepare(&url(&plain_only, "localhost", "sslmode=allow"))
        .await
        .unwrap();
    let error = refused(
        &url(&plain_only, "localhost", "sslmode=require"),
        &["SSL encryption"],
    )
    .await;
    println!("require, pg_hba refuses TLS: {error}");
}

/// A TLS handshake that fails before any certificate is seen (the server speaks only TLS 1.1,
/// which rustls does not): prefer falls back to plain text, require does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_when_the_handshake_itself_fails() {
    let pki = Pki::new("old-tls");
    let setup = Setup {
        tls: Some((&pki.server_cert, &pki.server_key)),
        hba: None,
        password: None,
        options: "-c ssl_min_protocol_version=TLSv1 -c ssl_max_protocol_version=TLSv1.1",
    };
    let Some(server) = Postgres::launch_with("old_tls", &setup) else {
        return;
    };
    prepare(&url(&server, "localhost", "sslmode=prefer"))
        .await
        .unwrap();
    let error = refused(
        &url(&server, "localhost", "sslmode=require"),
        &[&format!(
            "TLS: the handshake with localhost:{} failed (sslmode=require): ",
            server.port()
        )],
    )
    .await;
    println!("require, TLS 1.1 only: {error}");
}

/// Everything the `tracing` subscriber of this test binary writes.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_appears_in_no_log_line_debug_output_or_error() {
    let logs = captured_logs();
    let pki = Pki::new("secret");
    let Some((server, plain)) = launch_two(
        || tls_server("secret_tls", &pki),
        || Postgres::launch("secret_plain"),
    ) else {
        return;
    };
    let port = server.port();
    let (ca, other) = (ca_param(&pki.ca), ca_param(&pki.other_ca));
    let encoded = PASSWORD.replace('-', "%2D");
    let failures = [
        // Each failure path of the TLS tests, with the password in the URL.
        url(&server, "localhost", &format!("sslmode=verify-full&{other}")),
        url(&server, "127.0.0.1", &format!("sslmode=verify-full&{ca}")),
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=require",
            plain.port()
        ),
        url(&server, "localhost", "sslmode=disable"),
        // A wrong password, a missing CA file, a server that is down.
        format!("postgres://postgres:x{PASSWORD}@localhost:{port}/postgres?hostaddr=127.0.0.1&{ca}&sslmode=verify-full"),
        url(&server, "localhost", "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
        // prefer and allow, which log their second try: both tries fail.
        format!("postgres://postgres:x{PASSWORD}@localhost:{port}/postgres?hostaddr=127.0.0.1&sslmode=prefer"),
        format!("postgres://postgres:x{PASSWORD}@localhost:{port}/postgres?hostaddr=127.0.0.1&sslmode=allow"),
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/postgres"),
        // Strings that do not parse, in both forms, the password percent-encoded too.
        url(&server, "localhost", "sslmode=verify"),
        format!("postgres://postgres:{encoded}@localhost:{port}/postgres?{PASSWORD}=1"),
        format!("host=localhost port={port} user=postgres password={PASSWORD} sslmode=bogus"),
        format!("host=localhost port={port} password='{PASSWORD}' {PASSWORD}"),
        format!("host=localhost port=x{PASSWORD} password={PASSWORD}"),
    ];
    let mut seen = Vec::new();
    for url in &failures {
        let coordinator = PostgresCoordinator::connect(url, "leaky").table("bad table");
        seen.push(format!("{coordinator:?}"));
        seen.push(format!("{:?}", coordinator.validate()));
        let coordinator = PostgresCoordinator::connect(url, "leaky");
        seen.push(format!("{coordinator:?}"));
        let error = coordinator.prepare().await.expect_err(url);
        seen.push(error.to_string());
        seen.push(format!("{error:?}"));
        // Through a manager: its logs and its status.
        let manager = ServiceManager::builder()
            .coordinator(coordinator)
            .build()
            .unwrap();
        manager.add_service(
            "job",
            Service::new(
                Schedule::every(Duration::from_millis(100)).unwrap(),
                |_| async {},
            ),
        );
        manager.start().unwrap();
        let status = wait_for("the error in the service's status", || async {
            let status = manager.service("job")?;
            status.coordinator_error.is_some().then_some(status)
        })
        .await;
        seen.push(format!("{status:?}"));
        seen.push(format!("{:?}", manager.services()));
        manager.stop().await;
    }
    // The successful path logs too (connected, TLS in use).
    let good = PostgresCoordinator::connect(
        &url(&server, "localhost", &format!("sslmode=verify-full&{ca}")),
        "good",
    );
    good.prepare().await.unwrap();
    seen.push(format!("{good:?}"));

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    // The capture works: the failures above were logged, the TLS refusals among them.
    assert!(logs.contains("is not trusted by the CA in"), "{logs}");
    assert!(logs.contains("does not offer TLS"), "{logs}");
    assert!(logs.contains("password authentication failed"), "{logs}");
    assert!(
        logs.contains("connecting without TLS (sslmode=prefer)"),
        "{logs}"
    );
    assert!(logs.contains("trying TLS (sslmode=allow)"), "{logs}");
    for text in seen.iter().chain([&logs]) {
        for secret in [PASSWORD, encoded.as_str(), "Pa55word"] {
            assert!(!text.contains(secret), "the password shows in:\n{text}");
        }
    }
    println!(
        "{} outputs and {} log lines checked, e.g.:\n{}",
        seen.len(),
        logs.lines().count(),
        seen[..4].join("\n")
    );
}

#[test]
fn builder_inputs_that_cannot_work_are_errors_not_panics() {
    let coordinator = PostgresCoordinator::connect("postgres://app@db/app?sslmode=verify", " ")
        .table("bad-name")
        .table("a.b.c")
        .timeout(Duration::ZERO);
    let error = coordinator.validate().unwrap_err().to_string();
    for problem in [
        "PostgreSQL coordinator misconfigured: ",
        "the replica name is empty",
        "sslmode 'verify' is not one of disable, allow, prefer, require, verify-ca, verify-full",
        "table: 'bad-name' is not a table name",
        "table: 'a.b.c' is not a table name",
        "timeout: 0s",
    ] {
        assert!(error.contains(problem), "{error}\nlacks: {problem}");
    }
    // Every call says the same, without trying to connect.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prepared = runtime.block_on(coordinator.prepare()).unwrap_err();
    assert_eq!(prepared.to_string(), error);
    assert!(format!("{coordinator:?}").contains("bad-name"));

    let nul = PostgresCoordinator::connect("postgres://app@db/app", "web\u{0}1");
    let error = nul.validate().unwrap_err().to_string();
    assert!(
        error.contains(r#"the replica name "web\01" contains a NUL"#),
        "{error}"
    );

    let fine = PostgresCoordinator::connect("postgres://app@db/app?sslmode=verify-full", "web-1")
        .table("jobs.runs")
        .timeout(Duration::from_secs(1));
    assert_eq!(fine.validate(), Ok(()));
    // "Forever" is kept within PostgreSQL's dates.
    let forever = format!("{:?}", fine.history_horizon(Duration::MAX));
    assert!(
        forever.contains("history_horizon: 31622400000s"),
        "{forever}"
    );
    let fine = PostgresCoordinator::connect("postgres://app@db/app?sslmode=verify-full", "web-1");
    let debug = format!("{fine:?}");
    assert!(
        debug.contains(r#"server: "app@db:5432/app""#)
            && debug.contains(r#"sslmode: "verify-full""#),
        "{debug}"
    );
}

/// What TLS costs: the first `prepare` (connect, handshake, schema) and claims (each then
/// finished, untimed) on an open connection, verify-full against disable, on one server that
/// accepts both; each creates its own table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_latency_over_tls() {
    let pki = Pki::new("latency");
    let setup = Setup {
        tls: Some((&pki.server_cert, &pki.server_key)),
        hba: None,
        password: None,
        options: "",
    };
    let Some(server) = Postgres::launch_with("tls_latency", &setup) else {
        return;
    };
    let policy =
        scheduler::ClaimPolicy::new(Duration::from_secs(30), scheduler::Delivery::AtMostOnce);
    let base = Utc::now();
    let ca = ca_param(&pki.ca);
    for (mode, params, table) in [
        ("disable", "sslmode=disable".to_owned(), "runs_plain"),
        (
            "verify-full",
            format!("sslmode=verify-full&{ca}"),
            "runs_tls",
        ),
    ] {
        let coordinator =
            PostgresCoordinator::connect(&url(&server, "localhost", &params), mode).table(table);
        let began = Instant::now();
        coordinator.prepare().await.unwrap();
        let first = began.elapsed();
        let mut claims = Vec::new();
        for k in 0..200 {
            let tick = base + TimeDelta::seconds(k);
            let began = Instant::now();
            let claim = coordinator.claim("latency", tick, policy).await.unwrap();
            claims.push(began.elapsed());
            let scheduler::Claim::Granted(ticket) = claim else {
                panic!("{mode}, tick {k}: {claim:?}")
            };
            let run = scheduler::FinishedRun::new(tick, tick, scheduler::Outcome::Succeeded);
            coordinator.finish(&ticket, &run).await.unwrap();
        }
        claims.sort();
        println!(
            "{mode}: first prepare {first:?}; claim p50 {:?}, p99 {:?} over {} claims",
            claims[claims.len() / 2],
            claims[claims.len() * 99 / 100],
            claims.len()
        );
    }
}
