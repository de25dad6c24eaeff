//! The runner's side of coordination: claiming a tick (with retries while the coordinator is down),
//! keeping the claim's lease alive while the job runs and while its end is not recorded, reporting
//! the end of the run until it lands, and releasing a claim whose tick will not run.
//!
//! The life of a claim on this replica:
//!
//! ```text
//! tick T due ─ claim ✔ (lease L, confirmed at c) ─┬─ granted after T+1 was due: release "skipped", not run
//!                                                 ├─ dropped before its run began (stop, pause): release
//!                                                 ├─ waited ≥ L/3 for a worker: renew first; refused: not run
//!                                                 └─ run ─ renew every L/3 ─ job ends ─ finish ✔ (released)
//!                                                                                    └ ✘: retry, renew every L/3,
//!                                                   until it lands, is refused (taken over), or c + 2L passed
//! ```
//!
//! With [`claim_ahead`](crate::ServiceManagerBuilder::claim_ahead) the claim of T goes out at
//! T − ahead; granted, the run is held in the timer until T (a stop gives it back; a pause or a
//! reload makes it stale, and it is released when it comes due, unless the service fires T again
//! before then, which takes the held run over), then goes on as above. An early claim that finds
//! an earlier run still going (`Busy`) is made again at T, if the service still wants it:
//!
//! ```text
//! T − ahead ─ claim ✔ ─ held (timer.rs) ─ T: queued ─ run … (as above)
//!          └─ Busy ─ T: claim again ─ ✔ run / Busy: skipped, as on time
//! ```
//!
//! `c`, the last confirmation, is when the claim or renewal that the coordinator granted was *sent*:
//! the coordinator sets the lease from its own clock when it receives it, so the lease holds at
//! least until `c + L` by this replica's clock.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cancel::CancelToken;
use crate::clock::Clock;
use crate::coordinator::{Claim, ClaimPolicy, Coordinator, FinishedRun, Ticket};
use crate::state::Slot;
use crate::status::{HeldElsewhere, Outcome};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);
/// Reports are retried faster than claims: after an outage, the report of a run that ended during
/// it should land before another replica's claim finds the run's lease expired.
const FIRST_REPORT_RETRY: Duration = Duration::from_millis(100);
const LONGEST_REPORT_RETRY: Duration = Duration::from_millis(500);
/// How often a claim waiting for the service's own pending report looks again.
const PENDING_POLL: Duration = Duration::from_millis(20);

/// A granted claim on this replica, from the grant until its end is recorded or it is released.
/// Dropped unsettled (its queued run was dropped: a stop, a pause, a reload), it releases itself.
pub(crate) struct Held {
    pub(crate) ticket: Ticket,
    coordinator: Arc<dyn Coordinator>,
    slot: Arc<Slot>,
    lease: Duration,
    /// See the module docs: the lease holds at least until `confirmed + lease`.
    confirmed: Mutex<Instant>,
    settled: bool,
}

impl Held {
    fn new(
        ticket: Ticket,
        coordinator: Arc<dyn Coordinator>,
        slot: Arc<Slot>,
        lease: Duration,
        confirmed: Instant,
    ) -> Self {
        Held {
            ticket,
            coordinator,
            slot,
            lease,
            confirmed: Mutex::new(confirmed),
            settled: false,
        }
    }

    fn confirm(&self, sent: Instant) {
        let mut confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *confirmed = (*confirmed).max(sent);
    }

    fn confirmed(&self) -> Instant {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the claim is still this replica's as its run begins. A run that waited for a worker
    /// (`max_concurrent_jobs`) for a third of the lease or more renews first: its lease may have
    /// run out meanwhile, and another replica taken the tick over or moved on. A renewal refused,
    /// or unanswered while the lease may be over, means the run must not begin.
    pub(crate) async fn still_held(&self) -> bool {
        if self.confirmed().elapsed() < self.lease / 3 {
            return true;
        }
        let ticket = &self.ticket;
        let sent = Instant::now();
        let held = match self.coordinator.renew(ticket).await {
            Ok(true) => {
                self.confirm(sent);
                true
            }
            Ok(false) => false,
            Err(_) => self.confirmed().elapsed() < self.lease,
        };
        if !held {
            tracing::warn!(service = %ticket.service, tick = %ticket.tick,
                "tick not run: its claim's lease ran out while it waited for a worker");
        }
        held
    }

    /// Gives the claim up (its tick will not run), trying a few times; if no try lands, the
    /// lease runs out as a dead replica's would.
    pub(crate) async fn release(mut self, reason: String) {
        self.settled = true;
        release(&*self.coordinator, &self.ticket, &reason).await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (coordinator, ticket) = (self.coordinator.clone(), self.ticket.clone());
        let reason = "not run: the service was stopped, paused or changed before the run began";
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { release(&*coordinator, &ticket, reason).await });
        } else {
            tracing::warn!(service = %ticket.service, tick = %ticket.tick,
                "a claim was dropped outside the runtime; its lease will run out");
        }
    }
}

