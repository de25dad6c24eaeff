//! The replicas of a cluster as the admin API shows them (`GET /api/replicas`) and the dashboard's
//! replicas panel draws them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::coordinator::ReplicaRecord;

/// What `GET /api/replicas` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicasView {
    /// The answering replica's name.
    pub name: String,
    /// Another live process using the answering replica's name, if any (its instance id).
    pub name_shared_with: Option<String>,
    /// Every replica that heartbeat, by name.
    pub replicas: Vec<ReplicaView>,
}

impl ReplicasView {
    /// A view; for [`AdminBackend`](super::AdminBackend) implementations.
    pub fn new(name: String, name_shared_with: Option<String>, replicas: Vec<ReplicaView>) -> Self {
        ReplicasView {
            name,
            name_shared_with,
            replicas,
        }
    }
}

/// One replica: what its last heartbeat said, and whether it is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicaView {
    /// Its name.
    pub name: String,
    /// The process holding the name.
    pub instance: String,
    /// The application's version it runs.
    pub version: String,
    /// When its manager started.
    pub started: DateTime<Utc>,
    /// Its last heartbeat (the coordinator's clock).
    pub last_seen: DateTime<Utc>,
    /// `"alive"`, or `"dead"` once its heartbeat stopped for
    /// [`REPLICA_DEAD_AFTER`](crate::coordinator::REPLICA_DEAD_AFTER).
    pub status: &'static str,
    /// The services whose run it holds.
    pub services_held: Vec<String>,
    /// How many runs it has going.
    pub runs_in_flight: u32,
    /// Another live process uses the same name (a deployment mistake to fix).
    pub name_shared: bool,
    /// Whether this is the replica that answers the request.
    pub this_replica: bool,
}

impl ReplicaView {
    /// The view of `record`; `this_replica` when it is the answering replica's own.
    pub fn of(record: &ReplicaRecord, this_replica: bool) -> Self {
        ReplicaView {
            name: record.name.clone(),
            instance: record.instance.clone(),
            version: record.version.clone(),
            started: record.started,
            last_seen: record.last_seen,
            status: if record.alive { "alive" } else { "dead" },
            services_held: record.services_held.clone(),
            runs_in_flight: record.runs_in_flight,
            name_shared: record.name_shared,
            this_replica,
        }
    }
}
