//! [`AdminBackend`]: everything the admin router and page ask of the runtime, in one trait, and its
//! implementation for [`ServiceManager`].

use std::future::Future;

use chrono::{DateTime, Utc};

use super::error::AdminError;
use super::replicas::{ReplicaView, ReplicasView};
use super::view::{ReloadView, RunOutcome, RunView, ServiceView};
use crate::coordinator::{HistoryCursor, HistoryQuery};
use crate::health::CoordinatorHealth;
use crate::manager::ServiceManager;
use crate::Schedule;

/// What the admin router needs from a runtime. [`ServiceManager`] implements it; implement it
/// yourself to serve the API over something else (a test double, a proxy to another process).
///
/// Every method that takes a service name returns [`AdminError::UnknownService`] for a name it does
/// not know; a method the backend cannot carry out returns [`AdminError::NotSupported`].
pub trait AdminBackend: Send + Sync + 'static {
    /// Every service, sorted by name.
    fn services(&self) -> Vec<ServiceView>;

    /// One service; `None` for an unknown name.
    fn service(&self, name: &str) -> Option<ServiceView>;

    /// The latest `limit` runs of a service, newest first.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`], or why the history could not be read.
    fn history(
        &self,
        name: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunView>, AdminError>> + Send;

    /// One page of a service's runs, as `query` asks (newest first; see [`HistoryQuery`] for the
    /// order, the cursor and the outcome names). The default reads
    /// [`history`](Self::history)`(name, 10_000)` and pages it in memory.
    ///
    /// # Errors
    /// As [`history`](Self::history).
    fn history_page(
        &self,
        name: &str,
        query: &HistoryQuery,
    ) -> impl Future<Output = Result<Vec<RunView>, AdminError>> + Send {
        async move { Ok(page_views(self.history(name, 10_000).await?, query)) }
    }

    /// The next `count` fire times of a service, soonest first; empty while it is not scheduled.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`].
    fn upcoming(&self, name: &str, count: usize) -> Result<Vec<DateTime<Utc>>, AdminError>;

    /// A plain-English description of a service's schedule, when the backend has one.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`].
    fn describe(&self, name: &str) -> Result<Option<String>, AdminError>;

    /// Pauses a service: its ticks are skipped until [`resume`](Self::resume).
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::NotSupported`].
    fn pause(&self, name: &str) -> Result<(), AdminError>;

    /// Resumes a paused service.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::NotSupported`].
    fn resume(&self, name: &str) -> Result<(), AdminError>;

    /// Disables a service cluster-wide (see [`ServiceManager::disable`]). The default answers
    /// [`AdminError::NotSupported`].
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::NotSupported`].
    fn disable(&self, name: &str) -> Result<(), AdminError> {
        let _ = name;
        Err(AdminError::NotSupported { action: "disable" })
    }

    /// Enables a disabled service cluster-wide (see [`ServiceManager::enable`]). The default
    /// answers [`AdminError::NotSupported`].
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::NotSupported`].
    fn enable(&self, name: &str) -> Result<(), AdminError> {
        let _ = name;
        Err(AdminError::NotSupported { action: "enable" })
    }

    /// Runs a service once now, outside its schedule.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::AlreadyRunning`] while a run is going;
    /// [`AdminError::NotSupported`].
    fn run_now(&self, name: &str) -> Result<(), AdminError>;

    /// The replicas of the cluster (see [`ServiceManager::replicas`]). The default answers
    /// [`AdminError::NotSupported`].
    ///
    /// # Errors
    /// Why the replicas could not be read; [`AdminError::NotSupported`].
    fn replicas(&self) -> impl Future<Output = Result<ReplicasView, AdminError>> + Send {
        async { Err(AdminError::NotSupported { action: "replicas" }) }
    }

    /// Whether the runtime can reach its coordinator (see
    /// [`ServiceManager::coordinator_health`]); `None` without one. The default knows none.
    fn coordinator_health(&self) -> Option<CoordinatorHealth> {
        None
    }

    /// Reads the configuration again and applies what changed.
    ///
    /// # Errors
    /// [`AdminError::Rejected`] for a bad configuration (nothing changes then);
    /// [`AdminError::NotSupported`].
    fn reload(&self) -> Result<ReloadView, AdminError>;
}

// The seam between the admin API and the runtime: everything the router learns about a
// `ServiceManager` goes through this block.
// History: the coordinator's in cluster mode, else the runs this manager kept
// (`ServiceManager::history`), which also give the sparkline (`ServiceView::recent`).
impl AdminBackend for ServiceManager {
    fn services(&self) -> Vec<ServiceView> {
        ServiceManager::services(self)
            .iter()
            .map(|status| with_recent(self, ServiceView::from(status)))
            .collect()
    }

    fn service(&self, name: &str) -> Option<ServiceView> {
        ServiceManager::service(self, name)
            .as_ref()
            .map(|status| with_recent(self, ServiceView::from(status)))
    }

    async fn history(&self, name: &str, limit: usize) -> Result<Vec<RunView>, AdminError> {
        known(self, name)?;
        match self.cluster_history(name, limit).await {
            Ok(records) => Ok(records.iter().map(RunView::from).collect()),
            // Without a coordinator, the runs this manager kept.
            Err(crate::Error::NotCoordinated) => Ok(ServiceManager::history(self, name)
                .unwrap_or_default()
                .iter()
                .take(limit)
                .map(RunView::from)
                .collect()),
            Err(error) => Err(error.into()),
        }
    }

    async fn history_page(
        &self,
        name: &str,
        query: &HistoryQuery,
    ) -> Result<Vec<RunView>, AdminError> {
        let records = ServiceManager::history_page(self, name, query).await?;
        Ok(records.iter().map(RunView::from).collect())
    }

