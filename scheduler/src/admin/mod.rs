//! The operator's view (feature `admin`): a JSON admin API and a live dashboard, as an axum
//! [`Router`] to mount in your app, or served on its own with [`serve`].
//!
//! ```no_run
//! use scheduler::{admin::AdminConfig, ServiceManager};
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let manager = ServiceManager::from_registry()?;
//!     manager.start()?;
//!     // Read-only: anyone who can reach 127.0.0.1:8080 sees the services, nobody can act.
//!     tokio::spawn(scheduler::admin::serve(manager.clone(), "127.0.0.1:8080"));
//!
//!     // Or mount it in your own axum app, with actions for whoever has the token.
//!     let token = std::env::var("ADMIN_TOKEN")?;
//!     let app = axum::Router::new()
//!         .nest("/admin", AdminConfig::new().bearer_token(token).router(manager.clone()));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Endpoints
//! Paths are relative to where the router is mounted. Every answer is JSON, errors included:
//! `{"error": "unknown service 'x'", "code": "unknown_service"}`.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /` | the dashboard page (its script and style are `dashboard.js`, `dashboard.css`; its icon, an SVG, is `favicon.ico`) |
//! | `GET /api/access` | `{"actions": "read_only" \| "token" \| "trusted", "token": "accepted" \| "refused" \| "missing" \| "not_used"}`: the mode, and whether the request's own `Authorization` token would be accepted |
//! | `GET /api/services` | `{"now": ..., "services": [`[`ServiceView`]`, ...], "coordinator": <as in api/coordinator>}` |
//! | `GET /api/services/{name}` | a [`ServiceDetail`]: status, schedule with its next 10 fire times, latest runs |
//! | `GET /api/services/{name}/history?limit=N&outcome=O,...&before=C` | `{"service": ..., "runs": [`[`RunView`]`, ...], "next": C \| null}`: newest first, N ≤ 1000 (the [`history_limit`](AdminConfig::history_limit) by default); `outcome` keeps runs with one of `succeeded`, `failed`, `panicked`, `timed_out`, `aborted`, `abandoned`, `skipped`, `running`; `before` is the `next` of the previous page (see [`HistoryQuery`](crate::coordinator::HistoryQuery) for the order) |
//! | `POST /api/services/{name}/run-now` | 202 `{"service": ..., "action": "run_now"}` |
//! | `POST /api/services/{name}/pause` | 200 `{"service": ..., "action": "pause"}` |
//! | `POST /api/services/{name}/resume` | 200 `{"service": ..., "action": "resume"}` |
//! | `POST /api/services/{name}/disable` | 200 `{"service": ..., "action": "disable"}`: cluster-wide, as [`ServiceManager::disable`] |
//! | `POST /api/services/{name}/enable` | 200 `{"service": ..., "action": "enable"}` |
//! | `GET /api/replicas` | `{"now": ..., "replica": <this replica's name>, "name_shared_with": <instance> \| null, "replicas": [`[`ReplicaView`]`, ...]}`; 501 for a backend that knows none |
//! | `GET /api/coordinator` | `{"now": ..., "coordinator":` [`CoordinatorHealth`](crate::health::CoordinatorHealth) ` \| null}`: `{"state": "unknown" \| "reachable" \| "unreachable", "since", "last_error", "last_error_at", "errors"}`, answered from memory (it works while the database is down); `null` without a coordinator |
//! | `POST /api/reload` | `{"action": "reload", "reload":` [`ReloadView`]`}` |
//!
//! Statuses: 404 for an unknown service or path, 405 for a wrong method (actions are never done by
//! `GET`), 400 for a bad query or path, 401 for a missing or wrong token, 403 for a read-only
//! router or a cross-site request, 409 when a run is already going, 422 for a rejected
//! configuration, 501 for what the runtime cannot do yet.
//!
//! # Who may act
//! Reading needs nothing: bind the server to `127.0.0.1` (as the examples do), or put the router
//! behind your app's own authentication, unless the service list may be public. Actions are
//! **refused by default**; [`AdminConfig::bearer_token`] accepts them with
//! `Authorization: Bearer <token>` (the scheme name in any case: `bearer` works too), and [`AdminConfig::trusted`] accepts them without (for a
//! router already behind your own authentication). Requests a browser marks as coming from another
//! site are refused in every mode; the dashboard sends the token in a header, never a cookie, so
//! other sites cannot forge its actions.
//!
//! # The dashboard
//! One page embedded in the binary (no CDN, no build step): a live table of the services, polled
//! every second, with state badges (a word and an icon drawn in CSS, not only a colour, and no font
//! glyph that a server without emoji fonts would show as a box), the next and last run, run counts,
//! skipped ticks by kind (overlap, paused, misfired, claimed too late; dropped retries and ticks run
//! by other replicas), each explained in a tooltip, the detail and a legend, and a sparkline of the
//! latest outcomes; a detail view with the schedule in plain English, the next fire times and the
//! run history (20 runs a page, older pages and a filter by outcome; every attempt of a retried
//! tick a row of its own, with its error text); *Run now*, *Pause* / *Resume* and *Disable* /
//! *Enable* buttons; a replicas panel; a banner while the replica cannot reach its coordinator
//! (from the `coordinator` of `api/services`); and a field for the operator's token (kept in the tab's `sessionStorage`, and checked with
//! `/api/access` as soon as it is set: a wrong one is called refused at once). It works at phone
//! width.
//!
//! # Your own backend
//! The router only talks to an [`AdminBackend`]; [`ServiceManager`] is one.
//! [`router_for`](AdminConfig::router_for) serves any other, and the view types are `Serialize` for
//! an endpoint of your own.

