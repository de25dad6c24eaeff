//! The router: the page, the JSON endpoints and the actions, all talking to an [`AdminBackend`].

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{NestedPath, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Access;
use super::backend::AdminBackend;
use super::error::{AdminError, ApiError};
use super::view::{RunOutcome, ScheduleView, ServiceDetail};
use crate::coordinator::{HistoryCursor, HistoryQuery};

/// How many fire times the detail lists.
const UPCOMING: usize = 10;
/// The most runs one history request may ask for.
pub(super) const MAX_HISTORY: usize = 1000;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");
/// A clock face in the dashboard's blue: browsers ask for `/favicon.ico` on every load, and an
/// SVG answers for any size.
const ICON: &str = include_str!("favicon.svg");

/// What every handler shares.
pub(super) struct AppState<B> {
    pub(super) backend: B,
    pub(super) access: Access,
    pub(super) history_limit: usize,
}

type Shared<B> = State<Arc<AppState<B>>>;

pub(super) fn router<B: AdminBackend>(state: AppState<B>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/dashboard.js", get(script))
        .route("/dashboard.css", get(style))
        .route("/favicon.ico", get(icon))
        .route("/api/access", get(access::<B>))
        .route("/api/services", get(list::<B>))
        .route("/api/services/{name}", get(detail::<B>))
        .route("/api/services/{name}/history", get(history::<B>))
        .route("/api/services/{name}/run-now", post(run_now::<B>))
        .route("/api/services/{name}/pause", post(pause::<B>))
        .route("/api/services/{name}/resume", post(resume::<B>))
        .route("/api/services/{name}/disable", post(disable::<B>))
        .route("/api/services/{name}/enable", post(enable::<B>))
        .route("/api/replicas", get(replicas::<B>))
        .route("/api/coordinator", get(coordinator::<B>))
        .route("/api/reload", post(reload::<B>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(no_store))
        .with_state(Arc::new(state))
}

/// Answers are live state: no cache (a browser's or a proxy's) may keep them.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The dashboard, with a `<base>` that makes its relative links work wherever the router is nested.
async fn page(
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
) -> Response {
    let base = match &nested {
        Ok(nested) => format!("{}/", nested.as_str().trim_end_matches('/')),
        Err(_) => "/".to_owned(),
    };
    let html = PAGE.replace("{{BASE}}", &escape_attribute(&base));
    asset(html, "text/html; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT.to_owned(), "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE.to_owned(), "text/css; charset=utf-8")
}

async fn icon() -> Response {
    asset(ICON.to_owned(), "image/svg+xml")
}

/// A page asset, with headers that keep it from being framed, sniffed or mixed with other origins'
/// content: everything it loads comes from this router.
fn asset(body: String, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'self'; form-action 'none'; frame-ancestors 'none'",
        ),
    ];
    (headers, body).into_response()
}

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The access mode, and what the request's own token is worth (so the page can say "token
/// refused" before the operator's first action).
async fn access<B: AdminBackend>(State(state): Shared<B>, headers: HeaderMap) -> Json<Value> {
    Json(json!({
        "actions": state.access.name(),
        "token": state.access.check_token(&headers).name(),
    }))
}

/// The services, and whether the coordinator answers: the page polls this, and shows its banner
/// from it even while every other read that needs the database fails.
async fn list<B: AdminBackend>(State(state): Shared<B>) -> Json<Value> {
    Json(json!({
        "now": chrono::Utc::now(),
        "services": state.backend.services(),
        "coordinator": state.backend.coordinator_health(),
    }))
}

/// Whether this replica can reach its coordinator; answered from memory, so it works while the
/// database is down.
async fn coordinator<B: AdminBackend>(State(state): Shared<B>) -> Json<Value> {
    Json(json!({
        "now": chrono::Utc::now(),
        "coordinator": state.backend.coordinator_health(),
    }))
}

