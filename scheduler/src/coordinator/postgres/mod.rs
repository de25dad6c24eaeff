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
//! # Why fixed connections (and a listener), and no pool crate
//! Renewals must never wait behind claims (a lease renewed late is a run another replica may take
//! over), so they have a connection of their own. Claims go in batches (`batch.rs`, group commit):
//! every tick due in one wake of the dispatcher is claimed by one statement per batch, over a
//! small fixed set of claim connections (2 by default, see
//! [`PostgresCoordinator::claim_connections`]), each carrying one batch at a time; the history,
//! control records and heartbeats have one more. A pool (`deadpool-postgres`, `bb8`) would add a
//! crate and its own connection set-up, when the TLS negotiation of `sslmode` (`allow`/`prefer`
//! fall-backs, the certificate checks of `tls.rs`) needs the connection attempts made here; fixed
//! connections with a role each give the separation a pool would, without it.
//!
//! TLS (see `tls.rs` for the choice of crates) adds 18 crates more: rustls, `ring`, webpki, the
//! system's CA reader and the small DER/X.509 readers `tokio-postgres-rustls` uses for SCRAM
//! channel binding. It is part of the feature rather than a feature of its own: a managed database
//! requires it, and a plain build would be one a user finds out about in production.
//!
//! The user-facing rules (the claim, clocks, the table, TLS) are on [`PostgresCoordinator`];
//! the connection string is read in `url.rs`, TLS is set up in `tls.rs`.

mod batch;
mod tls;
mod url;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{try_join_all, BoxFuture};
use tokio::sync::{Mutex, Notify};
use tokio::time::{timeout, Instant};
use tokio_postgres::config::SslMode as WireMode;

use batch::GroupCommit;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Statement};

use self::tls::{Probe, SharedProbe};
use self::url::{Check, Secret, SslMode, Target};

use super::{
    outcome_parts, Claim, ClaimPolicy, ControlRecord, Coordinator, CoordinatorError, Delivery,
    FinishedRun, Heartbeat, HistoryQuery, NameUse, ReplicaRecord, RunRecord, Ticket,
};

/// The schema version this code creates and understands.
const SCHEMA_VERSION: u32 = 3;
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
/// `pg_advisory_xact_lock` key that serializes control writes ("Controls"), so that versions
/// become visible in their order.
const CONTROL_LOCK: i64 = 0x436f_6e74_726f_6c73;
/// How long a failed attempt to open the listening connection waits before the next, and how
/// often an open one is checked for having dropped.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// Connections that carry claims, by default (see [`PostgresCoordinator::claim_connections`]).
const DEFAULT_CLAIM_CONNECTIONS: usize = 2;
const MOST_CLAIM_CONNECTIONS: usize = 16;
/// Claims sent in one statement at most, by default (see [`PostgresCoordinator::claim_batch`]).
const DEFAULT_CLAIM_BATCH: usize = 256;
const LARGEST_CLAIM_BATCH: usize = 10_000;

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
/// Claims made at about the same time (the ticks due in one wake) share a round trip:
/// `SELECT * FROM <table>_claim_many(services[], ticks[], replica, leases[], ...)` claims each
/// element with `<table>_claim(service, tick, replica, lease, at_least_once, retry, manual)`, two
/// PL/pgSQL functions created with the table, taking the services in the order of their lock keys
/// (so that two replicas' batches never deadlock), at most [`claim_batch`](Self::claim_batch)
/// claims a statement. For each claim it:
///
/// 1. takes `pg_advisory_xact_lock(<class>, hashtext('<table>/<service>'))`: claims of one service
///    are serialized across the cluster (a hash collision between two services only serializes
///    them too). Each statement after it sees every claim committed before it (a volatile
///    function's statements each take a new snapshot);
/// 2. applies [`decide`](crate::coordinator::decide), the rule
///    [`InMemoryCoordinator`](crate::InMemoryCoordinator) applies, to the row of (service, tick) and
///    the service's unfinished rows, in tick order, with the database's clock as "now";
/// 3. marks expired rows `abandoned`, takes one over (attempt + 1), grants a retry its own failed
///    row again (attempt + 1), or inserts the tick's row, as the rule says. A takeover or a retry
///    first copies the attempt it replaces into `<table>_attempts` (a taken-over one as
///    `abandoned`), so the history keeps every attempt. A runner's renewal or report that lands between the rule's reading of a row and
///    its update is not overwritten: the update re-checks the lease and the row, and a row that came
///    alive again answers `Busy`.
///
/// # Connections
/// Each coordinator keeps [`claim_connections`](Self::claim_connections) connections for claims
/// (2 by default), one for the history, control writes and reads and heartbeats, and one for
/// renewals, reports and releases, so that a lease is never renewed late because claims queue
/// ahead of it. Calls on
/// one connection are pipelined (sent without waiting for the previous answer). When a connection
/// breaks, the next call on it reconnects at once; calls that were waiting while an attempt failed
/// get that attempt's error, so an outage costs one attempt per wave of calls rather than one per
/// call, and no call is refused on the strength of a failure that ended before it was made.
///
/// The control connection: a third connection `LISTEN`s on a channel of the table's cluster
/// (`scheduler_control_<hash of the table name>`) for the notifications of control writes
/// ([`Coordinator::control_changed`]); it is opened when the manager starts, and reopened at the
/// next wait after it drops (the manager polls every second meanwhile).
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
///     attempt     integer     NOT NULL,   -- > 1 after a retry or a takeover (at-least-once)
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
/// -- a tick's earlier attempts, kept when a retry or a takeover reuses its row
/// CREATE TABLE scheduler_runs_attempts (
///     service     text        NOT NULL,
///     tick        timestamptz NOT NULL,
///     attempt     integer     NOT NULL,
///     replica     text        NOT NULL,
///     started_at  timestamptz NOT NULL,
///     finished_at timestamptz,
///     outcome     text        NOT NULL,   -- a taken-over attempt is `abandoned`
///     error       text,
///     PRIMARY KEY (service, tick, attempt)
/// );
/// ```
/// The shared pause and resume state (see [Shared control
/// state](crate::coordinator#shared-control-state)), written only through the function
/// `<table>_set_control(service, paused, disabled, replica)` (a NULL switch is left as it is),
/// which serializes the writes with an advisory
/// lock (so versions become visible in their order) and sends the notification:
/// ```sql
/// CREATE SEQUENCE scheduler_runs_control_seq;
/// CREATE TABLE scheduler_runs_control (
///     service    text        PRIMARY KEY,
///     paused     boolean,               -- NULL: never paused or resumed
///     disabled   boolean,               -- NULL: never disabled or enabled
///     version    bigint      NOT NULL,   -- from the sequence: the last write wins
///     changed_by text        NOT NULL,   -- the replica
///     changed_at timestamptz NOT NULL    -- database time
/// );
/// ```
/// While a service's row says `disabled`, the claim function answers `disabled`; while it says
/// `paused`, `paused` for its ticks (a manual run aside).
///
/// [`prepare`](Coordinator::prepare) creates it (and every call does, until that worked once)
/// inside a transaction holding `pg_advisory_xact_lock`, so replicas starting together do not race.
/// The claim function `<table>_claim` is created (or replaced) with it. The table's comment carries a
/// schema version (3: the claim function, fenced reports, the attempts table and the control records below); a table with a newer version than this
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
    /// History, control records, heartbeats.
    records: Mutex<Link>,
    /// The claims, sent in batches (group commit), one lane per connection.
    claim_lanes: Box<[Mutex<Link>]>,
    claim_queue: GroupCommit<ClaimRequest, Result<Claim, CoordinatorError>>,
    /// `scheduler_coordinator_claim_batch_size`, registered at the first batch (after the
    /// application installed its recorder).
    #[cfg(feature = "metrics")]
    batch_sizes: std::sync::OnceLock<metrics::Histogram>,
    /// Renewals, reports and releases: never queued behind a claim.
    leases: Mutex<Link>,
    /// Renewals and reports made together go in one statement each way, on `leases`.
    renewals: GroupCommit<Ticket, Result<bool, CoordinatorError>>,
    reports: GroupCommit<(Ticket, FinishedRun), Result<bool, CoordinatorError>>,
    /// The connection that LISTENs for control writes (see [`Coordinator::control_changed`]).
    listen: Mutex<Option<Client>>,
    /// Woken by a notification on the listening connection (or its reconnection).
    notified: Arc<Notify>,
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

