//! [`ServiceManager`]: adds, starts, stops, reloads and reports services.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::TimeDelta;

use tokio::runtime::Handle;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, Base, ConfigReload, ConfigSources, Effective, EnvSource};
use crate::control::{ControlTarget, Switch};
use crate::coordinator::{
    ControlRecord, Coordinator, Heartbeat, NameUse, ReplicaRecord, RunRecord,
};
use crate::engine::{Engine, EventHook, FailureHook, Hooks};
use crate::error::Error;
use crate::event::{RunEvent, Tally};
use crate::policy::{Policies, ServicePolicies};
use crate::pool::MAX_WORKERS;
use crate::registry;
use crate::resource::{Resources, State};
use crate::service::Service;
use crate::state::{Next, Phase as SlotPhase, RunNowRefusal, Slot, SlotState, Then};
use crate::state_file::StateFile;
use crate::status::{Failure, Origin, ServiceState, ServiceStatus};
use crate::{dispatcher, worker, Schedule};

const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_HISTORY: usize = 100;
/// A bound on [`ServiceManagerBuilder::history_len`], so an absurd value cannot exhaust memory.
const MAX_HISTORY: usize = 10_000;

/// How [`ServiceManager::stop_service`] treats a run that is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Let the run finish, then return.
    Wait,
    /// Cancel the run: its [`JobContext`](crate::JobContext) is cancelled at once, and the run has
    /// the [`abort_grace`](ServiceManagerBuilder::abort_grace) to return. Then an async job is
    /// dropped; a blocking job cannot be killed, so the manager stops waiting for it, and its worker
    /// slot stays taken until its thread returns.
    Abort,
}

/// Runs background services: every `#[background_service]` linked into the binary, and any added at
/// run time.
///
/// Cloning is cheap and gives another handle to the same manager. Every method may be called from
/// anywhere, concurrently, including from inside a running job (a job that stops its own service
/// finishes its run; the stop completes when it returns).
///
/// ```no_run
/// use scheduler::ServiceManager;
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let manager = ServiceManager::from_registry()?; // every service linked into the binary
///     manager.start()?;
///     tokio::signal::ctrl_c().await?;
///     manager.stop().await; // waits for running jobs
///     Ok(())
/// }
/// ```
///
/// # Phases
/// ```text
///  Built ──start()──▶ Running ──stop()──▶ Stopped ──start()──▶ Running ...
/// ```
/// Services added while the manager is not running wait, as [`ServiceState::NotStarted`], for the
/// next [`start`](Self::start).
#[derive(Clone)]
pub struct ServiceManager {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    /// What `State<T>` parameters are bound to; fixed when the manager is built.
    resources: Resources,
    /// The phase and the services, under one lock (taken before any slot's lock, never after).
    state: Mutex<ManagerState>,
    config: Mutex<ConfigState>,
    /// Tells this manager apart from any other process using the same replica name.
    instance: String,
}

/// An id no other manager has: the process id, the time, and a counter for managers of one
/// process.
fn new_instance() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}-{n}", std::process::id())
}

/// The manager's own state machine; see [`ServiceManager`]'s "Phases".
enum Phase {
    Built,
    /// Started on this runtime: services added now are scheduled at once.
    Running(Handle),
    Stopped,
}

struct ManagerState {
    phase: Phase,
    services: BTreeMap<Arc<str>, Arc<Slot>>,
    stop_deadline: Option<Duration>,
    max_concurrent_jobs: usize,
    /// Services [`ServiceManager::add_service`] could not add because their `State` types are
    /// missing, with those types: [`ServiceManager::start`] refuses to start while any is here (a
    /// later add of the same name that binds removes it).
    unbound: BTreeMap<String, Vec<&'static str>>,
    /// When the last `start()` began, for the heartbeat.
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    replica_version: String,
}

/// What configuration applies to: the services as the code defines them, and what was last applied.
#[derive(Default)]
struct ConfigState {
    sources: ConfigSources,
    bases: BTreeMap<String, Base>,
    applied: BTreeMap<String, Effective>,
}

type ManagerFailureHook = dyn Fn(&Failure, &ServiceManager) + Send + Sync;
type ManagerEventHook = dyn Fn(&RunEvent, &ServiceManager) + Send + Sync;

/// A hook as the application gave it: on its own, or wanting the manager too.
enum Hook<Plain: ?Sized, WithManager: ?Sized> {
    Plain(Arc<Plain>),
    WithManager(Arc<WithManager>),
}

/// Configures a [`ServiceManager`]; from [`ServiceManager::builder`].
#[must_use]
pub struct ServiceManagerBuilder {
    clock: Arc<dyn Clock>,
    max_concurrent_jobs: Option<usize>,
    stop_deadline: Option<Duration>,
    on_failure: Option<Hook<FailureHook, ManagerFailureHook>>,
    on_event: Option<Hook<EventHook, ManagerEventHook>>,
    resources: Resources,
    registered: bool,
    config: ConfigSources,
    coordinator: Option<Arc<dyn Coordinator>>,
    lease: Duration,
    claim_ahead: Duration,
    abort_grace: Duration,
    history_len: usize,
    state_file: Option<std::path::PathBuf>,
    replica_version: String,
}

impl ServiceManagerBuilder {
    /// The application's version, as this replica's heartbeat shows it in
    /// [`ServiceManager::replicas`] (default: this crate's version). Useful during a rolling
    /// deploy, to see which replicas run what.
    pub fn replica_version(mut self, version: impl Into<String>) -> Self {
        self.replica_version = version.into();
        self
    }

    /// Remembers, in the file at `path`, the last tick each service that asks for catch-up
    /// ([`Service::misfire`] set explicitly to [`Misfire::Coalesce`](crate::Misfire::Coalesce) or
    /// [`Misfire::All`](crate::Misfire::All)) started, so that after a restart the ticks missed
    /// while the process was down are caught up by that policy. For single-node applications; with
    /// a [`coordinator`](Self::coordinator) the cluster's history is used instead, and the file is
    /// neither read nor written (nor checked: a corrupt one is no error then). Other services are
    /// not written.
    ///
    /// The catch-up happens when a service is scheduled by [`start`](ServiceManager::start), or
    /// added to a started manager; not on a reload, a restart of the service or a resume.
    ///
    /// The file is read by [`build`](Self::build); a file that does not exist yet is an empty one
    /// (its directory must exist). It is replaced atomically (written aside, synced, renamed)
    /// after such a service starts a run, and when the manager stops; a write that fails is logged
    /// once, and retried at the next run and at stop. A fixed period without an anchor of its own
    /// keeps the grid of the remembered tick across the restart.
    ///
    /// ```no_run
    /// # use scheduler::{Misfire, Schedule, Service, ServiceManager};
    /// let manager = ServiceManager::builder()
    ///     .state_file("/var/lib/my-app/scheduler.state")
    ///     .build()?; // an unreadable or corrupt file is an error here
    /// manager.add_service(
    ///     "nightly-report",
    ///     Service::new("0 3 * * *".parse::<Schedule>()?, |_ctx| async {})
    ///         .misfire(Misfire::Coalesce), // runs once at start if 03:00 passed while down
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// How many finished runs each service keeps for [`ServiceManager::history`] (the admin page
    /// pages through them, and its sparkline draws the latest 20): 100 by default, 0 to keep none,
    /// at most 10 000. Each attempt of a retried tick is one run. A service keeps nothing until it
    /// runs.
    pub fn history_len(mut self, runs: usize) -> Self {
        self.history_len = runs.min(MAX_HISTORY);
        self
    }

    /// How long a cancelled run may take to return before it is dropped: after
    /// [`StopMode::Abort`], or when a stop deadline runs out. 5 s by default.
    ///
    /// ```text
    ///  abort         ctx.cancelled() completes             grace ends
    ///  ──┼───────────────────── job wraps up ──────────────────┼──▶ still running? an async job is
    ///    │                                                       │    dropped; a blocking job is
    ///                                                                 abandoned (its slot stays
    ///                                                                 taken until its thread returns)
    /// ```
    ///
    /// With [`stop_within`](ServiceManager::stop_within)`(d)` the cancellation comes `grace` before
    /// `d` (at once if `d` is shorter), so the stop still returns by `d`.
    pub fn abort_grace(mut self, grace: Duration) -> Self {
        self.abort_grace = grace;
        self
    }

    /// At most this many jobs run at once; a tick beyond that waits for a slot (and shows as
    /// [`ServiceState::WaitingForSlot`](crate::ServiceState::WaitingForSlot)). Defaults to the number
    /// of CPUs the process may use ([`std::thread::available_parallelism`], 1 if unknown): on a
    /// 2-CPU container, two jobs at once, so a third due service waits. Jobs that mostly wait on
    /// I/O can take a larger pool; at most 65 536.
    pub fn max_concurrent_jobs(mut self, jobs: usize) -> Self {
        self.max_concurrent_jobs = Some(jobs);
        self
    }