async fn release(coordinator: &dyn Coordinator, ticket: &Ticket, reason: &str) {
    let mut backoff = FIRST_RETRY;
    for attempt in 1..=3 {
        match coordinator.release(ticket, reason).await {
            Ok(_) => return,
            Err(error) if attempt == 3 => {
                tracing::warn!(service = %ticket.service, tick = %ticket.tick, %error,
                    "could not release a claim whose tick does not run; its lease will run out");
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

/// Claims `tick` for `slot` and decides whether it runs: `Some` to queue the run.
///
/// Waits first for the service's own pending report, if any (its claim would keep the service
/// `Busy`). Then claims, retrying with backoff while the coordinator is unreachable, until
/// `give_up_at` — the tick after it, as a rule ([`SlotState::claim_deadline`] has the others). A
/// claim that comes back granted after that — measured on the clock after the answer, so the time
/// spent waiting and retrying counts — is released and the tick skipped: it is too late to run.
/// `None` when this replica does not run it.
///
/// A claim made `early`, ahead of the run's start (that instant; the service queued under that
/// generation), that finds an earlier run still going (`Busy`) is made again at the start, as a
/// claim made then would be: claiming early never skips a tick that claiming on time would have
/// run. If the service was stopped, paused or reloaded meanwhile, it is not made again.
///
/// [`SlotState::claim_deadline`]: crate::state::SlotState::claim_deadline
#[allow(clippy::too_many_arguments)]
pub(crate) async fn claim(
    clock: &dyn Clock,
    coordinator: &Arc<dyn Coordinator>,
    control_wake: &Notify,
    slot: &Arc<Slot>,
    give_up_at: Option<DateTime<Utc>>,
    tick: DateTime<Utc>,
    policy: ClaimPolicy,
    mut early: Option<(DateTime<Utc>, u32)>,
) -> Option<Held> {
    let name = &*slot.name;
    let too_late = |now: DateTime<Utc>| give_up_at.is_some_and(|next| now >= next);
    while slot
        .lock()
        .stats()
        .is_some_and(|s| s.pending_report.is_some())
    {
        if too_late(clock.now()) {
            tracing::warn!(service = %name, %tick,
                "tick not run: the end of the previous run is still not recorded");
            slot.lock().stats_mut().skipped_late += 1;
            return None;
        }
        tokio::time::sleep(PENDING_POLL).await;
    }
    let mut backoff = FIRST_RETRY;
    loop {
        let sent = Instant::now();
        let error = match coordinator.claim(name, tick, policy).await {
            Ok(claim) => {
                if set_coordinator_error(slot, None) {
                    tracing::info!(service = %name, "coordinator reachable again: coordinated runs resume");
                }
                if let (Claim::Busy { replica, .. }, Some((start, generation))) = (&claim, early) {
                    let wait = (start - clock.now()).to_std().ok().filter(|w| !w.is_zero());
                    if let Some(wait) = wait {
                        early = None;
                        tracing::debug!(service = %name, %tick, %replica,
                            "claimed early, an earlier run is still going: claiming again when the tick is due");
                        tokio::time::sleep(wait).await;
                        // Stopped, paused or reloaded meanwhile: no longer this one's to claim.
                        if !slot.is_current(generation) {
                            return None;
                        }
                        continue;
                    }
                }
                if claim == Claim::Paused || claim == Claim::Disabled {
                    // Paused or disabled by another replica, and this one has not applied it yet:
                    // not run (a paused tick counts as one), and the records are read at once.
                    tracing::debug!(service = %name, %tick, ?claim, "tick not run: held cluster-wide");
                    if claim == Claim::Paused {
                        slot.lock().stats_mut().skipped_paused += 1;
                    }
                    control_wake.notify_one();
                    return None;
                }
                return answered(
                    clock,
                    coordinator,
                    slot,
                    tick,
                    claim,
                    policy,
                    sent,
                    too_late,
                )
                .await;
            }
            Err(error) => error,
        };
        if !set_coordinator_error(slot, Some(error.to_string())) {
            tracing::warn!(service = %name, %error,
                "coordinator unreachable: coordinated runs paused, retrying with backoff");
        }
        let now = clock.now();
        let retry_at = now + chrono::TimeDelta::from_std(backoff).unwrap_or(chrono::TimeDelta::MAX);
        if too_late(retry_at) {
            tracing::warn!(service = %name, %tick, "tick not run: the coordinator stayed unreachable");
            slot.lock().stats_mut().skipped_late += 1;
            return None;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LONGEST_RETRY);
    }
}

/// What a claim's answer means for this replica.
#[allow(clippy::too_many_arguments)]
async fn answered(
    clock: &dyn Clock,
    coordinator: &Arc<dyn Coordinator>,
    slot: &Arc<Slot>,
    tick: DateTime<Utc>,
    claim: Claim,
    policy: ClaimPolicy,
    sent: Instant,
    too_late: impl Fn(DateTime<Utc>) -> bool,
) -> Option<Held> {
    let name = &*slot.name;
    let held_elsewhere = |replica: String, held: DateTime<Utc>, running_earlier: bool| {
        Some(HeldElsewhere {
            replica,
            tick: held,
            running_earlier,
        })
    };
    match claim {
        Claim::Granted(ticket) => {
            slot.lock().stats_mut().held_elsewhere = None;
            let takeover = ticket.tick != tick;
            let held = Held::new(
                ticket,
                coordinator.clone(),
                slot.clone(),
                policy.lease,
                sent,
            );
            let now = clock.now();
            // A takeover runs an older tick by design (at least once); the asked tick, late, not.
            if !takeover && too_late(now) {
                tracing::warn!(service = %name, %tick,
                    "tick not run: its claim was granted after the next tick was due");
                slot.lock().stats_mut().skipped_late += 1;
                held.release(format!(
                    "skipped: the claim was granted at {now}, after the next tick was due"
                ))
                .await;
                return None;
            }
            Some(held)
        }
        Claim::Taken { replica } if replica == coordinator.replica() => {
            // This replica claimed it before and gave it back unrun: a manager stopped and started
            // again between a claim made ahead and its tick (`claim_ahead`).
            tracing::debug!(service = %name, %tick,
                "tick not run: this replica claimed it earlier and gave it back");
            let mut guard = slot.lock();
            let stats = guard.stats_mut();
            stats.skipped_late += 1;
            stats.held_elsewhere = None;
            None
        }
        Claim::Taken { replica } => {
            tracing::debug!(service = %name, %tick, %replica, "tick claimed by another replica");
            let mut guard = slot.lock();
            let stats = guard.stats_mut();
            stats.claimed_elsewhere += 1;
            stats.held_elsewhere = held_elsewhere(replica, tick, false);
            None
        }
        Claim::Busy {
            replica,
            tick: running,
        } => {
            tracing::warn!(service = %name, %tick, %replica, %running,
                "tick skipped: another replica is still running an earlier tick");
            let mut guard = slot.lock();
            let stats = guard.stats_mut();
            stats.skipped += 1;
            stats.held_elsewhere = held_elsewhere(replica, running, true);
            None
        }
        Claim::Paused | Claim::Disabled => None,
    }
}

/// Records whether the coordinator is reachable; returns whether it was unreachable before.
fn set_coordinator_error(slot: &Slot, error: Option<String>) -> bool {
    let mut state = slot.lock();
    if error.is_none() && state.status_is_reachable() {
        return false;
    }
    std::mem::replace(&mut state.stats_mut().coordinator_error, error).is_some()
}

/// Runs `job` while renewing the claim's lease every third of it. Once the claim is lost, the run
/// is cancelled through `cancel` (its [`JobContext`](crate::JobContext) sees it, and it has the
/// abort grace to return, as after a timeout) and it ends as [`Outcome::LeaseLost`]:
///
/// ```text
/// claim ✔ (confirmed c) ─ renew ✔ ─ renew ✘ refused (taken over, abandoned) ─▶ lost: cancel now
///                                 └ renew ✘ error … error, and c + L passed ─▶ lost: cancel now
///                                   (the lease may have run out: another replica may take it)
/// ```
///
/// What remains: between the moment the lease runs out on the database's clock and the moment
/// this replica's renewal learns it (at most a third of the lease later, plus the grace for the
/// job to return), the job still runs; another replica can only take the tick over after the
/// lease ran out. See "Cluster mode" in the README.
pub(crate) async fn renewing<F: Future>(job: F, held: &Held, cancel: &CancelToken) -> F::Output {
    let renew = async {
        let mut every = tokio::time::interval(held.lease / 3);
        every.tick().await;
        loop {
            every.tick().await;
            // A renewal that hangs (a slow database) counts as failed once the lease may be over.
            let left = held.lease.saturating_sub(held.confirmed().elapsed());
            let renewed = tokio::time::timeout(left, renew_once(held)).await;
            if renewed != Ok(true) || held.confirmed().elapsed() >= held.lease {
                let ticket = &held.ticket;
                tracing::error!(service = %ticket.service, tick = %ticket.tick,
                    attempt = ticket.attempt, "claim lost while the job runs: cancelling it");
                cancel.lose_lease();
                // Nothing more to renew; the job has its grace to return.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        biased;
        output = job => output,
        () = renew => unreachable!("the renewal loop never ends"),
    }
}

/// One renewal; `false` once the claim is known to be lost.
async fn renew_once(held: &Held) -> bool {
    let ticket = &held.ticket;
    let sent = Instant::now();
    match held.coordinator.renew(ticket).await {
        Ok(true) => {
            held.confirm(sent);
            true
        }
        Ok(false) => {
            tracing::error!(service = %ticket.service, tick = %ticket.tick, attempt = ticket.attempt,
                "lease lost: the claim is no longer this replica's (taken over, or marked abandoned)");
            false
        }
        Err(error) => {
            tracing::warn!(service = %ticket.service, tick = %ticket.tick, %error, "lease not renewed");
            set_coordinator_error(&held.slot, Some(error.to_string()));
            true
        }
    }
}

/// Marks the end of `ticket`'s run as not yet recorded; the worker calls it, under the same lock as
/// the run's end, so that no claim of the next tick can slip in before [`finish`] is under way.
pub(crate) fn report_pending(stats: &mut crate::state::Stats, ticket: &Ticket) {
    stats.pending_report = Some(ticket.tick);
}

/// Reports the end of a run until the report lands, the coordinator refuses it (the claim was taken
/// over), or the lease is over by this replica's clock and one more lease has passed. Renews the
/// lease every third of it while the report is pending.
pub(crate) async fn finish(
    mut held: Held,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    outcome: Outcome,
    error: Option<String>,
) {
    held.settled = true;
    let run = FinishedRun {
        started,
        finished,
        outcome,
        error,
    };
    let ticket = &held.ticket;
    let mut backoff = FIRST_REPORT_RETRY;
    let mut renewed = Instant::now();
    let mut tries = 0_u32;
    loop {
        tries += 1;
        let (done, reachable) = match held.coordinator.finish(ticket, &run).await {
            Ok(true) => {
                if tries > 1 {
                    tracing::info!(service = %ticket.service, tick = %ticket.tick, tries,
                        "end of the run recorded");
                }
                (true, true)
            }
            Ok(false) => {
                tracing::error!(service = %ticket.service, tick = %ticket.tick,
                    attempt = ticket.attempt,
                    "end of the run not recorded: another replica took the tick over");
                (true, true)
            }
            Err(error) => {
                if tries == 1 {
                    tracing::warn!(service = %ticket.service, tick = %ticket.tick, %error,
                        "could not record the end of the run yet; retrying");
                }
                set_coordinator_error(&held.slot, Some(error.to_string()));
                let over = held.confirmed() + held.lease * 2;
                if Instant::now() >= over {
                    tracing::error!(service = %ticket.service, tick = %ticket.tick, %error, tries,
                        "gave up recording the end of the run: its lease is long over");
                    (true, false)
                } else {
                    (false, false)
                }
            }
        };
        if done {
            let mut guard = held.slot.lock();
            let stats = guard.stats_mut();
            if stats.pending_report == Some(ticket.tick) {
                stats.pending_report = None;
            }
            if reachable {
                stats.coordinator_error = None;
            }
            return;
        }
        if renewed.elapsed() >= held.lease / 3 {
            renewed = Instant::now();
            renew_once(&held).await;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LONGEST_REPORT_RETRY);
    }
}
