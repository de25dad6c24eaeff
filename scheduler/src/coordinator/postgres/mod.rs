//! A coordinator on PostgreSQL: replicas of an app share one table of runs, and each tick runs on
//! the one replica whose claim on (service, tick) was granted.
//!
//! # Why `tokio-postgres` (and not `sqlx`)
//! The coordinator needs a few fixed statements on two connections per replica. `tokio-postgres`
//! is the async driver of the long-standing rust-postgres project: pure Rust, no proc macros, no
//! compile-time query checking that wants a database (or offline data) at build time, and no pool
//! or multi-database layers we would not use. The `postgres` feature adds about 50 crates to
//! `scheduler`'s build (the wire protocol, `socket2`, a few hashes); `sqlx` brings its macros, its
//! runtime and driver layers on top. For a feature that users switch on in an app that
//! may already have another driver, a short build matters more than an ORM-ish API.
//!
//! # Why two connections, and no pool crate
//! Renewals must never wait behind claims (a lease renewed late is a run another replica may take
//! over), so they have a connection of their own; claims share the other. `tokio-postgres` pipelines
//! the calls made on one connection, so a burst of claims costs no round trip per claim, and the
//! server runs one replica's claims one after another (one server process), which with one
//! advisory-locked statement each is well under a millisecond (3000 claims a second from three
//! replicas in the scale test). A pool (`deadpool-postgres`, `bb8`) would add a crate and its own
//! connection set-up, when the TLS negotiation of `sslmode` (`allow`/`prefer` fall-backs, the
//! certificate checks of `tls.rs`) needs the connection attempts made here; two fixed connections
//! give the separation a pool would, without it.
//!
//! TLS (see `tls.rs` for the choice of crates) adds 18 crates more: rustls, `ring`, webpki, the
//! system's CA reader and the small DER/X.509 readers `tokio-postgres-rustls` uses for SCRAM
//! channel binding. It is part of the feature rather than a feature of its own: a managed database
//! requires it, and a plain build would be one a user finds out about in production.
//!
//! The user-facing rules (the claim, clocks, the table, TLS) are on [`PostgresCoordinator`];
//! the connection string is read in `url.rs`, TLS is set up in `tls.rs`.

mod tls;
mod url;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{try_join_all, BoxFuture};
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use self::tls::{Probe, SharedProbe};
use self::url::{Check, Secret, SslMode, Target};

use super::{
    outcome_parts, Claim, ClaimPolicy, Coordinator, CoordinatorError, Delivery, FinishedRun,
    RunRecord, Ticket,
};