    /// How long [`ServiceManager::stop`] waits for running jobs before aborting them. Without it,
    /// `stop` waits as long as they take.
    pub fn stop_deadline(mut self, deadline: Duration) -> Self {
        self.stop_deadline = Some(deadline);
        self
    }

    /// Where "now" comes from; [`SystemClock`] by default, [`TokioClock`](crate::TokioClock) in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Called with every failed run (an `Err`, a panic or a [timeout](Service::timeout)), after it
    /// is logged: the place to raise an alert. A blocking job that ignores its timeout is reported
    /// when its grace ends, not when (or if) its thread returns. It runs on the service's task, so
    /// it should be quick; a panic in it is caught and logged.
    ///
    /// ```
    /// # use scheduler::ServiceManager;
    /// let manager = ServiceManager::builder()
    ///     .on_failure(|failure| eprintln!("ALERT: {failure}"))
    ///     .build()?;
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn on_failure(mut self, hook: impl Fn(&Failure) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Hook::Plain(Arc::new(hook)));
        self
    }

    /// Like [`on_failure`](Self::on_failure), with a handle to the manager as well, so the hook
    /// needs no global to act on it or to reach the application's [state](ServiceManager::state).
    /// It replaces an earlier `on_failure` (and `on_failure` replaces it).
    ///
    /// The hook holds no reference to the manager between calls (it does not keep it alive); a
    /// failure that ends after every handle of the manager was dropped is logged but not passed
    /// to it.
    ///
    /// ```
    /// # use scheduler::{Schedule, Service, ServiceManager, State};
    /// struct Alerts {
    ///     channel: String,
    /// }
    ///
    /// let manager = ServiceManager::builder()
    ///     .state(Alerts { channel: "#ops".into() })
    ///     .on_failure_with(|failure, manager| {
    ///         let alerts: Option<State<Alerts>> = manager.state();
    ///         if let Some(alerts) = alerts {
    ///             eprintln!("{}: {failure}", alerts.channel);
    ///         }
    ///         // Give it a rest until an operator resumes it.
    ///         let _ = manager.pause(&failure.service);
    ///     })
    ///     .build()?;
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn on_failure_with(
        mut self,
        hook: impl Fn(&Failure, &ServiceManager) + Send + Sync + 'static,
    ) -> Self {
        self.on_failure = Some(Hook::WithManager(Arc::new(hook)));
        self
    }

    /// Gives the application's services a resource of type `T` (a database pool, an HTTP client,
    /// settings): a job function takes it as a [`State<T>`] parameter, and hooks reach it through
    /// [`ServiceManager::state`]. One value per type: a second `state` of the same type replaces
    /// the first (so a test can swap in a fake); wrap two values of one type in types of their own
    /// to keep both.
    ///
    /// Every `State<T>` parameter is looked up once, when the service joins the manager
    /// ([`build`](Self::build) for `#[background_service]`s, [`ServiceManager::try_add_service`]
    /// for run-time ones); a fire then costs one `Arc` clone per `State` parameter. A type nobody gave is
    /// an error there ([`Error::MissingState`], naming every service and every type), never a
    /// failure at the first tick.
    ///
    /// ```no_run
    /// use scheduler::{background_service, JobContext, ServiceManager, State};
    ///
    /// struct Db; // e.g. a `sqlx::PgPool`
    ///
    /// #[background_service(interval = 60)]
    /// async fn sync(ctx: JobContext, db: State<Db>) -> anyhow::Result<()> {
    ///     let _db: &Db = &db;
    ///     Ok(())
    /// }
    ///
    /// # async fn run() -> anyhow::Result<()> {
    /// let manager = ServiceManager::builder()
    ///     .state(Db)
    ///     .with_registered_services()
    ///     .build()?; // without `.state(Db)`: "missing state: service '...::sync' takes State<...Db>"
    /// manager.start()?;
    /// # Ok(()) }
    /// ```
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        if let Some(replaced) = self.resources.insert(value) {
            tracing::debug!(
                r#type = replaced,
                "state of this type given again: the later value replaces the earlier"
            );
        }
        self
    }

    /// Called with every [`RunEvent`]: each run's start and end (with its outcome, attempt and
    /// duration), and each tick skipped, with its reason. One place to observe every transition,
    /// e.g. to feed an audit log or a metrics system of your own (the `metrics` feature already
    /// reports the same facts through the `metrics` facade).
    ///
    /// It is called outside every lock, so it may call back into the manager: on the scheduler's
    /// tasks for runs and ticks, and on the caller's thread for what a call of the manager itself
    /// causes (the ticks a [`resume`](ServiceManager::resume) counts as skipped, say). It should be
    /// quick, since the run it reports on waits for it. A panic in it is caught and logged.
    ///
    /// ```
    /// # use scheduler::{RunEvent, ServiceManager};
    /// let manager = ServiceManager::builder()
    ///     .on_event(|event| {
    ///         if let RunEvent::Finished { service, outcome, duration, .. } = event {
    ///             println!("{service}: {outcome} in {duration:?}");
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn on_event(mut self, hook: impl Fn(&RunEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Hook::Plain(Arc::new(hook)));
        self
    }

    /// Like [`on_event`](Self::on_event), with a handle to the manager as well (see
    /// [`on_failure_with`](Self::on_failure_with) for how it is held). It replaces an earlier
    /// `on_event` (and `on_event` replaces it).
    ///
    /// ```
    /// # use scheduler::{RunEvent, ServiceManager};
    /// let manager = ServiceManager::builder()
    ///     .on_event_with(|event, manager| {
    ///         if let RunEvent::Finished { service, .. } = event {
    ///             let next = manager.service(service).and_then(|status| status.next_fire);
    ///             println!("{service} done; next at {next:?}");
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn on_event_with(
        mut self,
        hook: impl Fn(&RunEvent, &ServiceManager) + Send + Sync + 'static,
    ) -> Self {
        self.on_event = Some(Hook::WithManager(Arc::new(hook)));
        self
    }

    /// Runs each tick on only one of several replicas: before running a tick, this manager claims it
    /// from `coordinator`. See the [`Coordinator`] docs; `scheduler` ships
    /// [`InMemoryCoordinator`](crate::InMemoryCoordinator) and, with the `postgres` feature, a
    /// PostgreSQL one.
    pub fn coordinator(mut self, coordinator: impl Coordinator) -> Self {
        self.coordinator = Some(Arc::new(coordinator));
        self
    }

    /// How long a claim holds without renewal (30 s by default): a run is renewed every third of it,
    /// and a replica that dies blocks its service at most this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// With a [`coordinator`](Self::coordinator), claims each tick this long before it is due
    /// (zero by default: when it is due), so that its run starts on time however long the claim
    /// takes. Without a coordinator it does nothing.
    ///
    /// A claim is a round trip to the coordinator, and every service due on the same second claims
    /// at that second: 20 000 claims a second on one PostgreSQL take a few hundred milliseconds to
    /// clear, and the last run of the burst starts that late. Claimed ahead, the burst clears before
    /// the tick and each run starts when it is due (see the README's cluster benchmark). Choose a
    /// value above the burst's clearing time (the run lag, `scheduler_run_lag_seconds`, without
    /// it), well under the period of your shortest service.
    ///
    /// What changes, and what does not:
    ///
    /// ```text
    /// T − ahead ── claim ✔ ── held ────────────── T: queued, runs (on time) ── report
    ///                 │          └─ stop() ──▶ given back, recorded "skipped": not run anywhere
    ///                 └─ Busy: an earlier run still going ──▶ claimed again at T, as without it
    /// ```
    ///
    /// - Runs still start at their tick, never before; a tick is still granted to one replica.
    /// - A tick whose claim finds an earlier run still going (`Busy`) is claimed again when it is
    ///   due, so claiming early never skips a tick that claiming on time would have run.
    /// - A pause, disable or stop of the service on this replica between the claim and the tick
    ///   stops the run; its claim is given back at the tick, recorded as skipped. Resumed (or
    ///   reloaded, or restarted with [`restart_service`](ServiceManager::restart_service)) before
    ///   the tick, the service runs it under the claim it already holds, on time. A manager
    ///   [`stop`](ServiceManager::stop) and `start` in the window give the tick up (counted in
    ///   `skipped_late`).
    /// - A pause or disable made on *another* replica in the window reaches the held run through
    ///   the control notification (normally within milliseconds; the one-second poll if a
    ///   notification is lost). The claim's own check of the control record, which keeps a replica
    ///   that has not seen a pause yet from running a paused tick, was made at the claim, ahead: a
    ///   pause written after it and not yet seen here can let that one tick run.
    /// - From the claim to the tick the service shows as [`Idle`](crate::ServiceState::Idle),
    ///   with its tick as `next_fire` (the `scheduler_waiting_for_slot` gauge, though, reads 1 from
    ///   the claim on, as it does while any claim is under way). A
    ///   [`run_now`](ServiceManager::run_now) then is refused on this replica as for a run under
    ///   way; on another replica it is claimed and skipped as if the tick were running (it is about
    ///   to).
    /// - **The window it opens**: a replica that stops (or dies) between claiming a tick and running
    ///   it gives that tick up, and the others do not run it: they found it taken. A graceful
    ///   [`stop`](ServiceManager::stop) records it as skipped ("the replica stopped before the
    ///   tick's run began"); a killed replica's claim is abandoned when its lease runs out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scheduler::{InMemoryCoordinator, ServiceManager};
    ///
    /// let manager = ServiceManager::builder()
    ///     .coordinator(InMemoryCoordinator::new().replica("a"))
    ///     .claim_ahead(Duration::from_millis(300))
    ///     .build()?;
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    ///
    /// With a coordinator, [`build`](Self::build) refuses more than a quarter of the
    /// [`lease`](Self::lease): a claim taken that early would have used too much of its lease
    /// before its run begins.
    pub fn claim_ahead(mut self, ahead: Duration) -> Self {
        self.claim_ahead = ahead;
        self
    }

    /// Includes every `#[background_service]` linked into the binary.
    pub fn with_registered_services(mut self) -> Self {
        self.registered = true;
        self
    }

    /// Reads operator settings from a TOML file, over what the attributes say. See the README's
    /// "Configuration" section for the format; every key is optional.
    ///
    /// ```no_run
    /// # use scheduler::ServiceManager;
    /// let manager = ServiceManager::builder()
    ///     .with_registered_services()
    ///     .config_file("/etc/my-app/services.toml")
    ///     .config_env()
    ///     .build()?; // a missing file or any bad setting is an error here, listing every problem
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.file = Some(path.into());
        self
    }

    /// Reads operator settings from the process environment, over the file's:
    /// `SCHEDULER_SERVICE__<NAME>__<KEY>` per service, where `<KEY>` is a key of the file's service
    /// tables upper-cased (`ENABLED`, `INTERVAL`, `TZ`, `ON_START`, `PAUSED`, `TIMEOUT`, `RETRIES`,
    /// ...) and `<NAME>` the name upper-cased, every other character than a letter or digit
    /// replaced by `_`; and
    /// `SCHEDULER_MAX_CONCURRENT_JOBS`, `SCHEDULER_STOP_DEADLINE`.
    pub fn config_env(mut self) -> Self {
        self.config.env = Some(EnvSource::Process);
        self
    }

    /// Like [`config_env`](Self::config_env), from the given variables instead of the process
    /// environment.
    pub fn config_env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.config.env = Some(EnvSource::Fixed(vars));
        self
    }

    /// Builds the manager. Nothing runs until [`ServiceManager::start`].
    ///
    /// # Errors
    /// [`Error::DuplicateService`] when two registered services share a name;
    /// [`Error::Config`] listing every problem of the configuration;
    /// [`Error::InvalidOption`] for `max_concurrent_jobs(0)` or an impossibly large pool;
    /// [`Error::StateFile`] when the [state file](Self::state_file) cannot be read or is corrupt
    /// (without a coordinator);
    /// [`Error::MissingState`] naming every registered service that takes a [`State<T>`] of a type
    /// not given to [`state`](Self::state), with every such type.
    pub fn build(mut self) -> Result<ServiceManager, Error> {
        let mut bases = BTreeMap::new();
        if self.registered {
            let mut unbound = Vec::new();
            for (name, mut service) in registry::registered_services()? {
                if let Err(types) = service.bind(&self.resources) {
                    unbound.push((name, types));
                    continue;
                }
                let origin = Origin::Attribute;
                bases.insert(name, Base { service, origin });
            }
            if !unbound.is_empty() {
                return Err(Error::MissingState { services: unbound });
            }
        }
        let loaded = if self.config.is_empty() {
            None
        } else {
            Some(config::load(&self.config, &bases)?)
        };
        if let Some(loaded) = &loaded {
            self.max_concurrent_jobs = loaded.max_concurrent_jobs.or(self.max_concurrent_jobs);
            self.stop_deadline = loaded.stop_deadline.or(self.stop_deadline);
        }
        let max_concurrent_jobs = self.max_concurrent_jobs.unwrap_or_else(cpu_count);
        if self.lease < Duration::from_millis(30) {
            return Err(Error::InvalidOption {
                option: "lease",
                reason: format!("{:?} is too short: at least 30ms", self.lease),
            });
        }
        if self.coordinator.is_some() && self.claim_ahead > self.lease / 4 {
            return Err(Error::InvalidOption {
                option: "claim_ahead",
                reason: format!(
                    "{:?} is more than a quarter of the lease ({:?}): claimed that early, a tick \
                     would have used up too much of its lease before its run begins",
                    self.claim_ahead, self.lease
                ),
            });
        }
        if max_concurrent_jobs == 0 || max_concurrent_jobs > MAX_WORKERS {
            return Err(Error::InvalidOption {
                option: "max_concurrent_jobs",
                reason: format!("{max_concurrent_jobs} is out of range 1-{MAX_WORKERS}"),
            });
        }
        let state_file = match self.state_file.take() {
            // With a coordinator its history is the memory: the file is neither read nor written.
            Some(path) if self.coordinator.is_none() => Some(Arc::new(StateFile::load(path)?)),
            Some(path) => {
                tracing::info!(path = %path.display(),
                    "a coordinator is set: the state file is not used");
                None
            }
            None => None,
        };
        let sources = std::mem::take(&mut self.config);
        let manager = self.assemble(max_concurrent_jobs, state_file);
        let applied: BTreeMap<String, Effective> = match loaded {
            Some(loaded) => loaded.services,
            None => bases
                .iter()
                .map(|(name, base)| {
                    let effective = Effective {
                        service: base.service.clone(),
                        enabled: true,
                        origin: base.origin,
                    };
                    (name.clone(), effective)
                })
                .collect(),
        };
        for (name, effective) in &applied {
            manager.put(name, effective.clone());
        }
        *manager.config() = ConfigState {
            sources,
            bases,
            applied,
        };
        Ok(manager)
    }

    fn assemble(
        self,
        max_concurrent_jobs: usize,
        state_file: Option<Arc<StateFile>>,
    ) -> ServiceManager {
        // The hooks that want the manager hold it weakly: the engine is the manager's, and a
        // strong handle in its hooks would keep both alive forever.
        let inner = Arc::new_cyclic(|manager: &Weak<Inner>| {
            let hooks = Hooks {
                on_failure: self.on_failure.map(|hook| hook.resolve(manager)),
                on_event: self.on_event.map(|hook| hook.resolve(manager)),
            };
            let claim_ahead = if self.coordinator.is_some() {
                self.claim_ahead
            } else {
                Duration::ZERO
            };
            let mut engine = Engine::new(
                self.clock,
                hooks,
                self.coordinator,
                self.lease,
                self.abort_grace,
                self.history_len,
                max_concurrent_jobs,
            );
            engine.state_file = state_file;
            engine.timer = crate::timer::Timer::new(claim_ahead);
            Inner {
                engine: Arc::new(engine),
                resources: self.resources,
                state: Mutex::new(ManagerState {
                    phase: Phase::Built,
                    services: BTreeMap::new(),
                    stop_deadline: self.stop_deadline,
                    max_concurrent_jobs,
                    unbound: BTreeMap::new(),
                    started_at: None,
                    replica_version: self.replica_version,
                }),
                instance: new_instance(),
                config: Mutex::new(ConfigState::default()),
            }
        });
        ServiceManager { inner }
    }
}

