//! Background services for tokio applications: periodic and cron jobs declared with an attribute,
//! collected from every linked crate, run without overlap, isolated from each other's failures, and
//! stopped cleanly.
//!
//! # Quick start
//! ```no_run
//! use scheduler::{background_service, JobContext, ServiceManager};
//!
//! #[background_service(interval = 30)] // every 30 s (fractions allowed: 0.5)
//! async fn refresh_cache() -> anyhow::Result<()> {
//!     Ok(())
//! }
//!
//! #[background_service(interval = "*/5 * * * *", on_start)] // cron; also once right at start
//! fn compact_files() {} // plain fns run on tokio's blocking pool
//!
//! #[background_service(interval = "0 9 * * MON-FRI", tz = "Europe/Berlin", name = "daily-report")]
//! async fn report(ctx: JobContext) {
//!     tracing::info!(tick = %ctx.tick(), "sending the report");
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     // Shows each run's outcome, failures with their error, and warnings (see "Logging").
//!     tracing_subscriber::fmt()
//!         .with_writer(std::io::stderr)
//!         .with_env_filter(
//!             tracing_subscriber::EnvFilter::try_from_default_env()
//!                 .unwrap_or_else(|_| "info".into()),
//!         )
//!         .init();
//!     let manager = ServiceManager::from_registry()?; // every service linked into the binary
//!     manager.start()?;
//!     tokio::signal::ctrl_c().await?;
//!     manager.stop().await; // waits for running jobs
//!     Ok(())
//! }
//! ```
//!
//! # The attribute
//! `#[background_service(...)]` takes:
//!
//! | argument | meaning |
//! |---|---|
//! | `interval = 30` / `interval = 0.5` | a fixed period in seconds |
//! | `interval = "*/5 * * * *"` | a cron expression (see [`Schedule`] for the exact grammar) |
//! | `tz = "Europe/Berlin"` | the time zone of a cron expression; UTC by default |
//! | `on_start` | also run once right when the manager starts |
//! | `name = "daily-report"` | the service's name; by default the function's module path and name |
//! | `once_after = 30` | instead of `interval`: run once, 30 s after start (`0`: right at start) |
//! | `timeout = 30` | cancel a run after 30 s ([`Outcome::TimedOut`], a failure); see [`Service::timeout`] |
//! | `retries = 3` | retry a failed run up to 3 times, as attempts of the same tick; see [`Service::retries`] |
//! | `retry_backoff = 1`, `retry_backoff_max = 60` | the backoff before the first retry and its cap (1 s, 60 s by default); only with `retries` |
//! | `jitter = 5` | start each run a random delay in `[0, 5)` s after its tick; see [`Service::jitter`] |
//! | `misfire = "skip"` / `"coalesce"` / `"all"` | what to do with ticks that could not start on time; see [`Misfire`] |
//! | `misfire_limit = 10` | with `misfire = "all"`: at most this many missed ticks run ([`Misfire::DEFAULT_LIMIT`] by default) |
//! | `misfire_grace = 1` | how late a run may start before its tick counts as misfired (1 s by default) |
//!
//! Numbers of seconds may have fractions. `timeout`, `retries` and the backoff apply to `once_after`
//! services too; `jitter` and the misfire arguments do not, and are a compile error there.
//! [`ServiceManager::policies`] shows what a service runs with.
//!
//! The function may be `async` or not, take a [`JobContext`] and [`State<T>`] resources (in any
//! order, or nothing), and return `()` or `Result<(), E>` with `E: Display`. Everything the macro can see is checked when you compile: a
//! malformed or never-firing cron expression, a zero interval, an unknown time zone, a signature it
//! cannot call, a policy out of range (`timeout = 0`, `retries = -1`, `misfire = "coalese"`) or
//! without what it shapes (`misfire_limit` without `misfire = "all"`). The function itself stays an
//! ordinary function you can call.
//!
//! # Sharing the application's state
//! Give the manager its resources with [`ServiceManagerBuilder::state`] and take them as
//! [`State<T>`] parameters: a job needs no global to reach a database pool or a client.
//!
//! ```
//! use scheduler::{background_service, JobContext, ServiceManager, State};
//!
//! struct Db; // e.g. a `sqlx::PgPool`
//! struct Http; // e.g. a `reqwest::Client`
//!
//! #[background_service(interval = 60)]
//! async fn sync(ctx: JobContext, db: State<Db>, http: State<Http>) -> anyhow::Result<()> {
//!     let (_db, _http): (&Db, &Http) = (&db, &http);
//!     tracing::info!(service = ctx.name(), "syncing");
//!     Ok(())
//! }
//!
//! let manager = ServiceManager::builder()
//!     .state(Db)
//!     .state(Http)
//!     .on_failure_with(|failure, manager| {
//!         let _ = manager.pause(&failure.service); // the hook reaches the manager, no global
//!     })
//!     .with_registered_services()
//!     .build()?;
//! # drop(manager);
//! let missing = ServiceManager::builder().state(Db).with_registered_services().build();
//! assert!(matches!(missing, Err(scheduler::Error::MissingState { .. })));
//! # Ok::<(), scheduler::Error>(())
//! ```
//!
//! Each parameter is resolved once, when the service joins the manager ([`Error::MissingState`]
//! names every service and type missing); a fire costs one `Arc` clone per `State` parameter. Run-time
//! services take state through [`Service::from_fn`]; hooks through
//! [`on_failure_with`](ServiceManagerBuilder::on_failure_with) and
//! [`on_event_with`](ServiceManagerBuilder::on_event_with).
//!
//! A service can also be an object: `#[background_service(...)]` on an `impl` block whose
//! `job(&self, ctx: JobContext)` method (async or not; the context optional) runs at each tick, the
//! object given with `.state(MyService { .. })`. It runs as a `State<MyService>` handler would.
//!
//! ```
//! use scheduler::{background_service, ServiceManager};
//!
//! struct Poller {
//!     url: String,
//! }
//!
//! #[background_service(interval = 30)]
//! impl Poller {
//!     async fn job(&self) {
//!         tracing::info!(url = %self.url, "polling");
//!     }
//! }
//!
//! let manager = ServiceManager::builder()
//!     .state(Poller { url: "https://example.com".into() })
//!     .with_registered_services()
//!     .build()?;
//! # drop(manager);
//! # Ok::<(), scheduler::Error>(())
//! ```
//!
//! # Semantics
//! - **Ticks** are instants on the schedule: cron ticks follow the wall clock of their zone (with
//!   cron's DST rules, see [`Schedule`]); fixed periods fall on `start + k × period`, so they never
//!   drift, and a late run does not shift the next tick.
//! - **`on_start`** runs the service once when it is started, then at its ticks as usual.
//! - **No overlap**: a tick that comes while the service's previous run is still going is skipped,
//!   counted in [`ServiceStatus::skipped`] and logged; the next run is at the first tick after the
//!   run ends.
//! - **Bounded pool**: at most [`max_concurrent_jobs`](ServiceManagerBuilder::max_concurrent_jobs)
//!   jobs run at once (default: the number of CPUs the process may use); a due service waits for a
//!   slot, shown as [`ServiceState::WaitingForSlot`] and by the gauge `scheduler_waiting_for_slot`.
//! - **Failures never stop the schedule**: a job that returns `Err` or panics is logged with
//!   `tracing` (service, tick, error, duration), passed to the
//!   [`on_failure`](ServiceManagerBuilder::on_failure) hook, and runs again at its next tick (or
//!   sooner, as a retry of the same tick, with [`Service::retries`]).
//! - **Stopping**: [`ServiceManager::stop_service`] unschedules one service and then
//!   [waits](StopMode::Wait) for its run or [aborts](StopMode::Abort) it (cooperatively: the
//!   context is cancelled, then after [`abort_grace`](ServiceManagerBuilder::abort_grace) the job is
//!   dropped); [`ServiceManager::stop`] does that for all, with an optional deadline after which it
//!   aborts. A job may stop its own service, or the manager, without waiting for itself.
//! - **Pause, resume, run now**: [`ServiceManager::pause`], [`ServiceManager::resume`],
//!   [`ServiceManager::run_now`] (never a second run at once: [`Error::AlreadyRunning`]).
//! - **Wall clock**: the dispatcher re-reads the [`Clock`] at least every second, so ticks fire
//!   within about a second after a suspend or a forward jump, and never early after a backward one.
//! - **Reload**: [`ServiceManager::add_service`] with a name in use replaces that service; no tick
//!   of the old definition runs once the call returns. Counters are kept, and `on_start` does not
//!   run again (it means the manager's start).
//! - **Observability**: each run is a `tracing` span `service_run` with the service name and tick;
//!   [`ServiceManager::services`] reports state, next tick, last run, and counts;
//!   [`on_event`](ServiceManagerBuilder::on_event) receives every [`RunEvent`] (a run's start and
//!   end, a skipped tick with its [`SkipReason`]); and the `metrics` feature reports them as metrics.
//!
//! # Metrics
//! With the `metrics` feature (on by default), through the [`metrics`](https://docs.rs/metrics)
//! facade; install a recorder before [`ServiceManager::start`], since each service registers its
//! metrics at its first run. Every series has a `service` label:
//!
//! | name | kind | more labels |
//! |---|---|---|
//! | `scheduler_runs_total` | counter | `outcome`: `succeeded`, `failed`, `panicked`, `timed_out`, `aborted`, `lease_lost` |
//! | `scheduler_run_duration_seconds` | histogram | |
//! | `scheduler_run_lag_seconds` | histogram (run start minus tick, scheduled runs) | |
//! | `scheduler_skipped_ticks_total` | counter | `reason`: `overlap`, `paused`, `misfire`, `claimed_elsewhere`, `late`, `retry_dropped` |
//! | `scheduler_running_jobs` | gauge | |
//! | `scheduler_last_success_timestamp_seconds` | gauge (Unix time) | |
//! | `scheduler_next_run_timestamp_seconds` | gauge (Unix time; 0 when no tick is left) | |
//! | `scheduler_waiting_for_slot` | gauge (1 while a due run waits for a worker: [`ServiceState::WaitingForSlot`]) | |
//!
//! With a coordinator, two more, labelled `replica` (its name) rather than `service`:
//! `scheduler_coordinator_up` (gauge: 1 while the coordinator answers, 0 while its calls fail; set
//! from the first answer on) and `scheduler_coordinator_errors_total` (counter: calls that failed).
//! [`ServiceManager::coordinator_health`] says the same, with the error and since when.
//!
//! # Linking
//! Services are collected from every crate linked into the binary, and a crate that the binary's
//! code never mentions is not linked. A crate of jobs needs one mention, `use my_jobs_crate as _;`;
//! `#![warn(unused_crate_dependencies)]` catches a forgotten one at compile time, and a manager that
//! starts with no services logs a warning naming this fix.
//!
//! # Logging
//! Through `tracing`: at INFO, the services and their schedules at start and one summary line a
//! minute with the runs since the last; at DEBUG, one line per run outcome (each run is a span
//! `service_run` with the service, tick and trigger); failures at ERROR with their error text,
//! aborts and skipped ticks at WARN. With no subscriber installed, failures and an empty registry
//! are printed to stderr instead, so they never vanish.
//!
//! # One-shot services
//! [`Service::once_after`] and [`Service::once_at`] (or `once_after = N` in the attribute) run a job
//! once; afterwards the service shows as [`ServiceState::Finished`] with its outcome. Stopping it
//! before it fires cancels it.
//!
//! # Configuration
//! Operators can override each service's `enabled`, `interval`, `tz`, `on_start`, `paused` and job
//! policies (`timeout`, `retries`, `retry_backoff`, `retry_backoff_max`, `jitter`, `misfire`,
//! `misfire_limit`, `misfire_grace`), and the manager's `max_concurrent_jobs` and `stop_deadline`,
//! from a TOML file
//! ([`config_file`](ServiceManagerBuilder::config_file)) and environment variables
//! ([`config_env`](ServiceManagerBuilder::config_env), names from [`config::env_var_name`]): attribute < file
//! < environment. Everything is validated at once ([`config::ConfigError`] lists every problem), and
//! [`ServiceManager::reload_config`] re-registers only the services whose settings changed.
//!
//! # Several replicas
//! With a [`Coordinator`] ([`ServiceManagerBuilder::coordinator`]), replicas of an app claim each
//! tick before running it, so each tick runs on exactly one replica, and a long run on one replica
//! blocks the service on all of them. See the [`coordinator`] docs for leases and [`Delivery`].
//!
//! # Testing your services
//! Give the manager a [`TokioClock`] and run under tokio's paused time: ticks then happen exactly,
//! and instantly. See [`TokioClock`] for an example.

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Bottom: plain types and primitives.
mod cancel;
pub mod clock;
mod error;
pub mod event;
mod resource;
pub mod status;
// Definitions.
pub mod handler;
mod job;
pub mod policy;
mod registry;
mod send_check;
mod service;
// The state machine of one service.
mod state;
mod state_file;
// Coordination across replicas.
mod cluster;
mod control;
pub mod coordinator;
pub mod health;
// The engine: timer side, queue, worker side.
mod deadline_heap;
mod dispatcher;
mod engine;
mod meter;
mod pool;
mod queue;
mod timer;
mod worker;
// Configuration and the manager on top.
#[cfg(feature = "admin")]
pub mod admin;
pub mod config;
mod manager;

