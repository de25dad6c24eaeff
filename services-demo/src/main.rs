//! A small app with real background services: a warm-up at start, a heartbeat, a cron job on blocking
//! threads, a flaky sync that raises alerts and is retried, an export with a time limit that SIGUSR1
//! pauses and resumes, a status table, the admin dashboard and Prometheus metrics; Ctrl-C or SIGTERM
//! stops it cleanly.
//!
//! ```text
//! cargo run -p services-demo                # runs until Ctrl-C / SIGTERM
//! cargo run -p services-demo -- --help
//! ```

// Services take their `JobContext` by value, as the attribute calls them, even where a job only reads it.
#![allow(clippy::needless_pass_by_value)]

mod services;

use std::fmt::Write as _;

use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use scheduler::admin::AdminConfig;
use scheduler::{
    PostgresCoordinator, ServiceManager, ServiceManagerBuilder, ServiceState, ServiceStatus,
};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
services-demo: runs the app's background services until Ctrl-C or SIGTERM

USAGE: services-demo [--config FILE] [--status-every SECONDS] [--stop-deadline SECONDS]
                     [--admin ADDRESS|off] [--database-url URL [--replica NAME] [--lease SECONDS]]

  --config FILE            operator settings (TOML) over the services' attributes; see
                           services-demo/config.example.toml. SIGHUP reloads it.
  --status-every SECONDS   print the services table this often (default 10)
  --stop-deadline SECONDS  on shutdown, wait this long for running jobs, then abort them (default 10;
                           the config file's [manager] stop_deadline wins)
  --admin ADDRESS|off      serve the admin dashboard and JSON API here (default 127.0.0.1:7070;
                           port 0 picks a free one); read-only unless SCHEDULER_ADMIN_TOKEN is
                           set, whose value then authorizes run now / pause / resume / reload
  --database-url URL       cluster mode: replicas sharing this PostgreSQL database run each tick
                           once in all (default: env DATABASE_URL; without either, every tick runs here)
  --replica NAME           this replica's name in the runs table (default: hostname-pid)
  --lease SECONDS          how long a claim holds without renewal (default 30)
  -h, --help               show this help

Environment variables SCHEDULER_SERVICE__<NAME>__<KEY> (enabled, interval, tz, on_start, timeout,
retries, retry_backoff, retry_backoff_max, jitter, misfire, misfire_limit, misfire_grace, paused),
SCHEDULER_MAX_CONCURRENT_JOBS and SCHEDULER_STOP_DEADLINE override the file.

Signals: SIGHUP reloads the configuration; SIGUSR1 pauses the report export, or resumes it.
Logging follows RUST_LOG (default: info).";

/// Where the dashboard is served unless `--admin` says otherwise.
const DEFAULT_ADMIN: ([u8; 4], u16) = ([127, 0, 0, 1], 7070);

struct Options {
    config: Option<std::path::PathBuf>,
    /// The dashboard's address, and whether the operator chose it; `None` for `--admin off`.
    admin: Option<(std::net::SocketAddr, bool)>,
    status_every: Duration,
    stop_deadline: Duration,
    cluster: Cluster,
}

/// Cluster mode's options.
#[derive(Default)]
struct Cluster {
    database_url: Option<String>,
    replica: Option<String>,
    lease: Option<Duration>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        config: None,
        admin: Some((DEFAULT_ADMIN.into(), false)),
        status_every: Duration::from_secs(10),
        stop_deadline: Duration::from_secs(10),
        cluster: Cluster::default(),
    };
    while let Some(arg) = args.next() {
        let mut seconds = |name: &str| -> anyhow::Result<Duration> {
            let value = args
                .next()
                .with_context(|| format!("{name} needs a number of seconds"))?;
            let secs: f64 = value
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .with_context(|| {
                    format!("{name}: '{value}' is not a positive number of seconds")
                })?;
            Ok(Duration::from_secs_f64(secs))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--config" => {
                let path = args.next().context("--config needs a file path")?;
                options.config = Some(path.into());
            }
            "--admin" => {
                let value = args.next().context("--admin needs an address or 'off'")?;
                options.admin = if value == "off" {
                    None
                } else {
                    let address = value.parse().with_context(|| {
                        format!(
                            "--admin: '{value}' is not an address like 127.0.0.1:7070, or 'off'"
                        )
                    })?;
                    Some((address, true))
                };
            }
            "--status-every" => options.status_every = seconds("--status-every")?,
            "--stop-deadline" => options.stop_deadline = seconds("--stop-deadline")?,
            "--database-url" => {
                options.cluster.database_url =
                    Some(args.next().context("--database-url needs a URL")?);
            }
            "--replica" => {
                options.cluster.replica = Some(args.next().context("--replica needs a name")?);
            }
            "--lease" => options.cluster.lease = Some(seconds("--lease")?),
            other => anyhow::bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    Ok(Some(options))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(options) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let mut builder = ServiceManager::builder()
        .with_registered_services()
        .stop_deadline(options.stop_deadline)
        // What the jobs share (`State<Store>` in billing.rs and cache.rs).
        .state(services::Store::default())
        // The failure itself is already logged by the manager; the hook only raises the alert,
        // with what the shared store knows (it reaches it through the manager: no global).
        .on_failure_with(|failure, manager| {
            let attempts = manager
                .state::<services::Store>()
                .map(|store| store.payment_attempts.load(std::sync::atomic::Ordering::Relaxed));
            tracing::warn!(service = %failure.service, payment_attempts = ?attempts, "ALERT raised");
        })
        .config_env();
    if let Some(path) = &options.config {
        builder = builder.config_file(path);
    }
    builder = clustered(builder, &options.cluster);
    let manager = builder.build()?;
    // Before the start: each service registers its metrics at its first run.
    let metrics = prometheus()?;
    manager.start()?;
    if let Some((address, chosen)) = options.admin {
        dashboard(&manager, address, chosen, metrics).await?;
    }
    let mut reload = OnSignal::hangup();
    let mut pause_signal = OnSignal::user_defined1();
    let mut export_switch = PauseSwitch::new(&manager, "report-export");

    let mut status = tokio::time::interval(options.status_every);
    status.tick().await; // the first tick is immediate; the table is more useful after some runs
                         // Made once: a signal future made anew each pass could miss a SIGTERM that arrives between two.
    let shutdown = shutdown_signal();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = reload.recv() => match manager.reload_config() {
                Ok(report) => tracing::info!(changed = ?report.changed, paused = ?report.paused,
                    resumed = ?report.resumed, "configuration reloaded"),
                Err(error) => tracing::error!(%error, "configuration not reloaded; keeping the old one"),
            },
            () = pause_signal.recv() => export_switch.flip(&manager),
            _ = status.tick() => println!("{}", table(&manager.services())),
        }
    }
    tracing::info!("shutting down: waiting for running jobs");
    manager.stop().await;
    println!("{}", table(&manager.services()));
    Ok(())
}