async fn replicas<B: AdminBackend>(State(state): Shared<B>) -> Result<Json<Value>, ApiError> {
    let replicas = state.backend.replicas().await?;
    Ok(Json(json!({
        "now": chrono::Utc::now(),
        "replica": replicas.name,
        "name_shared_with": replicas.name_shared_with,
        "replicas": replicas.replicas,
    })))
}

async fn detail<B: AdminBackend>(
    State(state): Shared<B>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ServiceDetail>, ApiError> {
    let name = service_name(name)?;
    let backend = &state.backend;
    let service = backend
        .service(&name)
        .ok_or_else(|| AdminError::UnknownService(name.clone()))?;
    let upcoming = backend.upcoming(&name, UPCOMING).or_else(unknown_only)?;
    let description = backend.describe(&name).or_else(unknown_only)?;
    let (history, history_error) = match backend.history(&name, state.history_limit).await {
        Ok(history) => (history, None),
        Err(error @ AdminError::UnknownService(_)) => return Err(error.into()),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    Ok(Json(ServiceDetail {
        schedule: ScheduleView {
            text: service.schedule.clone(),
            zone: service.zone.clone(),
            description,
            upcoming,
        },
        service,
        history,
        history_error,
    }))
}

/// A 404 for an unknown service; any other failure of a part of the detail leaves that part empty.
fn unknown_only<T: Default>(error: AdminError) -> Result<T, ApiError> {
    match error {
        AdminError::UnknownService(_) => Err(error.into()),
        _ => Ok(T::default()),
    }
}

/// One page of a service's runs: `{"service", "runs", "next"}`, where `next` is the `before` of the
/// following page (`null` on the last one).
async fn history<B: AdminBackend>(
    State(state): Shared<B>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let name = service_name(name)?;
    let mut query = history_query(query.as_deref(), state.history_limit)?;
    let limit = query.limit;
    // One more than asked tells whether another page follows.
    query.limit += 1;
    let mut runs = state.backend.history_page(&name, &query).await?;
    let next = (runs.len() > limit).then(|| {
        runs.truncate(limit);
        runs.last().map(|run| {
            HistoryCursor {
                tick: run.tick,
                attempt: run.attempt,
                started: run.started,
            }
            .to_string()
        })
    });
    Ok(Json(
        json!({ "service": name, "runs": runs, "next": next.flatten() }),
    ))
}

/// The outcome names the history's `outcome` filter takes.
const OUTCOME_FILTERS: &str =
    "succeeded, failed, panicked, timed_out, aborted, abandoned, skipped, running";

/// `?limit=N&before=CURSOR&outcome=a,b` (each at most once); anything else is an error.
fn history_query(query: Option<&str>, default_limit: usize) -> Result<HistoryQuery, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message);
    let mut limit = None;
    let mut before = None;
    let mut outcomes = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decoded(raw)
            .ok_or_else(|| bad(format!("query parameter {key}: '{raw}' is not valid UTF-8")))?;
        let seen = match key {
            "limit" => {
                let parsed = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_HISTORY).contains(n));
                limit.replace(parsed.ok_or_else(|| {
                    bad(format!(
                        "query parameter limit: '{value}' is not a whole number from 1 to {MAX_HISTORY}"
                    ))
                })?).is_some()
            }
            "before" => {
                let cursor = value
                    .parse::<HistoryCursor>()
                    .map_err(|error| bad(format!("query parameter before: {error}")))?;
                before.replace(cursor).is_some()
            }
            "outcome" => {
                let mut names = Vec::new();
                for name in value.split(',').map(str::trim) {
                    let stored = match name {
                        "running" => "running",
                        _ => RunOutcome::from_name(name)
                            .map(RunOutcome::stored_name)
                            .ok_or_else(|| {
                                bad(format!(
                                    "query parameter outcome: '{name}' is not one of {OUTCOME_FILTERS}"
                                ))
                            })?,
                    };
                    names.push(stored.to_owned());
                }
                outcomes.replace(names).is_some()
            }
            _ => {
                return Err(bad(format!(
                    "unknown query parameter '{key}': the history takes limit, before and outcome"
                )))
            }
        };
        if seen {
            return Err(bad(format!("query parameter {key} is given twice")));
        }
    }
    let mut query = HistoryQuery::latest(limit.unwrap_or(default_limit));
    query.before = before;
    query.outcomes = outcomes.unwrap_or_default();
    Ok(query)
}

