//! [`ServiceManager`]: adds, starts, stops, reloads and reports services.

use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::clock::{Clock, SystemClock};
use crate::config::{self, Base, ConfigSources, Effective, EnvSource, Origin};
use crate::coordinator::{Coordinator, RunRecord};

const DEFAULT_LEASE: Duration = Duration::from_secs(30);
use crate::entry::{Entry, StartDecision};
use crate::error::Error;
use crate::pool::{Pool, MAX_SLOTS};
use crate::registry;
use crate::runner::{self, FailureHook, Shared};
use crate::service::Service;
use crate::status::{Failure, ServiceStatus};

/// How [`ServiceManager::stop_service`] treats a run that is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Let the run finish, then return.
    Wait,
    /// Cancel the run: an async job is dropped at its next `.await`; a blocking job cannot be killed,
    /// so its [`JobContext`](crate::JobContext) is cancelled and the manager stops waiting for it.
    Abort,
}

/// Runs background services: every `#[background_service]` linked into the binary, and any added at
/// run time.
///
/// Cloning is cheap and gives another handle to the same manager.
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
#[derive(Clone)]
pub struct ServiceManager {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    services: Mutex<BTreeMap<Arc<str>, Arc<Entry>>>,
    /// Set by `start`: where runners are spawned, including those of services added later.
    runtime: Mutex<Option<Handle>>,
    settings: Mutex<Settings>,
    config: Mutex<ConfigState>,
}

/// Manager-wide settings that a configuration reload may change.
struct Settings {
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

/// What [`ServiceManager::reload_config`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigReload {
    /// Services re-registered (or disabled, or enabled) because their settings changed, by name.
    pub changed: Vec<String>,
    /// Whether `max_concurrent_jobs` changed.
    pub pool_resized: bool,
}

/// Configures a [`ServiceManager`]; from [`ServiceManager::builder`].
#[must_use]
pub struct ServiceManagerBuilder {
    clock: Arc<dyn Clock>,
    max_concurrent_jobs: Option<usize>,
    stop_deadline: Option<Duration>,
    on_failure: Option<Arc<FailureHook>>,
    registered: bool,
    config: ConfigSources,
    coordinator: Option<Arc<dyn Coordinator>>,
    lease: Duration,
}

impl ServiceManagerBuilder {
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

    /// Called with every failed run (an `Err` or a panic), after it is logged: the place to raise an
    /// alert. It runs on the service's task, so it should be quick; a panic in it is caught and logged.
    ///
    /// ```
    /// # use scheduler::ServiceManager;
    /// let manager = ServiceManager::builder()
    ///     .on_failure(|failure| eprintln!("ALERT: {failure}"))
    ///     .build()?;
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn on_failure(mut self, hook: impl Fn(&Failure) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Arc::new(hook));
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
    /// `SCHEDULER_SERVICE__<NAME>__<ENABLED|INTERVAL|TZ|ON_START>` per service (the name upper-cased,
    /// every other character than a letter or digit replaced by `_`), and
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
    /// [`Error::InvalidOption`] for `max_concurrent_jobs(0)` or an impossibly large pool.
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
        if max_concurrent_jobs == 0 || max_concurrent_jobs > MAX_SLOTS {
            return Err(Error::InvalidOption {
                option: "max_concurrent_jobs",
                reason: format!("{max_concurrent_jobs} is out of range 1-{MAX_SLOTS}"),
            });
        }
        let sources = std::mem::take(&mut self.config);
        let manager = self.assemble(max_concurrent_jobs);
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

    fn assemble(self, max_concurrent_jobs: usize) -> ServiceManager {
        ServiceManager {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    clock: self.clock,
                    pool: Pool::new(max_concurrent_jobs),
                    on_failure: self.on_failure,
                    coordinator: self.coordinator,
                    lease: self.lease,
                }),
                services: Mutex::new(BTreeMap::new()),
                runtime: Mutex::new(None),
                settings: Mutex::new(Settings {
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
        ServiceManager::builder().assemble(cpu_count())
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
            registered: false,
            config: ConfigSources::default(),
            coordinator: None,
            lease: DEFAULT_LEASE,
        }
    }