/// The schema version this code creates and understands.
const SCHEMA_VERSION: u32 = 2;
/// `pg_advisory_xact_lock` key for schema changes (ASCII "Schedulr").
const MIGRATION_LOCK: i64 = 0x5363_6865_6475_6c72;
/// First key of the two-key `pg_advisory_xact_lock` that serializes claims of one service ("SCHD").
const CLAIM_LOCK_CLASS: i32 = 0x5343_4844;
const DEFAULT_TABLE: &str = "scheduler_runs";
const DEFAULT_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest horizon or lease: within PostgreSQL's dates (4713 BC on) when taken from now,
/// and far within its intervals.
const LONGEST_INTERVAL: Duration = Duration::from_secs(1000 * 366 * 24 * 3600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Replicas coordinated through a PostgreSQL table (feature `postgres`).
///
/// Each replica of the app builds one with its own name; they share nothing but the database.
/// Construction does no I/O: the connections are opened on first use, and reopened by the next
/// call whenever one drops (see [Connections](#connections)). While the database is unreachable
/// every call fails, and the manager pauses coordinated runs, retries them with backoff, reports
/// it in [`ServiceStatus::coordinator_error`](crate::ServiceStatus), and resumes by itself; the
/// end of a run is retried until it is recorded.
///
/// ```no_run
/// use std::time::Duration;
/// use scheduler::{PostgresCoordinator, ServiceManager};
///
/// let coordinator = PostgresCoordinator::connect("postgres://app@db/app", "web-1")
///     .history_horizon(Duration::from_secs(24 * 3600));
/// let manager = ServiceManager::builder()
///     .with_registered_services()
///     .coordinator(coordinator)
///     .build()?;
/// # Ok::<(), scheduler::Error>(())
/// ```
///
/// # Errors and misconfiguration
/// Nothing here panics. A builder input that cannot be used (an unparsable URL, a bad table name,
/// a zero timeout) makes every call fail with a message naming each problem, so the manager
/// reports it like an outage; [`validate`](PostgresCoordinator::validate) finds the same problems
/// at start-up. No message, log line or `Debug` output of the coordinator contains the password.
///
/// # TLS
/// The URL's `sslmode` and `sslrootcert` work as in libpq (`psql`, every PostgreSQL driver):
///
/// | `sslmode` | TLS | the server's certificate |
/// |---|---|---|
/// | `disable` | never | - |
/// | `allow` | only if the server refuses plain text | not checked |
/// | `prefer` (the default) | if the server offers it; plain text if the TLS attempt fails | not checked |
/// | `require` | always | not checked; with `sslrootcert=FILE`, as `verify-ca` |
/// | `verify-ca` | always | issued by a trusted CA |
/// | `verify-full` | always | issued by a trusted CA, for the host name in the URL |
///
/// The trusted CAs are those of `sslrootcert=PATH` (a PEM file, read at each connection, so a
/// rotated file is picked up), or the operating system's (`sslrootcert=system`, and the default).
/// With `require`, `verify-ca` and `verify-full` the coordinator never falls back to plain text: a
/// server that does not offer TLS, an untrusted certificate (naming the host and the CA file) and
/// a certificate for another host name are errors, reported in
/// [`ServiceStatus::coordinator_error`](crate::ServiceStatus) and the logs like an outage. A
/// managed database (RDS, Cloud SQL, Azure, Neon, Supabase) is reached with
/// `?sslmode=verify-full` and, for a provider's private CA, `&sslrootcert=/path/to/its-ca.pem`.
/// TLS does not apply to Unix sockets (as in libpq); client certificates (`sslcert`, `sslkey`)
/// are not supported.
///
/// ```no_run
/// use scheduler::PostgresCoordinator;
///
/// let coordinator = PostgresCoordinator::connect(
///     "postgres://app@db.internal:5432/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
///     "web-1",
/// );
/// coordinator.validate()?; // a typo in the URL is an error here rather than at the first claim
/// # Ok::<(), scheduler::CoordinatorError>(())
/// ```
///
/// # How a claim works
/// One round trip: `SELECT * FROM <table>_claim(service, tick, replica, lease, at_least_once)`, a
/// PL/pgSQL function created with the table. In its one transaction it:
///
/// 1. takes `pg_advisory_xact_lock(<class>, hashtext('<table>/<service>'))`: claims of one service
///    are serialized across the cluster (a hash collision between two services only serializes
///    them too). Each statement after it sees every claim committed before it (a volatile
///    function's statements each take a new snapshot);
/// 2. applies [`decide`](crate::coordinator::decide), the rule
///    [`InMemoryCoordinator`](crate::InMemoryCoordinator) applies, to the row of (service, tick) and
///    the service's unfinished rows, in tick order, with the database's clock as "now";
/// 3. marks expired rows `abandoned`, takes one over (attempt + 1), grants a retry its own failed
///    row again (attempt + 1), or inserts the tick's row, as the rule says. A runner's renewal or report that lands between the rule's reading of a row and
///    its update is not overwritten: the update re-checks the lease and the row, and a row that came
///    alive again answers `Busy`.
///
/// # Connections
/// Each coordinator keeps two connections: one for claims (and history), one for renewals, reports
/// and releases, so that a lease is never renewed late because claims queue ahead of it. Calls on
/// one connection are pipelined (sent without waiting for the previous answer). When a connection
/// breaks, the next call on it reconnects at once; calls that were waiting while an attempt failed
/// get that attempt's error, so an outage costs one attempt per wave of calls rather than one per
/// call, and no call is refused on the strength of a failure that ended before it was made.
///
/// # Time and clock skew
/// Leases use the **database's** clock (`clock_timestamp()`), never a replica's: a lease set by one
/// replica and checked by another is compared on one clock. Ticks, on the other hand, are computed
/// by each replica from its own clock (they are the schedule's instants, the same on every replica:
/// fixed periods are anchored at the Unix epoch in coordinated mode). A replica whose clock is off
/// by *d* attempts each tick *d* early or late. **Correctness does not depend on skew**: a tick is a
/// key, and a key is granted once, whenever it is claimed. **Liveness does**: a replica that is
/// late by more than the job's duration finds the tick already done (`Taken`, fine); one that is
/// early by a whole period would claim ticks before the others — still once each. Keep skew well
/// under the period and under the lease (NTP gives milliseconds), and the first replica to a tick
/// simply runs it.
///
/// # The table
/// ```sql
/// CREATE TABLE scheduler_runs (
///     service     text        NOT NULL,
///     tick        timestamptz NOT NULL,   -- microsecond precision
///     replica     text        NOT NULL,   -- who runs (ran) it
///     attempt     integer     NOT NULL,   -- > 1 after a takeover (at-least-once)
///     lease       interval    NOT NULL,
///     claimed_at  timestamptz NOT NULL,   -- database time
///     lease_until timestamptz NOT NULL,   -- database time
///     started_at  timestamptz,            -- the runner's report (claim time until then)
///     finished_at timestamptz,
///     outcome     text,                   -- ok | failed | panicked | aborted | timed_out
///                                         -- | abandoned | skipped
///     error       text,
///     PRIMARY KEY (service, tick)
/// );
/// -- unfinished runs of a service, and pruning by age
/// CREATE INDEX scheduler_runs_unfinished ON scheduler_runs (service, tick)
///     WHERE finished_at IS NULL AND outcome IS NULL;
/// CREATE INDEX scheduler_runs_tick ON scheduler_runs (tick);
/// ```
/// [`prepare`](Coordinator::prepare) creates it (and every call does, until that worked once)
/// inside a transaction holding `pg_advisory_xact_lock`, so replicas starting together do not race.
/// The claim function `<table>_claim` is created (or replaced) with it. The table's comment carries a
/// schema version (2: the claim function and fenced reports); a table with a newer version than this
/// code knows is refused rather than misused, and a replica of an older version refuses this one. Rows whose tick is older than the
/// [history horizon](PostgresCoordinator::history_horizon) are deleted, at most once a minute, after
/// a run is recorded (never a run that is still going).
pub struct PostgresCoordinator {
    replica: String,
    target: Option<Target>,
    /// What is wrong with the builder's inputs, each naming the input; every call fails with them.
    problems: Vec<String>,
    table: Table,
    horizon: Duration,
    timeout: Duration,
    /// Claims and history.
    claims: Mutex<Link>,
    /// Renewals, reports and releases: never queued behind a claim.
    leases: Mutex<Link>,
    /// The schema was created (or checked) by one of the connections.
    schema_ready: AtomicBool,
    last_prune: std::sync::Mutex<Option<Instant>>,
}

/// `tokio-postgres`'s words for a server that answered "no" to the TLS request.
const NO_TLS: &str = "server does not support TLS";
/// And for a TLS handshake that failed (before or while the certificate was checked).
const TLS_FAILED: &str = "error performing TLS handshake";

/// Why a connection attempt failed.
struct Failed {
    /// The message, password masked.
    message: String,
    /// TLS was in use, or its handshake failed: what makes `prefer` try plain text.
    handshake: bool,
    /// The server answered with an error (authentication, `pg_hba.conf`), rather than the
    /// network or TLS failing.
    server_refused: bool,
}

/// One connection slot. The lock is held only to look at it, or while (re)connecting, so that one
/// attempt serves every call waiting for it; operations run on a shared `Arc<Conn>`, pipelined.
struct Link {
    conn: Option<Arc<Conn>>,
    /// The last failed attempt: when it ended, and why it failed.
    failed: Option<(Instant, String)>,
}

impl Link {
    const fn new() -> Link {
        Link {
            conn: None,
            failed: None,
        }
    }
}

struct Conn {
    client: Client,
    statements: Statements,
}

struct Statements {
    claim: Statement,
    renew: Statement,
    finish: Statement,
    release: Statement,
    history: Statement,
    prune: Statement,
}

/// A validated table name, `name` or `schema.name`.
#[derive(Debug, Clone)]
struct Table {
    schema: Option<String>,
    name: String,
}

impl Table {
    fn parse(name: &str) -> Result<Table, String> {
        let valid = |part: &str| {
            part.len() <= 48
                && part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        match name.split('.').collect::<Vec<_>>()[..] {
            [table] if valid(table) => Ok(Table {
                schema: None,
                name: table.to_owned(),
            }),
            [schema, table] if valid(schema) && valid(table) => Ok(Table {
                schema: Some(schema.to_owned()),
                name: table.to_owned(),
            }),
            _ => Err(format!(
                "'{name}' is not a table name the coordinator accepts: `name` or `schema.name`, \
                 each of ASCII letters, digits and `_` (not first), at most 48 characters"
            )),
        }
    }

    /// The quoted, possibly qualified name for SQL.
    fn sql(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }

    /// The quoted, possibly qualified name of the object `<table><suffix>` (the claim function).
    fn sql_with(&self, suffix: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}{suffix}\"", self.name),
            None => format!("\"{}{suffix}\"", self.name),
        }
    }

    /// Unquoted, for lock keys and messages.
    fn plain(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl PostgresCoordinator {
    /// A coordinator for the replica `replica` on the database at `url`, a `postgres://` URL or a
    /// `key=value` connection string, as libpq reads them (see [TLS](#tls) for `sslmode`).
    /// Nothing is opened yet; an unparsable `url` or an empty `replica` makes every call fail with
    /// the reason (and the manager report it), as does [`validate`](Self::validate).
    pub fn connect(url: &str, replica: impl Into<String>) -> PostgresCoordinator {
        let replica = replica.into();
        let mut problems = Vec::new();
        if replica.trim().is_empty() {
            problems.push("the replica name is empty: give each replica its own name".to_owned());
        } else if replica.contains('\0') {
            problems.push(format!(
                "the replica name {replica:?} contains a NUL character, which PostgreSQL refuses"
            ));
        }
        let target = url::parse(url, &replica)
            .map_err(|error| problems.push(error))
            .ok();
        PostgresCoordinator {
            replica,
            target,
            problems,
            table: Table {
                schema: None,
                name: DEFAULT_TABLE.to_owned(),
            },
            horizon: DEFAULT_HORIZON,
            timeout: DEFAULT_TIMEOUT,
            claims: Mutex::new(Link::new()),
            leases: Mutex::new(Link::new()),
            schema_ready: AtomicBool::new(false),
            last_prune: std::sync::Mutex::new(None),
        }
    }

    /// Deletes runs whose tick is older than `horizon` (default 7 days), at most once a minute,
    /// after recording a run. Runs still going are kept whatever their age. A horizon beyond
    /// 1000 years (`Duration::MAX`, say) counts as 1000 years: it keeps everything, where a longer
    /// one would be out of PostgreSQL's range of dates.
    #[must_use]
    pub fn history_horizon(mut self, horizon: Duration) -> Self {
        self.horizon = horizon.min(LONGEST_INTERVAL);
        self
    }

    /// The runs table, `name` or `schema.name` (default `scheduler_runs`); every replica of a
    /// cluster must use the same. Separate tables make separate clusters on one database.
    ///
    /// `name` must be a plain identifier (ASCII letters, digits, `_`, not starting with a digit;
    /// at most 48 characters), optionally qualified by a schema of the same form. Any other name
    /// is a problem that every call (and [`validate`](Self::validate)) reports.
    #[must_use]
    pub fn table(mut self, name: &str) -> Self {
        match Table::parse(name) {
            Ok(table) => self.table = table,
            Err(message) => self.problems.push(format!("table: {message}")),
        }
        self
    }

    /// How long one database operation (connecting included) may take before it counts as a
    /// failure and the connection is dropped (default 10 s). Zero is a problem that every call
    /// (and [`validate`](Self::validate)) reports.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            self.problems
                .push("timeout: 0s leaves no time for any operation".to_owned());
        }
        self.timeout = timeout;
        self
    }

    /// Checks the builder's inputs without connecting: the URL (its syntax and TLS settings),
    /// the replica name, the table name and the timeout.
    ///
    /// # Errors
    /// One error listing every problem, each naming the input at fault; the same error that every
    /// call returns otherwise. It never contains the URL's password.
    pub fn validate(&self) -> Result<(), CoordinatorError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(CoordinatorError::new(format!(
                "PostgreSQL coordinator misconfigured: {}",
                self.problems.join("; ")
            )))
        }
    }

    /// The password, to be masked in messages.
    fn secret(&self) -> Secret {
        self.target
            .as_ref()
            .map(|target| target.secret.clone())
            .unwrap_or_default()
    }

    /// The connection of `link`, opened (schema in place, statements prepared) if it was not.
    async fn session(&self, link: &Mutex<Link>) -> Result<Arc<Conn>, CoordinatorError> {
        self.validate()?;
        let asked = Instant::now();
        let mut link = link.lock().await;
        if let Some(conn) = &link.conn {
            if !conn.client.is_closed() {
                return Ok(conn.clone());
            }
            link.conn = None;
        }
        // An attempt that ended after this call began (the calls that waited while it ran) answers
        // for this call too: one attempt per wave of calls, however long an attempt takes. An
        // older failure is never returned: this call tries.
        if let Some((ended, error)) = &link.failed {
            if *ended >= asked {
                return Err(CoordinatorError::new(error.clone()));
            }
        }
        match self.open_session().await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                link.conn = Some(conn.clone());
                link.failed = None;
                Ok(conn)
            }
            Err(error) => {
                link.failed = Some((Instant::now(), error.clone()));
                Err(CoordinatorError::new(error))
            }
        }
    }

    /// A new connection with the schema in place and the statements prepared, or the error.
    async fn open_session(&self) -> Result<Conn, String> {
        let mut client = match timeout(self.timeout, self.open()).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(format!(
                    "PostgreSQL unreachable: {}",
                    self.secret().scrub(error)
                ))
            }
            Err(_) => {
                return Err(format!(
                    "PostgreSQL unreachable: no connection within {:?}",
                    self.timeout
                ))
            }
        };
        let setup = async {
            if !self.schema_ready.load(Ordering::Acquire) {
                migrate(&mut client, &self.table).await?;
                self.schema_ready.store(true, Ordering::Release);
            }
            Statements::prepare(&client, &self.table)
                .await
                .map_err(|e| describe(&e))
        };
        match timeout(self.timeout, setup).await {
            Ok(Ok(statements)) => Ok(Conn { client, statements }),
            Ok(Err(error)) => Err(format!("PostgreSQL schema: {error}")),
            Err(_) => Err(format!(
                "PostgreSQL schema: no answer within {:?}",
                self.timeout
            )),
        }
    }

    /// A new connection, with TLS as `sslmode` says (see [TLS](PostgresCoordinator#tls)).
    async fn open(&self) -> Result<Client, String> {
        let Some(target) = &self.target else {
            return Err("no connection string".to_owned());
        };
        let mode = if target.only_unix_sockets() {
            SslMode::Disable
        } else {
            target.tls.mode
        };
        let conn = match mode {
            SslMode::Disable => self.attempt(target, WireMode::Disable).await,
            SslMode::Allow => match self.attempt(target, WireMode::Disable).await {
                // libpq: a server that refused the plain connection is asked again with TLS.
                Err(failed) if failed.server_refused => {
                    tracing::debug!(replica = %self.replica, error = %failed.message,
                        "PostgreSQL refused plain text, trying TLS (sslmode=allow)");
                    self.attempt(target, WireMode::Require).await
                }
                other => other,
            },
            SslMode::Prefer => match self.attempt(target, WireMode::Prefer).await {
                // libpq: whatever went wrong once TLS was in use, plain text is tried once.
                Err(failed) if failed.handshake => {
                    tracing::info!(replica = %self.replica, error = %failed.message,
                        "PostgreSQL over TLS failed, connecting without TLS (sslmode=prefer)");
                    self.attempt(target, WireMode::Disable).await
                }
                other => other,
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                self.attempt(target, WireMode::Require).await
            }
        };
        let (conn, encrypted) = conn.map_err(|failed| failed.message)?;
        tracing::debug!(replica = %self.replica, server = %target.describe(), tls = encrypted,
            "connected to PostgreSQL");
        Ok(conn)
    }

    /// One connection attempt; `Ok` says whether TLS is in use.
    async fn attempt(&self, target: &Target, wire: WireMode) -> Result<(Client, bool), Failed> {
        let probe = SharedProbe::default();
        let fail = |message: String| Failed {
            message: target.secret.scrub(message),
            handshake: false,
            server_refused: false,
        };
        // Plain text needs no CA file (a Unix socket under verify-full, say).
        let check = if wire == WireMode::Disable {
            &Check::Nothing
        } else {
            &target.tls.check
        };
        let connector = tls::connector(target.tls.mode, check, probe.clone()).map_err(fail)?;
        let mut config = target.config.clone();
        config.ssl_mode(wire);
        let (client, connection) = match config.connect(connector).await {
            Ok(connected) => connected,
            Err(error) => {
                return Err(explain(target, wire, &error, tls::take(&probe)));
            }
        };
        let encrypted = tls::take(&probe).handshake;
        let replica = self.replica.clone();
        let secret = target.secret.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                let error = secret.scrub(describe(&error));
                tracing::warn!(%replica, %error, "PostgreSQL connection lost");
            }
        });
        Ok((client, encrypted))
    }

    /// Runs one operation on `link`'s connection, within the timeout. On any failure the
    /// connection is dropped, so the next call opens a fresh one (a timed-out or broken connection
    /// may be in any state).
    async fn on<T, F, Fut>(
        &self,
        link: &Mutex<Link>,
        what: &str,
        operation: F,
    ) -> Result<T, CoordinatorError>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let conn = self.session(link).await?;
        let error = match timeout(self.timeout, operation(conn.clone())).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => describe(&error),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        let mut link = link.lock().await;
        if link.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
            link.conn = None;
        }
        Err(CoordinatorError::new(format!(
            "PostgreSQL {what}: {}",
            self.secret().scrub(error)
        )))
    }

    async fn claim_now(
        &self,
        service: &str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> Result<Claim, CoordinatorError> {
        // A longer lease would not fit an interval; 1000 years is forever here too.
        let lease = millis(policy.lease.min(LONGEST_INTERVAL));
        let at_least_once = policy.delivery == Delivery::AtLeastOnce;
        let retry = policy.attempt > 1;
        let row = self
            .on(&self.claims, "claim", |conn| async move {
                let replica: &str = &self.replica;
                conn.client
                    .query_one(
                        &conn.statements.claim,
                        &[&service, &tick, &replica, &lease, &at_least_once, &retry],
                    )
                    .await
            })
            .await?;
        let answer = || -> Result<Claim, tokio_postgres::Error> {
            let verdict: &str = row.try_get("verdict")?;
            let holder: Option<String> = row.try_get("holder")?;
            let holder = holder.unwrap_or_else(|| "unknown".to_owned());
            let held_tick: Option<DateTime<Utc>> = row.try_get("held_tick")?;
            let attempt: Option<i32> = row.try_get("held_attempt")?;
            Ok(match (verdict, held_tick) {
                ("granted", Some(held)) => Claim::Granted(Ticket {
                    service: service.to_owned(),
                    tick: held,
                    attempt: attempt.and_then(|a| u32::try_from(a).ok()).unwrap_or(1),
                }),
                ("busy", Some(held)) => Claim::Busy {
                    replica: holder,
                    tick: held,
                },
                _ => Claim::Taken { replica: holder },
            })
        };
        answer().map_err(|error| {
            CoordinatorError::new(format!("PostgreSQL claim: {}", describe(&error)))
        })
    }

    /// Runs one fenced update (renew, finish, release) on the leases connection: whether it
    /// changed the row.
    async fn fenced(
        &self,
        what: &str,
        ticket: &Ticket,
        statement: fn(&Statements) -> &Statement,
        more: &[&(dyn ToSql + Sync)],
    ) -> Result<bool, CoordinatorError> {
        let attempt = i32::try_from(ticket.attempt).unwrap_or(i32::MAX);
        let replica: &str = &self.replica;
        let changed = self
            .on(&self.leases, what, |conn| async move {
                let mut params: Vec<&(dyn ToSql + Sync)> =
                    vec![&ticket.service, &ticket.tick, &replica, &attempt];
                params.extend_from_slice(more);
                conn.client
                    .execute(statement(&conn.statements), &params)
                    .await
            })
            .await?;
        Ok(changed > 0)
    }

    async fn finish_now(
        &self,
        ticket: &Ticket,
        run: &FinishedRun,
    ) -> Result<bool, CoordinatorError> {
        let (outcome, error) = outcome_parts(&run.outcome);
        let recorded = self
            .fenced(
                "finish",
                ticket,
                |s| &s.finish,
                &[&run.started, &run.finished, &outcome, &error],
            )
            .await?;
        self.prune().await;
        Ok(recorded)
    }

    /// Deletes rows past the horizon, at most once a minute (after a report).
    async fn prune(&self) {
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|last| last.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let horizon = millis(self.horizon);
        let result = self
            .on(&self.leases, "prune", |conn| async move {
                conn.client
                    .execute(&conn.statements.prune, &[&horizon])
                    .await
            })
            .await;
        match result {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "old runs pruned"),
            Err(error) => tracing::warn!(%error, "old runs not pruned"),
        }
    }

    async fn history_now(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, CoordinatorError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .on(&self.claims, "history", |conn| async move {
                conn.client
                    .query(&conn.statements.history, &[&service, &limit])
                    .await
            })
            .await?;
        rows.iter()
            .map(|row| {
                let attempt: i32 = row.try_get("attempt").map_err(|e| decode(&e))?;
                Ok(RunRecord::new(
                    row.try_get("service").map_err(|e| decode(&e))?,
                    row.try_get("tick").map_err(|e| decode(&e))?,
                    row.try_get("replica").map_err(|e| decode(&e))?,
                    u32::try_from(attempt).unwrap_or(0),
                    row.try_get("started_at").map_err(|e| decode(&e))?,
                    row.try_get("finished_at").map_err(|e| decode(&e))?,
                    row.try_get("outcome").map_err(|e| decode(&e))?,
                    row.try_get("error").map_err(|e| decode(&e))?,
                ))
            })
            .collect()
    }
}