pub use error::Error;
pub use event::RunEvent;
pub use job::JobContext;
pub use manager::{ServiceManager, ServiceManagerBuilder, StopMode};
pub use resource::State;
pub use scheduler_core::{Schedule, ScheduleError};
pub use scheduler_macros::background_service;
pub use service::{Delivery, Service};
pub use status::{Outcome, ServiceState, ServiceStatus};

#[cfg(feature = "postgres")]
#[doc(hidden)]
pub use coordinator::PostgresCoordinator;
/// The names of 0.1.0's larger crate root, kept so that code written against it still compiles;
/// new code uses the [`config`] and [`coordinator`] modules.
#[doc(hidden)]
pub use {
    clock::{Clock, SystemClock, TokioClock},
    config::{env_var_name, ConfigError, ConfigProblem, ConfigReload, Origin},
    coordinator::{
        outcome_parts, Claim, ClaimPolicy, Coordinator, CoordinatorError, FinishedRun,
        InMemoryCoordinator, RunRecord, Ticket,
    },
    event::SkipReason,
    job::IntoJobResult,
    policy::{Misfire, ServicePolicies},
    scheduler_core::{Field, FieldProblem},
    status::{Failure, HeldElsewhere, Trigger},
};

/// What the `#[background_service]` expansion refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::handler::{assert_job_param, Binder};
    pub use crate::job::{BoxJobFuture, IntoJobResult};
    pub use crate::registry::{RegisteredJob, RegisteredPolicies, RegisteredTiming, Registration};
    pub use crate::resource::Resources;
    pub use crate::send_check::job_future;
    pub use inventory;
    pub use std::boxed::Box;
}
