//! The admin dashboard in a real browser: headless Chromium, driven over `WebDriver` by
//! `chromedriver`, clicks what an operator would click and checks what they would see. It saves a
//! screenshot to `target/admin-dashboard.png` (the README's picture is a copy of one). The app is a
//! real `ServiceManager` on the real clock (a browser cannot follow tokio's paused one), so "runs
//! stop" is shown against another service that keeps ticking, never by sleeping for luck.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`;
//! `SCHEDULER_CHROMIUM` and `SCHEDULER_CHROMEDRIVER` override the paths). Without them the test is
//! skipped with a notice, unless `SCHEDULER_REQUIRE_BROWSER=1` (CI sets it), which makes it fail.

#[path = "support/webdriver.rs"]
mod webdriver;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scheduler::admin::AdminConfig;
use scheduler::{InMemoryCoordinator, Schedule, Service, ServiceManager, ServiceState};
use serde_json::json;
use webdriver::Session;

const TOKEN: &str = "s3cret-admin-token";
const SERVICES: [&str; 4] = [
    "billing::sync",
    "cache::refresh",
    "health::heartbeat",
    "reports::daily",
];

/// The browser's binaries, or `None` (after a notice) when the test is to be skipped.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let path = |var: &str, default: &str| {
        PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_owned()))
    };
    let chromium = path("SCHEDULER_CHROMIUM", "/usr/bin/chromium");
    let driver = path("SCHEDULER_CHROMEDRIVER", "/usr/bin/chromedriver");
    let missing: Vec<String> = [&chromium, &driver]
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some((chromium, driver));
    }
    let notice = format!(
        "the browser test needs {} (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("SCHEDULER_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "{notice}; SCHEDULER_REQUIRE_BROWSER=1 makes that a failure"
    );
    eprintln!("SKIPPED: {notice}");
    None
}

/// chromedriver on a free port of 127.0.0.1, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // It says so on stdout once it listens.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("started successfully") {
                return Driver { child, port };
            }
            seen.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver exited without starting: {seen:?}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open_browser(chromium: &Path, driver: &Driver, profile: &Path) -> Session {
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    Session::new(&format!("http://127.0.0.1:{}", driver.port), capabilities)
        .await
        .unwrap_or_else(|e| panic!("no WebDriver session with headless Chromium: {e}"))
}

/// Waits (up to 20 s, checking every 50 ms) until `check` holds, as a person waits for a page.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn row(service: &str, rest: &str) -> String {
    format!("#services tr[data-service='{service}'] {rest}")
}