impl Statements {
    async fn prepare(client: &Client, table: &Table) -> Result<Statements, tokio_postgres::Error> {
        let t = table.sql();
        let claim = table.sql_with("_claim");
        // $1 service, $2 tick, $3 replica, $4 attempt: the fencing token of every update below.
        let fence = "service = $1 AND tick = $2 AND replica = $3 AND attempt = $4";
        let unfinished = "finished_at IS NULL AND outcome IS NULL";
        let sql = [
            format!(
                "SELECT verdict, holder, held_tick, held_attempt \
                 FROM {claim}($1::text, $2::timestamptz, $3::text, $4::bigint, $5::boolean, \
                    $6::boolean)"
            ),
            format!(
                "UPDATE {t} SET lease_until = clock_timestamp() + lease \
                 WHERE {fence} AND {unfinished}"
            ),
            // A report replaces an `abandoned` mark (the run did end, and this is how), never a
            // takeover's row (another attempt).
            format!(
                "UPDATE {t} SET started_at = $5, finished_at = $6, outcome = $7, error = $8, \
                    lease_until = least(lease_until, clock_timestamp()) \
                 WHERE {fence}"
            ),
            format!(
                "UPDATE {t} SET outcome = 'skipped', error = $5, \
                    lease_until = least(lease_until, clock_timestamp()) \
                 WHERE {fence} AND {unfinished}"
            ),
            format!(
                "SELECT service, tick, replica, attempt, coalesce(started_at, claimed_at) \
                    AS started_at, finished_at, outcome, error \
                 FROM {t} WHERE service = $1 ORDER BY tick DESC LIMIT $2"
            ),
            format!(
                "DELETE FROM {t} \
                 WHERE tick < clock_timestamp() - $1::bigint * interval '1 millisecond' \
                   AND (outcome IS NOT NULL OR lease_until < clock_timestamp())"
            ),
        ];
        // Sent together: the client pipelines them, one round trip in all.
        let prepared = try_join_all(sql.iter().map(|sql| client.prepare(sql))).await?;
        let Ok([claim, renew, finish, release, history, prune]) =
            <[Statement; 6]>::try_from(prepared)
        else {
            unreachable!("six statements prepared")
        };
        Ok(Statements {
            claim,
            renew,
            finish,
            release,
            history,
            prune,
        })
    }
}