/// One claim waiting for its batch.
struct ClaimRequest {
    service: String,
    tick: DateTime<Utc>,
    policy: ClaimPolicy,
}

fn claim_lanes(connections: usize) -> Box<[Mutex<Link>]> {
    (0..connections).map(|_| Mutex::new(Link::new())).collect()
}

struct Statements {
    claim: Statement,
    renew: Statement,
    finish: Statement,
    release: Statement,
    history: Statement,
    prune: Statement,
    set_control: Statement,
    controls: Statement,
    heartbeat: Statement,
    contest: Statement,
    replicas: Statement,
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
            records: Mutex::new(Link::new()),
            claim_lanes: claim_lanes(DEFAULT_CLAIM_CONNECTIONS),
            claim_queue: GroupCommit::new(DEFAULT_CLAIM_CONNECTIONS, DEFAULT_CLAIM_BATCH),
            #[cfg(feature = "metrics")]
            batch_sizes: std::sync::OnceLock::new(),
            leases: Mutex::new(Link::new()),
            renewals: GroupCommit::new(1, DEFAULT_CLAIM_BATCH),
            reports: GroupCommit::new(1, DEFAULT_CLAIM_BATCH),
            listen: Mutex::new(None),
            notified: Arc::new(Notify::new()),
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

    /// How many connections carry claims (default 2, at most 16). Claims made at about the same
    /// time (all the ticks due in one wake of the dispatcher) go in batches, one statement each,
    /// and each connection carries one batch at a time; more connections let the server work on
    /// more batches at once, up to its cores. Out of range is a problem that every call (and
    /// [`validate`](Self::validate)) reports.
    #[must_use]
    pub fn claim_connections(mut self, connections: usize) -> Self {
        if (1..=MOST_CLAIM_CONNECTIONS).contains(&connections) {
            self.claim_lanes = claim_lanes(connections);
            self.claim_queue = GroupCommit::new(connections, self.claim_queue.max_batch());
        } else {
            self.problems.push(format!(
                "claim_connections: {connections} is not between 1 and {MOST_CLAIM_CONNECTIONS}"
            ));
        }
        self
    }