async fn text(client: &Session, css: &str) -> String {
    match client.find(css).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn click(client: &Session, css: &str) {
    client
        .find(css)
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

/// The app under test: a real manager with an hourly service to run by hand, two that tick every
/// second (one to pause, one to show that time passes), and a weekday cron report whose job fails.
/// Its in-memory coordinator keeps the run history the detail view shows.
fn app() -> ServiceManager {
    let manager = ServiceManager::builder()
        .coordinator(InMemoryCoordinator::new().replica("web-1"))
        .build()
        .unwrap();
    let every = |secs: f64| Schedule::every_secs(secs).unwrap();
    manager.add_service("billing::sync", Service::new(every(3600.0), |_| async {}));
    manager.add_service("cache::refresh", Service::new(every(1.0), |_| async {}));
    manager.add_service("health::heartbeat", Service::new(every(1.0), |_| async {}));
    let report = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
    let failing = Service::new(report, |_| async {
        Err::<(), _>("report template missing: daily.html")
    });
    manager.add_service("reports::daily", failing);
    manager
}

fn runs(manager: &ServiceManager, name: &str) -> u64 {
    manager.service(name).unwrap().runs
}

async fn serve(manager: &ServiceManager) -> SocketAddr {
    let router = AdminConfig::new()
        .bearer_token(TOKEN)
        .router(manager.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_runs_pauses_and_is_refused_without_the_token() {
    let Some((chromium, driver_binary)) = browser() else {
        return;
    };
    let manager = app();
    manager.start().unwrap();
    let address = serve(&manager).await;
    let driver = Driver::start(&driver_binary);
    let profile = std::env::temp_dir().join(format!("admin-browser-{}", std::process::id()));
    let client = open_browser(&chromium, &driver, &profile).await;
    client.goto(&format!("http://{address}/")).await.unwrap();

    every_service_is_listed(&client).await;
    run_now_is_refused_without_the_token(&client, &manager).await;
    run_now_with_the_token_runs_it(&client, &manager).await;
    pause_shows_paused_and_stops_runs(&client, &manager).await;
    reload_reloads(&client).await;
    the_detail_shows_schedule_history_and_error(&client).await;
    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    client.set_window_size(1280, 1150).await.unwrap();
    client.execute("window.scrollTo(0, 0);").await.unwrap();
    let screenshot = client.screenshot().await.unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"));
    std::fs::write(target.join("admin-dashboard.png"), &screenshot).unwrap();
    it_fits_a_phone(&client, &target).await;

    client.close().await.unwrap();
    drop(driver);
    manager.stop().await;
    let _ = std::fs::remove_dir_all(&profile);
}

async fn every_service_is_listed(client: &Session) {
    until("every service is listed", || async {
        let rows = client
            .find_all("#services tbody tr")
            .await
            .unwrap_or_default();
        let mut names = Vec::new();
        for row in rows {
            names.push(
                row.attr("data-service")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
            );
        }
        names == SERVICES
    })
    .await;
    assert_eq!(
        text(client, &row("billing::sync", "td.col-runs")).await,
        "0"
    );
}

async fn run_now_is_refused_without_the_token(client: &Session, manager: &ServiceManager) {
    click(
        client,
        &row("billing::sync", "button[data-action='run-now']"),
    )
    .await;
    until("the refusal is shown", || async {
        text(client, "#message").await.contains("refused")
    })
    .await;
    let message = text(client, "#message").await;
    assert!(message.contains("needs the admin token"), "{message}");
    assert_eq!(runs(manager, "billing::sync"), 0);
}

async fn run_now_with_the_token_runs_it(client: &Session, manager: &ServiceManager) {
    client
        .find("#token")
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(client, "#token-save").await;
    click(
        client,
        &row("billing::sync", "button[data-action='run-now']"),
    )
    .await;
    until("the run count goes up", || async {
        text(client, &row("billing::sync", "td.col-runs")).await == "1"
    })
    .await;
    assert_eq!(runs(manager, "billing::sync"), 1);
}

async fn pause_shows_paused_and_stops_runs(client: &Session, manager: &ServiceManager) {
    let paused = "health::heartbeat";
    click(client, &row(paused, "button[data-action='pause']")).await;
    until("the service shows as paused", || async {
        text(client, &row(paused, "td.col-state"))
            .await
            .contains("paused")
    })
    .await;
    // Shown as paused, so no run of it is in progress: its count must now stay where it is while
    // the other every-second service runs twice more.
    assert_eq!(manager.service(paused).unwrap().state, ServiceState::Paused);
    let frozen = runs(manager, paused);
    let other = runs(manager, "cache::refresh");
    until("two more ticks have passed", || async {
        let shown = text(client, &row("cache::refresh", "td.col-runs")).await;
        shown.parse::<u64>().is_ok_and(|n| n >= other + 2)
    })
    .await;
    assert_eq!(runs(manager, paused), frozen);
    assert_eq!(
        text(client, &row(paused, "td.col-runs")).await,
        frozen.to_string()
    );
    click(client, &row(paused, "button[data-action='resume']")).await;
    until("the service is no longer paused", || async {
        let state = text(client, &row(paused, "td.col-state")).await;
        !state.is_empty() && !state.contains("paused")
    })
    .await;
}

async fn reload_reloads(client: &Session) {
    click(client, "#reload").await;
    until("the reload is reported", || async {
        text(client, "#message").await == "Configuration reloaded: nothing changed."
    })
    .await;
}

async fn the_detail_shows_schedule_history_and_error(client: &Session) {
    click(
        client,
        &row("reports::daily", "button[data-action='run-now']"),
    )
    .await;
    until("the failed run shows in the list", || async {
        text(client, &row("reports::daily", "td.col-failures")).await == "1"
    })
    .await;
    click(client, &row("reports::daily", "button.open")).await;
    until("the detail shows the failure", || async {
        text(client, "#detail-error").await == "report template missing: daily.html"
    })
    .await;
    assert_eq!(
        text(client, "#detail-description").await,
        "At 09:00, Monday through Friday (Europe/Berlin)"
    );
    let upcoming = client.find_all("#detail-upcoming li").await.unwrap();
    assert_eq!(upcoming.len(), 10);
    // The ticking services' runs are in the coordinator's history.
    click(client, &row("cache::refresh", "button.open")).await;
    until("the detail lists runs", || async {
        let rows = client
            .find_all("#history tbody tr")
            .await
            .unwrap_or_default();
        let first = match rows.first() {
            Some(row) => row.text().await.unwrap_or_default(),
            None => String::new(),
        };
        rows.len() >= 2 && first.contains("ok") && first.contains("web-1")
    })
    .await;
    // The screenshot shows the failure.
    click(client, &row("reports::daily", "button.open")).await;
    until("the detail is the report's again", || async {
        text(client, "#detail-name").await == "reports::daily"
    })
    .await;
}

/// At phone width everything stays reachable without scrolling sideways.
async fn it_fits_a_phone(client: &Session, target: &Path) {
    client.set_window_size(390, 844).await.unwrap();
    let fits = client
        .execute("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "the page is wider than a phone");
    let button = client
        .find(&row("cache::refresh", "button[data-action='run-now']"))
        .await
        .unwrap();
    assert!(button.is_displayed().await.unwrap());
    std::fs::write(
        target.join("admin-dashboard-phone.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
}