impl ServiceManager {
    /// A manager with no services and default settings: a pool of as many workers as the process
    /// may use CPUs ([`max_concurrent_jobs`](Self::max_concurrent_jobs)), no stop deadline, the
    /// system clock.
    pub fn new() -> Self {
        ServiceManager::builder().assemble(cpu_count(), None)
    }

    /// A manager with every `#[background_service]` linked into the binary, from any crate.
    ///
    /// # Errors
    /// [`Error::DuplicateService`] when two of them share a name.
    pub fn from_registry() -> Result<Self, Error> {
        ServiceManager::builder().with_registered_services().build()
    }

    /// Configures a manager.
    pub fn builder() -> ServiceManagerBuilder {
        ServiceManagerBuilder {
            clock: Arc::new(SystemClock),
            max_concurrent_jobs: None,
            stop_deadline: None,
            on_failure: None,
            on_event: None,
            resources: Resources::default(),
            registered: false,
            config: ConfigSources::default(),
            coordinator: None,
            lease: DEFAULT_LEASE,
            claim_ahead: Duration::ZERO,
            abort_grace: DEFAULT_ABORT_GRACE,
            history_len: DEFAULT_HISTORY,
            state_file: None,
            replica_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The size of the worker pool: how many jobs run at once. Without
    /// [`ServiceManagerBuilder::max_concurrent_jobs`] (or the configuration's
    /// `max_concurrent_jobs`) it is the number of CPUs the process may use
    /// ([`std::thread::available_parallelism`], 1 if unknown); a due service beyond it waits, shown
    /// as [`ServiceState::WaitingForSlot`].
    pub fn max_concurrent_jobs(&self) -> usize {
        self.locked().max_concurrent_jobs
    }

    fn locked(&self) -> MutexGuard<'_, ManagerState> {
        lock(&self.inner.state)
    }

    fn config(&self) -> MutexGuard<'_, ConfigState> {
        lock(&self.inner.config)
    }

    fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, Error> {
        self.locked()
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownService(name.to_owned()))
    }

    /// Schedules every service: `on_start` services run at once, the others at their first tick;
    /// a service the configuration says is `paused` starts paused.
    /// Services added later are scheduled as they are added. Calling it again while started does
    /// nothing; after [`stop`](Self::stop) it schedules every stopped service afresh.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] outside a tokio runtime; [`Error::MissingState`] when
    /// [`add_service`](Self::add_service) was given services whose [`State<T>`] types the manager
    /// lacks (every one, with every type; nothing starts).
    pub fn start(&self) -> Result<(), Error> {
        let handle = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let engine = self.engine();
        let mut state = self.locked();
        if matches!(state.phase, Phase::Running(_)) {
            return Ok(());
        }
        if !state.unbound.is_empty() {
            let services = state
                .unbound
                .iter()
                .map(|(name, types)| (name.clone(), types.clone()))
                .collect();
            return Err(Error::MissingState { services });
        }
        state.phase = Phase::Running(handle.clone());
        state.started_at = Some(engine.clock.now());
        self.ensure_control_task();
        // A task already running reads the records now, as the start's first read.
        engine.controls.wake.notify_one();
        let epoch = engine.begin_epoch();
        dispatcher::spawn(engine, epoch, &handle);
        worker::spawn_missing(engine, &handle);
        if let Some(coordinator) = engine.coordinator.clone() {
            handle.spawn(async move {
                if let Err(error) = coordinator.prepare().await {
                    tracing::warn!(%error, "coordinator not ready; claims will retry");
                }
            });
        }
        let now = engine.clock.now();
        let anchor = engine.anchor(now);
        let mut remembered_elsewhere = Vec::new();
        let mut skips = Vec::new();
        for slot in state.services.values() {
            let next = {
                let mut service = slot.lock();
                match service.phase {
                    SlotPhase::NotStarted | SlotPhase::Stopped => {
                        let started =
                            schedule_catching_up(engine, &slot.name, &mut service, now, anchor);
                        if let Some(generation) = started.ask {
                            remembered_elsewhere.push((slot.clone(), generation));
                        }
                        if started.after != started.before {
                            skips.push((slot.clone(), started.before, started.after));
                        }
                        started.next
                    }
                    _ => Next::Nothing,
                }
            };
            engine.apply(slot, next);
        }
        if let (Some(coordinator), false) = (&engine.coordinator, remembered_elsewhere.is_empty()) {
            handle.spawn(catch_up_from_history(
                engine.clone(),
                coordinator.clone(),
                remembered_elsewhere,
            ));
        }
        announce(&state.services);
        drop(state);
        // Outside the manager's lock: an event hook may call back into the manager.
        for (slot, before, after) in skips {
            engine.skipped(&slot, before, after);
        }
        Ok(())
    }

    /// Adds a service under `name`, scheduling it at once if the manager is started (an `on_start`
    /// service then runs at once).
    ///
    /// **Reload**: if a service of that name exists, its definition is replaced, and once this
    /// returns no tick of the old definition will run. A run of the old one still in progress
    /// finishes undisturbed (a stop waits for it), and the new one does not run until it has (its
    /// ticks meanwhile count as skipped), so runs of a name never overlap. The counters and the last
    /// run are kept; `on_start` does not run again. A paused service stays paused.
    ///
    /// Configuration (file and environment) applies to services declared with the attribute; a
    /// service added here runs as the code says.
    ///
    /// A service whose [`State<T>`] parameters ([`Service::from_fn`]) name a type the manager was
    /// not given is not added: the error is logged, and [`start`](Self::start) fails naming it
    /// until a service of that name is added that binds. [`try_add_service`](Self::try_add_service)
    /// returns the error instead.
    pub fn add_service(&self, name: impl Into<String>, service: Service) {
        let name: String = name.into();
        if let Err(error) = self.try_add_service(name.as_str(), service) {
            if !tracing::dispatcher::has_been_set() {
                eprintln!("scheduler: {error}");
            }
            tracing::error!(service = %name, %error, "service not added");
        }
    }

    /// [`add_service`](Self::add_service), reporting a service it cannot add.
    ///
    /// ```
    /// # use scheduler::{Error, Schedule, Service, ServiceManager, State};
    /// # use std::time::Duration;
    /// struct Db;
    /// let manager = ServiceManager::new(); // no `.state(Db)`
    /// let job = Service::from_fn(Schedule::every(Duration::from_secs(5))?, |_db: State<Db>| {});
    /// let error = manager.try_add_service("sync", job).unwrap_err();
    /// assert!(matches!(error, Error::MissingState { .. }));
    /// assert!(error.to_string().starts_with("missing state: service 'sync' takes State<"));
    /// assert!(manager.service("sync").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::MissingState`] with every type the service's `State` parameters name that the
    /// manager lacks; nothing is added or replaced then (a service already under `name` keeps
    /// running as it was).
    pub fn try_add_service(
        &self,
        name: impl Into<String>,
        mut service: Service,
    ) -> Result<(), Error> {
        let name: String = name.into();
        if let Err(types) = service.bind(&self.inner.resources) {
            self.locked().unbound.insert(name.clone(), types.clone());
            return Err(Error::MissingState {
                services: vec![(name, types)],
            });
        }
        self.locked().unbound.remove(&name);
        self.put(
            &name,
            Effective {
                service,
                enabled: true,
                origin: Origin::Code,
            },
        );
        Ok(())
    }

    /// The resource of type `T` given to [`ServiceManagerBuilder::state`], if any: what a
    /// [`State<T>`] parameter receives, for hooks and code outside the jobs.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        self.inner.resources.get::<T>()
    }

    /// Installs `effective` under `name`, replacing any service of that name.
    fn put(&self, name: &str, mut effective: Effective) {
        let engine = self.engine();
        // The cluster's record, once there is one, decides whether it is enabled.
        if let Some(disabled) = engine.controls.switch(name, Switch::Disabled) {
            effective.enabled = !disabled;
        }
        let mut state = self.locked();
        let scheduling = matches!(state.phase, Phase::Running(_)).then(|| {
            let now = engine.clock.now();
            (now, engine.anchor(now))
        });
        if let Some(slot) = state.services.get(name) {
            let next = {
                let mut service = slot.lock();
                let was_scheduled = matches!(
                    service.phase,
                    SlotPhase::Scheduled { .. } | SlotPhase::Waiting { .. }
                );
                let next = service.replace(
                    effective.service,
                    effective.origin,
                    effective.enabled,
                    scheduling,
                );
                if was_scheduled {
                    engine.timer.forget_one();
                }
                next
            };
            engine.apply(slot, next);
            tracing::info!(service = %name, "service reloaded");
            return;
        }
        let name: Arc<str> = name.into();
        let mut fresh = SlotState::new(effective.service, effective.origin, effective.enabled);
        fresh.control_paused = engine.controls.switch(&name, Switch::Paused);
        let slot = Arc::new(Slot::new(name.clone(), fresh));
        let mut skipped = None;
        if let (Some((now, anchor)), true) = (scheduling, effective.enabled) {
            let started = schedule_catching_up(engine, &name, &mut slot.lock(), now, anchor);
            engine.apply(&slot, started.next);
            if let (Some(generation), Some(coordinator), Phase::Running(handle)) =
                (started.ask, &engine.coordinator, &state.phase)
            {
                handle.spawn(catch_up_from_history(
                    engine.clone(),
                    coordinator.clone(),
                    vec![(slot.clone(), generation)],
                ));
            }
            skipped = Some((started.before, started.after));
        }
        state.services.insert(name, slot.clone());
        drop(state);
        if let Some((before, after)) = skipped {
            engine.skipped(&slot, before, after);
        }
    }

    /// Reads the configuration sources again and applies what changed: every service whose effective
    /// settings (schedule, `on_start`, `enabled`, policies) differ is re-registered (with
    /// [`add_service`](Self::add_service)'s reload semantics, so no tick of the old settings runs
    /// once this returns, and the counters are kept), disabled or enabled; a service whose `paused`
    /// turned is paused or resumed (and one still configured `paused` is paused again when it is
    /// re-registered); the others are not touched. A bad configuration changes nothing.
    ///
    /// # Errors
    /// [`Error::Config`] listing every problem; the running services keep their settings.
    pub fn reload_config(&self) -> Result<ConfigReload, Error> {
        let mut config = self.config();
        let loaded = config::load(&config.sources, &config.bases)?;
        let mut report = ConfigReload::default();
        for (name, effective) in loaded.services {
            let changed = config
                .applied
                .get(&name)
                .is_none_or(|applied| applied.differs_from(&effective));
            let was_paused = config.applied.get(&name).is_some_and(Effective::paused);
            // `enabled` turned in the configuration: written for the cluster, as `disable` does.
            if let Some(applied) = config.applied.get(&name) {
                if applied.enabled != effective.enabled {
                    self.engine()
                        .controls
                        .request(&name, Switch::Disabled, !effective.enabled);
                    self.ensure_control_task();
                }
            }
            if changed {
                tracing::info!(service = %name, schedule = %effective.service.schedule,
                    enabled = effective.enabled, origin = %effective.origin, "configuration changed");
                self.put(&name, effective.clone());
                report.changed.push(name.clone());
            }
            // `paused` is applied with the rest of a changed service's settings (a re-registered
            // or re-enabled service starts paused again, as at start), and on its own when it
            // turns: a pause or resume by hand lasts until then.
            if let (Ok(slot), false) = (self.slot(&name), changed) {
                // Not re-registered: the definition's flag follows, for the next start.
                slot.lock().service.start_paused = effective.paused();
            }
            if effective.paused() && (changed || !was_paused) {
                if let Ok(slot) = self.slot(&name) {
                    self.request_paused(&slot, true);
                    let (paused, _) = self.pause_slot(&slot);
                    if paused && !was_paused {
                        tracing::info!(service = %name, "service paused by configuration");
                        report.paused.push(name.clone());
                    }
                }
            } else if !effective.paused() && was_paused && self.resume_if_paused(&name) {
                report.resumed.push(name.clone());
            }
            config.applied.insert(name, effective);
        }
        let mut state = self.locked();
        if let Some(deadline) = loaded.stop_deadline {
            state.stop_deadline = Some(deadline);
        }
        if let Some(jobs) = loaded.max_concurrent_jobs {
            report.pool_resized = jobs != state.max_concurrent_jobs;
            state.max_concurrent_jobs = jobs;
            self.resize_pool(&state.phase, jobs);
        }
        Ok(report)
    }

    /// Grows the pool at once; shrinks it as running jobs end.
    fn resize_pool(&self, phase: &Phase, jobs: usize) {
        let engine = self.engine();
        engine.pool.set_target(jobs);
        if let Phase::Running(handle) = phase {
            worker::spawn_missing(engine, handle);
        }
        engine.queue.wake_all();
    }

    /// Schedules a stopped (or finished) service again with the definition it had; `on_start`
    /// services run at once, and one the configuration says is `paused` restarts paused. A service
    /// that is scheduled or running is left as it is.
    ///
    /// # Errors
    /// [`Error::UnknownService`] when no service has this name.
    pub fn restart_service(&self, name: &str) -> Result<(), Error> {
        let engine = self.engine();
        let state = self.locked();
        let slot = state
            .services
            .get(name)
            .ok_or_else(|| Error::UnknownService(name.to_owned()))?;
        let running = matches!(state.phase, Phase::Running(_));
        let next = {
            let mut service = slot.lock();
            match service.phase {
                SlotPhase::Stopped | SlotPhase::Finished if running => {
                    let now = engine.clock.now();
                    schedule_afresh(&mut service, now, engine.anchor(now), true)
                }
                SlotPhase::Stopped | SlotPhase::Finished => {
                    service.phase = SlotPhase::NotStarted;
                    Next::Nothing
                }
                _ => Next::Nothing,
            }
        };
        engine.apply(slot, next);
        Ok(())
    }

    /// Unschedules a service, then waits for its running job to finish or aborts it.
    ///
    /// No run of it begins once this is called. It stays listed by [`services`](Self::services)
    /// as stopped; [`restart_service`](Self::restart_service) or [`add_service`](Self::add_service)
    /// schedule it again. Stopping a stopped service does nothing. Concurrent calls all return when
    /// the run ends. Called from inside the service's own run, it returns at once, and the service
    /// shows as stopping until that run returns.
    ///
    /// With [`StopMode::Abort`] the run's [`JobContext`](crate::JobContext) is cancelled and the run
    /// has the [`abort_grace`](ServiceManagerBuilder::abort_grace) to return.
    ///
    /// # Errors
    /// [`Error::UnknownService`] when no service has this name.
    pub async fn stop_service(&self, name: &str, mode: StopMode) -> Result<(), Error> {
        let slot = self.slot(name)?;
        let run = {
            let mut service = slot.lock();
            if matches!(
                service.phase,
                SlotPhase::Scheduled { .. } | SlotPhase::Waiting { .. }
            ) {
                self.engine().timer.forget_one();
            }
            service.stop()
        };
        if let Some(run) = run {
            if mode == StopMode::Abort {
                run.abort();
            }
            if worker::current_run() != crate::state::slot_id(&slot) {
                self.engine()
                    .wait_for_runs(|| !slot.lock().run_in_progress())
                    .await;
            }
        }
        tracing::info!(service = name, ?mode, "service stopped");
        Ok(())
    }

    /// Stops every service, waiting for running jobs — up to the builder's
    /// [`stop_deadline`](ServiceManagerBuilder::stop_deadline), if one is set, after which the rest are
    /// aborted. Services added afterwards wait for the next [`start`](Self::start).
    pub async fn stop(&self) {
        let deadline = self.locked().stop_deadline;
        self.stop_all(deadline).await;
    }

    /// Stops every service, waiting at most `deadline` for running jobs: their contexts are cancelled
    /// [`abort_grace`](ServiceManagerBuilder::abort_grace) before it, and whatever still runs at the
    /// deadline is aborted. Returns by the deadline.
    pub async fn stop_within(&self, deadline: Duration) {
        self.stop_all(Some(deadline)).await;
    }

    async fn stop_all(&self, deadline: Option<Duration>) {
        let engine = self.engine();
        let slots: Vec<Arc<Slot>> = {
            let mut state = self.locked();
            state.phase = Phase::Stopped;
            state.services.values().cloned().collect()
        };
        let own = worker::current_run();
        let mut runs = Vec::new();
        for slot in &slots {
            if let Some(run) = slot.lock().stop() {
                if crate::state::slot_id(slot) != own {
                    runs.push((slot.clone(), run));
                }
            }
        }
        // Claims granted ahead of their tick are given back, not run (`claim_ahead`).
        let held = engine.timer.take_held();
        engine.shut_down();
        let reason = "not run: the replica stopped before the tick's run began";
        // Given back beside the wait for runs, within the stop's deadline (or 10 s: a release
        // retries a few times, and an unreachable coordinator must not hold the stop).
        let releases = async {
            let all = futures_util::future::join_all(
                held.into_iter()
                    .filter_map(|fire| fire.ticket)
                    .map(|held| held.release(reason.to_owned())),
            );
            let limit = deadline.unwrap_or(Duration::from_secs(10));
            if tokio::time::timeout(limit, all).await.is_err() {
                tracing::warn!("stop: claims made ahead of their tick not all given back in time; their leases will run out");
            }
        };
        let in_flight = runs.len();
        let all_ended = || runs.iter().all(|(slot, _)| !slot.lock().run_in_progress());
        let runs_end = async {
            match deadline {
                None => engine.wait_for_runs(all_ended).await,
                Some(deadline) => {
                    let cancel_at = deadline.saturating_sub(engine.abort_grace);
                    let ended =
                        tokio::time::timeout(cancel_at, engine.wait_for_runs(all_ended)).await;
                    if ended.is_err() {
                        for (slot, run) in &runs {
                            if slot.lock().run_in_progress() {
                                tracing::warn!(service = %slot.name, "stop deadline near: cancelling the run");
                                run.cancel();
                            }
                        }
                        let rest = deadline.saturating_sub(cancel_at);
                        let ended =
                            tokio::time::timeout(rest, engine.wait_for_runs(all_ended)).await;
                        if ended.is_err() {
                            for (slot, run) in &runs {
                                if slot.lock().run_in_progress() {
                                    tracing::warn!(service = %slot.name, "stop deadline passed: aborting the run");
                                    run.force();
                                }
                            }
                            engine.wait_for_runs(all_ended).await;
                        }
                    }
                }
            }
        };
        tokio::join!(releases, runs_end);
        if let Some(file) = &engine.state_file {
            file.flush().await;
        }
        tracing::info!(runs_waited_for = in_flight, "service manager stopped");
    }

    /// Pauses a service: its ticks are skipped (counted in [`ServiceStatus::skipped_paused`]) until
    /// [`resume`](Self::resume). While paused it emits no [`RunEvent`] (except for a
    /// [manual run](Self::run_now)'s start and end); the resume counts the ticks that passed and
    /// reports them as one [`RunEvent::Skipped`] with [`SkipReason::Paused`](crate::SkipReason::Paused). A run in progress finishes; pausing a paused service does nothing.
    ///
    /// The pause is cluster-wide and outlives a restart (see [Shared control
    /// state](crate::coordinator#shared-control-state)): it applies here at once, is written to the
    /// coordinator (retried every second until it lands, if the coordinator is unreachable), and
    /// every replica applies it within a second, keeping it across restarts. Without a
    /// coordinator it applies to this manager, until the process exits. It takes precedence over
    /// the configuration's `paused` from then on (see [`reload_config`](Self::reload_config)).
    ///
    /// Called before [`start`](Self::start), it is accepted and the service starts paused.
    ///
    /// # Errors
    /// [`Error::UnknownService`]; [`Error::InvalidState`] when the service is stopped, finished or
    /// disabled here.
    pub fn pause(&self, name: &str) -> Result<(), Error> {
        let slot = self.slot(name)?;
        let state = slot.lock().state();
        if let ServiceState::Stopped | ServiceState::Finished | ServiceState::Disabled = state {
            return Err(Error::InvalidState {
                name: name.to_owned(),
                action: "pause",
                state,
            });
        }
        self.request_paused(&slot, true);
        if self.pause_slot(&slot).0 {
            tracing::info!(service = name, "service paused");
        }
        Ok(())
    }

    /// Disables a service cluster-wide: no run of it begins on any replica (a run in progress
    /// finishes), and it is shown `disabled`, as `enabled = false` in the configuration does. Like
    /// [`pause`](Self::pause) it applies here at once, is written to the coordinator (retried
    /// until it lands), reaches every replica within a second and outlives restarts; it takes
    /// precedence over the configuration's `enabled` from then on (a reload that changes
    /// `enabled` writes it again). Disabling a disabled service does nothing.
    ///
    /// # Errors
    /// [`Error::UnknownService`].
    pub fn disable(&self, name: &str) -> Result<(), Error> {
        self.slot(name)?;
        self.engine().controls.request(name, Switch::Disabled, true);
        self.ensure_control_task();
        if self.set_enabled_here(name, false) {
            tracing::info!(service = name, "service disabled");
        }
        Ok(())
    }

    /// Enables a disabled service cluster-wide (see [`disable`](Self::disable)): it is scheduled
    /// afresh on every replica (paused, if it is paused). Enabling an enabled service does
    /// nothing.
    ///
    /// # Errors
    /// [`Error::UnknownService`].
    pub fn enable(&self, name: &str) -> Result<(), Error> {
        self.slot(name)?;
        self.engine()
            .controls
            .request(name, Switch::Disabled, false);
        self.ensure_control_task();
        if self.set_enabled_here(name, true) {
            tracing::info!(service = name, "service enabled");
        }
        Ok(())
    }

    /// Enables or disables `name` on this replica with the definition it has; whether that
    /// changed anything.
    fn set_enabled_here(&self, name: &str, enabled: bool) -> bool {
        let Ok(slot) = self.slot(name) else {
            return false;
        };
        let (service, origin, disabled) = {
            let state = slot.lock();
            let disabled = match &state.phase {
                SlotPhase::Disabled => true,
                SlotPhase::Running(run) => run.then == Then::Disable,
                _ => false,
            };
            (state.service.clone(), state.origin, disabled)
        };
        if disabled != enabled {
            return false;
        }
        self.put(
            name,
            Effective {
                service,
                enabled,
                origin,
            },
        );
        true
    }

    /// Records `paused` as this replica's request for the cluster, and has it written.
    fn request_paused(&self, slot: &Arc<Slot>, paused: bool) {
        slot.lock().control_paused = Some(paused);
        self.engine()
            .controls
            .request(&slot.name, Switch::Paused, paused);
        self.ensure_control_task();
    }

    /// Runs the control task ([`crate::control`]) if a runtime is at hand and none runs; without a
    /// runtime, the next [`start`](Self::start) does.
    fn ensure_control_task(&self) {
        let Ok(handle) = Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        self.engine().controls.ensure_task(
            move || weak.upgrade().map(|inner| ServiceManager { inner }),
            move |task| drop(handle.spawn(task)),
        );
    }

    /// Pauses `slot`, reporting what the pause skipped (a pending retry); whether it paused, and
    /// the state it is in now.
    fn pause_slot(&self, slot: &Arc<Slot>) -> (bool, ServiceState) {
        let (paused, state, before, after) = {
            let mut service = slot.lock();
            let before = service.tally();
            let paused = self.pause_locked(&mut service);
            (paused, service.state(), before, service.tally())
        };
        self.engine().skipped(slot, before, after);
        (paused, state)
    }

    /// Pauses the service behind `service` (its slot's lock); `false` when there is nothing to
    /// pause.
    fn pause_locked(&self, service: &mut SlotState) -> bool {
        let was_scheduled = matches!(
            service.phase,
            SlotPhase::Scheduled { .. } | SlotPhase::Waiting { .. }
        );
        let paused = service.pause();
        if paused && was_scheduled {
            // Its timer entry is stale now.
            self.engine().timer.forget_one();
        }
        paused
    }

    /// Resumes `name` if it is paused (or pausing when its run ends); whether it was.
    fn resume_if_paused(&self, name: &str) -> bool {
        let Ok(slot) = self.slot(name) else {
            return false;
        };
        self.request_paused(&slot, false);
        if !self.resume_slot(&slot, true) {
            return false;
        }
        tracing::info!(service = name, "service resumed by configuration");
        true
    }

    /// Resumes `slot` on its grid, reporting the ticks skipped while it was paused; with
    /// `only_if_paused`, nothing happens (and `false` is returned) unless it is paused or pausing.
    fn resume_slot(&self, slot: &Arc<Slot>, only_if_paused: bool) -> bool {
        let now = self.engine().clock.now();
        let (before, next, after) = {
            let mut state = slot.lock();
            let paused = match &state.phase {
                SlotPhase::Paused { .. } => true,
                SlotPhase::Running(run) => run.then == Then::Pause,
                _ => false,
            };
            if only_if_paused && !paused {
                return false;
            }
            let before = state.tally();
            let next = state.resume(now);
            (before, next, state.tally())
        };
        self.engine().apply(slot, next);
        self.engine().skipped(slot, before, after);
        true
    }

    /// Resumes a paused service on its schedule's grid (the ticks that passed while paused are not
    /// caught up). Resuming a service that is not paused does nothing here.
    ///
    /// Like [`pause`](Self::pause), it is cluster-wide and written to the coordinator: every
    /// replica resumes the service within a second, and it stays resumed across restarts.
    /// Called before [`start`](Self::start), the service starts unpaused (whatever the
    /// configuration's `paused`).
    ///
    /// # Errors
    /// [`Error::UnknownService`].
    pub fn resume(&self, name: &str) -> Result<(), Error> {
        let slot = self.slot(name)?;
        self.request_paused(&slot, false);
        self.resume_slot(&slot, false);
        tracing::info!(service = name, "service resumed");
        Ok(())
    }

    /// Starts one run of a service now, outside its schedule (its [`JobContext::trigger`] is
    /// [`Trigger::Manual`]); it takes a worker like any run. The schedule is not moved: a tick that
    /// comes during the run is skipped as usual. A paused service runs once and stays paused; a
    /// finished one runs once more. A manual run that fails is retried as a tick's run is (the
    /// service's [`retries`](Service::retries); its attempts keep the trigger `Manual`), except on
    /// a paused service, which is paused again as the run ends and so is not retried. A retry
    /// waiting for its backoff is replaced by the manual run
    /// (counted in [`ServiceStatus::retries_dropped`]), and a tick waiting for its jitter is skipped
    /// as a tick during a run is.
    ///
    /// With a coordinator the manual run is claimed first, as a tick of its own (the instant it was
    /// asked for): while it runs, no replica starts a run of the service, and if another replica is
    /// running the service already, the manual run does not start (it is counted as skipped and
    /// logged, as a tick would be).
    ///
    /// [`JobContext::trigger`]: crate::JobContext::trigger
    /// [`Trigger::Manual`]: crate::Trigger::Manual
    ///
    /// # Errors
    /// [`Error::UnknownService`]; [`Error::AlreadyRunning`] when a run is going or waiting for a
    /// worker (never a second run); [`Error::InvalidState`] when it is not started, stopped or
    /// disabled.
    pub fn run_now(&self, name: &str) -> Result<(), Error> {
        let slot = self.slot(name)?;
        let now = self.engine().clock.now();
        let (result, before, after) = {
            let mut service = slot.lock();
            let was_scheduled = matches!(
                service.phase,
                SlotPhase::Scheduled { .. } | SlotPhase::Waiting { .. }
            );
            let before = service.tally();
            let result = service.run_now(now);
            if was_scheduled && result.is_ok() {
                self.engine().timer.forget_one();
            }
            let after = service.tally();
            (
                result.map_err(|refusal| (refusal, service.state())),
                before,
                after,
            )
        };
        match result {
            Ok(next) => {
                let handle = match &self.locked().phase {
                    Phase::Running(handle) => Some(handle.clone()),
                    Phase::Built | Phase::Stopped => None,
                };
                match (next, handle) {
                    (Next::Queue { generation }, Some(handle)) => {
                        self.engine().run_manual(&handle, &slot, generation, now);
                    }
                    (next, _) => self.engine().apply(&slot, next),
                }
                // A pending retry the manual run replaced.
                self.engine().skipped(&slot, before, after);
                tracing::info!(service = name, "manual run requested");
                Ok(())
            }
            Err((RunNowRefusal::AlreadyRunning, _)) => Err(Error::AlreadyRunning(name.to_owned())),
            Err((_, state)) => Err(Error::InvalidState {
                name: name.to_owned(),
                action: "run",
                state,
            }),
        }
    }

    /// Every replica of the cluster that heartbeat (see
    /// [Replicas](crate::coordinator#replicas)), by name: alive or dead, its version, start, last
    /// heartbeat, the services whose run it holds and whether its name is shared with another
    /// live process. Without a coordinator, this manager alone (once started).
    ///
    /// # Errors
    /// [`Error::Coordinator`] when the coordinator cannot answer.
    pub async fn replicas(&self) -> Result<Vec<ReplicaRecord>, Error> {
        let controls = self.engine().controls.clone();
        controls.beat_now(self).await;
        Ok(controls.store.replicas().await?)
    }

    /// Whether this replica can reach its coordinator, as its calls found it: reachable or
    /// unreachable since when, the latest error and how many calls failed (see
    /// [`CoordinatorHealth`](crate::health::CoordinatorHealth)). A started manager calls the coordinator
    /// every second, so an outage shows here within about a second, and its end as soon. `None`
    /// without a coordinator.
    ///
    /// A call that never answers changes nothing here until it does; the
    /// `PostgresCoordinator`'s calls fail after its `timeout` (10 s
    /// by default), so a database slower than that shows as unreachable. After
    /// [`stop`](Self::stop) no calls are made, and this keeps what the last one found.
    ///
    /// ```
    /// # use scheduler::{coordinator::InMemoryCoordinator, health::Reachability, ServiceManager};
    /// let manager = ServiceManager::builder()
    ///     .coordinator(InMemoryCoordinator::new())
    ///     .build()?;
    /// // Nothing asked yet: no answer to judge by.
    /// assert_eq!(manager.coordinator_health().unwrap().state, Reachability::Unknown);
    /// assert!(ServiceManager::new().coordinator_health().is_none());
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn coordinator_health(&self) -> Option<crate::health::CoordinatorHealth> {
        self.engine()
            .health
            .as_ref()
            .map(|health| health.snapshot())
    }

    /// This replica's name: the coordinator's, or `"local"` without one.
    pub fn replica_name(&self) -> String {
        self.engine().controls.store.replica().to_owned()
    }

    /// Whether another live process heartbeats under this replica's name (as the coordinator
    /// answered the last heartbeat): `Some` with its instance id. Logged as an error when it
    /// begins.
    pub fn name_shared_with(&self) -> Option<String> {
        match self.engine().controls.name_use() {
            NameUse::Shared { instance } => Some(instance),
            _ => None,
        }
    }

    /// The latest runs of `service` across every replica, newest first (with a coordinator).
    ///
    /// # Errors
    /// [`Error::NotCoordinated`] without a coordinator; [`Error::Coordinator`] when it cannot answer.
    pub async fn cluster_history(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, Error> {
        let coordinator = self
            .engine()
            .coordinator
            .clone()
            .ok_or(Error::NotCoordinated)?;
        Ok(coordinator.history(service, limit).await?)
    }

    /// One page of `service`'s history, as `query` asks: the cluster's with a coordinator, else
    /// the runs this manager kept (at most [`history_len`](ServiceManagerBuilder::history_len)).
    /// Each attempt of a tick is a run of its own; see [`HistoryQuery`](crate::coordinator::HistoryQuery)
    /// for the order and how to page.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), scheduler::Error> {
    /// use scheduler::coordinator::{HistoryCursor, HistoryQuery};
    /// # let manager = scheduler::ServiceManager::new();
    /// # manager.add_service("sync", scheduler::Service::new(scheduler::Schedule::every_secs(60.0).unwrap(), |_| async {}));
    /// let failures = HistoryQuery::latest(20).outcomes(["failed", "panicked", "timed_out"]);
    /// let page = manager.history_page("sync", &failures).await?;
    /// if let Some(oldest) = page.last() {
    ///     let older = manager.history_page("sync", &failures.clone().before(HistoryCursor::of(oldest))).await?;
    /// #   let _ = older;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownService`]; [`Error::Coordinator`] when the coordinator cannot answer.
    pub async fn history_page(
        &self,
        service: &str,
        query: &crate::coordinator::HistoryQuery,
    ) -> Result<Vec<RunRecord>, Error> {
        let local = self
            .history(service)
            .ok_or_else(|| Error::UnknownService(service.to_owned()))?;
        match self.engine().coordinator.clone() {
            Some(coordinator) => Ok(coordinator.history_page(service, query).await?),
            None => Ok(query.page(local)),
        }
    }

    /// The latest finished runs of `service` on this replica, newest first (at most
    /// [`history_len`](ServiceManagerBuilder::history_len)); `None` for an unknown name. In cluster
    /// mode, [`cluster_history`](Self::cluster_history) has every replica's.
    pub fn history(&self, name: &str) -> Option<Vec<RunRecord>> {
        let replica = self
            .engine()
            .coordinator
            .as_ref()
            .map_or("local", |coordinator| coordinator.replica())
            .to_owned();
        let state = self.locked();
        let slot = state.services.get(name)?;
        let service = slot.lock();
        let records = service
            .history()
            .rev()
            .map(|run| {
                let finished = TimeDelta::from_std(run.duration())
                    .ok()
                    .and_then(|took| run.started.checked_add_signed(took));
                let mut record = RunRecord::new(
                    name.to_owned(),
                    run.tick,
                    replica.clone(),
                    run.attempt,
                    run.started,
                    finished,
                    Some(run.outcome.name().to_owned()),
                    run.error().map(str::to_owned),
                );
                record.trigger = Some(run.trigger);
                record
            })
            .collect();
        Some(records)
    }

    /// A snapshot of every service, sorted by name.
    pub fn services(&self) -> Vec<ServiceStatus> {
        let now = self.engine().clock.now();
        self.locked()
            .services
            .iter()
            .map(|(name, slot)| slot.lock().status(name, now))
            .collect()
    }

    /// A snapshot of one service.
    pub fn service(&self, name: &str) -> Option<ServiceStatus> {
        let now = self.engine().clock.now();
        self.locked()
            .services
            .get(name)
            .map(|slot| slot.lock().status(name, now))
    }

    /// The schedule a service runs on now (after configuration), e.g. to list its next fire times
    /// with [`Schedule::next_after`](crate::Schedule::next_after).
    pub fn schedule_of(&self, name: &str) -> Option<Schedule> {
        self.locked()
            .services
            .get(name)
            .map(|slot| slot.lock().service.schedule.clone())
    }

    /// The job policies a service runs with now, wherever they were set (the attribute,
    /// [`Service`], the configuration), with the defaults filled in.
    ///
    /// ```
    /// # use scheduler::{Schedule, Service, ServiceManager};
    /// # use std::time::Duration;
    /// let manager = ServiceManager::new();
    /// let job = Service::new(Schedule::every(Duration::from_secs(60))?, |_ctx| async {});
    /// manager.add_service("sync", job.timeout(Duration::from_secs(30)).retries(2));
    /// let policies = manager.policies("sync").unwrap();
    /// assert_eq!((policies.timeout, policies.retries), (Some(Duration::from_secs(30)), 2));
    /// assert_eq!(policies.retry_backoff, Duration::from_secs(1));
    /// # Ok::<(), scheduler::ScheduleError>(())
    /// ```
    pub fn policies(&self, name: &str) -> Option<ServicePolicies> {
        self.locked()
            .services
            .get(name)
            .map(|slot| Policies::summary(slot.lock().service.policies()))
    }
}