/// `%XX` escapes and `+` (a space) decoded; `None` when the result is not UTF-8.
fn percent_decoded(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if bytes.len() - i >= 3 => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

async fn run_now<B: AdminBackend>(
    State(state): Shared<B>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    act(&state, &headers, name, "run_now", B::run_now)
}

async fn pause<B: AdminBackend>(
    State(state): Shared<B>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    act(&state, &headers, name, "pause", B::pause)
}

async fn resume<B: AdminBackend>(
    State(state): Shared<B>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    act(&state, &headers, name, "resume", B::resume)
}

/// Checks access, then carries out an action on one service.
fn act<B: AdminBackend>(
    state: &AppState<B>,
    headers: &HeaderMap,
    name: Result<Path<String>, PathRejection>,
    action: &'static str,
    call: fn(&B, &str) -> Result<(), AdminError>,
) -> Result<Response, ApiError> {
    state.access.check(headers)?;
    let name = service_name(name)?;
    call(&state.backend, &name)?;
    tracing::info!(service = %name, action, "admin action");
    let status = if action == "run_now" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "service": name, "action": action }))).into_response())
}

async fn disable<B: AdminBackend>(
    State(state): Shared<B>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    act(&state, &headers, name, "disable", B::disable)
}

async fn enable<B: AdminBackend>(
    State(state): Shared<B>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    act(&state, &headers, name, "enable", B::enable)
}

async fn reload<B: AdminBackend>(
    State(state): Shared<B>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.access.check(&headers)?;
    let report = state.backend.reload()?;
    tracing::info!(changed = ?report.changed, "admin action: configuration reloaded");
    Ok(Json(json!({ "action": "reload", "reload": report })).into_response())
}

fn service_name(name: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    name.map(|Path(name)| name).map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            format!("the service name in the path is not valid: {rejection}"),
        )
    })
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}: actions take POST, everything else GET",
            uri.path()
        ),
    )
    .into_response();
    let allow = if is_action(uri.path()) { "POST" } else { "GET" };
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Whether a path is one of the actions' (which take POST only).
fn is_action(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["api", "reload"]
            | [
                "api",
                "services",
                _,
                "run-now" | "pause" | "resume" | "disable" | "enable"
            ]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_queries_are_checked() {
        assert_eq!(history_query(None, 50).unwrap(), HistoryQuery::latest(50));
        assert_eq!(history_query(Some("limit=5"), 50).unwrap().limit, 5);
        let filtered = history_query(Some("outcome=succeeded%2Crunning"), 50).unwrap();
        assert_eq!(filtered.outcomes, ["ok", "running"]);
        for bad in [
            "limit=0",
            "limit=abc",
            "limit=1001",
            "limit",
            "page=2",
            "outcome=",
            "before=1.2",
            "outcome=ok&outcome=ok",
            "limit=%FF",
        ] {
            assert!(history_query(Some(bad), 50).is_err(), "{bad}");
        }
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decoded("a%2Cb+c").as_deref(), Some("a,b c"));
        assert_eq!(percent_decoded("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decoded("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decoded("%FF"), None);
    }

    #[test]
    fn action_paths_are_told_from_reads() {
        assert!(is_action("/api/services/pause/pause"));
        assert!(is_action("/api/reload"));
        assert!(!is_action("/api/services/pause"));
        assert!(!is_action("/api/services/x/history"));
    }

    #[test]
    fn attributes_are_escaped() {
        assert_eq!(escape_attribute("/a\"<b>&"), "/a&quot;&lt;b&gt;&amp;");
    }
}