mod auth;
mod backend;
mod error;
mod replicas;
mod routes;
mod view;

use std::fmt;
use std::io;

use axum::Router;
use tokio::net::{TcpListener, ToSocketAddrs};

pub use backend::AdminBackend;
pub use error::AdminError;
pub use replicas::{ReplicaView, ReplicasView};
pub use view::{
    HeldView, ReloadView, RunOutcome, RunView, ScheduleView, ServiceDetail, ServiceView, State,
};

use crate::manager::ServiceManager;
use auth::Access;

/// The read-only admin router of `manager`: the dashboard and the JSON API, with every action
/// refused. [`AdminConfig`] enables actions.
pub fn router(manager: ServiceManager) -> Router {
    AdminConfig::new().router(manager)
}

/// Serves [`router`]`(manager)` (read-only) on `addr` until the task is dropped; pass a loopback
/// address such as `127.0.0.1:8080` unless the service list may be seen from elsewhere.
///
/// # Errors
/// When `addr` cannot be bound, or accepting connections fails.
pub async fn serve(manager: ServiceManager, addr: impl ToSocketAddrs) -> io::Result<()> {
    AdminConfig::new().serve(manager, addr).await
}

/// How the admin router treats actions, and how much history it shows.
///
/// ```
/// use scheduler::{admin::AdminConfig, ServiceManager};
///
/// let manager = ServiceManager::new();
/// let read_only = scheduler::admin::router(manager.clone());
/// let with_token = AdminConfig::new().bearer_token("a long random secret").router(manager.clone());
/// let behind_your_auth = AdminConfig::new().trusted().router(manager);
/// # let _ = (read_only, with_token, behind_your_auth);
/// ```
#[derive(Clone)]
#[must_use]
pub struct AdminConfig {
    access: Access,
    history_limit: usize,
}

impl AdminConfig {
    /// Read-only, with the latest 50 runs in a service's detail.
    pub fn new() -> Self {
        AdminConfig {
            access: Access::ReadOnly,
            history_limit: 50,
        }
    }

    /// Accepts actions that carry `Authorization: Bearer <token>` (whitespace around the token is
    /// ignored). An empty token accepts nothing.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.access = Access::Token(token.into().trim().into());
        self
    }

    /// Accepts actions without a token (cross-site requests are still refused): for a router that
    /// your app already puts behind its own authentication.
    pub fn trusted(mut self) -> Self {
        self.access = Access::Trusted;
        self
    }

    /// How many of a service's latest runs its detail shows, and the history endpoint answers
    /// without a `limit` (1 to 1000; 50 by default).
    pub fn history_limit(mut self, runs: usize) -> Self {
        self.history_limit = runs.clamp(1, routes::MAX_HISTORY);
        self
    }

    /// The router of `manager`.
    pub fn router(self, manager: ServiceManager) -> Router {
        self.router_for(manager)
    }

    /// The router of any [`AdminBackend`].
    pub fn router_for<B: AdminBackend>(self, backend: B) -> Router {
        routes::router(routes::AppState {
            backend,
            access: self.access,
            history_limit: self.history_limit,
        })
    }

    /// Binds `addr` and serves the router of `manager` there until the task is dropped.
    ///
    /// # Errors
    /// When `addr` cannot be bound, or accepting connections fails.
    pub async fn serve(self, manager: ServiceManager, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.serve_on(manager, TcpListener::bind(addr).await?).await
    }

    /// Serves the router of `manager` on a listener you bound (to print its address first, say).
    ///
    /// # Errors
    /// When accepting connections fails.
    pub async fn serve_on(self, manager: ServiceManager, listener: TcpListener) -> io::Result<()> {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, actions = self.access.name(), "admin dashboard at http://{address}/");
        }
        axum::serve(listener, self.router(manager)).await
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig::new()
    }
}

impl fmt::Debug for AdminConfig {
    /// Shows the mode, never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("actions", &self.access.name())
            .field("history_limit", &self.history_limit)
            .finish()
    }
}