/// Serves the admin dashboard on `address` and prints where. A default address already in use
/// (another demo running) is a warning; one the operator chose is an error.
async fn dashboard(
    manager: &ServiceManager,
    address: std::net::SocketAddr,
    chosen: bool,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) if !chosen => {
            tracing::warn!(%address, %error, "admin dashboard not served (try --admin 127.0.0.1:0)");
            return Ok(());
        }
        Err(error) => return Err(error).with_context(|| format!("--admin: cannot bind {address}")),
    };
    let address = listener.local_addr()?;
    let (config, mode) = match std::env::var("SCHEDULER_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => (
            AdminConfig::new().bearer_token(token),
            "actions need SCHEDULER_ADMIN_TOKEN",
        ),
        _ => (
            AdminConfig::new(),
            "read-only: set SCHEDULER_ADMIN_TOKEN to enable actions",
        ),
    };
    println!("admin dashboard: http://{address}/ ({mode})");
    println!("metrics (Prometheus): http://{address}/metrics");
    let app = config.router(manager.clone()).route(
        "/metrics",
        axum::routing::get(move || std::future::ready(metrics.render())),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "admin dashboard stopped");
        }
    });
    Ok(())
}

/// Installs the Prometheus recorder that `/metrics` renders, and keeps its histograms trimmed.
fn prometheus() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// With a database URL, replicas coordinate through PostgreSQL: each tick runs on one of them.
fn clustered(mut builder: ServiceManagerBuilder, cluster: &Cluster) -> ServiceManagerBuilder {
    let Some(url) = cluster.database_url.clone().or_else(|| {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
    }) else {
        return builder;
    };
    let replica = cluster.replica.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map_or_else(|| "replica".to_owned(), |h| h.trim().to_owned());
        format!("{host}-{}", std::process::id())
    });
    if let Some(lease) = cluster.lease {
        builder = builder.lease(lease);
    }
    tracing::info!(%replica, lease = ?cluster.lease.unwrap_or(Duration::from_secs(30)),
        "cluster mode: coordinating through PostgreSQL");
    builder.coordinator(PostgresCoordinator::connect(&url, replica))
}