    /// The most claims one statement carries (default 256, at most 10 000); a larger burst goes
    /// in several. A batch holds the claim locks of its services until it commits, so a very large
    /// one makes other replicas' claims of those services wait longer. Out of range is a problem
    /// that every call (and [`validate`](Self::validate)) reports.
    #[must_use]
    pub fn claim_batch(mut self, claims: usize) -> Self {
        if (1..=LARGEST_CLAIM_BATCH).contains(&claims) {
            self.claim_queue = GroupCommit::new(self.claim_lanes.len(), claims);
        } else {
            self.problems.push(format!(
                "claim_batch: {claims} is not between 1 and {LARGEST_CLAIM_BATCH}"
            ));
        }
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
        let notified = self.notified.clone();
        tokio::spawn(async move {
            // Driven by its messages rather than awaited: a notification (only the listening
            // connection gets any) wakes `control_changed`.
            let mut connection = connection;
            let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            futures_util::pin_mut!(messages);
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => notified.notify_one(),
                    Ok(_) => {}
                    Err(error) => {
                        let error = secret.scrub(describe(&error));
                        tracing::warn!(%replica, %error, "PostgreSQL connection lost");
                        return;
                    }
                }
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

    /// Sends one batch of claims over claim connection `lane`, as one statement: an answer per
    /// claim, in order (the batch's error for each, if it failed).
    async fn claim_batch_now(
        &self,
        lane: usize,
        batch: Vec<ClaimRequest>,
    ) -> Vec<Result<Claim, CoordinatorError>> {
        #[cfg(feature = "metrics")]
        self.batch_sizes
            .get_or_init(|| {
                metrics::histogram!(crate::meter::names::CLAIM_BATCH, "replica" => self.replica.clone())
            })
            .record(batch.len() as f64);
        let services: Vec<&str> = batch.iter().map(|c| c.service.as_str()).collect();
        let ticks: Vec<DateTime<Utc>> = batch.iter().map(|c| c.tick).collect();
        // A longer lease would not fit an interval; 1000 years is forever here too.
        let leases: Vec<i64> = batch
            .iter()
            .map(|c| millis(c.policy.lease.min(LONGEST_INTERVAL)))
            .collect();
        let at_least_once: Vec<bool> = batch
            .iter()
            .map(|c| c.policy.delivery == Delivery::AtLeastOnce)
            .collect();
        let retries: Vec<bool> = batch.iter().map(|c| c.policy.attempt > 1).collect();
        let manual: Vec<bool> = batch.iter().map(|c| c.policy.manual).collect();
        let replica: &str = &self.replica;
        let (services, ticks, leases) = (&services, &ticks, &leases);
        let (at_least_once, retries, manual) = (&at_least_once, &retries, &manual);
        let rows = self
            .on(&self.claim_lanes[lane], "claim", |conn| async move {
                conn.client
                    .query(
                        &conn.statements.claim,
                        &[
                            services,
                            ticks,
                            &replica,
                            leases,
                            at_least_once,
                            retries,
                            manual,
                        ],
                    )
                    .await
            })
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => return batch.iter().map(|_| Err(error.clone())).collect(),
        };
        let mut answers: Vec<Option<Result<Claim, CoordinatorError>>> =
            batch.iter().map(|_| None).collect();
        for row in &rows {
            // `idx` counts from 1, as SQL arrays do.
            let index = row
                .try_get::<_, i32>("idx")
                .ok()
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| i.checked_sub(1));
            if let Some((answer, request)) =
                index.and_then(|i| answers.get_mut(i).zip(batch.get(i)))
            {
                *answer = Some(claim_answer(row, &request.service));
            }
        }
        answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(CoordinatorError::new(
                        "PostgreSQL claim: the batch came back without this claim's answer",
                    ))
                })
            })
            .collect()
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
        let recorded = self
            .reports
            .submit((ticket.clone(), run.clone()), |_, batch| {
                self.finish_batch(batch)
            })
            .await
            .unwrap_or_else(|| Err(given_up("finish")))?;
        self.prune().await;
        Ok(recorded)
    }

    /// Renews a batch of claims in one statement on the leases connection: whether each was
    /// still this attempt's and unfinished.
    async fn renew_batch(&self, batch: Vec<Ticket>) -> Vec<Result<bool, CoordinatorError>> {
        let services: Vec<&str> = batch.iter().map(|t| t.service.as_str()).collect();
        let ticks: Vec<DateTime<Utc>> = batch.iter().map(|t| t.tick).collect();
        let attempts: Vec<i32> = batch.iter().map(|t| attempt_number(t.attempt)).collect();
        let replica: &str = &self.replica;
        let (services, ticks, attempts) = (&services, &ticks, &attempts);
        let rows = self
            .on(&self.leases, "renew", |conn| async move {
                conn.client
                    .query(
                        &conn.statements.renew,
                        &[services, ticks, attempts, &replica],
                    )
                    .await
            })
            .await;
        fenced_answers(&batch, rows.and_then(|rows| changed_tokens(&rows)))
    }

    /// Records a batch of ended runs in one statement on the leases connection: whether each was
    /// still this attempt's.
    async fn finish_batch(
        &self,
        batch: Vec<(Ticket, FinishedRun)>,
    ) -> Vec<Result<bool, CoordinatorError>> {
        let services: Vec<&str> = batch.iter().map(|(t, _)| t.service.as_str()).collect();
        let ticks: Vec<DateTime<Utc>> = batch.iter().map(|(t, _)| t.tick).collect();
        let attempts: Vec<i32> = batch
            .iter()
            .map(|(t, _)| attempt_number(t.attempt))
            .collect();
        let started: Vec<DateTime<Utc>> = batch.iter().map(|(_, r)| r.started).collect();
        let finished: Vec<DateTime<Utc>> = batch.iter().map(|(_, r)| r.finished).collect();
        let outcomes: Vec<&str> = batch
            .iter()
            .map(|(_, r)| outcome_parts(&r.outcome).0)
            .collect();
        let errors: Vec<Option<&str>> = batch.iter().map(|(_, r)| r.error_text()).collect();
        let replica: &str = &self.replica;
        let (services, ticks, attempts) = (&services, &ticks, &attempts);
        let (started, finished, outcomes, errors) = (&started, &finished, &outcomes, &errors);
        let rows = self
            .on(&self.leases, "finish", |conn| async move {
                conn.client
                    .query(
                        &conn.statements.finish,
                        &[
                            services, ticks, attempts, &replica, started, finished, outcomes,
                            errors,
                        ],
                    )
                    .await
            })
            .await;
        let tickets: Vec<Ticket> = batch.into_iter().map(|(t, _)| t).collect();
        fenced_answers(&tickets, rows.and_then(|rows| changed_tokens(&rows)))
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
        query: &HistoryQuery,
    ) -> Result<Vec<RunRecord>, CoordinatorError> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let tick = query.before.map(|c| c.tick);
        let attempt = query
            .before
            .map(|c| i32::try_from(c.attempt).unwrap_or(i32::MAX));
        let started = query.before.map(|c| c.started);
        let outcomes = (!query.outcomes.is_empty()).then_some(&query.outcomes);
        let rows = self
            .on(&self.records, "history", |conn| async move {
                conn.client
                    .query(
                        &conn.statements.history,
                        &[&service, &limit, &tick, &attempt, &started, &outcomes],
                    )
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
        let sql: Vec<String> = Self::run_sql(table)
            .into_iter()
            .chain(Self::cluster_sql(table))
            .collect();
        // Sent together: the client pipelines them, one round trip in all.
        let prepared = try_join_all(sql.iter().map(|sql| client.prepare(sql))).await?;
        let Ok(
            [claim, renew, finish, release, history, prune, set_control, controls, heartbeat, contest, replicas],
        ) = <[Statement; 11]>::try_from(prepared)
        else {
            unreachable!("eleven statements prepared")
        };
        Ok(Statements {
            claim,
            renew,
            finish,
            release,
            history,
            prune,
            set_control,
            controls,
            heartbeat,
            contest,
            replicas,
        })
    }

    /// The statements of the runs: claim, renew, finish, release, history, prune.
    fn run_sql(table: &Table) -> [String; 6] {
        let t = table.sql();
        let claim_many = table.sql_with("_claim_many");
        let attempts = table.sql_with("_attempts");
        // $1 service, $2 tick, $3 replica, $4 attempt: the fencing token of every update below.
        let fence = "service = $1 AND tick = $2 AND replica = $3 AND attempt = $4";
        let unfinished = "finished_at IS NULL AND outcome IS NULL";
        let unfinished_r = "r.finished_at IS NULL AND r.outcome IS NULL";
        [
            // One batch of claims: the i-th element of each array is one claim.
            format!(
                "SELECT idx, verdict, holder, held_tick, held_attempt \
                 FROM {claim_many}($1::text[], $2::timestamptz[], $3::text, $4::bigint[], \
                    $5::boolean[], $6::boolean[], $7::boolean[])"
            ),
            // A batch of renewals: $1 services, $2 ticks, $3 attempts, $4 the replica. It answers
            // the fencing tokens it renewed.
            format!(
                "UPDATE {t} r SET lease_until = clock_timestamp() + r.lease \
                 FROM unnest($1::text[], $2::timestamptz[], $3::integer[]) AS u(service, tick, attempt) \
                 WHERE r.service = u.service AND r.tick = u.tick AND r.attempt = u.attempt \
                    AND r.replica = $4 AND {unfinished_r} \
                 RETURNING r.service, r.tick, r.attempt"
            ),
            // A batch of reports ($5..$8: started, finished, outcome, error of each). A report
            // replaces an `abandoned` mark (the run did end, and this is how), never a takeover's
            // row (another attempt).
            format!(
                "UPDATE {t} r SET started_at = u.started, finished_at = u.finished, \
                    outcome = u.outcome, error = u.error, \
                    lease_until = least(r.lease_until, clock_timestamp()) \
                 FROM unnest($1::text[], $2::timestamptz[], $3::integer[], $5::timestamptz[], \
                    $6::timestamptz[], $7::text[], $8::text[]) \
                    AS u(service, tick, attempt, started, finished, outcome, error) \
                 WHERE r.service = u.service AND r.tick = u.tick AND r.attempt = u.attempt \
                    AND r.replica = $4 \
                 RETURNING r.service, r.tick, r.attempt"
            ),
            format!(
                "UPDATE {t} SET outcome = 'skipped', error = $5, \
                    lease_until = least(lease_until, clock_timestamp()) \
                 WHERE {fence} AND {unfinished}"
            ),
            // $1 service, $2 limit, $3..$5 the cursor (tick, attempt, started; NULL: from the
            // newest), $6 the outcomes (NULL: all). The order is `HistoryCursor`'s.
            format!(
                "SELECT service, tick, replica, attempt, started_at, finished_at, outcome, error \
                 FROM (SELECT service, tick, replica, attempt, \
                          coalesce(started_at, claimed_at) AS started_at, finished_at, outcome, \
                          error \
                       FROM {t} WHERE service = $1 \
                       UNION ALL \
                       SELECT service, tick, replica, attempt, started_at, finished_at, outcome, \
                          error \
                       FROM {attempts} WHERE service = $1) h \
                 WHERE ($3::timestamptz IS NULL \
                        OR (tick, attempt, started_at) < ($3::timestamptz, $4::integer, $5::timestamptz)) \
                   AND ($6::text[] IS NULL OR coalesce(outcome, 'running') = ANY($6::text[])) \
                 ORDER BY tick DESC, attempt DESC, started_at DESC LIMIT $2"
            ),
            format!(
                "WITH earlier AS (DELETE FROM {attempts} \
                    WHERE tick < clock_timestamp() - $1::bigint * interval '1 millisecond') \
                 DELETE FROM {t} \
                 WHERE tick < clock_timestamp() - $1::bigint * interval '1 millisecond' \
                   AND (outcome IS NOT NULL OR lease_until < clock_timestamp())"
            ),
        ]
    }

    /// The statements of the cluster: set a control record, read the changed ones, heartbeat,
    /// contest a name, list the replicas.
    fn cluster_sql(table: &Table) -> [String; 5] {
        let set_control = table.sql_with("_set_control");
        let control = table.sql_with("_control");
        let replicas = table.sql_with("_replicas");
        let dead = format!(
            "interval '{} milliseconds'",
            super::REPLICA_DEAD_AFTER.as_millis()
        );
        [
            format!(
                "SELECT service, paused, disabled, version, changed_by, changed_at \
                 FROM {set_control}($1::text, $2::boolean, $3::boolean, $4::text)"
            ),
            format!(
                "SELECT service, paused, disabled, version, changed_by, changed_at FROM {control} \
                 WHERE version > $1::bigint ORDER BY version"
            ),
            // The name is this process's if the row is, or its holder is dead; a takeover of a
            // dead holder's name forgets the old contest.
            format!(
                "INSERT INTO {replicas} AS r (name, instance, version, started_at, last_seen, \
                    services_held, runs_in_flight) \
                 VALUES ($1, $2, $3, $4, clock_timestamp(), $5, $6) \
                 ON CONFLICT (name) DO UPDATE SET instance = EXCLUDED.instance, \
                    version = EXCLUDED.version, started_at = EXCLUDED.started_at, \
                    last_seen = EXCLUDED.last_seen, services_held = EXCLUDED.services_held, \
                    runs_in_flight = EXCLUDED.runs_in_flight, \
                    contested_at = CASE WHEN r.instance = EXCLUDED.instance \
                        THEN r.contested_at END, \
                    contested_by = CASE WHEN r.instance = EXCLUDED.instance \
                        THEN r.contested_by END \
                 WHERE r.instance = EXCLUDED.instance \
                    OR r.last_seen < clock_timestamp() - {dead} \
                 RETURNING CASE WHEN contested_at > clock_timestamp() - {dead} \
                    THEN contested_by END AS other"
            ),
            format!(
                "UPDATE {replicas} SET contested_at = clock_timestamp(), contested_by = $2 \
                 WHERE name = $1 RETURNING instance"
            ),
            format!(
                "SELECT name, instance, version, started_at, last_seen, services_held, \
                    runs_in_flight, last_seen > clock_timestamp() - {dead} AS alive, \
                    coalesce(contested_at > clock_timestamp() - {dead}, false) AS name_shared \
                 FROM {replicas} ORDER BY name"
            ),
        ]
    }
}