impl ControlTarget for ServiceManager {
    fn started(&self) -> bool {
        matches!(self.locked().phase, Phase::Running(_))
    }

    fn heartbeat(&self) -> Heartbeat {
        let (started, version) = {
            let state = self.locked();
            (state.started_at, state.replica_version.clone())
        };
        let services_held: Vec<String> = self
            .locked()
            .services
            .values()
            .filter(|slot| slot.lock().run_in_progress())
            .map(|slot| slot.name.to_string())
            .collect();
        Heartbeat {
            instance: self.inner.instance.clone(),
            version,
            started: started.unwrap_or_else(|| self.engine().clock.now()),
            runs_in_flight: u32::try_from(services_held.len()).unwrap_or(u32::MAX),
            services_held,
        }
    }

    fn apply(&self, record: &ControlRecord) {
        let Ok(slot) = self.slot(&record.service) else {
            return;
        };
        if let Some(disabled) = record.disabled {
            if self.set_enabled_here(&record.service, !disabled) {
                let verb = if disabled { "disabled" } else { "enabled" };
                tracing::info!(service = %record.service, replica = %record.changed_by,
                    "service {verb} cluster-wide");
            }
        }
        let Some(paused) = record.paused else {
            return;
        };
        slot.lock().control_paused = Some(paused);
        let (name, by) = (&record.service, &record.changed_by);
        if paused {
            if self.pause_slot(&slot).0 {
                tracing::info!(service = %name, replica = %by, "service paused cluster-wide");
            }
        } else if self.resume_slot(&slot, true) {
            tracing::info!(service = %name, replica = %by, "service resumed cluster-wide");
        }
    }
}