    fn upcoming(&self, name: &str, count: usize) -> Result<Vec<DateTime<Utc>>, AdminError> {
        let status = ServiceManager::service(self, name)
            .ok_or_else(|| AdminError::UnknownService(name.to_owned()))?;
        let (Some(next), Some(schedule)) = (status.next_fire, self.schedule_of(name)) else {
            return Ok(Vec::new());
        };
        Ok(fire_times(&schedule, next, count))
    }

    fn describe(&self, name: &str) -> Result<Option<String>, AdminError> {
        known(self, name)?;
        Ok(self.schedule_of(name).map(|schedule| schedule.describe()))
    }

    fn pause(&self, name: &str) -> Result<(), AdminError> {
        Ok(ServiceManager::pause(self, name)?)
    }

    fn resume(&self, name: &str) -> Result<(), AdminError> {
        Ok(ServiceManager::resume(self, name)?)
    }

    fn run_now(&self, name: &str) -> Result<(), AdminError> {
        Ok(ServiceManager::run_now(self, name)?)
    }

    fn disable(&self, name: &str) -> Result<(), AdminError> {
        Ok(ServiceManager::disable(self, name)?)
    }

    fn enable(&self, name: &str) -> Result<(), AdminError> {
        Ok(ServiceManager::enable(self, name)?)
    }

    fn reload(&self) -> Result<ReloadView, AdminError> {
        Ok(self.reload_config()?.into())
    }

    fn coordinator_health(&self) -> Option<CoordinatorHealth> {
        ServiceManager::coordinator_health(self)
    }

    async fn replicas(&self) -> Result<ReplicasView, AdminError> {
        let name = self.replica_name();
        let records = ServiceManager::replicas(self).await?;
        Ok(ReplicasView {
            replicas: records
                .iter()
                .map(|record| ReplicaView::of(record, record.name == name))
                .collect(),
            name,
            name_shared_with: self.name_shared_with(),
        })
    }
}

/// The page of `runs` that `query` asks for, in its order.
fn page_views(runs: Vec<RunView>, query: &HistoryQuery) -> Vec<RunView> {
    let cursor = |run: &RunView| HistoryCursor {
        tick: run.tick,
        attempt: run.attempt,
        started: run.started,
    };
    let mut kept: Vec<RunView> = runs
        .into_iter()
        .filter(|run| {
            let outcome = run.outcome.map_or("running", RunOutcome::stored_name);
            query.before.is_none_or(|before| cursor(run) < before)
                && (query.outcomes.is_empty() || query.outcomes.iter().any(|o| o == outcome))
        })
        .collect();
    kept.sort_by_key(|run| std::cmp::Reverse(cursor(run)));
    kept.truncate(query.limit);
    kept
}

/// `Ok` when `manager` has a service of this name.
fn known(manager: &ServiceManager, name: &str) -> Result<(), AdminError> {
    match manager.service(name) {
        Some(_) => Ok(()),
        None => Err(AdminError::UnknownService(name.to_owned())),
    }
}

/// `count` fire times of `schedule` from its next one, `next`, on.
fn fire_times(schedule: &Schedule, next: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    if schedule.is_one_shot() {
        // Once means once, whatever the schedule would answer for a later instant.
        return std::iter::once(next).take(count).collect();
    }
    std::iter::once(next)
        .chain(schedule.upcoming(next))
        .take(count)
        .collect()
}

/// How many outcomes the sparkline draws.
const SPARKLINE: usize = 20;

/// Fills the sparkline from the latest runs the manager kept, oldest first.
fn with_recent(manager: &ServiceManager, mut view: ServiceView) -> ServiceView {
    if let Some(history) = ServiceManager::history(manager, &view.name) {
        view.recent = history
            .iter()
            .take(SPARKLINE)
            .rev()
            .filter_map(|run| run.outcome.as_deref().and_then(RunOutcome::from_name))
            .collect();
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, h, m, s).unwrap()
    }

    #[test]
    fn fixed_periods_step_from_the_next_fire() {
        let every_30s = Schedule::every(Duration::from_secs(30)).unwrap();
        assert_eq!(
            fire_times(&every_30s, at(10, 0, 0), 3),
            vec![at(10, 0, 0), at(10, 0, 30), at(10, 1, 0)]
        );
        let half = fire_times(&Schedule::every_secs(0.5).unwrap(), at(10, 0, 0), 3);
        assert_eq!(half[2], at(10, 0, 1));
    }

    #[test]
    fn cron_times_follow_the_expression_in_its_zone() {
        // 2024-01-01 is a Monday; 09:00 in Berlin is 08:00 UTC in winter.
        let weekdays = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
        let monday = Utc.with_ymd_and_hms(2024, 1, 1, 8, 0, 0).unwrap();
        let times = fire_times(&weekdays, monday, 6);
        let days: Vec<u32> = times.iter().map(chrono::Datelike::day).collect();
        assert_eq!(days, vec![1, 2, 3, 4, 5, 8]);
        assert!(times.iter().all(|t| chrono::Timelike::hour(t) == 8));
    }

    #[test]
    fn one_shots_fire_once_and_nothing_is_asked_for_nothing() {
        let once = Schedule::once_after(Duration::from_secs(5)).unwrap();
        assert_eq!(fire_times(&once, at(10, 0, 0), 10), vec![at(10, 0, 0)]);
        let every_30s = Schedule::every(Duration::from_secs(30)).unwrap();
        assert!(fire_times(&every_30s, at(10, 0, 0), 0).is_empty());
        assert!(fire_times(&once, at(10, 0, 0), 0).is_empty());
    }
}