/// Creates (or checks) the schema, under a cluster-wide lock.
async fn migrate(client: &mut Client, table: &Table) -> Result<(), String> {
    let pg = |error: tokio_postgres::Error| describe(&error);
    let t = table.sql();
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
    // The tables and indexes are there when the version is: only the functions are replaced (they
    // lock no table). Running `CREATE INDEX IF NOT EXISTS` again would take a share lock on each
    // table while another replica, migrated already, prepares its statements (which lock the same
    // tables in another order): a deadlock.
    let complete = version == Some(SCHEMA_VERSION);
    if !complete {
        tables_ddl(&mut ddl, table);
    }
    ddl.push_str(&control_function(table));
    // Version 2's claim function had no `p_manual`: dropped, so no old caller finds it.
    let _ = write!(
        ddl,
        "DROP FUNCTION IF EXISTS {}(text, timestamptz, text, bigint, boolean, boolean);",
        table.sql_with("_claim")
    );
    ddl.push_str(&claim_function(table));
    ddl.push_str(&claim_many_function(table));
    tx.batch_execute(&ddl).await.map_err(pg)?;
    tx.commit().await.map_err(pg)
}

/// The tables, indexes and sequence of the schema, and its version in the runs table's comment
/// (the last, so that a comment with the version means all of them are there).
fn tables_ddl(ddl: &mut String, table: &Table) {
    let t = table.sql();
    let attempts = table.sql_with("_attempts");
    let name = &table.name;
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
        CREATE TABLE IF NOT EXISTS {attempts} (
            service     text        NOT NULL,
            tick        timestamptz NOT NULL,
            attempt     integer     NOT NULL,
            replica     text        NOT NULL,
            started_at  timestamptz NOT NULL,
            finished_at timestamptz,
            outcome     text        NOT NULL,
            error       text,
            PRIMARY KEY (service, tick, attempt)
        );
        CREATE INDEX IF NOT EXISTS \"{name}_attempts_tick\" ON {attempts} (tick);"
    );
    ddl.push_str(&control_schema(table));
    let _ = write!(
        ddl,
        "COMMENT ON TABLE {t} IS 'scheduler: one row per claimed (service, tick); \
            schema version {SCHEMA_VERSION}';"
    );
}