/// Schedules `service` afresh (see [`SlotState::schedule`]); a service paused cluster-wide (or,
/// with no record of the cluster known, one the configuration says is `paused`) is paused at once
/// instead, with its first tick pending, so that it never runs (not even
/// `on_start`) until resumed. Nothing was put in the timer or the queue yet, so the `Next` of the
/// schedule is dropped.
fn schedule_afresh(
    service: &mut SlotState,
    now: chrono::DateTime<chrono::Utc>,
    anchor: chrono::DateTime<chrono::Utc>,
    on_start: bool,
) -> Next {
    let next = service.schedule(now, anchor, on_start);
    // The cluster's record, once there is one, decides; the configuration until then.
    let paused = service
        .control_paused
        .unwrap_or(service.service.start_paused);
    if paused && service.pause() {
        return Next::Nothing;
    }
    next
}

/// A service scheduled as it starts: what to do next, and what the catch-up skipped.
struct Starting {
    next: Next,
    /// The generation to catch up under once the coordinator has answered (which takes a task:
    /// see [`catch_up_from_history`]).
    ask: Option<u32>,
    before: Tally,
    after: Tally,
}

/// Schedules a service that starts (with the manager, or added to a started one), catching up the
/// ticks missed since the tick the state file remembers.
fn schedule_catching_up(
    engine: &Engine,
    name: &str,
    service: &mut SlotState,
    now: chrono::DateTime<chrono::Utc>,
    anchor: chrono::DateTime<chrono::Utc>,
) -> Starting {
    let before = service.tally();
    let next = schedule_afresh(service, now, anchor, true);
    let generation = service.generation;
    let (next, ask) = match (&engine.coordinator, &engine.state_file) {
        (Some(_), _) if service.catches_up_restarts() => (next, Some(generation)),
        (None, Some(file)) => {
            let caught_up = file
                .last_tick(name)
                .and_then(|last| service.catch_up_from(name, generation, last, now, true));
            (caught_up.unwrap_or(next), None)
        }
        _ => (next, None),
    };
    Starting {
        next,
        ask,
        before,
        after: service.tally(),
    }
}

