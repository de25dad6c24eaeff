//! The admin API (feature `admin`), every endpoint and action through `tower::ServiceExt::oneshot`:
//! against a real `ServiceManager` under tokio's paused clock, and against a test double
//! (`support/admin_fake.rs`) for what the runtime does not keep yet (a local run history, the
//! sparkline's outcomes, a schedule description).

#[path = "support/admin_fake.rs"]
mod admin_fake;

use std::time::Duration;

use admin_fake::{at, FakeBackend};
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use scheduler::admin::{self, AdminConfig, State};
use scheduler::{InMemoryCoordinator, Schedule, Service, ServiceManager, TokioClock};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "correct horse battery staple";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn call(router: &Router, method: &str, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = if headers[header::CONTENT_TYPE] == "application/json" {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::String(String::from_utf8(bytes.to_vec()).unwrap())
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(router: &Router, uri: &str) -> Answer {
    call(router, "GET", uri, &[]).await
}

/// A request's method and headers, and the status and error code it must be refused with.
type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, StatusCode, &'a str);

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// A manager on a paused clock at `t0` with a heartbeat every 30 s that fails on its second run,
/// and a weekday cron report in Berlin.
fn manager() -> ServiceManager {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let heartbeat = Service::new(Schedule::every_secs(30.0).unwrap(), move |_| {
        let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        async move {
            if run == 2 {
                Err("the disk is full")
            } else {
                Ok(())
            }
        }
    });
    manager.add_service("heartbeat", heartbeat);
    let report = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
    manager.add_service("report", Service::new(report, |_| async {}));
    manager
}

#[tokio::test(start_paused = true)]
async fn the_list_shows_every_status_field_of_every_service() {
    let manager = manager();
    let router = admin::router(manager.clone());
    let before = get(&router, "/api/services").await;
    assert_eq!(before.status, StatusCode::OK);
    let names: Vec<&str> = before.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["heartbeat", "report"]);
    assert_eq!(before.body["services"][0]["state"], "not_started");

    manager.start().unwrap();
    tokio::time::sleep(Duration::from_millis(60_500)).await; // heartbeat ran at 30 s and 60 s
    let list = get(&router, "/api/services").await.body;
    let heartbeat = &list["services"][0];
    assert_eq!(heartbeat["state"], "idle");
    assert_eq!(heartbeat["schedule"], "every 30s");
    assert_eq!(heartbeat["zone"], Value::Null);
    assert_eq!(heartbeat["origin"], "code");
    assert_eq!(time(&heartbeat["next_fire"]), t0() + TimeDelta::seconds(90));
    assert_eq!(
        time(&heartbeat["last_start"]),
        t0() + TimeDelta::seconds(60)
    );
    assert_eq!(heartbeat["last_outcome"], "failed");
    assert_eq!(heartbeat["last_error"], "the disk is full");
    assert_eq!(heartbeat["last_duration_secs"], 0.0);
    assert_eq!(
        (
            &heartbeat["runs"],
            &heartbeat["failures"],
            &heartbeat["skipped"]
        ),
        (&json!(2), &json!(1), &json!(0))
    );
    assert_eq!(heartbeat["claimed_elsewhere"], 0);
    assert_eq!(heartbeat["retries_dropped"], 0);
    assert_eq!(heartbeat["skipped_paused"], 0);
    assert_eq!(heartbeat["coordinator_error"], Value::Null);
    assert_eq!(heartbeat["held_elsewhere"], Value::Null);
    assert_eq!(heartbeat["pending_report"], Value::Null);
    assert_eq!(heartbeat["skipped_late"], 0);
    let report = &list["services"][1];
    assert_eq!(report["schedule"], "0 9 * * MON-FRI (Europe/Berlin)");
    assert_eq!(report["zone"], "Europe/Berlin");
    assert_eq!(report["runs"], 0);
    assert_eq!(report["last_outcome"], Value::Null);
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_detail_has_the_next_ten_fire_times_and_the_schedule() {
    let manager = manager();
    manager.start().unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await; // the runners have computed their first ticks
    let router = admin::router(manager.clone());
    let detail = get(&router, "/api/services/report").await;
    assert_eq!(detail.status, StatusCode::OK);
    let schedule = &detail.body["schedule"];
    assert_eq!(schedule["text"], "0 9 * * MON-FRI (Europe/Berlin)");
    assert_eq!(schedule["zone"], "Europe/Berlin");
    assert_eq!(
        schedule["description"],
        "At 09:00, Monday through Friday (Europe/Berlin)"
    );
    // 2024-01-01 is a Monday; 09:00 in Berlin is 08:00 UTC in winter; two weeks of weekdays.
    let upcoming: Vec<DateTime<Utc>> = schedule["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(time)
        .collect();
    let expected: Vec<DateTime<Utc>> = [1, 2, 3, 4, 5, 8, 9, 10, 11, 12]
        .iter()
        .map(|day| Utc.with_ymd_and_hms(2024, 1, *day, 8, 0, 0).unwrap())
        .collect();
    assert_eq!(upcoming, expected);
    assert_eq!(detail.body["service"]["name"], "report");
    assert_eq!(detail.body["history"], json!([]));
    assert_eq!(detail.body["history_error"], Value::Null);

    let heartbeat = get(&router, "/api/services/heartbeat").await.body;
    assert_eq!(heartbeat["schedule"]["description"], "Every 30 seconds");
    let upcoming = heartbeat["schedule"]["upcoming"].as_array().unwrap();
    assert_eq!(upcoming.len(), 10);
    assert_eq!(time(&upcoming[0]), t0() + TimeDelta::seconds(30));
    assert_eq!(time(&upcoming[9]), t0() + TimeDelta::seconds(300));
    manager.stop().await;
}

/// A service every 10 s whose every first attempt fails and whose retry (1 s later) succeeds, on
/// a manager that keeps its history locally, or with an in-memory coordinator.
fn retrying_manager(cluster: bool) -> ServiceManager {
    let mut builder = ServiceManager::builder().clock(TokioClock::starting_at(t0()));
    if cluster {
        builder = builder.coordinator(InMemoryCoordinator::new().replica("replica-a"));
    }
    let manager = builder.build().unwrap();
    let flaky = Service::new(Schedule::every_secs(10.0).unwrap(), |ctx| async move {
        if ctx.attempt() == 1 {
            Err(format!("attempt {} failed", ctx.attempt()))
        } else {
            Ok(())
        }
    })
    .retries(2)
    .retry_backoff(Duration::from_secs(1), Duration::from_secs(1));
    manager.add_service("flaky", flaky);
    manager
}

async fn history_page(router: &Router, query: &str) -> (Vec<(DateTime<Utc>, u64, String)>, Value) {
    let answer = get(router, &format!("/api/services/flaky/history?{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
    let runs = answer.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            let outcome = run["outcome"].as_str().unwrap_or("running").to_owned();
            let error = run["error"].as_str().unwrap_or("").to_owned();
            (
                time(&run["tick"]),
                run["attempt"].as_u64().unwrap(),
                format!("{outcome} {error}").trim().to_owned(),
            )
        })
        .collect();
    (runs, answer.body["next"].clone())
}

#[tokio::test(start_paused = true)]
async fn every_attempt_is_in_the_history_which_pages_and_filters_in_memory_and_in_cluster_mode() {
    for cluster in [false, true] {
        let manager = retrying_manager(cluster);
        manager.start().unwrap();
        // Ticks at 10, 20, 30 s, each failed once and retried after 1 s.
        tokio::time::sleep(Duration::from_secs(35)).await;
        let router = admin::router(manager.clone());
        let s = |secs| t0() + TimeDelta::seconds(secs);
        let failed = "failed attempt 1 failed".to_owned();
        let ok = "succeeded".to_owned();
        let (first, next) = history_page(&router, "limit=4").await;
        assert_eq!(
            first,
            [
                (s(30), 2, ok.clone()),
                (s(30), 1, failed.clone()),
                (s(20), 2, ok.clone()),
                (s(20), 1, failed.clone())
            ],
            "cluster: {cluster}"
        );
        let cursor = next.as_str().expect("another page follows").to_owned();
        let (second, last) = history_page(&router, &format!("limit=4&before={cursor}")).await;
        assert_eq!(
            second,
            [(s(10), 2, ok.clone()), (s(10), 1, failed.clone())],
            "cluster: {cluster}"
        );
        assert_eq!(last, Value::Null, "the last page says so");
        // Filtered by outcome, and paged within the filter.
        let (failures, next) =
            history_page(&router, "limit=2&outcome=failed,panicked,timed_out").await;
        assert_eq!(
            failures,
            [(s(30), 1, failed.clone()), (s(20), 1, failed.clone())]
        );
        let (older, _) = history_page(
            &router,
            &format!("limit=2&outcome=failed&before={}", next.as_str().unwrap()),
        )
        .await;
        assert_eq!(older, [(s(10), 1, failed.clone())]);
        let (successes, _) = history_page(&router, "outcome=succeeded").await;
        assert_eq!(successes.len(), 3);
        manager.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn in_cluster_mode_the_history_comes_from_the_coordinator() {
    let cluster = InMemoryCoordinator::new();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .coordinator(cluster.replica("replica-a"))
        .build()
        .unwrap();
    manager.add_service(
        "sync",
        Service::new(Schedule::every_secs(10.0).unwrap(), |_| async {
            Err::<(), _>("upstream said 503")
        }),
    );
    manager.start().unwrap();
    tokio::time::sleep(Duration::from_millis(30_500)).await;
    let router = admin::router(manager.clone());
    let history = get(&router, "/api/services/sync/history?limit=2").await;
    assert_eq!(history.status, StatusCode::OK);
    let runs = history.body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(time(&runs[0]["tick"]), t0() + TimeDelta::seconds(30));
    assert_eq!(time(&runs[1]["tick"]), t0() + TimeDelta::seconds(20));
    assert_eq!(runs[0]["replica"], "replica-a");
    assert_eq!(runs[0]["attempt"], 1);
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(runs[0]["error"], "upstream said 503");
    let detail = get(&router, "/api/services/sync").await.body;
    assert_eq!(detail["history"].as_array().unwrap().len(), 3);
    manager.stop().await;
}

/// `api/coordinator` and the list's `coordinator`: `null` without one; with one, `unknown` before
/// any call and `reachable`, with its exact since, once calls answer (paused clock).
#[tokio::test(start_paused = true)]
async fn the_coordinator_health_is_null_without_one_and_reachable_once_it_answers() {
    let router = admin::router(manager());
    assert_eq!(
        get(&router, "/api/coordinator").await.body["coordinator"],
        Value::Null
    );
    assert_eq!(
        get(&router, "/api/services").await.body["coordinator"],
        Value::Null
    );

    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .coordinator(InMemoryCoordinator::new().replica("replica-a"))
        .build()
        .unwrap();
    let router = admin::router(manager.clone());
    let before = get(&router, "/api/coordinator").await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.body["coordinator"]["state"], "unknown");
    assert_eq!(before.body["coordinator"]["since"], Value::Null);
    manager.start().unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for path in ["/api/coordinator", "/api/services"] {
        let health = &get(&router, path).await.body["coordinator"];
        assert_eq!(health["state"], "reachable", "{path}: {health}");
        // The control task's first call answers at the start, on the paused clock.
        assert_eq!(time(&health["since"]), t0(), "{path}: {health}");
        assert_eq!(health["errors"], 0);
        assert_eq!(health["last_error"], Value::Null);
    }
    manager.stop().await;
}

#[tokio::test]
async fn unknown_names_and_paths_are_404_with_a_json_error() {
    let router = AdminConfig::new().trusted().router(manager());
    for (method, uri) in [
        ("GET", "/api/services/nope"),
        ("GET", "/api/services/nope/history"),
        ("POST", "/api/services/nope/run-now"),
        ("POST", "/api/services/nope/pause"),
        ("POST", "/api/services/nope/resume"),
    ] {
        let answer = call(&router, method, uri, &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(
            answer.body,
            json!({ "error": "unknown service 'nope'", "code": "unknown_service" }),
            "{method} {uri}"
        );
    }
    let answer = get(&router, "/api/nothing-here").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["code"], "no_such_endpoint");
    assert_eq!(
        answer.body["error"],
        "no such endpoint: GET /api/nothing-here"
    );
}

#[tokio::test]
async fn bad_queries_are_400_naming_the_parameter() {
    let router = admin::router(manager());
    for (query, error) in [
        (
            "limit=0",
            "query parameter limit: '0' is not a whole number from 1 to 1000",
        ),
        (
            "limit=ten",
            "query parameter limit: 'ten' is not a whole number from 1 to 1000",
        ),
        (
            "page=2",
            "unknown query parameter 'page': the history takes limit, before and outcome",
        ),
        ("limit=2&limit=3", "query parameter limit is given twice"),
        (
            "outcome=exploded",
            "query parameter outcome: 'exploded' is not one of succeeded, failed, panicked, \
             timed_out, aborted, abandoned, skipped, running",
        ),
        (
            "before=yesterday",
            "query parameter before: 'yesterday' is not a history cursor (use the `next` of a \
             history answer)",
        ),
    ] {
        let answer = get(&router, &format!("/api/services/heartbeat/history?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.body["error"], error);
    }
    let answer = get(&router, "/api/services/%FF%FE").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["code"], "bad_path");
}

#[tokio::test(start_paused = true)]
async fn the_actions_drive_a_real_manager() {
    let manager = manager();
    let router = AdminConfig::new().trusted().router(manager.clone());
    let post = |path: &'static str| call(&router, "POST", path, &[]);
    // Before the start, a pause (or resume) is accepted and applies at the start.
    let before_start = post("/api/services/heartbeat/pause").await;
    assert_eq!(before_start.status, StatusCode::OK);
    let before_start = post("/api/services/heartbeat/resume").await;
    assert_eq!(before_start.status, StatusCode::OK);

    manager.start().unwrap();
    let run = post("/api/services/report/run-now").await;
    assert_eq!(run.status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let report = get(&router, "/api/services/report").await.body;
    assert_eq!(report["service"]["runs"], 1);
    assert_eq!(report["service"]["last_trigger"], "manual");

    let pause = post("/api/services/heartbeat/pause").await;
    assert_eq!(pause.status, StatusCode::OK);
    let heartbeat = get(&router, "/api/services/heartbeat").await.body;
    assert_eq!(heartbeat["service"]["state"], "paused");
    assert_eq!(heartbeat["schedule"]["upcoming"], json!([]));
    tokio::time::sleep(Duration::from_secs(95)).await; // ticks at 30, 60 and 90 s
    let heartbeat = &get(&router, "/api/services").await.body["services"][0];
    assert_eq!(
        (&heartbeat["state"], &heartbeat["runs"]),
        (&json!("paused"), &json!(0))
    );

    let resume = post("/api/services/heartbeat/resume").await;
    assert_eq!(resume.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(30)).await; // the tick at 120 s
    let heartbeat = &get(&router, "/api/services").await.body["services"][0];
    assert_eq!(heartbeat["state"], "idle");
    assert_eq!(heartbeat["runs"], 1);

    let reload = post("/api/reload").await;
    assert_eq!(reload.status, StatusCode::OK);
    assert_eq!(
        reload.body,
        json!({
            "action": "reload",
            "reload": { "changed": [], "pool_resized": false, "paused": [], "resumed": [] }
        })
    );
    manager.stop().await;
    let stopped = post("/api/services/heartbeat/pause").await;
    assert_eq!(stopped.status, StatusCode::CONFLICT);
    assert_eq!(stopped.body["code"], "invalid_state");
    assert_eq!(
        stopped.body["error"],
        "cannot pause service 'heartbeat': it is stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn run_now_while_a_run_is_going_is_409() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap();
    let slow = Service::new(Schedule::every_secs(3600.0).unwrap(), |_| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    manager.add_service("slow", slow);
    manager.start().unwrap();
    let router = AdminConfig::new().trusted().router(manager.clone());
    let first = call(&router, "POST", "/api/services/slow/run-now", &[]).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let second = call(&router, "POST", "/api/services/slow/run-now", &[]).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(
        second.body,
        json!({ "error": "service 'slow' is already running", "code": "already_running" })
    );
    manager.stop().await;
}

#[tokio::test]
async fn a_bad_configuration_reload_is_422_with_the_problem() {
    let path = std::env::temp_dir().join(format!("admin-api-{}.toml", std::process::id()));
    std::fs::write(&path, "").unwrap();
    let manager = ServiceManager::builder()
        .config_file(&path)
        .build()
        .unwrap();
    std::fs::write(&path, "[manager]\nmax_concurrent_jobs = 0\n").unwrap();
    let router = AdminConfig::new().trusted().router(manager);
    let reload = call(&router, "POST", "/api/reload", &[]).await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(reload.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reload.body["code"], "rejected");
    let error = reload.body["error"].as_str().unwrap();
    assert!(error.contains("max_concurrent_jobs"), "{error}");
}

#[tokio::test]
async fn the_actions_work_on_a_backend_that_has_them() {
    let fake = FakeBackend::new(&["billing", "cache"]);
    let router = AdminConfig::new()
        .bearer_token(TOKEN)
        .router_for(fake.clone());
    let auth = [("authorization", bearer())];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let run = call(&router, "POST", "/api/services/billing/run-now", &auth).await;
    assert_eq!(run.status, StatusCode::ACCEPTED);
    assert_eq!(
        run.body,
        json!({ "service": "billing", "action": "run_now" })
    );
    assert_eq!(fake.runs("billing"), 1);

    let pause = call(&router, "POST", "/api/services/billing/pause", &auth).await;
    assert_eq!(pause.status, StatusCode::OK);
    let list = get(&router, "/api/services").await.body;
    assert_eq!(list["services"][0]["state"], "paused");
    assert_eq!(list["services"][1]["state"], "idle");
    fake.tick();
    assert_eq!((fake.runs("billing"), fake.runs("cache")), (1, 1));

    let resume = call(&router, "POST", "/api/services/billing/resume", &auth).await;
    assert_eq!(resume.status, StatusCode::OK);
    assert_eq!(fake.state("billing"), State::Idle);

    fake.fail("billing", "card declined");
    let history = get(&router, "/api/services/billing/history?limit=2")
        .await
        .body;
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(runs[0]["error"], "card declined");
    assert_eq!(runs[1]["outcome"], "succeeded");
    let detail = get(&router, "/api/services/billing").await.body;
    assert_eq!(detail["schedule"]["description"], "Every minute");
    assert_eq!(detail["service"]["recent"], json!(["succeeded", "failed"]));
    assert_eq!(detail["service"]["last_error"], "card declined");

    let reload = call(&router, "POST", "/api/reload", &auth).await;
    assert_eq!(reload.status, StatusCode::OK);
    assert_eq!(fake.reloads(), 1);
}

#[tokio::test]
async fn actions_are_refused_without_the_token_by_get_and_from_other_sites() {
    let fake = FakeBackend::new(&["billing"]);
    let with_token = AdminConfig::new()
        .bearer_token(TOKEN)
        .router_for(fake.clone());
    let right = bearer();
    let refusals: [Refusal<'_>; 6] = [
        ("POST", vec![], StatusCode::UNAUTHORIZED, "token_required"),
        (
            "POST",
            vec![("authorization", "Bearer guess")],
            StatusCode::UNAUTHORIZED,
            "wrong_token",
        ),
        (
            "POST",
            vec![("authorization", &right), ("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
            "cross_site",
        ),
        (
            "POST",
            vec![
                ("authorization", &right),
                ("origin", "http://attacker.example"),
                ("host", "127.0.0.1:9000"),
            ],
            StatusCode::FORBIDDEN,
            "cross_site",
        ),
        (
            "GET",
            vec![("authorization", &right)],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "PUT",
            vec![("authorization", &right)],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, headers, status, code) in refusals {
        let answer = call(&with_token, method, "/api/services/billing/pause", &headers).await;
        assert_eq!(answer.status, status, "{method} {headers:?}");
        assert_eq!(answer.body["code"], code, "{method} {headers:?}");
        assert_eq!(fake.state("billing"), State::Idle, "{method} {headers:?}");
    }
    let unauthorized = call(&with_token, "POST", "/api/services/billing/run-now", &[]).await;
    assert_eq!(unauthorized.headers[header::WWW_AUTHENTICATE], "Bearer");
    let by_get = get(&with_token, "/api/services/billing/run-now").await;
    assert_eq!(by_get.headers[header::ALLOW], "POST");
    assert_eq!(fake.runs("billing"), 0);

    let read_only = AdminConfig::new().router_for(fake.clone());
    let answer = call(
        &read_only,
        "POST",
        "/api/services/billing/run-now",
        &[("authorization", &right)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body["code"], "read_only");
    let reload = call(&read_only, "POST", "/api/reload", &[]).await;
    assert_eq!(reload.status, StatusCode::FORBIDDEN);
    assert_eq!((fake.runs("billing"), fake.reloads()), (0, 0));

    let empty_token = AdminConfig::new().bearer_token("").router_for(fake.clone());
    let answer = call(
        &empty_token,
        "POST",
        "/api/services/billing/run-now",
        &[("authorization", "Bearer ")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(fake.runs("billing"), 0);

    for (router, mode) in [(&with_token, "token"), (&read_only, "read_only")] {
        assert_eq!(get(router, "/api/access").await.body["actions"], mode);
    }
}

#[tokio::test]
async fn the_scheme_name_is_case_insensitive_and_access_checks_the_token() {
    let fake = FakeBackend::new(&["billing"]);
    let router = AdminConfig::new()
        .bearer_token(TOKEN)
        .router_for(fake.clone());
    let lower = format!("bearer {TOKEN}");
    let upper = format!("BEARER {TOKEN}");
    for scheme in [&lower, &upper] {
        let answer = call(
            &router,
            "POST",
            "/api/services/billing/run-now",
            &[("authorization", scheme)],
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{scheme}: {}",
            answer.body
        );
    }
    assert_eq!(fake.runs("billing"), 2);

    let token_of = |headers: Vec<(&'static str, String)>| {
        let router = router.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let answer = call(&router, "GET", "/api/access", &headers).await;
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.body["actions"], "token");
            answer.body["token"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(token_of(vec![]).await, "missing");
    assert_eq!(
        token_of(vec![("authorization", lower.clone())]).await,
        "accepted"
    );
    assert_eq!(
        token_of(vec![("authorization", "Bearer guess".to_owned())]).await,
        "refused"
    );
    // Checking acts on nothing.
    assert_eq!(fake.runs("billing"), 2);
    let trusted = AdminConfig::new().trusted().router_for(fake.clone());
    assert_eq!(get(&trusted, "/api/access").await.body["token"], "not_used");
}

#[tokio::test]
async fn the_page_is_served_with_its_assets_wherever_the_router_is_mounted() {
    let fake = FakeBackend::new(&["billing"]);
    let page = get(&admin::router(manager()), "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.body.as_str().unwrap();
    assert!(html.contains(r#"<base href="/">"#));

    let app = Router::new().nest("/ops/admin", AdminConfig::new().router_for(fake));
    let nested = get(&app, "/ops/admin").await;
    assert_eq!(nested.status, StatusCode::OK);
    assert!(nested
        .body
        .as_str()
        .unwrap()
        .contains(r#"<base href="/ops/admin/">"#));
    let script = get(&app, "/ops/admin/dashboard.js").await;
    assert_eq!(
        script.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(script.body.as_str().unwrap().contains("api/services"));
    let style = get(&app, "/ops/admin/dashboard.css").await;
    assert_eq!(
        style.headers[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    for icon in [
        get(&app, "/ops/admin/favicon.ico").await,
        get(&admin::router(manager()), "/favicon.ico").await,
    ] {
        assert_eq!(icon.status, StatusCode::OK);
        assert_eq!(icon.headers[header::CONTENT_TYPE], "image/svg+xml");
        assert!(icon.body.as_str().unwrap().starts_with("<svg"));
    }
    assert!(html.contains(r#"<link rel="icon" href="favicon.ico""#));
    let list = get(&app, "/ops/admin/api/services").await;
    assert_eq!(list.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(list.body["services"][0]["name"], "billing");
    assert_eq!(time(&list.body["services"][0]["next_fire"]), at(60));
}