/// The channel of control notifications: short (PostgreSQL cuts names at 63 bytes) and the same
/// on every replica of the table's cluster.
fn control_channel(table: &Table) -> String {
    // FNV-1a: stable across processes and builds, unlike the std hasher.
    let hash = table
        .plain()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("scheduler_control_{hash:016x}")
}

/// The control records (version 3): one row per service ever paused or resumed, a sequence for
/// their versions, and the replicas' heartbeat rows; [`control_function`] writes a record.
fn control_schema(table: &Table) -> String {
    let control = table.sql_with("_control");
    let sequence = table.sql_with("_control_seq");
    let replicas = table.sql_with("_replicas");
    format!(
        "
CREATE SEQUENCE IF NOT EXISTS {sequence};
CREATE TABLE IF NOT EXISTS {replicas} (
    name           text        PRIMARY KEY,
    instance       text        NOT NULL,
    version        text        NOT NULL,
    started_at     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    services_held  text[]      NOT NULL,
    runs_in_flight integer     NOT NULL,
    contested_at   timestamptz,
    contested_by   text
);
CREATE TABLE IF NOT EXISTS {control} (
    service    text        PRIMARY KEY,
    paused     boolean,
    disabled   boolean,
    version    bigint      NOT NULL,
    changed_by text        NOT NULL,
    changed_at timestamptz NOT NULL
);
"
    )
}