/// Creates (or checks) the schema, under a cluster-wide lock.
async fn migrate(client: &mut Client, table: &Table) -> Result<(), String> {
    let pg = |error: tokio_postgres::Error| describe(&error);
    let t = table.sql();
    let name = &table.name;
    let tx = client.transaction().await.map_err(pg)?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .map_err(pg)?;
    // Validated identifiers contain no quote, so the name is safe inside a literal.
    let comment: Option<String> = tx
        .query_one(
            &format!("SELECT obj_description(to_regclass('{t}'), 'pg_class')"),
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    let version = comment
        .as_deref()
        .and_then(|c| c.rsplit_once("schema version "))
        .and_then(|(_, v)| v.trim().parse::<u32>().ok());
    if let Some(version) = version.filter(|v| *v > SCHEMA_VERSION) {
        return Err(format!(
            "table {} has schema version {version}, newer than this scheduler's \
             {SCHEMA_VERSION}: upgrade this replica",
            table.plain()
        ));
    }
    let mut ddl = String::new();
    if let Some(schema) = &table.schema {
        let _ = writeln!(ddl, "CREATE SCHEMA IF NOT EXISTS \"{schema}\";");
    }
    let _ = write!(
        ddl,
        "CREATE TABLE IF NOT EXISTS {t} (
            service     text        NOT NULL,
            tick        timestamptz NOT NULL,
            replica     text        NOT NULL,
            attempt     integer     NOT NULL,
            lease       interval    NOT NULL,
            claimed_at  timestamptz NOT NULL,
            lease_until timestamptz NOT NULL,
            started_at  timestamptz,
            finished_at timestamptz,
            outcome     text,
            error       text,
            PRIMARY KEY (service, tick)
        );
        CREATE INDEX IF NOT EXISTS \"{name}_unfinished\" ON {t} (service, tick)
            WHERE finished_at IS NULL AND outcome IS NULL;
        CREATE INDEX IF NOT EXISTS \"{name}_tick\" ON {t} (tick);
        COMMENT ON TABLE {t} IS 'scheduler: one row per claimed (service, tick); \
            schema version {SCHEMA_VERSION}';"
    );
    ddl.push_str(&claim_function(table));
    tx.batch_execute(&ddl).await.map_err(pg)?;
    tx.commit().await.map_err(pg)
}

