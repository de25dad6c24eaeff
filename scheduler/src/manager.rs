//! [`ServiceManager`]: adds, starts, stops, reloads and reports services.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::TimeDelta;

use tokio::runtime::Handle;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, Base, ConfigReload, ConfigSources, Effective, EnvSource};
use crate::coordinator::{Coordinator, RunRecord};
use crate::engine::{Engine, Hooks};
use crate::error::Error;
use crate::event::{RunEvent, Tally};
use crate::policy::{Policies, ServicePolicies};
use crate::pool::MAX_WORKERS;
use crate::registry;
use crate::service::Service;
use crate::state::{Next, Phase as SlotPhase, RunNowRefusal, Slot, SlotState, Then};
use crate::state_file::StateFile;
use crate::status::{Failure, Origin, ServiceState, ServiceStatus};
use crate::{dispatcher, worker, Schedule};

const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_HISTORY: usize = 10;
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
    /// The phase and the services, under one lock (taken before any slot's lock, never after).
    state: Mutex<ManagerState>,
    config: Mutex<ConfigState>,
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
}

/// What configuration applies to: the services as the code defines them, and what was last applied.
#[derive(Default)]
struct ConfigState {
    sources: ConfigSources,
    bases: BTreeMap<String, Base>,
    applied: BTreeMap<String, Effective>,
}

/// Configures a [`ServiceManager`]; from [`ServiceManager::builder`].
#[must_use]
pub struct ServiceManagerBuilder {
    clock: Arc<dyn Clock>,
    max_concurrent_jobs: Option<usize>,
    stop_deadline: Option<Duration>,
    hooks: Hooks,
    registered: bool,
    config: ConfigSources,
    coordinator: Option<Arc<dyn Coordinator>>,
    lease: Duration,
    abort_grace: Duration,
    history_len: usize,
    state_file: Option<std::path::PathBuf>,
}

impl ServiceManagerBuilder {
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

    /// How many finished runs each service keeps for [`ServiceManager::history`] (and the admin
    /// page's sparkline): 10 by default, 0 to keep none. A service keeps nothing until it runs.
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
    /// of CPUs.
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
        self.hooks.on_failure = Some(Arc::new(hook));
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
        self.hooks.on_event = Some(Arc::new(hook));
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
    /// (without a coordinator).
    pub fn build(mut self) -> Result<ServiceManager, Error> {
        let mut bases = BTreeMap::new();
        if self.registered {
            for (name, service) in registry::registered_services()? {
                let origin = Origin::Attribute;
                bases.insert(name, Base { service, origin });
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
        let mut engine = Engine::new(
            self.clock,
            self.hooks,
            self.coordinator,
            self.lease,
            self.abort_grace,
            self.history_len,
            max_concurrent_jobs,
        );
        engine.state_file = state_file;
        ServiceManager {
            inner: Arc::new(Inner {
                engine: Arc::new(engine),
                state: Mutex::new(ManagerState {
                    phase: Phase::Built,
                    services: BTreeMap::new(),
                    stop_deadline: self.stop_deadline,
                    max_concurrent_jobs,
                }),
                config: Mutex::new(ConfigState::default()),
            }),
        }
    }
}

impl ServiceManager {
    /// A manager with no services and default settings.
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
            hooks: Hooks::default(),
            registered: false,
            config: ConfigSources::default(),
            coordinator: None,
            lease: DEFAULT_LEASE,
            abort_grace: DEFAULT_ABORT_GRACE,
            history_len: DEFAULT_HISTORY,
            state_file: None,
        }
    }

    /// The size of the worker pool.
    pub fn max_concurrent_jobs(&self) -> usize {
        self.state().max_concurrent_jobs
    }