/// The function that writes a control record (serialized by an advisory lock, so a reader that
/// sees a version has seen every lower one) and notifies the other replicas.
fn control_function(table: &Table) -> String {
    let control = table.sql_with("_control");
    let sequence = table.sql_with("_control_seq");
    let f = table.sql_with("_set_control");
    let channel = control_channel(table);
    format!(
        "
-- A NULL switch is left as it is; a switch never set stays NULL (the configuration decides).
CREATE OR REPLACE FUNCTION {f}(p_service text, p_paused boolean, p_disabled boolean,
    p_replica text,
    OUT service text, OUT paused boolean, OUT disabled boolean, OUT version bigint,
    OUT changed_by text, OUT changed_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $set$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock({CONTROL_LOCK});
    INSERT INTO {control} AS c (service, paused, disabled, version, changed_by, changed_at)
        VALUES (p_service, p_paused, p_disabled,
            nextval('{sequence}'), p_replica, clock_timestamp())
        ON CONFLICT (service) DO UPDATE
            SET paused = coalesce(p_paused, c.paused),
                disabled = coalesce(p_disabled, c.disabled), version = EXCLUDED.version,
                changed_by = EXCLUDED.changed_by, changed_at = EXCLUDED.changed_at
        RETURNING c.service, c.paused, c.disabled, c.version, c.changed_by, c.changed_at
        INTO service, paused, disabled, version, changed_by, changed_at;
    -- No payload: a listener reads every record changed since its last version, and a long
    -- service name would not fit the 8000-byte limit of a payload.
    PERFORM pg_notify('{channel}', '');
END
$set$;"
    )
}

/// The claim, server side: [`decide`](crate::coordinator::decide) in PL/pgSQL (see "How a claim
/// works" on [`PostgresCoordinator`]). Each branch names the line of the rule it mirrors.
fn claim_function(table: &Table) -> String {
    let t = table.sql();
    let f = table.sql_with("_claim");
    let a = table.sql_with("_attempts");
    let control = table.sql_with("_control");
    // Validated identifiers contain no quote, so the name is safe inside a literal.
    let key = table.plain();
    let expired_leases = claim_expired_leases(&t, &a);
    format!(
        "
CREATE OR REPLACE FUNCTION {f}(
    p_service text, p_tick timestamptz, p_replica text, p_lease_ms bigint,
    p_at_least_once boolean, p_retry boolean, p_manual boolean,
    OUT verdict text, OUT holder text, OUT held_tick timestamptz, OUT held_attempt integer)
LANGUAGE plpgsql VOLATILE AS $claim$
DECLARE
    lease_len interval := p_lease_ms * interval '1 millisecond';
    now_ timestamptz;
    found_ record;
    row_ record;
    old_ record;
BEGIN
    -- Claims of one service, one at a time across the cluster.
    PERFORM pg_advisory_xact_lock({CLAIM_LOCK_CLASS}, hashtext('{key}/' || p_service));
    -- Disabled cluster-wide: nothing is granted. Paused: no tick of the schedule (a manual
    -- run is).
    SELECT c.paused, c.disabled INTO found_ FROM {control} c WHERE c.service = p_service;
    IF FOUND AND coalesce(found_.disabled, false) THEN
        verdict := 'disabled'; RETURN;
    END IF;
    IF FOUND AND coalesce(found_.paused, false) AND NOT p_manual THEN
        verdict := 'paused'; RETURN;
    END IF;
    now_ := clock_timestamp();
    -- Locked, so that no report changes the row between its archiving and its reuse.
    SELECT r.replica, r.outcome, r.attempt, coalesce(r.started_at, r.claimed_at) AS started_at,
            r.finished_at, r.error
        INTO found_ FROM {t} r
        WHERE r.service = p_service AND r.tick = p_tick FOR UPDATE;
    IF FOUND THEN
        IF p_retry AND found_.replica = p_replica
                AND found_.outcome IN ('failed', 'panicked', 'timed_out') THEN
            -- A retry of this replica's failed run: granted again; the failed attempt is kept.
            INSERT INTO {a} (service, tick, attempt, replica, started_at, finished_at, outcome,
                    error)
                VALUES (p_service, p_tick, found_.attempt, found_.replica, found_.started_at,
                    found_.finished_at, found_.outcome, found_.error)
                ON CONFLICT DO NOTHING;
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
{expired_leases}    -- Nothing in the way: insert, granted.
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

/// A batch of claims in one statement, so in one transaction. It takes the claim locks of all its
/// services first, in the order of their keys: every batch of every replica takes them in that one
/// order, so two batches that share services wait for each other but never deadlock. The locks are
/// held to the end of the batch's transaction, which is when its rows become visible to the other
/// replicas' claims (which wait for them on the same locks).
///
/// Under the locks, the common cases are decided for the whole batch at once, with the same rule
/// as the claim function: disabled, paused (a manual run excepted), the tick's row already there
/// (taken), or nothing in the way (the rows inserted by one statement, granted). Whatever needs the
/// rule's other branches goes through the claim function, one element at a time: a retry, a
/// service with an unfinished run (busy, or an expired lease to abandon or take over), and a
/// service asked for twice in the batch (so that the second sees the first).
///
/// A grant's lease starts when its element is claimed, but the replica learns of it only at the
/// commit. A batch that took long (a slow or loaded server) restarts the leases it granted just
/// before it commits, so that none has run down before its runner even knows it holds it:
///
/// ```text
/// locks ─ element 1 granted, lease to t1+L ─ 2..n (slow) ─ ≥ 50 ms later: leases to now+L ─ commit
/// ```
fn claim_many_function(table: &Table) -> String {
    let t = table.sql();
    let f = table.sql_with("_claim");
    let many = table.sql_with("_claim_many");
    let control = table.sql_with("_control");
    // Validated identifiers contain no quote, so the name is safe inside a literal.
    let key = table.plain();
    format!(
        "
CREATE OR REPLACE FUNCTION {many}(
    p_services text[], p_ticks timestamptz[], p_replica text, p_lease_ms bigint[],
    p_at_least_once boolean[], p_retry boolean[], p_manual boolean[])
RETURNS TABLE (idx integer, verdict text, holder text, held_tick timestamptz,
    held_attempt integer)
LANGUAGE plpgsql VOLATILE AS $many$
DECLARE
    i integer;
    one record;
    began timestamptz := clock_timestamp();
    fresh integer[] := '{{}}';
    one_by_one integer[] := '{{}}';
    granted integer[] := '{{}}';
    granted_ticks timestamptz[] := '{{}}';
BEGIN
    PERFORM pg_advisory_xact_lock({CLAIM_LOCK_CLASS}, k.key)
        FROM (SELECT DISTINCT hashtext('{key}/' || s.service) AS key
              FROM unnest(p_services) AS s(service) ORDER BY 1) k;
    FOR one IN
        WITH asked AS (
            SELECT u.i::integer AS i, u.service, u.tick, u.retry, u.manual,
                count(*) OVER (PARTITION BY u.service) AS times
            FROM unnest(p_services, p_ticks, p_retry, p_manual)
                WITH ORDINALITY AS u(service, tick, retry, manual, i))
        SELECT a.i, x.replica AS holder,
            CASE
                WHEN coalesce(c.disabled, false) THEN 'disabled'
                WHEN coalesce(c.paused, false) AND NOT a.manual THEN 'paused'
                WHEN a.retry OR a.times > 1 THEN 'one by one'
                WHEN x.replica IS NOT NULL THEN 'taken'
                WHEN EXISTS (SELECT 1 FROM {t} r WHERE r.service = a.service
                        AND r.finished_at IS NULL AND r.outcome IS NULL) THEN 'one by one'
                ELSE 'fresh'
            END AS what
        FROM asked a
        LEFT JOIN {control} c ON c.service = a.service
        LEFT JOIN {t} x ON x.service = a.service AND x.tick = a.tick
    LOOP
        CASE one.what
            WHEN 'fresh' THEN fresh := fresh || one.i;
            WHEN 'one by one' THEN one_by_one := one_by_one || one.i;
            ELSE
                idx := one.i; verdict := one.what; held_tick := NULL; held_attempt := NULL;
                holder := CASE WHEN one.what = 'taken' THEN one.holder END;
                RETURN NEXT;
        END CASE;
    END LOOP;
    -- Nothing in the way: inserted together (a service is asked once here, so its row names its
    -- element).
    WITH inserted AS (
        INSERT INTO {t} AS r (service, tick, replica, attempt, lease, claimed_at, started_at,
                lease_until)
            SELECT p_services[g.i], p_ticks[g.i], p_replica, 1,
                p_lease_ms[g.i] * interval '1 millisecond', clock_timestamp(), clock_timestamp(),
                clock_timestamp() + p_lease_ms[g.i] * interval '1 millisecond'
            FROM unnest(fresh) AS g(i)
            ON CONFLICT (service, tick) DO NOTHING
            RETURNING r.service, r.tick)
    SELECT coalesce(array_agg(g.i), '{{}}'), coalesce(array_agg(n.tick), '{{}}')
        INTO granted, granted_ticks
        FROM unnest(fresh) AS g(i) JOIN inserted n ON n.service = p_services[g.i];
    RETURN QUERY SELECT g.i, 'granted'::text, p_replica, g.tick, 1
        FROM unnest(granted, granted_ticks) AS g(i, tick);
    -- Only a writer that claims without the lock (a foreign one) leaves a fresh one out.
    RETURN QUERY SELECT g.i, 'taken'::text, 'unknown'::text, NULL::timestamptz, NULL::integer
        FROM (SELECT unnest(fresh) EXCEPT SELECT unnest(granted)) AS g(i);
    FOR i IN SELECT g.i FROM unnest(one_by_one) AS g(i) ORDER BY g.i LOOP
        SELECT * INTO one FROM {f}(p_services[i], p_ticks[i], p_replica, p_lease_ms[i],
            p_at_least_once[i], p_retry[i], p_manual[i]);
        idx := i; verdict := one.verdict; holder := one.holder; held_tick := one.held_tick;
        held_attempt := one.held_attempt;
        IF one.verdict = 'granted' THEN
            granted := granted || i; granted_ticks := granted_ticks || one.held_tick;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF clock_timestamp() - began > interval '50 milliseconds' THEN
        UPDATE {t} r SET lease_until = clock_timestamp() + r.lease
            FROM unnest(granted, granted_ticks) AS g(i, tick)
            WHERE r.service = p_services[g.i] AND r.tick = g.tick AND r.replica = p_replica
              AND r.finished_at IS NULL AND r.outcome IS NULL;
    END IF;
END
$many$;"
    )
}

/// The claim's walk over the service's unfinished runs, oldest first: a live lease answers
/// `busy`; an expired one is taken over (at least once) or marked abandoned (at most once).
/// Part of [`claim_function`]'s body, where `now_`, `row_`, `old_` and the parameters are declared.
fn claim_expired_leases(t: &str, a: &str) -> String {
    format!(
        "    FOR row_ IN
        SELECT r.tick, r.replica, r.lease_until FROM {t} r
        WHERE r.service = p_service AND r.finished_at IS NULL AND r.outcome IS NULL
        ORDER BY r.tick
    LOOP
        IF row_.lease_until > now_ THEN
            -- A live lease: busy.
            verdict := 'busy'; holder := row_.replica; held_tick := row_.tick; RETURN;
        END IF;
        IF p_at_least_once THEN
            -- Expired, at least once: take it over; the dead attempt is kept as abandoned.
            SELECT r.replica, r.attempt, coalesce(r.started_at, r.claimed_at) AS started_at
                INTO old_ FROM {t} r
                WHERE r.service = p_service AND r.tick = row_.tick
                  AND r.finished_at IS NULL AND r.outcome IS NULL AND r.lease_until <= now_
                FOR UPDATE;
            IF FOUND THEN
                INSERT INTO {a} (service, tick, attempt, replica, started_at, outcome, error)
                    VALUES (p_service, row_.tick, old_.attempt, old_.replica, old_.started_at,
                        'abandoned', 'its runner''s lease ran out before it reported')
                    ON CONFLICT DO NOTHING;
                UPDATE {t} r SET replica = p_replica, attempt = r.attempt + 1, lease = lease_len,
                        claimed_at = now_, started_at = now_, lease_until = now_ + lease_len
                    WHERE r.service = p_service AND r.tick = row_.tick
                    RETURNING r.attempt INTO held_attempt;
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
"
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

/// Fencing tokens: (service, tick, attempt).
type Tokens = std::collections::HashSet<(String, DateTime<Utc>, i32)>;

/// The fencing tokens a batched update changed.
fn changed_tokens(rows: &[tokio_postgres::Row]) -> Result<Tokens, CoordinatorError> {
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("service")?,
                row.try_get("tick")?,
                row.try_get("attempt")?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|error| CoordinatorError::new(format!("PostgreSQL: {}", describe(&error))))
}

/// Each ticket's answer: whether its token was among those changed (a ticket asked twice in one
/// batch gets the same answer twice), or the batch's error.
fn fenced_answers(
    tickets: &[Ticket],
    changed: Result<Tokens, CoordinatorError>,
) -> Vec<Result<bool, CoordinatorError>> {
    match changed {
        Ok(changed) => tickets
            .iter()
            .map(|t| Ok(changed.contains(&(t.service.clone(), t.tick, attempt_number(t.attempt)))))
            .collect(),
        Err(error) => tickets.iter().map(|_| Err(error.clone())).collect(),
    }
}

fn attempt_number(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

/// The error of a call whose batch was dropped before it answered.
fn given_up(what: &str) -> CoordinatorError {
    CoordinatorError::new(format!(
        "PostgreSQL {what}: the batch that carried it was given up"
    ))
}

/// One row of the batch claim function: what it answered `service`.
fn claim_answer(row: &tokio_postgres::Row, service: &str) -> Result<Claim, CoordinatorError> {
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
            ("paused", _) => Claim::Paused,
            ("disabled", _) => Claim::Disabled,
            _ => Claim::Taken { replica: holder },
        })
    };
    answer()
        .map_err(|error| CoordinatorError::new(format!("PostgreSQL claim: {}", describe(&error))))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Coordinator for PostgresCoordinator {
    fn replica(&self) -> &str {
        &self.replica
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        Box::pin(async move { self.session(&self.records).await.map(drop) })
    }

    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        Box::pin(async move {
            let request = ClaimRequest {
                service: service.to_owned(),
                tick,
                policy,
            };
            self.claim_queue
                .submit(request, |lane, batch| self.claim_batch_now(lane, batch))
                .await
                .unwrap_or_else(|| Err(given_up("claim")))
        })
    }

    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(async move {
            self.renewals
                .submit(ticket.clone(), |_, batch| self.renew_batch(batch))
                .await
                .unwrap_or_else(|| Err(given_up("renew")))
        })
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
        Box::pin(async move {
            self.history_now(service, &HistoryQuery::latest(limit))
                .await
        })
    }

    fn history_page<'a>(
        &'a self,
        service: &'a str,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        Box::pin(self.history_now(service, query))
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
                .on(&self.records, "last tick", |conn| async move {
                    conn.client.query_one(sql, &[&service]).await
                })
                .await?;
            row.try_get("tick").map_err(|e| decode(&e))
        })
    }

    fn set_paused<'a>(
        &'a self,
        service: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        Box::pin(self.set_control_now(service, Some(paused), None))
    }

    fn set_disabled<'a>(
        &'a self,
        service: &'a str,
        disabled: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        Box::pin(self.set_control_now(service, None, Some(disabled)))
    }

    fn controls(&self, since: u64) -> BoxFuture<'_, Result<Vec<ControlRecord>, CoordinatorError>> {
        Box::pin(self.controls_now(since))
    }

    fn control_changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.control_changed_now())
    }

    fn heartbeat<'a>(
        &'a self,
        beat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<NameUse, CoordinatorError>> {
        Box::pin(self.heartbeat_now(beat))
    }

    fn replicas(&self) -> BoxFuture<'_, Result<Vec<ReplicaRecord>, CoordinatorError>> {
        Box::pin(self.replicas_now())
    }
}