/// A Unix signal as a stream of wake-ups; elsewhere (or if it cannot be installed) it never fires.
struct OnSignal {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl OnSignal {
    /// SIGHUP: reload the configuration.
    fn hangup() -> Self {
        #[cfg(unix)]
        return OnSignal::unix(tokio::signal::unix::SignalKind::hangup());
        #[cfg(not(unix))]
        OnSignal {}
    }

    /// SIGUSR1: pause or resume the report export.
    fn user_defined1() -> Self {
        #[cfg(unix)]
        return OnSignal::unix(tokio::signal::unix::SignalKind::user_defined1());
        #[cfg(not(unix))]
        OnSignal {}
    }

    #[cfg(unix)]
    fn unix(kind: tokio::signal::unix::SignalKind) -> Self {
        OnSignal {
            signal: tokio::signal::unix::signal(kind).ok(),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// An operator's switch: each flip pauses `name`, or resumes it. It keeps its own position, since a
/// service asked to pause during a run still shows as running until the run ends.
struct PauseSwitch {
    name: &'static str,
    paused: bool,
}

impl PauseSwitch {
    /// Starts where the service is (the configuration may start it paused).
    fn new(manager: &ServiceManager, name: &'static str) -> Self {
        let paused = manager
            .service(name)
            .is_some_and(|status| status.state == ServiceState::Paused);
        PauseSwitch { name, paused }
    }

    fn flip(&mut self, manager: &ServiceManager) {
        let result = if self.paused {
            manager.resume(self.name)
        } else {
            manager.pause(self.name)
        };
        match result {
            Ok(()) => self.paused = !self.paused,
            Err(error) => tracing::error!(service = self.name, %error, "cannot pause or resume"),
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn table(services: &[ServiceStatus]) -> String {
    let mut out = format!(
        "{:<15} {:<32} {:<9} {:<18} {:<15} {:>5} {:>5} {:>5}  {}\n",
        "SERVICE",
        "SCHEDULE",
        "FROM",
        "STATE",
        "NEXT (UTC)",
        "RUNS",
        "FAIL",
        "SKIP",
        "LAST OUTCOME"
    );
    for s in services {
        let next = s.next_fire.map_or_else(
            || "-".to_owned(),
            |t| t.format("%m-%d %H:%M:%S").to_string(),
        );
        let outcome = s
            .last_outcome
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        let _ = writeln!(
            out,
            "{:<15} {:<32} {:<9} {:<18} {:<15} {:>5} {:>5} {:>5}  {}",
            s.name,
            s.schedule,
            s.origin.to_string(),
            s.state.to_string(),
            next,
            s.runs,
            s.failures,
            s.skipped,
            outcome
        );
    }
    out
}
