//! A coordinator on PostgreSQL: replicas of an app share one table of runs, and each tick runs on
//! the one replica whose claim on (service, tick) was granted.
//!
//! # Why `tokio-postgres` (and not `sqlx`)
//! The coordinator needs a dozen fixed statements on one connection per replica. `tokio-postgres`
//! is the async driver of the long-standing rust-postgres project: pure Rust, no proc macros, no
//! compile-time query checking that wants a database (or offline data) at build time, and no pool
//! or multi-database layers we would not use. The `postgres` feature adds about 50 crates to
//! `scheduler`'s build (the wire protocol, `socket2`, a few hashes); `sqlx` brings its macros, its
//! runtime and driver layers on top. For a feature that users switch on in an app that
//! may already have another driver, a short build matters more than an ORM-ish API.
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
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{try_join_all, BoxFuture};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{timeout, Instant};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::{Client, Statement};

use self::tls::{Probe, SharedProbe};
use self::url::{Check, Secret, SslMode, Target};

use super::{
    outcome_parts, Claim, ClaimPolicy, Coordinator, CoordinatorError, Delivery, FinishedRun,
    RunRecord, Ticket,
};

/// The schema version this code creates and understands.
const SCHEMA_VERSION: u32 = 1;
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
const FIRST_RECONNECT: Duration = Duration::from_millis(100);
const LONGEST_RECONNECT: Duration = Duration::from_secs(5);

/// Replicas coordinated through a PostgreSQL table (feature `postgres`).
///
/// Each replica of the app builds one with its own name; they share nothing but the database.
/// Construction does no I/O: the connection is opened on first use, and reopened (with backoff)
/// whenever it drops. While the database is unreachable every call fails, and the manager pauses
/// coordinated runs, reports it in [`ServiceStatus::coordinator_error`](crate::ServiceStatus), and
/// resumes by itself.
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
/// Everything happens in the database, in one transaction per claim:
///
/// 1. `pg_advisory_xact_lock(<class>, hashtext('<table>/<service>'))`: claims of one service are
///    serialized across the cluster (a hash collision between two services only serializes them
///    too). The lock is taken in its own statement, so the next statement's snapshot sees every
///    claim committed before it.
/// 2. The row of (service, tick) if there is one, and the service's unfinished rows with whether
///    their lease is alive. Then exactly the rules of
///    [`InMemoryCoordinator`](crate::InMemoryCoordinator): that tick already has a row → `Taken`; an
///    unfinished run with a live lease → `Busy`; an expired one is marked `abandoned`
///    ([`Delivery::AtMostOnce`]) or taken over ([`Delivery::AtLeastOnce`]: this replica, attempt
///    + 1, a new lease, granted for the old tick).
/// 3. Otherwise `INSERT … ON CONFLICT (service, tick) DO NOTHING RETURNING attempt`: granted.
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
///     outcome     text,                   -- ok | failed | panicked | aborted | abandoned
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
/// The table's comment carries a schema version for future migrations; a table with a newer version
/// than this code knows is refused rather than misused. Rows whose tick is older than the
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
    link: Mutex<Link>,
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

/// The connection and what goes with it; one operation at a time holds it.
struct Link {
    conn: Option<Conn>,
    schema_ready: bool,
    backoff: Duration,
    retry_at: Option<(Instant, String)>,
    last_prune: Option<Instant>,
}

struct Conn {
    client: Client,
    statements: Option<Statements>,
}

struct Statements {
    lock: Statement,
    rows: Statement,
    abandon: Statement,
    take_over: Statement,
    insert: Statement,
    renew: Statement,
    finish: Statement,
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
            link: Mutex::new(Link {
                conn: None,
                schema_ready: false,
                backoff: FIRST_RECONNECT,
                retry_at: None,
                last_prune: None,
            }),
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