impl PostgresCoordinator {
    async fn set_control_now(
        &self,
        service: &str,
        paused: Option<bool>,
        disabled: Option<bool>,
    ) -> Result<ControlRecord, CoordinatorError> {
        let replica: &str = &self.replica;
        let row = self
            .on(&self.records, "control", |conn| async move {
                conn.client
                    .query_one(
                        &conn.statements.set_control,
                        &[&service, &paused, &disabled, &replica],
                    )
                    .await
            })
            .await?;
        control_record(&row)
    }

    async fn controls_now(&self, since: u64) -> Result<Vec<ControlRecord>, CoordinatorError> {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let rows = self
            .on(&self.records, "controls", |conn| async move {
                conn.client
                    .query(&conn.statements.controls, &[&since])
                    .await
            })
            .await?;
        rows.iter().map(control_record).collect()
    }

    /// Waits for a notification on the listening connection, opening it first if it is not
    /// open (a new connection may have missed notifications: it answers at once).
    async fn control_changed_now(&self) {
        let notified = self.notified.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut listen = self.listen.lock().await;
            if listen.as_ref().is_none_or(Client::is_closed) {
                *listen = None;
                match self.open_listener().await {
                    Ok(client) => {
                        *listen = Some(client);
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(replica = %self.replica, %error,
                            "control notifications unavailable; polling meanwhile");
                        drop(listen);
                        tokio::time::sleep(LISTEN_RETRY).await;
                        return;
                    }
                }
            }
        }
        // A connection that drops (a database restart) is looked for every LISTEN_RETRY, so the
        // next call reopens it; the manager's poll covers the notifications lost meanwhile.
        loop {
            tokio::select! {
                () = &mut notified => return,
                () = tokio::time::sleep(LISTEN_RETRY) => {}
            }
            if self
                .listen
                .lock()
                .await
                .as_ref()
                .is_none_or(Client::is_closed)
            {
                return;
            }
        }
    }

    async fn open_listener(&self) -> Result<Client, CoordinatorError> {
        self.validate()?;
        let listen = async {
            let client = self.open().await?;
            let channel = control_channel(&self.table);
            client
                .batch_execute(&format!("LISTEN \"{channel}\""))
                .await
                .map_err(|e| describe(&e))?;
            Ok::<Client, String>(client)
        };
        match timeout(self.timeout, listen).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(CoordinatorError::new(format!(
                "PostgreSQL listen: {}",
                self.secret().scrub(error)
            ))),
            Err(_) => Err(CoordinatorError::new(format!(
                "PostgreSQL listen: no connection within {:?}",
                self.timeout
            ))),
        }
    }
}