/// The claim, server side: [`decide`](crate::coordinator::decide) in PL/pgSQL (see "How a claim
/// works" on [`PostgresCoordinator`]). Each branch names the line of the rule it mirrors.
fn claim_function(table: &Table) -> String {
    let t = table.sql();
    let f = table.sql_with("_claim");
    // Validated identifiers contain no quote, so the name is safe inside a literal.
    let key = table.plain();
    format!(
        "
CREATE OR REPLACE FUNCTION {f}(
    p_service text, p_tick timestamptz, p_replica text, p_lease_ms bigint,
    p_at_least_once boolean, p_retry boolean,
    OUT verdict text, OUT holder text, OUT held_tick timestamptz, OUT held_attempt integer)
LANGUAGE plpgsql VOLATILE AS $claim$
DECLARE
    lease_len interval := p_lease_ms * interval '1 millisecond';
    now_ timestamptz;
    found_ record;
    row_ record;
BEGIN
    -- Claims of one service, one at a time across the cluster.
    PERFORM pg_advisory_xact_lock({CLAIM_LOCK_CLASS}, hashtext('{key}/' || p_service));
    now_ := clock_timestamp();
    SELECT r.replica, r.outcome INTO found_ FROM {t} r
        WHERE r.service = p_service AND r.tick = p_tick;
    IF FOUND THEN
        IF p_retry AND found_.replica = p_replica
                AND found_.outcome IN ('failed', 'panicked', 'timed_out') THEN
            -- A retry of this replica's failed run: granted again.
            UPDATE {t} r SET attempt = r.attempt + 1, lease = lease_len, claimed_at = now_,
                    started_at = now_, lease_until = now_ + lease_len, finished_at = NULL,
                    outcome = NULL, error = NULL
                WHERE r.service = p_service AND r.tick = p_tick
                RETURNING r.attempt INTO held_attempt;
            verdict := 'granted'; holder := p_replica; held_tick := p_tick; RETURN;
        END IF;
        -- The asked tick has a row: taken.
        verdict := 'taken'; holder := found_.replica; RETURN;
    END IF;
    FOR row_ IN
        SELECT r.tick, r.replica, r.lease_until FROM {t} r
        WHERE r.service = p_service AND r.finished_at IS NULL AND r.outcome IS NULL
        ORDER BY r.tick
    LOOP
        IF row_.lease_until > now_ THEN
            -- A live lease: busy.
            verdict := 'busy'; holder := row_.replica; held_tick := row_.tick; RETURN;
        END IF;
        IF p_at_least_once THEN
            -- Expired, at least once: take it over.
            UPDATE {t} r SET replica = p_replica, attempt = r.attempt + 1, lease = lease_len,
                    claimed_at = now_, started_at = now_, lease_until = now_ + lease_len
                WHERE r.service = p_service AND r.tick = row_.tick
                  AND r.finished_at IS NULL AND r.outcome IS NULL AND r.lease_until <= now_
                RETURNING r.attempt INTO held_attempt;
            IF FOUND THEN
                verdict := 'granted'; holder := p_replica; held_tick := row_.tick; RETURN;
            END IF;
        ELSE
            -- Expired, at most once: abandoned.
            UPDATE {t} r SET outcome = 'abandoned'
                WHERE r.service = p_service AND r.tick = row_.tick
                  AND r.finished_at IS NULL AND r.outcome IS NULL AND r.lease_until <= now_;
        END IF;
        IF NOT FOUND THEN
            -- Its runner renewed or reported in between: busy if it is still going.
            PERFORM 1 FROM {t} r WHERE r.service = p_service AND r.tick = row_.tick
                AND r.finished_at IS NULL AND r.outcome IS NULL;
            IF FOUND THEN
                verdict := 'busy'; holder := row_.replica; held_tick := row_.tick; RETURN;
            END IF;
        END IF;
    END LOOP;
    -- Nothing in the way: insert, granted.
    INSERT INTO {t} (service, tick, replica, attempt, lease, claimed_at, started_at, lease_until)
        VALUES (p_service, p_tick, p_replica, 1, lease_len, now_, now_, now_ + lease_len)
        ON CONFLICT (service, tick) DO NOTHING;
    IF FOUND THEN
        verdict := 'granted'; holder := p_replica; held_tick := p_tick; held_attempt := 1;
    ELSE
        -- Only a writer that claims without the lock (a foreign one) gets here.
        verdict := 'taken'; holder := 'unknown';
    END IF;
END
$claim$;"
    )
}

