//! The admin dashboard in a real browser: headless Chromium, driven over `WebDriver` by
//! `chromedriver`, clicks what an operator would click and checks what they would see. It saves a
//! screenshot to `target/admin-dashboard.png` (the README's picture is of the demo's page). The app
//! is a real `ServiceManager` on the real clock (a browser cannot follow tokio's paused one), so "runs
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use scheduler::admin::AdminConfig;
use scheduler::coordinator::{
    Claim, ClaimPolicy, ControlRecord, Coordinator, CoordinatorError, FinishedRun, RunRecord,
    Ticket,
};
use scheduler::{InMemoryCoordinator, Schedule, Service, ServiceManager, ServiceState};
use serde_json::json;
use webdriver::Session;

const TOKEN: &str = "s3cret-admin-token";
const SERVICES: [&str; 6] = [
    "billing::sync",
    "cache::refresh",
    "health::heartbeat",
    "media::transcode",
    "reports::daily",
    "search::reindex",
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
        "goog:loggingPrefs": { "browser": "ALL" },
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

/// The text of the element at `css` ("" when there is none). The page redraws its tables every
/// poll, so an element found just before a redraw may be gone when its text is asked (a stale
/// element): it is looked up again, rather than read as empty.
async fn text(client: &Session, css: &str) -> String {
    for _ in 0..5 {
        let Ok(element) = client.find(css).await else {
            return String::new();
        };
        if let Ok(text) = element.text().await {
            return text;
        }
    }
    String::new()
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
/// second (one to pause, one to show that time passes), one whose runs outlast its period, a weekday cron report whose job fails
/// (and is retried once), and an every-second reindex that always runs past its 300 ms limit.
/// Its in-memory coordinator keeps the run history the detail view shows.
fn app() -> ServiceManager {
    let manager = ServiceManager::builder()
        .coordinator(InMemoryCoordinator::new().replica("web-1"))
        // A worker for every service: none waits for a slot, whatever the machine's CPUs.
        .max_concurrent_jobs(SERVICES.len())
        .build()
        .unwrap();
    let every = |secs: f64| Schedule::every_secs(secs).unwrap();
    manager.add_service("billing::sync", Service::new(every(3600.0), |_| async {}));
    manager.add_service("cache::refresh", Service::new(every(1.0), |_| async {}));
    manager.add_service("health::heartbeat", Service::new(every(1.0), |_| async {}));
    // 2.5 s runs on a 1 s period: the ticks that come while one runs are skipped as overlaps.
    let long = Service::new(every(1.0), |_| {
        tokio::time::sleep(Duration::from_millis(2_500))
    });
    manager.add_service("media::transcode", long);
    let report = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
    let failing = Service::new(report, |ctx| async move {
        Err::<(), _>(format!(
            "report template missing: daily.html (attempt {})",
            ctx.attempt()
        ))
    })
    .retries(1)
    .retry_backoff(Duration::from_millis(100), Duration::from_millis(100));
    manager.add_service("reports::daily", failing);
    let slow = Service::new(every(1.0), |ctx| async move { ctx.cancelled().await })
        .timeout(Duration::from_millis(300));
    manager.add_service("search::reindex", slow);
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
    no_request_failed_and_no_icon_is_a_font_glyph(&client).await;
    run_now_is_refused_without_the_token(&client, &manager).await;
    a_wrong_token_is_refused_at_once(&client).await;
    run_now_with_the_token_runs_it(&client, &manager).await;
    pause_shows_paused_and_stops_runs(&client, &manager).await;
    disable_shows_disabled_stops_runs_and_enable_brings_them_back(&client, &manager).await;
    overlaps_are_counted_and_explained(&client, &manager).await;
    reload_reloads(&client).await;
    the_detail_shows_schedule_history_and_error(&client).await;
    every_retry_shows_with_its_attempt_and_error(&client).await;
    a_timed_out_run_says_its_limit(&client).await;
    the_history_pages_and_filters(&client).await;
    // The screenshot shows the failure.
    click(&client, &row("reports::daily", "button.open")).await;
    until("the detail is the report's again", || async {
        text(&client, "#detail-name").await == "reports::daily"
    })
    .await;
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

/// The favicon loads (no 404 in the console, which Chromium logs for any failed load), and the
/// state and outcome icons are drawn by CSS, not by glyphs a server may lack fonts for.
async fn no_request_failed_and_no_icon_is_a_font_glyph(client: &Session) {
    // The browser's own loads first (the page, its assets, its icon): none failed.
    until("the page has polled", || async {
        text(client, "#summary").await.contains("updated")
    })
    .await;
    let log = client.console_log().await.unwrap();
    assert!(
        log.iter()
            .all(|line| !line.contains("404") && !line.contains("Failed to load")),
        "{log:?}"
    );
    until("the favicon is fetched", || async {
        let loaded = client
            .execute(
                "return fetch(document.querySelector('link[rel=icon]').href)\
                   .then(r => r.status);",
            )
            .await;
        loaded.is_ok_and(|status| status == json!(200))
    })
    .await;
    let glyphs = client
        .execute(
            "const text = document.body.innerText;\
             return ['⏸','⧗','▶','✓','✗','‼','⊘','○','■'].filter(g => text.includes(g));",
        )
        .await
        .unwrap();
    assert_eq!(glyphs, json!([]), "symbol glyphs on the page");
    let drawn = client
        .execute(
            "const icons = [...document.querySelectorAll('#services .icon')];\
             return icons.length > 0 && icons.every(i => i.getBoundingClientRect().width > 4\
               && i.textContent === '');",
        )
        .await
        .unwrap();
    assert_eq!(drawn, json!(true), "every state badge has a drawn icon");
}

/// A wrong token is said to be refused as soon as it is set, before any action.
async fn a_wrong_token_is_refused_at_once(client: &Session) {
    client
        .find("#token")
        .await
        .unwrap()
        .send_keys("not-the-token")
        .await
        .unwrap();
    click(client, "#token-save").await;
    until("the token is said to be refused", || async {
        text(client, "#token-state")
            .await
            .starts_with("token refused")
    })
    .await;
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
    until("the token is said to be accepted", || async {
        text(client, "#token-state").await == "token accepted for this tab"
    })
    .await;
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
    // The ticks it missed while paused are counted as their own kind, and explained.
    let skipped = manager.service(paused).unwrap().skipped_paused;
    assert!(skipped >= 1, "{skipped}");
    until("the paused skips are shown", || async {
        text(client, &row(paused, "td.col-skipped .skip-kinds")).await
            == format!("{skipped} paused")
    })
    .await;
    let tooltip = client
        .find(&row(paused, "td.col-skipped .skips"))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        tooltip.contains("ticks that came while the service was paused"),
        "{tooltip}"
    );
    // The legend explains every kind the runtime counts.
    click(client, "#legend-box summary").await;
    for kind in [
        "skipped",
        "skipped_paused",
        "skipped_misfire",
        "skipped_late",
        "retries_dropped",
        "claimed_elsewhere",
    ] {
        let term = text(client, &format!("#legend-skips dt[data-skip='{kind}']")).await;
        assert!(!term.is_empty(), "{kind} is not in the legend");
    }
    click(client, "#legend-box summary").await;
}

/// Disable, then Enable, as an operator clicks them: the row says `disabled`, offers only Enable
/// (no Pause, no Run now), and no run happens while the other every-second service runs twice
/// more; after Enable the row offers Disable and Pause again and runs go on.
async fn disable_shows_disabled_stops_runs_and_enable_brings_them_back(
    client: &Session,
    manager: &ServiceManager,
) {
    let name = "health::heartbeat";
    let visible = |action: &'static str| async move {
        let css = row(name, &format!("button[data-action='{action}']"));
        client
            .find(&css)
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .is_displayed()
            .await
            .unwrap()
    };
    assert!(visible("disable").await && !visible("enable").await);
    // Three buttons a row still fit the 1280 px window: they wrap rather than push the table out
    // of it.
    let fits = client
        .execute("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "the table is wider than the window");
    click(client, &row(name, "button[data-action='disable']")).await;
    until("the service shows as disabled", || async {
        text(client, &row(name, "td.col-state"))
            .await
            .contains("disabled")
    })
    .await;
    assert_eq!(manager.service(name).unwrap().state, ServiceState::Disabled);
    assert!(visible("enable").await);
    for hidden in ["disable", "pause", "resume", "run-now"] {
        assert!(!visible(hidden).await, "{hidden} is offered while disabled");
    }
    let frozen = runs(manager, name);
    let other = runs(manager, "cache::refresh");
    until("two more ticks have passed", || async {
        let shown = text(client, &row("cache::refresh", "td.col-runs")).await;
        shown.parse::<u64>().is_ok_and(|n| n >= other + 2)
    })
    .await;
    assert_eq!(runs(manager, name), frozen, "no run while disabled");

    click(client, &row(name, "button[data-action='enable']")).await;
    until("the service runs again", || async {
        let state = text(client, &row(name, "td.col-state")).await;
        let shown = text(client, &row(name, "td.col-runs")).await;
        !state.contains("disabled") && shown.parse::<u64>().is_ok_and(|n| n > frozen)
    })
    .await;
    assert!(visible("disable").await && visible("pause").await && !visible("enable").await);
}

/// The ticks that came while a long run went on are shown as `overlap` skips, with the same count
/// as the runtime's, and the tooltip says what they are.
async fn overlaps_are_counted_and_explained(client: &Session, manager: &ServiceManager) {
    let name = "media::transcode";
    until(
        "overlap skips are shown as the runtime counts them",
        || async {
            let skipped = manager.service(name).unwrap().skipped;
            skipped >= 2
                && text(client, &row(name, "td.col-skipped .skip-kinds")).await
                    == format!("{skipped} overlap")
        },
    )
    .await;
    let tooltip = client
        .find(&row(name, "td.col-skipped .skips"))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        tooltip.contains("the previous run was still going"),
        "{tooltip}"
    );
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
    until("the detail shows the failed retry", || async {
        text(client, "#detail-error").await == "report template missing: daily.html (attempt 2)"
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
}

/// The texts of the history's rows: (attempt, outcome, error).
async fn history_rows(client: &Session) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for tr in client
        .find_all("#history tbody tr")
        .await
        .unwrap_or_default()
    {
        rows.push((
            tr.attr("data-attempt")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            tr.attr("data-outcome")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            match tr.find_child("td.col-error").await {
                Ok(cell) => cell.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            },
        ));
    }
    rows
}

/// The manual run of the report failed, and so did its retry: two rows, each with its own attempt
/// number and error.
async fn every_retry_shows_with_its_attempt_and_error(client: &Session) {
    click(client, &row("reports::daily", "button.open")).await;
    let expected = |n: u32| {
        (
            n.to_string(),
            "failed".to_owned(),
            format!("report template missing: daily.html (attempt {n})"),
        )
    };
    until("both attempts are listed", || async {
        history_rows(client).await == [expected(2), expected(1)]
    })
    .await;
    assert_eq!(
        text(client, "#history tbody tr[data-attempt='2'] td.col-attempt").await,
        "2 (retry)"
    );
}

async fn a_timed_out_run_says_its_limit(client: &Session) {
    click(client, &row("search::reindex", "button.open")).await;
    until("a timed-out run is listed with its limit", || async {
        history_rows(client)
            .await
            .iter()
            .any(|(_, outcome, error)| outcome == "timed_out" && error == "timed out after 300 ms")
    })
    .await;
    assert_eq!(
        text(client, "#detail-error").await,
        "timed out after 300 ms"
    );
}

/// The every-second service has more runs than a page: "Older runs" shows the next ones, older
/// than the first page's, and the filter keeps only the outcome asked for.
async fn the_history_pages_and_filters(client: &Session) {
    click(client, &row("cache::refresh", "button.open")).await;
    until("a second page exists", || async {
        let older = client.find("#history-older").await;
        match older {
            Ok(button) => button.enabled().await.unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
    let ticks = || async {
        client
            .execute(
                "return [...document.querySelectorAll('#history tbody tr td:first-child')]\
                   .map(td => td.textContent);",
            )
            .await
            .unwrap()
    };
    let first_page = ticks().await;
    let oldest_shown = client
        .execute("return document.querySelectorAll('#history tbody tr').length;")
        .await
        .unwrap();
    assert_eq!(oldest_shown, json!(20), "a page is 20 runs");
    click(client, "#history-older").await;
    until("the second page is shown", || async {
        text(client, "#history-page")
            .await
            .starts_with("older runs, page 2")
    })
    .await;
    let second_page = ticks().await;
    let (first, second) = (
        first_page.as_array().unwrap(),
        second_page.as_array().unwrap(),
    );
    assert!(!second.is_empty());
    assert!(
        second.iter().all(|t| !first.contains(t)),
        "pages overlap: {first:?} {second:?}"
    );
    click(client, "#history-newer").await;
    until("the newest page is back", || async {
        text(client, "#history-page").await.starts_with("newest")
    })
    .await;
    // Filtered: the reindex's runs all time out, so "ok" finds none and "timed out" finds them.
    click(client, &row("search::reindex", "button.open")).await;
    click(client, "#history-outcome option[value='succeeded']").await;
    until("no run is ok", || async {
        text(client, "#detail-history-note").await == "No runs with this outcome on this page."
    })
    .await;
    click(client, "#history-outcome option[value='timed_out']").await;
    until("only timed-out runs are listed", || async {
        let rows = history_rows(client).await;
        !rows.is_empty() && rows.iter().all(|(_, outcome, _)| outcome == "timed_out")
    })
    .await;
    click(client, "#history-outcome option[value='']").await;
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

/// The replicas panel: both replicas of an in-memory cluster, which one answers, what each is
/// running, and the one whose heartbeat stopped marked dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_panel_shows_each_replica_and_marks_a_stopped_one_dead() {
    let Some((chromium, driver_binary)) = browser() else {
        return;
    };
    let cluster = InMemoryCoordinator::new();
    let web1 = ServiceManager::builder()
        .coordinator(cluster.replica("web-1"))
        .replica_version("2.4.0")
        .build()
        .unwrap();
    let web2 = ServiceManager::builder()
        .coordinator(cluster.replica("web-2"))
        .replica_version("2.5.0")
        .build()
        .unwrap();
    let slow = Service::new(Schedule::every_secs(1.0).unwrap(), |ctx| async move {
        ctx.cancelled().await;
    });
    web1.add_service("search::reindex", slow);
    web1.start().unwrap();
    web2.start().unwrap();
    let address = serve(&web1).await;
    let driver = Driver::start(&driver_binary);
    let profile = std::env::temp_dir().join(format!("admin-replicas-{}", std::process::id()));
    let client = open_browser(&chromium, &driver, &profile).await;
    client.goto(&format!("http://{address}/")).await.unwrap();

    let replica =
        |name: &str, rest: &str| format!("#replica-list tr[data-replica='{name}'] {rest}");
    until("both replicas are listed alive", || async {
        text(&client, &replica("web-1", ".replica-status")).await == "alive"
            && text(&client, &replica("web-2", ".replica-status")).await == "alive"
    })
    .await;
    assert!(text(&client, &replica("web-1", "th"))
        .await
        .contains("(this one)"));
    assert!(!text(&client, &replica("web-2", "th"))
        .await
        .contains("(this one)"));
    assert!(text(&client, &replica("web-2", "")).await.contains("2.5.0"));
    until("web-1 shows the run it holds", || async {
        text(&client, &replica("web-1", ".replica-held")).await == "search::reindex"
    })
    .await;
    assert_eq!(
        text(&client, &replica("web-2", ".replica-held")).await,
        "nothing"
    );

    web2.stop().await;
    until("web-2 is marked dead", || async {
        text(&client, &replica("web-2", ".replica-status")).await == "dead"
    })
    .await;
    assert_eq!(
        text(&client, &replica("web-1", ".replica-status")).await,
        "alive"
    );
    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    client
        .execute("document.getElementById('replicas').scrollIntoView();")
        .await
        .unwrap();
    let screenshot = client.screenshot().await.unwrap();
    std::fs::write(target.join("admin-replicas.png"), &screenshot).unwrap();

    client.close().await.unwrap();
    drop(driver);
    web1.stop_within(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&profile);
}

/// An in-memory coordinator that can be cut off: while `down`, every call fails, as a database
/// that stopped answering would.
struct Flaky {
    inner: InMemoryCoordinator,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), CoordinatorError> {
        if self.down.load(Ordering::SeqCst) {
            Err(CoordinatorError::new(
                "connection refused by db.internal:5432",
            ))
        } else {
            Ok(())
        }
    }

    fn gated<'a, T: Send + 'a>(
        &'a self,
        call: BoxFuture<'a, Result<T, CoordinatorError>>,
    ) -> BoxFuture<'a, Result<T, CoordinatorError>> {
        Box::pin(async move {
            self.check()?;
            call.await
        })
    }
}

impl Coordinator for Flaky {
    fn replica(&self) -> &str {
        Coordinator::replica(&self.inner)
    }
    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        self.gated(self.inner.prepare())
    }
    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        self.gated(self.inner.claim(service, tick, policy))
    }
    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.gated(self.inner.renew(ticket))
    }
    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.gated(self.inner.finish(ticket, run))
    }
    fn release<'a>(
        &'a self,
        ticket: &'a Ticket,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.gated(self.inner.release(ticket, reason))
    }
    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        self.gated(self.inner.history(service, limit))
    }
    fn set_paused<'a>(
        &'a self,
        service: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        self.gated(self.inner.set_paused(service, paused))
    }
    fn set_disabled<'a>(
        &'a self,
        service: &'a str,
        disabled: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        self.gated(self.inner.set_disabled(service, disabled))
    }
    fn controls(&self, since: u64) -> BoxFuture<'_, Result<Vec<ControlRecord>, CoordinatorError>> {
        self.gated(self.inner.controls(since))
    }
}