impl PostgresCoordinator {
    async fn heartbeat_now(&self, beat: &Heartbeat) -> Result<NameUse, CoordinatorError> {
        let name: &str = &self.replica;
        let runs = i32::try_from(beat.runs_in_flight).unwrap_or(i32::MAX);
        let rows = self
            .on(&self.records, "heartbeat", |conn| async move {
                conn.client
                    .query(
                        &conn.statements.heartbeat,
                        &[
                            &name,
                            &beat.instance,
                            &beat.version,
                            &beat.started,
                            &beat.services_held,
                            &runs,
                        ],
                    )
                    .await
            })
            .await?;
        let read = |e: tokio_postgres::Error| {
            CoordinatorError::new(format!("PostgreSQL heartbeat: {}", describe(&e)))
        };
        if let Some(row) = rows.first() {
            let other: Option<String> = row.try_get("other").map_err(read)?;
            return Ok(match other {
                Some(instance) if instance != beat.instance => NameUse::Shared { instance },
                _ => NameUse::Alone,
            });
        }
        // The row is another live process's: it keeps the name, and learns of this one.
        let rows = self
            .on(&self.records, "heartbeat", |conn| async move {
                conn.client
                    .query(&conn.statements.contest, &[&name, &beat.instance])
                    .await
            })
            .await?;
        let instance = match rows.first() {
            Some(row) => row.try_get("instance").map_err(read)?,
            None => "unknown".to_owned(),
        };
        Ok(NameUse::Shared { instance })
    }

    async fn replicas_now(&self) -> Result<Vec<ReplicaRecord>, CoordinatorError> {
        let rows = self
            .on(&self.records, "replicas", |conn| async move {
                conn.client.query(&conn.statements.replicas, &[]).await
            })
            .await?;
        rows.iter()
            .map(|row| {
                let read = || -> Result<ReplicaRecord, tokio_postgres::Error> {
                    let runs: i32 = row.try_get("runs_in_flight")?;
                    Ok(ReplicaRecord::new(
                        row.try_get("name")?,
                        row.try_get("instance")?,
                        row.try_get("version")?,
                        row.try_get("started_at")?,
                        row.try_get("last_seen")?,
                        row.try_get("services_held")?,
                        u32::try_from(runs).unwrap_or(0),
                        row.try_get("alive")?,
                        row.try_get("name_shared")?,
                    ))
                };
                read().map_err(|e| {
                    CoordinatorError::new(format!("PostgreSQL replicas: {}", describe(&e)))
                })
            })
            .collect()
    }
}

fn control_record(row: &tokio_postgres::Row) -> Result<ControlRecord, CoordinatorError> {
    let read = || -> Result<ControlRecord, tokio_postgres::Error> {
        let version: i64 = row.try_get("version")?;
        Ok(ControlRecord::new(
            row.try_get("service")?,
            row.try_get("paused")?,
            row.try_get("disabled")?,
            u64::try_from(version).unwrap_or(0),
            row.try_get("changed_by")?,
            row.try_get("changed_at")?,
        ))
    };
    read().map_err(|error| {
        CoordinatorError::new(format!("PostgreSQL controls: {}", describe(&error)))
    })
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