/// A failed attempt in words: TLS refusals as the issue's user needs to read them.
fn explain(target: &Target, wire: WireMode, error: &tokio_postgres::Error, probe: Probe) -> Failed {
    let text = describe(error);
    let tls_in_use = probe.handshake || text.starts_with(TLS_FAILED);
    let mode = target.tls.mode.name();
    let message = if let Some(refused) = probe.refused {
        format!("TLS: {refused}")
    } else if wire == WireMode::Require && text.ends_with(NO_TLS) {
        format!(
            "TLS: the server at {} does not offer TLS, and sslmode={mode} allows no plain text",
            target.hosts()
        )
    } else if let Some(reason) = text.strip_prefix(TLS_FAILED) {
        format!(
            "TLS: the handshake with {} failed (sslmode={mode}){reason}",
            target.hosts()
        )
    } else {
        text
    };
    Failed {
        message: target.secret.scrub(message),
        handshake: tls_in_use,
        server_refused: error.as_db_error().is_some(),
    }
}

/// An error with its causes: `tokio-postgres` puts the server's message in the source.
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn decode(error: &tokio_postgres::Error) -> CoordinatorError {
    CoordinatorError::new(format!("PostgreSQL history: {}", describe(error)))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Coordinator for PostgresCoordinator {
    fn replica(&self) -> &str {
        &self.replica
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        Box::pin(async move { self.session(&self.claims).await.map(drop) })
    }

    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        Box::pin(self.claim_now(service, tick, policy))
    }

    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(self.fenced("renew", ticket, |s| &s.renew, &[]))
    }

    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(self.finish_now(ticket, run))
    }

    fn release<'a>(
        &'a self,
        ticket: &'a Ticket,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(async move {
            self.fenced("release", ticket, |s| &s.release, &[&reason])
                .await
        })
    }

    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        Box::pin(self.history_now(service, limit))
    }

    fn last_tick<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, CoordinatorError>> {
        Box::pin(async move {
            // Rows older than the history horizon are pruned: a longer outage is not caught up.
            let sql = format!(
                "SELECT max(tick) AS tick FROM {} WHERE service = $1",
                self.table.sql()
            );
            let sql = &sql;
            let row = self
                .on(&self.claims, "last tick", |conn| async move {
                    conn.client.query_one(sql, &[&service]).await
                })
                .await?;
            row.try_get("tick").map_err(|e| decode(&e))
        })
    }
}

impl std::fmt::Debug for PostgresCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("PostgresCoordinator");
        f.field("replica", &self.replica);
        if let Some(target) = &self.target {
            f.field("server", &target.describe())
                .field("sslmode", &target.tls.mode.name());
        }
        if !self.problems.is_empty() {
            f.field("problems", &self.problems);
        }
        f.field("table", &self.table.plain())
            .field("history_horizon", &self.horizon)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