    fn state(&self) -> MutexGuard<'_, ManagerState> {
        lock(&self.inner.state)
    }

    fn config(&self) -> MutexGuard<'_, ConfigState> {
        lock(&self.inner.config)
    }

    fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, Error> {
        self.state()
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
    /// [`Error::NoRuntime`] outside a tokio runtime.
    pub fn start(&self) -> Result<(), Error> {
        let handle = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let engine = self.engine();
        let mut state = self.state();
        if matches!(state.phase, Phase::Running(_)) {
            return Ok(());
        }
        state.phase = Phase::Running(handle.clone());
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
    pub fn add_service(&self, name: impl Into<String>, service: Service) {
        let name: String = name.into();
        self.put(
            &name,
            Effective {
                service,
                enabled: true,
                origin: Origin::Code,
            },
        );
    }

    /// Installs `effective` under `name`, replacing any service of that name.
    fn put(&self, name: &str, effective: Effective) {
        let engine = self.engine();
        let mut state = self.state();
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
        let slot = Arc::new(Slot::new(
            name.clone(),
            SlotState::new(effective.service, effective.origin, effective.enabled),
        ));
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
        let mut state = self.state();
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
        let state = self.state();
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
            if worker::current_run() != worker::slot_id(&slot) {
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
        let deadline = self.state().stop_deadline;
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
            let mut state = self.state();
            state.phase = Phase::Stopped;
            state.services.values().cloned().collect()
        };
        let own = worker::current_run();
        let mut runs = Vec::new();
        for slot in &slots {
            if let Some(run) = slot.lock().stop() {
                if worker::slot_id(slot) != own {
                    runs.push((slot.clone(), run));
                }
            }
        }
        engine.shut_down();
        let in_flight = runs.len();
        let all_ended = || runs.iter().all(|(slot, _)| !slot.lock().run_in_progress());
        match deadline {
            None => engine.wait_for_runs(all_ended).await,
            Some(deadline) => {
                let cancel_at = deadline.saturating_sub(engine.abort_grace);
                let ended = tokio::time::timeout(cancel_at, engine.wait_for_runs(all_ended)).await;
                if ended.is_err() {
                    for (slot, run) in &runs {
                        if slot.lock().run_in_progress() {
                            tracing::warn!(service = %slot.name, "stop deadline near: cancelling the run");
                            run.cancel();
                        }
                    }
                    let rest = deadline.saturating_sub(cancel_at);
                    let ended = tokio::time::timeout(rest, engine.wait_for_runs(all_ended)).await;
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
        if let Some(file) = &engine.state_file {
            file.flush().await;
        }
        tracing::info!(runs_waited_for = in_flight, "service manager stopped");
    }

    /// Pauses a service: its ticks are skipped (counted in [`ServiceStatus::skipped_paused`]) until
    /// [`resume`](Self::resume). A run in progress finishes; pausing a paused service does nothing.
    ///
    /// # Errors
    /// [`Error::UnknownService`]; [`Error::InvalidState`] when the service is not scheduled (not
    /// started, stopped, finished or disabled).
    pub fn pause(&self, name: &str) -> Result<(), Error> {
        let slot = self.slot(name)?;
        let (paused, state) = self.pause_slot(&slot);
        if paused {
            tracing::info!(service = name, "service paused");
            return Ok(());
        }
        match state {
            // Already paused, or pausing when its run ends.
            ServiceState::Paused | ServiceState::Running => Ok(()),
            state => Err(Error::InvalidState {
                name: name.to_owned(),
                action: "pause",
                state,
            }),
        }
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
    /// caught up). Resuming a service that is not paused does nothing.
    ///
    /// # Errors
    /// [`Error::UnknownService`].
    pub fn resume(&self, name: &str) -> Result<(), Error> {
        let slot = self.slot(name)?;
        self.resume_slot(&slot, false);
        tracing::info!(service = name, "service resumed");
        Ok(())
    }

    /// Starts one run of a service now, outside its schedule (its [`JobContext::trigger`] is
    /// [`Trigger::Manual`]); it takes a worker like any run. The schedule is not moved: a tick that
    /// comes during the run is skipped as usual. A paused service runs once and stays paused; a
    /// finished one runs once more. A retry waiting for its backoff is replaced by the manual run
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
                let handle = match &self.state().phase {
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
        let state = self.state();
        let slot = state.services.get(name)?;
        let service = slot.lock();
        let records = service
            .history()
            .rev()
            .map(|run| {
                let finished = TimeDelta::from_std(run.duration)
                    .ok()
                    .and_then(|took| run.started.checked_add_signed(took));
                let mut record = RunRecord::new(
                    name.to_owned(),
                    run.tick,
                    replica.clone(),
                    1,
                    run.started,
                    finished,
                    Some(run.outcome.name().to_owned()),
                    run.error.as_deref().map(str::to_owned),
                );
                record.trigger = Some(run.trigger);
                record
            })
            .collect();
        Some(records)
    }

    /// A snapshot of every service, sorted by name.
    pub fn services(&self) -> Vec<ServiceStatus> {
        self.state()
            .services
            .iter()
            .map(|(name, slot)| slot.lock().status(name))
            .collect()
    }

    /// A snapshot of one service.
    pub fn service(&self, name: &str) -> Option<ServiceStatus> {
        self.state()
            .services
            .get(name)
            .map(|slot| slot.lock().status(name))
    }

    /// The schedule a service runs on now (after configuration), e.g. to list its next fire times
    /// with [`Schedule::next_after`](crate::Schedule::next_after).
    pub fn schedule_of(&self, name: &str) -> Option<Schedule> {
        self.state()
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
        self.state()
            .services
            .get(name)
            .map(|slot| Policies::summary(slot.lock().service.policies()))
    }
}

/// Schedules `service` afresh (see [`SlotState::schedule`]); a service the configuration says is
/// `paused` is paused at once instead, with its first tick pending, so that it never runs (not even
/// `on_start`) until resumed. Nothing was put in the timer or the queue yet, so the `Next` of the
/// schedule is dropped.
fn schedule_afresh(
    service: &mut SlotState,
    now: chrono::DateTime<chrono::Utc>,
    anchor: chrono::DateTime<chrono::Utc>,
    on_start: bool,
) -> Next {
    let next = service.schedule(now, anchor, on_start);
    if service.service.start_paused && service.pause() {
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

impl Default for ServiceManager {
    fn default() -> Self {
        ServiceManager::new()
    }
}

impl fmt::Debug for ServiceManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One lock, taken once: `Debug` must never wait on itself.
        let state = self.state();
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
            .finish_non_exhaustive()
    }
}