/// At start with a coordinator: asks it for the last tick of each service that catches up after a
/// restart, and hands the ticks missed since to the service's misfire policy (if the service is still
/// as the start scheduled it: `generation`).
async fn catch_up_from_history(
    engine: Arc<Engine>,
    coordinator: Arc<dyn Coordinator>,
    slots: Vec<(Arc<Slot>, u32)>,
) {
    for (slot, generation) in slots {
        match coordinator.last_tick(&slot.name).await {
            Ok(Some(last)) => {
                let now = engine.clock.now();
                let (before, next, after) = {
                    let mut state = slot.lock();
                    let before = state.tally();
                    let next = state.catch_up_from(&slot.name, generation, last, now, false);
                    (before, next, state.tally())
                };
                if let Some(next) = next {
                    engine.timer.forget_one();
                    engine.apply(&slot, next);
                }
                engine.skipped(&slot, before, after);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(service = %slot.name, %error,
                    "coordinator unreachable at start: ticks missed while down are not caught up");
            }
        }
    }
}

/// Logs the services at start: one line each, and a warning when there are none.
fn announce(services: &BTreeMap<Arc<str>, Arc<Slot>>) {
    if services.is_empty() {
        if !tracing::dispatcher::has_been_set() {
            eprintln!(
                "scheduler: started with no services; a crate of #[background_service] functions \
                 is linked only if your code mentions it: add `use my_jobs_crate as _;`"
            );
        }
        tracing::warn!(
            "service manager started with no services: if your #[background_service] functions live \
             in another crate, that crate is linked only if your code mentions it; add \
             `use my_jobs_crate as _;` to main.rs (and `#![warn(unused_crate_dependencies)]` to catch it)"
        );
        return;
    }
    for (name, slot) in services {
        let service = slot.lock();
        tracing::info!(service = %name, schedule = %service.service.schedule, state = %service.state(),
            next = ?service.next_fire().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "service scheduled");
    }
    tracing::info!(services = services.len(), "service manager started");
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks but our own bookkeeping; the data stays usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl<Plain: ?Sized, WithManager: ?Sized> Hook<Plain, WithManager> {
    /// The plain hook itself; or one that calls the hook with a handle to `manager`, as long as the
    /// manager exists.
    fn resolve(self, manager: &Weak<Inner>) -> Arc<Plain>
    where
        Self: Resolve<Plain = Plain, WithManager = WithManager>,
    {
        match self {
            Hook::Plain(hook) => hook,
            Hook::WithManager(hook) => Self::with_manager(hook, manager.clone()),
        }
    }
}

/// How a hook wanting the manager becomes one the engine can call.
trait Resolve {
    type Plain: ?Sized;
    type WithManager: ?Sized;
    fn with_manager(hook: Arc<Self::WithManager>, manager: Weak<Inner>) -> Arc<Self::Plain>;
}

impl Resolve for Hook<FailureHook, ManagerFailureHook> {
    type Plain = FailureHook;
    type WithManager = ManagerFailureHook;
    fn with_manager(hook: Arc<ManagerFailureHook>, manager: Weak<Inner>) -> Arc<FailureHook> {
        Arc::new(move |failure: &Failure| {
            if let Some(inner) = manager.upgrade() {
                hook(failure, &ServiceManager { inner });
            }
        })
    }
}

impl Resolve for Hook<EventHook, ManagerEventHook> {
    type Plain = EventHook;
    type WithManager = ManagerEventHook;
    fn with_manager(hook: Arc<ManagerEventHook>, manager: Weak<Inner>) -> Arc<EventHook> {
        Arc::new(move |event: &RunEvent| {
            if let Some(inner) = manager.upgrade() {
                hook(event, &ServiceManager { inner });
            }
        })
    }
}

impl Default for ServiceManager {
    fn default() -> Self {
        ServiceManager::new()
    }
}

impl fmt::Debug for ServiceManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One lock, taken once: `Debug` must never wait on itself.
        let state = self.locked();
        let phase = match state.phase {
            Phase::Built => "built",
            Phase::Running(_) => "running",
            Phase::Stopped => "stopped",
        };
        f.debug_struct("ServiceManager")
            .field("phase", &phase)
            .field("services", &state.services.len())
            .field("max_concurrent_jobs", &state.max_concurrent_jobs)
            .field("stop_deadline", &state.stop_deadline)
            .field("state", &self.inner.resources)
            .finish_non_exhaustive()
    }
}