/// The banner: hidden while the coordinator answers; shown, with the error and since when, once
/// its calls fail; gone again when it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banner_says_when_the_coordinator_cannot_be_reached() {
    let Some((chromium, driver_binary)) = browser() else {
        return;
    };
    let down = Arc::new(AtomicBool::new(false));
    let manager = ServiceManager::builder()
        .coordinator(Flaky {
            inner: InMemoryCoordinator::new().replica("web-1"),
            down: down.clone(),
        })
        .build()
        .unwrap();
    manager.add_service(
        "health::heartbeat",
        Service::new(Schedule::every_secs(1.0).unwrap(), |_| async {}),
    );
    manager.start().unwrap();
    let address = serve(&manager).await;
    let driver = Driver::start(&driver_binary);
    let profile = std::env::temp_dir().join(format!("admin-banner-{}", std::process::id()));
    let client = open_browser(&chromium, &driver, &profile).await;
    client.goto(&format!("http://{address}/")).await.unwrap();
    let banner_shown = || async {
        client
            .find("#coordinator-banner")
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    };
    until("a run, with the coordinator answering", || async {
        text(&client, &row("health::heartbeat", "td.col-runs")).await != "0"
    })
    .await;
    assert!(!banner_shown().await);

    down.store(true, Ordering::SeqCst);
    // Shown, and (from its second refresh on) saying how long ago the outage began.
    until("the banner is shown", || async {
        banner_shown().await && text(&client, "#coordinator-banner").await.contains(" ago)")
    })
    .await;
    let said = text(&client, "#coordinator-banner").await;
    assert!(said.contains("cannot reach the coordinator"), "{said}");
    assert!(!said.contains("[object"), "{said}");
    assert!(
        said.contains("connection refused by db.internal:5432"),
        "{said}"
    );
    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    let screenshot = client.screenshot().await.unwrap();
    std::fs::write(target.join("admin-coordinator-down.png"), &screenshot).unwrap();

    down.store(false, Ordering::SeqCst);
    until("the banner is gone", || async { !banner_shown().await }).await;

    client.close().await.unwrap();
    drop(driver);
    manager.stop_within(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&profile);
}