    /// The size of the worker pool.
    pub fn max_concurrent_jobs(&self) -> usize {
        self.settings().max_concurrent_jobs
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.inner.settings)
    }

    fn config(&self) -> MutexGuard<'_, ConfigState> {
        lock(&self.inner.config)
    }

    fn services_map(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Arc<Entry>>> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn runtime(&self) -> Option<Handle> {
        self.inner
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Schedules every service that is not running yet: `on_start` services fire at once, the others
    /// at their first tick. Services added after `start` are scheduled as they are added. Calling it
    /// again is harmless; after [`stop`](Self::stop) it schedules every stopped service afresh.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] outside a tokio runtime.
    pub fn start(&self) -> Result<(), Error> {
        let handle = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        // The runtime is recorded under the services lock, which `put` also holds while it reads
        // it: a service added concurrently is either seen here or started by `put`, never neither.
        let mut services = self.services_map();
        *self
            .inner
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle.clone());
        if let Some(coordinator) = self.inner.shared.coordinator.clone() {
            handle.spawn(async move {
                if let Err(error) = coordinator.prepare().await {
                    tracing::warn!(%error, "coordinator not ready; claims will retry");
                }
            });
        }
        for entry in services.values_mut() {
            match entry.start_decision() {
                StartDecision::Start => self.spawn(&handle, entry),
                StartDecision::Renew => {
                    *entry = Arc::new(Entry::renewed(entry));
                    entry.mark_started();
                    self.spawn(&handle, entry);
                }
                StartDecision::Leave => {}
            }
        }
        tracing::info!(services = services.len(), "service manager started");
        Ok(())
    }

    /// Starts the runner of an entry marked started.
    fn spawn(&self, handle: &Handle, entry: &Arc<Entry>) {
        let task = handle.spawn(runner::run(entry.clone(), self.inner.shared.clone()));
        entry.set_task(task);
    }

    /// Adds a service under `name`, scheduling it at once if the manager is started.
    ///
    /// **Reload**: if a service of that name exists, it is stopped first; once this returns, no tick of
    /// the old definition will run. A run of the old one still in progress finishes undisturbed, and
    /// the new one does not run until it has (its ticks meanwhile count as skipped), so runs of a name
    /// never overlap.
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

    /// Installs `effective` under `name`, replacing (and stopping) any service of that name.
    fn put(&self, name: &str, effective: Effective) {
        let name: Arc<str> = name.into();
        let mut services = self.services_map();
        // Read under the services lock: see `start`.
        let runtime = self.runtime();
        let make = |old: Option<&Arc<Entry>>| {
            let entry = Arc::new(Entry::new(
                name.clone(),
                effective.service,
                effective.origin,
                !effective.enabled,
                old,
            ));
            if let (true, Some(handle)) = (effective.enabled, &runtime) {
                entry.mark_started();
                self.spawn(handle, &entry);
            }
            entry
        };
        match services.entry(name.clone()) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert(make(None));
            }
            btree_map::Entry::Occupied(mut slot) => {
                // A run of the old definition in progress finishes undisturbed (its task then
                // returns by itself, and the new definition skips its ticks until then); otherwise
                // the old runner is aborted.
                drop(slot.get().stop());
                tracing::info!(service = %name, "service reloaded");
                let entry = make(Some(slot.get()));
                slot.insert(entry);
            }
        }
    }

    /// Reads the configuration sources again and applies what changed: every service whose effective
    /// settings differ is re-registered (with [`add_service`](Self::add_service)'s reload semantics,
    /// so no tick of the old settings runs once this returns), disabled or enabled; the others are
    /// not touched. A bad configuration changes nothing.
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
            if changed {
                tracing::info!(service = %name, schedule = %effective.service.schedule,
                    enabled = effective.enabled, origin = %effective.origin, "configuration changed");
                self.put(&name, effective.clone());
                report.changed.push(name.clone());
            }
            config.applied.insert(name, effective);
        }
        let mut settings = self.settings();
        if let Some(deadline) = loaded.stop_deadline {
            settings.stop_deadline = Some(deadline);
        }
        if let Some(jobs) = loaded.max_concurrent_jobs {
            report.pool_resized = self.resize_pool(&mut settings, jobs);
        }
        Ok(report)
    }

    /// Grows the pool at once; shrinks it as running jobs hand back their slots.
    fn resize_pool(&self, settings: &mut Settings, jobs: usize) -> bool {
        let current = settings.max_concurrent_jobs;
        settings.max_concurrent_jobs = jobs;
        self.inner
            .shared
            .pool
            .resize(jobs as isize - current as isize);
        jobs != current
    }

    /// Schedules a stopped service again with the definition it had.
    ///
    /// # Errors
    /// [`Error::UnknownService`] when no service has this name.
    pub fn restart_service(&self, name: &str) -> Result<(), Error> {
        let service = self
            .services_map()
            .get(name)
            .map(|entry| entry.service.clone())
            .ok_or_else(|| Error::UnknownService(name.to_owned()))?;
        self.add_service(name, service);
        Ok(())
    }

    /// Unschedules a service, then waits for its running job to finish or aborts it.
    ///
    /// It stays listed by [`services`](Self::services) as stopped; [`restart_service`](Self::restart_service)
    /// or [`add_service`](Self::add_service) schedule it again. Stopping a stopped service does nothing.
    ///
    /// # Errors
    /// [`Error::UnknownService`] when no service has this name.
    pub async fn stop_service(&self, name: &str, mode: StopMode) -> Result<(), Error> {
        let entry = self
            .services_map()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownService(name.to_owned()))?;
        let (Some(task), _) = entry.stop() else {
            return Ok(());
        };
        if mode == StopMode::Abort {
            entry.cancel_run();
            task.abort();
        }
        if task.await.is_err() {
            entry.record_abort();
        }
        tracing::info!(service = name, ?mode, "service stopped");
        Ok(())
    }

    /// Stops every service, waiting for running jobs — up to the builder's
    /// [`stop_deadline`](ServiceManagerBuilder::stop_deadline), if one is set, after which the rest are
    /// aborted.
    pub async fn stop(&self) {
        let deadline = self.settings().stop_deadline;
        match deadline {
            Some(deadline) => self.stop_within(deadline).await,
            None => self.stop_all(None).await,
        }
    }

    /// Stops every service, waiting at most `deadline` for running jobs before aborting them.
    pub async fn stop_within(&self, deadline: Duration) {
        self.stop_all(Some(deadline)).await;
    }

    async fn stop_all(&self, deadline: Option<Duration>) {
        let entries: Vec<Arc<Entry>> = self.services_map().values().cloned().collect();
        let mut running = Vec::new();
        let mut tasks = Vec::new();
        for entry in entries {
            if let (Some(task), _) = entry.stop() {
                running.push((entry, task.abort_handle()));
                tasks.push(task);
            }
        }
        let in_flight = tasks.len();
        let mut finish = futures_util::future::join_all(tasks);
        let finished_in_time = if let Some(deadline) = deadline {
            tokio::time::timeout(deadline, &mut finish).await.is_ok()
        } else {
            (&mut finish).await;
            true
        };
        if !finished_in_time {
            for (entry, task) in &running {
                if !task.is_finished() {
                    tracing::warn!(service = %entry.name, "stop deadline passed: aborting the run");
                    entry.cancel_run();
                    task.abort();
                }
            }
            finish.await;
            for (entry, _) in &running {
                entry.record_abort();
            }
        }
        tracing::info!(tasks = in_flight, "service manager stopped");
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
            .inner
            .shared
            .coordinator
            .clone()
            .ok_or(Error::NotCoordinated)?;
        Ok(coordinator.history(service, limit).await?)
    }

    /// A snapshot of every service, sorted by name.
    pub fn services(&self) -> Vec<ServiceStatus> {
        self.services_map().values().map(|e| e.status()).collect()
    }

    /// A snapshot of one service.
    pub fn service(&self, name: &str) -> Option<ServiceStatus> {
        self.services_map().get(name).map(|e| e.status())
    }
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
        f.debug_struct("ServiceManager")
            .field("services", &self.services_map().len())
            .field("max_concurrent_jobs", &self.settings().max_concurrent_jobs)
            .field("stop_deadline", &self.settings().stop_deadline)
            .finish_non_exhaustive()
    }
}