    /// The link, connected, with the schema in place and the statements prepared.
    async fn session(&self) -> Result<MutexGuard<'_, Link>, CoordinatorError> {
        self.validate()?;
        let mut link = self.link.lock().await;
        if link
            .conn
            .as_ref()
            .is_some_and(|conn| conn.client.is_closed())
        {
            link.conn = None;
        }
        if link.conn.is_none() {
            if let Some((at, error)) = &link.retry_at {
                if Instant::now() < *at {
                    return Err(CoordinatorError::new(format!(
                        "PostgreSQL unreachable: {error} (next attempt in {:?})",
                        at.saturating_duration_since(Instant::now())
                    )));
                }
            }
            match timeout(self.timeout, self.open()).await {
                Ok(Ok(conn)) => {
                    link.conn = Some(conn);
                    link.retry_at = None;
                    link.backoff = FIRST_RECONNECT;
                }
                failed => {
                    let error = match failed {
                        Ok(Err(error)) => self.secret().scrub(error),
                        _ => format!("no connection within {:?}", self.timeout),
                    };
                    let backoff = link.backoff;
                    link.backoff = (backoff * 2).min(LONGEST_RECONNECT);
                    link.retry_at = Some((Instant::now() + backoff, error.clone()));
                    return Err(CoordinatorError::new(format!(
                        "PostgreSQL unreachable: {error}"
                    )));
                }
            }
        }
        let ready = link.schema_ready;
        let conn = link.conn.as_mut().expect("connected above");
        let setup = async {
            if !ready {
                migrate(&mut conn.client, &self.table).await?;
            }
            if conn.statements.is_none() {
                let statements = Statements::prepare(&conn.client, &self.table).await;
                conn.statements = Some(statements.map_err(|e| describe(&e))?);
            }
            Ok::<(), String>(())
        };
        let result = timeout(self.timeout, setup).await;
        settle_text(&mut link, "schema", self.timeout, result)?;
        link.schema_ready = true;
        Ok(link)
    }

    /// A new connection, with TLS as `sslmode` says (see [TLS](PostgresCoordinator#tls)).
    async fn open(&self) -> Result<Conn, String> {
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
    async fn attempt(&self, target: &Target, wire: WireMode) -> Result<(Conn, bool), Failed> {
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
        let conn = Conn {
            client,
            statements: None,
        };
        Ok((conn, encrypted))
    }

    async fn claim_now(
        &self,
        service: &str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> Result<Claim, CoordinatorError> {
        let mut link = self.session().await?;
        let lock_key = format!("{}/{service}", self.table.plain());
        let conn = link.conn.as_mut().expect("a session is connected");
        let result = timeout(
            self.timeout,
            claim_in(conn, &lock_key, &self.replica, service, tick, policy),
        )
        .await;
        settle(&mut link, "claim", self.timeout, result)
    }

    async fn renew_now(&self, ticket: &Ticket) -> Result<(), CoordinatorError> {
        let mut link = self.session().await?;
        let conn = link.conn.as_ref().expect("a session is connected");
        let statement = &conn.statements().renew;
        let result = timeout(
            self.timeout,
            conn.client
                .execute(statement, &[&ticket.service, &ticket.tick, &self.replica]),
        )
        .await;
        settle(&mut link, "renew", self.timeout, result).map(drop)
    }

    async fn finish_now(&self, ticket: &Ticket, run: &FinishedRun) -> Result<(), CoordinatorError> {
        let mut link = self.session().await?;
        let conn = link.conn.as_ref().expect("a session is connected");
        let (outcome, error) = outcome_parts(&run.outcome);
        let result = timeout(
            self.timeout,
            conn.client.execute(
                &conn.statements().finish,
                &[
                    &ticket.service,
                    &ticket.tick,
                    &run.started,
                    &run.finished,
                    &outcome,
                    &error,
                ],
            ),
        )
        .await;
        settle(&mut link, "finish", self.timeout, result)?;

        if link
            .last_prune
            .is_none_or(|last| last.elapsed() >= PRUNE_EVERY)
        {
            link.last_prune = Some(Instant::now());
            let horizon = millis(self.horizon);
            let conn = link.conn.as_ref().expect("a session is connected");
            let result = timeout(
                self.timeout,
                conn.client.execute(&conn.statements().prune, &[&horizon]),
            )
            .await;
            match settle(&mut link, "prune", self.timeout, result) {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "old runs pruned"),
                Err(error) => tracing::warn!(%error, "old runs not pruned"),
            }
        }
        Ok(())
    }

    async fn history_now(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, CoordinatorError> {
        let mut link = self.session().await?;
        let conn = link.conn.as_ref().expect("a session is connected");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let result = timeout(
            self.timeout,
            conn.client
                .query(&conn.statements().history, &[&service, &limit]),
        )
        .await;
        let rows = settle(&mut link, "history", self.timeout, result)?;
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

impl Conn {
    fn statements(&self) -> &Statements {
        self.statements
            .as_ref()
            .expect("a session prepares its statements")
    }
}

impl Statements {
    async fn prepare(client: &Client, table: &Table) -> Result<Statements, tokio_postgres::Error> {
        let t = table.sql();
        let lease = "$4::bigint * interval '1 millisecond'";
        let unfinished = "finished_at IS NULL AND outcome IS NULL";
        let sql = [
            "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))".to_owned(),
            format!(
                "SELECT tick, replica, {unfinished} AS unfinished, \
                        lease_until > clock_timestamp() AS live \
                 FROM {t} WHERE service = $1 AND (tick = $2 OR ({unfinished})) \
                 ORDER BY tick FOR UPDATE"
            ),
            format!("UPDATE {t} SET outcome = 'abandoned' WHERE service = $1 AND tick = ANY($2)"),
            format!(
                "UPDATE {t} SET replica = $3, attempt = attempt + 1, lease = {lease}, \
                    claimed_at = clock_timestamp(), started_at = clock_timestamp(), \
                    lease_until = clock_timestamp() + {lease} \
                 WHERE service = $1 AND tick = $2 RETURNING attempt"
            ),
            format!(
                "INSERT INTO {t} (service, tick, replica, attempt, lease, claimed_at, started_at, \
                    lease_until) \
                 VALUES ($1, $2, $3, 1, {lease}, clock_timestamp(), clock_timestamp(), \
                    clock_timestamp() + {lease}) \
                 ON CONFLICT (service, tick) DO NOTHING RETURNING attempt"
            ),
            format!(
                "UPDATE {t} SET lease_until = clock_timestamp() + lease \
                 WHERE service = $1 AND tick = $2 AND replica = $3"
            ),
            format!(
                "UPDATE {t} SET started_at = $3, finished_at = $4, outcome = $5, error = $6 \
                 WHERE service = $1 AND tick = $2"
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
        let Ok([lock, rows, abandon, take_over, insert, renew, finish, history, prune]) =
            <[Statement; 9]>::try_from(prepared)
        else {
            unreachable!("nine statements prepared")
        };
        Ok(Statements {
            lock,
            rows,
            abandon,
            take_over,
            insert,
            renew,
            finish,
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
    tx.batch_execute(&ddl).await.map_err(pg)?;
    tx.commit().await.map_err(pg)
}

/// The claim, in one transaction; see the module documentation.
async fn claim_in(
    conn: &mut Conn,
    lock_key: &str,
    replica: &str,
    service: &str,
    tick: DateTime<Utc>,
    policy: ClaimPolicy,
) -> Result<Claim, tokio_postgres::Error> {
    let statements = conn
        .statements
        .as_ref()
        .expect("a session prepares its statements");
    // A longer lease would not fit an interval; 1000 years is forever here too.
    let lease = millis(policy.lease.min(LONGEST_INTERVAL));
    let tx = conn.client.transaction().await?;
    tx.execute(&statements.lock, &[&CLAIM_LOCK_CLASS, &lock_key])
        .await?;
    let rows = tx.query(&statements.rows, &[&service, &tick]).await?;
    let rows = rows
        .iter()
        .map(|row| {
            Ok::<_, tokio_postgres::Error>((
                row.try_get::<_, DateTime<Utc>>("tick")?,
                row.try_get::<_, String>("replica")?,
                row.try_get::<_, bool>("unfinished")?,
                row.try_get::<_, bool>("live")?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((_, holder, _, _)) = rows.iter().find(|(t, ..)| *t == tick) {
        return Ok(Claim::Taken {
            replica: holder.clone(),
        });
    }
    let mut abandoned = Vec::new();
    let mut answer = None;
    for (running, holder, unfinished, live) in rows {
        if !unfinished {
            continue;
        }
        if live {
            answer = Some(Claim::Busy {
                replica: holder,
                tick: running,
            });
            break;
        }
        match policy.delivery {
            Delivery::AtMostOnce => abandoned.push(running),
            Delivery::AtLeastOnce => {
                // The row is locked (FOR UPDATE) and the service's claims are serialized.
                let row = tx
                    .query_one(
                        &statements.take_over,
                        &[&service, &running, &replica, &lease],
                    )
                    .await?;
                let attempt: i32 = row.try_get(0)?;
                answer = Some(Claim::Granted(Ticket {
                    service: service.to_owned(),
                    tick: running,
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                }));
                break;
            }
        }
    }
    if !abandoned.is_empty() {
        tx.execute(&statements.abandon, &[&service, &abandoned])
            .await?;
    }
    let answer = match answer {
        Some(answer) => answer,
        None => match tx
            .query_opt(&statements.insert, &[&service, &tick, &replica, &lease])
            .await?
        {
            Some(_) => Claim::Granted(Ticket {
                service: service.to_owned(),
                tick,
                attempt: 1,
            }),
            // Only possible if a replica claimed without the lock (an older or foreign writer).
            None => Claim::Taken {
                replica: String::from("unknown"),
            },
        },
    };
    tx.commit().await?;
    Ok(answer)
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

/// The result of an operation; on any failure the connection is dropped, so the next call opens a
/// fresh one (a timed-out or broken connection may be in any state).
fn settle<T>(
    link: &mut Link,
    what: &str,
    limit: Duration,
    result: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
) -> Result<T, CoordinatorError> {
    settle_text(
        link,
        what,
        limit,
        result.map(|r| r.map_err(|e| describe(&e))),
    )
}

fn settle_text<T>(
    link: &mut Link,
    what: &str,
    limit: Duration,
    result: Result<Result<T, String>, tokio::time::error::Elapsed>,
) -> Result<T, CoordinatorError> {
    let error = match result {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(error)) => error,
        Err(_) => format!("no answer within {limit:?}"),
    };
    link.conn = None;
    Err(CoordinatorError::new(format!("PostgreSQL {what}: {error}")))
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
        Box::pin(async move { self.session().await.map(drop) })
    }

    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        Box::pin(self.claim_now(service, tick, policy))
    }

    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<(), CoordinatorError>> {
        Box::pin(self.renew_now(ticket))
    }

    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<(), CoordinatorError>> {
        Box::pin(self.finish_now(ticket, run))
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
            let mut link = self.session().await?;
            let conn = link.conn.as_ref().expect("a session is connected");
            let result = timeout(self.timeout, conn.client.query_one(&sql, &[&service])).await;
            let row = settle(&mut link, "last tick", self.timeout, result)?;
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
