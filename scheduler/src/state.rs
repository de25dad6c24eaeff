//! One service's state machine: every state, every transition, and who makes it.
//!
//! ```text
//!                     start / add to a started manager
//!  NotStarted ─────────────────────────────────────────┐
//!                                                      ▼
//!        ┌───────────────────────────────────────▶ Scheduled ──(timer: tick due)──▶ Queued
//!        │ (worker: run ended, a tick is left)         │  ▲                           │
//!        │                                             │  └── (resume) ── Paused ◀────┤ (pause)
//!        │                                             │                              │
//!     Running ◀──────────────(worker: takes it)────────┼──────────────────────────────┘
//!        │  (worker: run ended, no tick left) ───▶ Finished
//!        │
//!        └─ stop while running: Running{then: Stop} (shown "stopping") ──(run ends)──▶ Stopped
//! ```
//!
//! | transition | from | to | made by |
//! |---|---|---|---|
//! | schedule | `NotStarted`, `Stopped`, `Finished` | `Scheduled` (`Queued` for `on_start`), or `Finished` when no tick is left | the manager: `start`, `add_service`, `restart_service` |
//! | fire | `Scheduled` (same generation) | `Queued`; `Waiting` for its jitter; or, when the tick is misfired, as its misfire policy says | the timer |
//! | fire | `Waiting` (same generation) | `Queued` (or the misfire policy, when it is late beyond grace) | the timer |
//! | catch up | `Scheduled` as the start left it | as the misfire policy says for the ticks since the remembered one | the manager at start (state file), or a task asking the coordinator |
//! | begin | `Queued` (same generation) | `Running`; or, for a tick that waited for a worker beyond its grace, as the misfire policy says | a worker |
//! | end | `Running` | `Scheduled`, `Finished`, `Stopped`, `Paused` or `Disabled`, as `then` says; `Queued` for the next tick of a catch-up | the worker that ran it |
//! | stop | any but `Running`, `Disabled` | `Stopped` | the manager |
//! | stop | `Running` | `Running { then: Stop }` | the manager |
//! | pause | `Scheduled`, `Waiting`, `Queued` | `Paused` (a pending retry is dropped and counted) | the manager |
//! | pause | `Running` | `Running { then: Pause }` | the manager |
//! | resume | `Paused` / `Running { then: Pause }` | `Scheduled` / `Running { then: Continue }` | the manager |
//! | run now | `Scheduled`, `Waiting`, `Paused`, `Finished` | `Queued` (manual; a pending retry is dropped and counted) | the manager |
//! | reload | `Scheduled`, `Queued` | `Scheduled` with the new definition | the manager |
//! | reload | `Running` | `Running`, the new definition scheduled when the run ends | the manager |
//! | disable | any | `Disabled` (`Running { then: Disable }` while running) | the manager (configuration) |
//!
//! Invariants:
//! - Every transition happens under the slot's lock, so each is atomic with respect to the others.
//! - The timer and the run queue hold `(slot, generation)` pairs. Every transition that takes a service
//!   out of `Scheduled` or `Queued` by another way than the one the entry is waiting for bumps the
//!   generation, so a stale timer entry or queue item is recognised and dropped; nothing has to be
//!   searched for and removed.
//! - At most one run per service exists at any time: a run exists only in `Running`, and `Running` is
//!   left only by the worker that ran it, when the job has returned (or, for a blocking job that was
//!   abandoned after its grace period, when its thread has returned).
//! - A reload keeps the counters: they describe the service's name, not one definition.
//! - A tick is counted at most once: it runs, or it is counted in exactly one of `skipped` (the
//!   service was busy), `skipped_paused`, `skipped_misfire`, `skipped_late` or `claimed_elsewhere`.
//!
//! # Misfires
//!
//! A tick is *misfired* when its run cannot start within the service's grace after it was meant to
//! start (its tick plus its jitter). Three places notice:
//!
//! - **fire**: the timer hands over a tick that is already late (the process was suspended, the
//!   wall clock jumped forward; the dispatcher re-reads the clock every second).
//! - **begin**: a worker takes a tick that waited in the run queue beyond its grace (a saturated
//!   pool). Only a tick's first run on the grid is checked: a retry, a catch-up run, a manual or a
//!   start run is late by design; and a tick claimed from a coordinator runs (the claim decided:
//!   see [`SlotState::claim_deadline`] for how late a claim may be granted).
//! - **catch up**: at start, the ticks after the last one the manager remembers (state file, or the
//!   coordinator's history) up to now, for a service that asked for catch-up.
//!
//! Then the policy takes every tick due, from the misfired one up to now, at once, and the others
//! are counted in `skipped_misfire`:
//!
//! ```text
//! ticks due: d1 (misfired) … dn ≤ now
//! Skip       dn runs if it is not late itself (a period shorter than the grace), else none
//! Coalesce   dn runs, now
//! All(k)     d(n-k+1) … dn run one after another (Resume::CatchUp), then the grid after dn
//! ```
//!
//! The ticks that pass while a catch-up runs are ordinary skips (the service was busy), so a
//! catch-up is bounded by the ticks due when it began. Paused time is never misfire: a resume goes
//! on at the next tick to come, and the ticks of the pause count in `skipped_paused`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use crate::cancel::CancelToken;
use crate::event::Tally;
use crate::meter::Meter;
use crate::policy::{Misfire, DEFAULT_MISFIRE_GRACE};
use crate::service::Service;
use crate::status::{Origin, Outcome, ServiceState, ServiceStatus, Trigger};
use crate::Schedule;

/// Where a service is; see the module docs for the transitions.
#[derive(Debug)]
pub(crate) enum Phase {
    NotStarted,
    Scheduled {
        next: DateTime<Utc>,
    },
    /// A tick (or a retry of one) whose run starts later than its tick: jitter, or a retry's
    /// backoff. In the timer until `at`, like `Scheduled`.
    Waiting {
        at: DateTime<Utc>,
        tick: DateTime<Utc>,
        /// Why the run happens: a retry keeps the trigger of the run it retries.
        trigger: Trigger,
        attempt: u32,
    },
    Queued {
        tick: DateTime<Utc>,
        trigger: Trigger,
        /// 1 for a tick's first run, more for its retries.
        attempt: u32,
        resume: Resume,
        /// `Pause` for a manual run of a paused service, which returns to paused.
        then: Then,
    },
    Running(Run),
    Paused {
        /// The tick that was next when the pause began.
        pending: Option<DateTime<Utc>>,
    },
    Stopped,
    Finished,
    Disabled,
}

/// A run in progress.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) cancel: CancelToken,
    pub(crate) attempt: u32,
    pub(crate) then: Then,
    pub(crate) resume: Resume,
    /// A blocking job whose abort grace ran out: its outcome is recorded, its thread still runs.
    pub(crate) abandoned: bool,
}

/// What happens when the run in progress ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    Continue,
    Stop,
    Pause,
    Disable,
}

/// Where the schedule picks up after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// At the first tick after this one that is not already past (computed when the run ends, by
    /// the worker, so the dispatcher never does schedule math).
    After(DateTime<Utc>),
    /// At this tick (`None`: no tick is left), or at the first tick after it that is not already
    /// past; ticks that passed during the run count as skipped.
    From(Option<DateTime<Utc>>),
    /// At exactly this tick, however late: a coordinator's takeover of an older tick, after which the
    /// tick that was asked for is claimed.
    Exactly(DateTime<Utc>),
    /// A catch-up ([`Misfire::All`]) is under way: run this missed tick at once, then the ticks
    /// after it up to the catch-up's end ([`Stats::catch_up_until`], kept there so that every
    /// service's `Phase` stays small), then go on as `After` the last of them.
    CatchUp(DateTime<Utc>),
}

/// What the worker knows of a run that ended, for the record.
pub(crate) struct RunFacts {
    pub(crate) name: Arc<str>,
    pub(crate) tick: DateTime<Utc>,
    pub(crate) trigger: Trigger,
    pub(crate) started: DateTime<Utc>,
    pub(crate) duration: Duration,
    /// Which attempt of the tick it was: 1, or more for a retry.
    pub(crate) attempt: u32,
    /// Why a run that was cut short ended, in words (`timed out after 30 s`); `None` otherwise.
    pub(crate) detail: Option<String>,
    /// How many runs the history keeps.
    pub(crate) keep: usize,
}

impl RunFacts {
    /// The error text of a run that ended with `outcome`: the job's error or panic message, or why
    /// it was cut short.
    pub(crate) fn error_of(&self, outcome: &Outcome) -> Option<String> {
        match outcome {
            Outcome::Failed(error) | Outcome::Panicked(error) => Some(error.clone()),
            Outcome::Aborted | Outcome::TimedOut | Outcome::LeaseLost => self.detail.clone(),
            Outcome::Succeeded => None,
        }
    }
}

/// One run in a service's local history: compact, since every service that runs keeps several
/// (48 bytes; see `state::tests::a_history_record_stays_small`).
#[derive(Debug)]
pub(crate) struct HistoryEntry {
    pub(crate) tick: DateTime<Utc>,
    pub(crate) started: DateTime<Utc>,
    /// How long the run took, in nanoseconds (8 bytes where a `Duration` takes 16; saturates at
    /// 584 years).
    duration_nanos: u64,
    pub(crate) trigger: Trigger,
    /// 1 for a tick's first run, more for a retry of it.
    pub(crate) attempt: u32,
    pub(crate) outcome: OutcomeKind,
    /// The error or panic message of a failed run, or why it was cut short, behind a thin pointer (8 bytes where a
    /// `Box<str>` takes 16): most runs have none, and the string is made on the error path only.
    #[allow(clippy::box_collection)] // the box is the point: a thin pointer
    error: Option<Box<String>>,
}

impl HistoryEntry {
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_nanos(self.duration_nanos)
    }

    /// The error or panic message of a failed run, or why it was cut short.
    pub(crate) fn error(&self) -> Option<&str> {
        self.error.as_deref().map(String::as_str)
    }
}

/// An outcome without its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutcomeKind {
    Succeeded,
    Failed,
    Panicked,
    Aborted,
    TimedOut,
    LeaseLost,
}

impl OutcomeKind {
    fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Succeeded => OutcomeKind::Succeeded,
            Outcome::Failed(_) => OutcomeKind::Failed,
            Outcome::Panicked(_) => OutcomeKind::Panicked,
            Outcome::Aborted => OutcomeKind::Aborted,
            Outcome::TimedOut => OutcomeKind::TimedOut,
            Outcome::LeaseLost => OutcomeKind::LeaseLost,
        }
    }

    /// The name coordinators store, as [`crate::coordinator::outcome_parts`] gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OutcomeKind::Succeeded => "ok",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Panicked => "panicked",
            OutcomeKind::Aborted => "aborted",
            OutcomeKind::TimedOut => "timed_out",
            OutcomeKind::LeaseLost => "lease_lost",
        }
    }
}

/// The counters and the last run, kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) last_start: Option<DateTime<Utc>>,
    pub(crate) last_duration: Option<Duration>,
    pub(crate) last_outcome: Option<Outcome>,
    /// The last run's error text (see [`RunFacts::error_of`]).
    pub(crate) last_error: Option<String>,
    pub(crate) last_trigger: Option<Trigger>,
    pub(crate) runs: u64,
    pub(crate) failures: u64,
    pub(crate) skipped: u64,
    pub(crate) skipped_paused: u64,
    pub(crate) skipped_misfire: u64,
    /// Where the latest catch-up ([`Resume::CatchUp`]) ends: it runs the missed ticks up to here.
    pub(crate) catch_up_until: Option<DateTime<Utc>>,
    pub(crate) claimed_elsewhere: u64,
    pub(crate) retries_dropped: u64,
    pub(crate) coordinator_error: Option<String>,
    pub(crate) held_elsewhere: Option<crate::status::HeldElsewhere>,
    pub(crate) pending_report: Option<DateTime<Utc>>,
    pub(crate) skipped_late: u64,
    /// The latest runs, oldest first, at most as many as the manager keeps.
    pub(crate) history: std::collections::VecDeque<HistoryEntry>,
}

/// The counters of a service that has not run yet.
static NO_STATS: Stats = Stats {
    last_start: None,
    last_duration: None,
    last_outcome: None,
    last_error: None,
    last_trigger: None,
    runs: 0,
    failures: 0,
    skipped: 0,
    skipped_paused: 0,
    skipped_misfire: 0,
    catch_up_until: None,
    claimed_elsewhere: 0,
    retries_dropped: 0,
    coordinator_error: None,
    held_elsewhere: None,
    pending_report: None,
    skipped_late: 0,
    history: std::collections::VecDeque::new(),
};

/// The definition and state of one service name.
pub(crate) struct SlotState {
    pub(crate) service: Service,
    pub(crate) origin: Origin,
    /// The definition's fixed period or one-shot delay has no anchor of its own, so scheduling
    /// anchors it (once: a one-shot delay, once anchored, stays where it was anchored).
    auto_anchor: bool,
    /// Whether the meter last reported the service as waiting for a worker (see [`SlotGuard`]).
    metered_waiting: bool,
    pub(crate) phase: Phase,
    pub(crate) generation: u32,
    /// The cluster-wide paused state as this replica last learned it (a record read, or its own
    /// pause or resume); `None` while none is known, and then the configuration's `paused`
    /// decides whether a start begins paused.
    pub(crate) control_paused: Option<bool>,
    /// Allocated at the first thing worth counting, so a service that never ran costs nothing here.
    stats: Option<Box<Stats>>,
}

/// What the caller must do after a transition, outside the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing more.
    Nothing,
    /// Put `(slot, generation)` in the timer, due at `at`.
    Timer { at: DateTime<Utc>, generation: u32 },
    /// Put `(slot, generation)` in the run queue.
    Queue { generation: u32 },
    /// Put `(slot, generation)` in the run queue to run `tick` of the schedule: with a coordinator,
    /// once this replica has claimed it.
    Fire {
        tick: DateTime<Utc>,
        generation: u32,
    },
}

/// What [`SlotState::begin`] found.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The run begins.
    Run(Started),
    /// No run: the item was stale, or its tick misfired while it waited for a worker and the
    /// misfire policy does not run it now; carry out `Next`.
    Not(Next),
}

/// A run that begins.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) tick: DateTime<Utc>,
    pub(crate) trigger: Trigger,
    pub(crate) attempt: u32,
    pub(crate) cancel: CancelToken,
    /// Whether the manager remembers the tick (for a catch-up after a restart).
    pub(crate) remember: bool,
}

// Each transition reads as a table of cases, so `match` over `Option` stays even for two arms.
#[allow(clippy::single_match_else)]
impl SlotState {
    pub(crate) fn new(service: Service, origin: Origin, enabled: bool) -> Self {
        SlotState {
            auto_anchor: needs_anchor(&service.schedule),
            metered_waiting: false,
            service,
            origin,
            phase: if enabled {
                Phase::NotStarted
            } else {
                Phase::Disabled
            },
            generation: 0,
            control_paused: None,
            stats: None,
        }
    }

    fn bump(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// Schedules the current definition afresh at `now`; `anchor` is where an unanchored fixed period
    /// counts from (the start, or the Unix epoch for replicas that must agree).
    pub(crate) fn schedule(
        &mut self,
        now: DateTime<Utc>,
        anchor: DateTime<Utc>,
        on_start: bool,
    ) -> Next {
        if self.auto_anchor {
            self.service.schedule = self.service.schedule.clone().anchored_at(anchor);
        }
        let first = self.service.schedule.first_tick(now);
        if on_start && self.service.on_start {
            let generation = self.bump();
            self.phase = Phase::Queued {
                tick: now,
                trigger: Trigger::Start,
                attempt: 1,
                resume: Resume::From(first),
                then: Then::Continue,
            };
            return Next::Queue { generation };
        }
        self.schedule_at(first)
    }

    /// The timer found `(slot, generation)` due at `now`: queue the tick, hold it back for its
    /// jitter, or hand it to the misfire policy when it is late beyond its grace; nothing if the
    /// entry is stale.
    pub(crate) fn fire(&mut self, generation: u32, name: &str, now: DateTime<Utc>) -> Next {
        if self.generation != generation {
            return Next::Nothing;
        }
        match self.phase {
            Phase::Scheduled { next } => self.arrive(name, next, now),
            Phase::Waiting {
                at,
                tick,
                attempt: 1,
                ..
            } => {
                if self.is_late(at, now) {
                    return self.misfired(name, tick, now);
                }
                self.queue(tick, Trigger::Schedule, 1, Resume::After(tick))
            }
            Phase::Waiting {
                at,
                tick,
                trigger,
                attempt,
            } => {
                let overtaken = self
                    .service
                    .schedule
                    .next_after(tick)
                    .filter(|next| *next <= now && self.is_late(at, now));
                match overtaken {
                    // A retry held up (a suspend) past the next tick: the next tick wins, as it
                    // does over a retry that would come after it.
                    Some(next) => {
                        self.stats_mut().retries_dropped += 1;
                        self.arrive(name, next, now)
                    }
                    None => self.queue(tick, trigger, attempt, Resume::After(tick)),
                }
            }
            _ => Next::Nothing,
        }
    }

    /// Whether [`fire`](Self::fire) at `now` will count no skipped tick: the service is
    /// `Scheduled` and its tick not late beyond its grace, so the tick is queued or held back for
    /// its jitter (`arrive` → `start_at`), never handed to the misfire policy. The dispatcher then
    /// leaves the counters alone (no tallies to compare), which at 100 000 services saves a cache
    /// miss per fire; the other cases (`Waiting`, late) take the counted path.
    pub(crate) fn fires_quietly(&self, name: &str, now: DateTime<Utc>) -> bool {
        match self.phase {
            Phase::Scheduled { next } => !self.is_late(self.start_of(name, next), now),
            _ => false,
        }
    }

    /// Tick `tick` of the schedule has come (at `now`): queue its run, hold it back for its
    /// jitter, or, if it is late beyond its grace, apply the misfire policy.
    fn arrive(&mut self, name: &str, tick: DateTime<Utc>, now: DateTime<Utc>) -> Next {
        let start = self.start_of(name, tick);
        if self.is_late(start, now) {
            return self.misfired(name, tick, now);
        }
        self.start_at(tick, start, now)
    }

    /// The run of `tick` starts at `start` (its jitter after the tick): queued now if that has come,
    /// held back in the timer until then otherwise.
    fn start_at(&mut self, tick: DateTime<Utc>, start: DateTime<Utc>, now: DateTime<Utc>) -> Next {
        if start > now {
            let generation = self.bump();
            self.phase = Phase::Waiting {
                at: start,
                tick,
                trigger: Trigger::Schedule,
                attempt: 1,
            };
            return Next::Timer {
                at: start,
                generation,
            };
        }
        self.queue(tick, Trigger::Schedule, 1, Resume::After(tick))
    }

    /// Queues a run of `tick` (a retry keeps the trigger of the run it retries).
    fn queue(
        &mut self,
        tick: DateTime<Utc>,
        trigger: Trigger,
        attempt: u32,
        resume: Resume,
    ) -> Next {
        let generation = self.bump();
        self.phase = Phase::Queued {
            tick,
            trigger,
            attempt,
            resume,
            then: Then::Continue,
        };
        Next::Fire { tick, generation }
    }

    /// When the run of `tick` is meant to start: the tick, plus its jitter.
    fn start_of(&self, name: &str, tick: DateTime<Utc>) -> DateTime<Utc> {
        match self.service.policies() {
            Some(policies) if policies.jitter.is_some() => {
                add(tick, policies.start_delay(name, tick)).unwrap_or(tick)
            }
            _ => tick,
        }
    }

    /// Whether a run meant to start at `start` that has not started by `now` is misfired.
    fn is_late(&self, start: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        // Every tick goes through here: on time, it costs one comparison.
        if now <= start {
            return false;
        }
        let grace = self
            .service
            .policies()
            .and_then(|p| p.misfire_grace)
            .unwrap_or(DEFAULT_MISFIRE_GRACE);
        u128::from(nanos_between(start, now)) > grace.as_nanos()
    }

    /// Until when a claim of `tick` may be granted for the tick still to run (with a coordinator):
    /// until the next tick is due, as a rule; with `Skip`, only within the grace; for a tick of a
    /// catch-up (old by design), until the tick after the catch-up.
    pub(crate) fn claim_deadline(&self, tick: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let schedule = &self.service.schedule;
        if let Some(until) = self.catch_up_of(tick) {
            return schedule.next_after(until);
        }
        let next = schedule.next_after(tick);
        let skip = self
            .service
            .policies()
            .filter(|policies| policies.misfire == Some(Misfire::Skip))
            .and_then(|policies| {
                add(
                    tick,
                    policies.misfire_grace.unwrap_or(DEFAULT_MISFIRE_GRACE),
                )
            });
        match (skip, next) {
            (Some(skip), Some(next)) => Some(skip.min(next)),
            (skip, next) => skip.or(next),
        }
    }

    /// The end of the catch-up `tick` belongs to, if it is one of its ticks (old by design).
    fn catch_up_of(&self, tick: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.stats
            .as_ref()
            .and_then(|stats| stats.catch_up_until)
            .filter(|until| tick <= *until)
    }

    /// Whether the misfire policy would do anything but run `tick`, late as it is: with `Skip`, or
    /// when a later tick is due too. A queue that drains slowly (many services due at once) makes
    /// ticks late without changing what runs, and then costs nothing more.
    fn misfire_matters(&self, tick: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let policy = self.service.policies().and_then(|p| p.misfire);
        policy == Some(Misfire::Skip)
            || self
                .service
                .schedule
                .next_after(tick)
                .is_some_and(|next| next <= now)
    }

    /// Whether the service asked for catch-up after a restart: an explicit `Coalesce` or `All`.
    pub(crate) fn catches_up_restarts(&self) -> bool {
        matches!(
            self.service.policies().and_then(|p| p.misfire),
            Some(Misfire::Coalesce | Misfire::All { .. })
        )
    }

    /// The ticks of the schedule from `first` to `now` are due, and the first of them is misfired:
    /// the misfire policy decides which of them run (see [`Misfire`] and the module docs), the
    /// others are counted in `skipped_misfire`.
    fn misfired(&mut self, name: &str, first: DateTime<Utc>, now: DateTime<Utc>) -> Next {
        let schedule = &self.service.schedule;
        let just_after = now
            .checked_add_signed(TimeDelta::nanoseconds(1))
            .unwrap_or(now);
        // The ticks in [first, now], and the first after them.
        let (due, after) = catch_up(schedule, Some(first), just_after);
        let due = due.max(1);
        let policy = self
            .service
            .policies()
            .and_then(|p| p.misfire)
            .unwrap_or_default();
        let (runs, start) = match policy {
            Misfire::Skip => {
                // The latest due tick still runs if it is not late itself (a short period).
                let latest = nth_tick(schedule, first, due - 1);
                let on_time =
                    latest.filter(|latest| !self.is_late(self.start_of(name, *latest), now));
                (u64::from(on_time.is_some()), on_time)
            }
            Misfire::Coalesce => (1, nth_tick(schedule, first, due - 1)),
            Misfire::All { limit } => {
                let runs = due.min(u64::from(limit));
                let oldest = (runs > 0).then(|| nth_tick(schedule, first, due - runs));
                (runs, oldest.flatten())
            }
        };
        let skipped = due - runs.min(due);
        if skipped > 0 {
            tracing::warn!(service = name, first = %first, due, skipped, ?policy,
                "misfired: ticks could not start within their grace");
        } else {
            tracing::debug!(service = name, first = %first, due, ?policy,
                "misfired: late ticks run as the policy says");
        }
        self.stats_mut().skipped_misfire += skipped;
        match start {
            Some(tick) if runs > 1 => {
                // The ticks due are those up to now: the catch-up ends there.
                self.stats_mut().catch_up_until = Some(now);
                let resume = match self.service.schedule.next_after(tick) {
                    Some(next) => Resume::CatchUp(next),
                    None => Resume::After(tick),
                };
                self.queue(tick, Trigger::Schedule, 1, resume)
            }
            Some(tick) => {
                let start = self.start_of(name, tick);
                self.start_at(tick, start, now)
            }
            None => self.schedule_at(after),
        }
    }

    /// Puts the service on its schedule at `next` (`None`: no tick is left, it is finished).
    fn schedule_at(&mut self, next: Option<DateTime<Utc>>) -> Next {
        let generation = self.bump();
        match next {
            Some(next) => {
                self.phase = Phase::Scheduled { next };
                Next::Timer {
                    at: next,
                    generation,
                }
            }
            None => {
                self.phase = Phase::Finished;
                Next::Nothing
            }
        }
    }

    /// Catch-up after a restart: the manager remembers `last` as the last tick this service started
    /// before the restart, so the ticks after it up to `now` were missed while the process was down,
    /// and are handed to the misfire policy. Only for a service that asked for catch-up, and only
    /// while it is still scheduled as the start left it (`generation`); `reanchor` keeps an
    /// unanchored fixed period on the grid of `last` rather than restarting it from the start.
    pub(crate) fn catch_up_from(
        &mut self,
        name: &str,
        generation: u32,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
        reanchor: bool,
    ) -> Option<Next> {
        if self.generation != generation
            || !matches!(self.phase, Phase::Scheduled { .. })
            || !self.catches_up_restarts()
        {
            return None;
        }
        let reanchored = reanchor && self.auto_anchor && self.service.schedule.period().is_some();
        if reanchored {
            self.service.schedule = self.service.schedule.clone().anchored_at(last);
        }
        match self.service.schedule.next_after(last) {
            Some(first) if first <= now => Some(self.arrive(name, first, now)),
            _ if reanchored => {
                let next = self.service.schedule.first_tick(now);
                Some(self.schedule_at(next))
            }
            _ => None,
        }
    }

    /// A worker takes the queued item at `now`: the run begins, unless the item is stale, or its
    /// tick misfired while it waited for the worker (a saturated pool) and the misfire policy says
    /// otherwise. A tick this replica `claimed` from a coordinator always runs: its claim is
    /// recorded. `cancel` is the run's token, fresh (the worker's own, recycled).
    pub(crate) fn begin(
        &mut self,
        generation: u32,
        name: &str,
        now: DateTime<Utc>,
        claimed: bool,
        cancel: CancelToken,
    ) -> Begin {
        if self.generation != generation {
            return Begin::Not(Next::Nothing);
        }
        let Phase::Queued {
            tick,
            trigger,
            attempt,
            resume,
            ..
        } = self.phase
        else {
            return Begin::Not(Next::Nothing);
        };
        // Only a tick's first run on the grid: a retry, a catch-up run, a takeover, a manual or a
        // start run is late by design. The last tick of a catch-up resumes `After` itself as a
        // grid tick does, but is as old as the others: were it checked, the ticks that came during
        // the catch-up would start another one, and runs as long as the period would never get
        // back to the grid.
        let fresh = trigger == Trigger::Schedule
            && attempt == 1
            && resume == Resume::After(tick)
            && self.catch_up_of(tick).is_none();
        if fresh
            && !claimed
            && self.is_late(self.start_of(name, tick), now)
            && self.misfire_matters(tick, now)
        {
            let next = self.misfired(name, tick, now);
            if !matches!(self.phase, Phase::Queued { .. }) {
                return Begin::Not(next);
            }
            // The policy runs a tick now: this worker runs it, rather than queueing it again.
        }
        let Phase::Queued {
            tick,
            trigger,
            attempt,
            resume,
            then,
        } = self.phase
        else {
            return Begin::Not(Next::Nothing);
        };
        self.phase = Phase::Running(Run {
            cancel: cancel.clone(),
            attempt,
            then,
            resume,
            abandoned: false,
        });
        self.stats_mut().last_start = Some(now);
        self.stats_mut().last_trigger = Some(trigger);
        Begin::Run(Started {
            tick,
            trigger,
            attempt,
            cancel,
            remember: trigger == Trigger::Schedule && attempt == 1 && self.catches_up_restarts(),
        })
    }

    /// Makes the queued item run what the coordinator granted: an older tick on a takeover, with
    /// the attempt the coordinator records for it (the job's [`JobContext::attempt`] and the
    /// history then agree: a takeover is attempt 2 of its tick, not 1).
    ///
    /// [`JobContext::attempt`]: crate::JobContext::attempt
    pub(crate) fn retarget(&mut self, generation: u32, run_tick: DateTime<Utc>, run_attempt: u32) {
        if let Phase::Queued {
            tick,
            resume,
            attempt,
            ..
        } = &mut self.phase
        {
            if self.generation != generation {
                return;
            }
            if *tick != run_tick {
                *resume = Resume::Exactly(*tick);
                *tick = run_tick;
            }
            *attempt = (*attempt).max(run_attempt);
        }
    }

    /// A queued tick will not run after all (another replica has it, or it was too late to claim):
    /// go back to the schedule at `now`.
    pub(crate) fn unqueue(&mut self, name: &str, generation: u32, now: DateTime<Utc>) -> Next {
        let Phase::Queued { resume, .. } = self.phase else {
            return Next::Nothing;
        };
        if self.generation != generation {
            return Next::Nothing;
        }
        self.resume_schedule(name, resume, now)
    }

    /// Back to the schedule after a run or a claim: the ticks that came due meanwhile are skipped as
    /// overlap (the service was busy), and logged, since in a cluster no other replica may have run
    /// them either.
    fn resume_schedule(&mut self, name: &str, resume: Resume, now: DateTime<Utc>) -> Next {
        let next = match resume {
            Resume::Exactly(at) => Some(at),
            Resume::CatchUp(next) => {
                let until = self.stats.as_ref().and_then(|stats| stats.catch_up_until);
                let resume = match self.service.schedule.next_after(next) {
                    Some(after) if until.is_some_and(|until| after <= until) => {
                        Resume::CatchUp(after)
                    }
                    _ => Resume::After(next),
                };
                return self.queue(next, Trigger::Schedule, 1, resume);
            }
            Resume::From(_) | Resume::After(_) => {
                let from = self.pending(resume);
                let (skipped, next) = catch_up(&self.service.schedule, from, now);
                if let (Some(first), true) = (from, skipped > 0) {
                    tracing::debug!(service = %name, first = %first, skipped,
                        "ticks skipped: due while the service was busy");
                }
                self.stats_mut().skipped += skipped;
                next
            }
        };
        self.schedule_at(next)
    }

    /// The worker's run ended at `now` with `outcome`: record it and move on as `then` says.
    pub(crate) fn end(&mut self, outcome: Outcome, run: &RunFacts, now: DateTime<Utc>) -> Next {
        let Phase::Running(running) = &self.phase else {
            return Next::Nothing;
        };
        let (then, resume, abandoned, attempt) = (
            running.then,
            running.resume,
            running.abandoned,
            running.attempt,
        );
        let failed = outcome.is_failure();
        if !abandoned {
            self.record(outcome, run);
        }
        match then {
            Then::Continue if failed => {
                if let Some(next) = self.retry(run, attempt, resume, now) {
                    return next;
                }
                self.resume_schedule(&run.name, resume, now)
            }
            Then::Continue => self.resume_schedule(&run.name, resume, now),
            Then::Stop => {
                self.phase = Phase::Stopped;
                Next::Nothing
            }
            Then::Disable => {
                self.phase = Phase::Disabled;
                Next::Nothing
            }
            Then::Pause => {
                let pending = self.pending(resume);
                self.phase = Phase::Paused { pending };
                Next::Nothing
            }
        }
    }

    /// Whether no coordinator error is recorded (without allocating the counters to find out).
    pub(crate) fn status_is_reachable(&self) -> bool {
        self.stats
            .as_ref()
            .is_none_or(|stats| stats.coordinator_error.is_none())
    }

    /// The counters, if anything was counted yet.
    pub(crate) fn stats(&self) -> Option<&Stats> {
        self.stats.as_deref()
    }

    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        self.stats.get_or_insert_with(Box::default)
    }

    /// The tick a resume points at.
    fn pending(&self, resume: Resume) -> Option<DateTime<Utc>> {
        match resume {
            Resume::Exactly(at) | Resume::CatchUp(at) => Some(at),
            Resume::From(from) => from,
            Resume::After(after) => self.service.schedule.next_after(after),
        }
    }

    /// Schedules the next attempt of a failed run's tick, if the service retries and the attempt
    /// would come before the next tick; a retry that would not is dropped and counted.
    fn retry(
        &mut self,
        run: &RunFacts,
        attempt: u32,
        resume: Resume,
        now: DateTime<Utc>,
    ) -> Option<Next> {
        let policies = self.service.policies()?;
        if attempt > policies.retries {
            return None;
        }
        let at = add(now, policies.backoff(&run.name, run.tick, attempt + 1))?;
        let next_tick = match resume {
            // The next missed tick of a catch-up is due now: it wins.
            Resume::CatchUp(next) => Some(next),
            _ => catch_up(&self.service.schedule, self.pending(resume), now).1,
        };
        if next_tick.is_some_and(|next| at >= next) {
            self.stats_mut().retries_dropped += 1;
            return None;
        }
        let generation = self.bump();
        self.phase = Phase::Waiting {
            at,
            tick: run.tick,
            trigger: run.trigger,
            attempt: attempt + 1,
        };
        Some(Next::Timer { at, generation })
    }

    fn record(&mut self, outcome: Outcome, run: &RunFacts) {
        let stats = self.stats_mut();
        stats.runs += 1;
        stats.failures += u64::from(outcome.is_failure());
        stats.last_duration = Some(run.duration);
        let error = run.error_of(&outcome);
        if run.keep > 0 {
            if stats.history.len() >= run.keep {
                stats.history.pop_front();
            } else if stats.history.len() == stats.history.capacity() {
                // Grown by doubling from 8 records, capped at `keep` exactly: a service that has
                // run a few times holds a few records, not the whole ring (100 × 48 B by default,
                // which across 100 000 services would be 480 MB up front); a full ring is never
                // over-allocated past `keep`, and reallocations stop once it is full (at most
                // log2(keep / 8) + 1 of them in a service's life).
                let grown = stats.history.capacity().max(4) * 2;
                stats
                    .history
                    .reserve_exact(grown.min(run.keep) - stats.history.len());
            }
            stats.history.push_back(HistoryEntry {
                tick: run.tick,
                started: run.started,
                duration_nanos: u64::try_from(run.duration.as_nanos()).unwrap_or(u64::MAX),
                trigger: run.trigger,
                attempt: run.attempt,
                error: error.clone().map(Box::new),
                outcome: OutcomeKind::of(&outcome),
            });
        }
        stats.last_error = error;
        stats.last_outcome = Some(outcome);
    }

    /// A blocking run whose grace ran out: it ends now with `outcome` (aborted or timed out) for
    /// the record, though its thread goes on (and keeps its worker) until it returns.
    pub(crate) fn abandon(&mut self, outcome: Outcome, run: &RunFacts) {
        let Phase::Running(running) = &mut self.phase else {
            return;
        };
        if !running.abandoned {
            running.abandoned = true;
            self.record(outcome, run);
        }
    }

    /// The kept runs, oldest first.
    pub(crate) fn history(&self) -> impl DoubleEndedIterator<Item = &HistoryEntry> {
        self.stats.iter().flat_map(|stats| stats.history.iter())
    }

    /// Stops the service: no run begins after this. Returns the token of the run in progress, if
    /// any, which the caller may wait for or cancel.
    pub(crate) fn stop(&mut self) -> Option<CancelToken> {
        match &mut self.phase {
            Phase::Running(run) => {
                if run.then != Then::Disable {
                    run.then = Then::Stop;
                }
                Some(run.cancel.clone())
            }
            Phase::Disabled => None,
            _ => {
                self.bump();
                self.phase = Phase::Stopped;
                None
            }
        }
    }

    /// Whether the run in progress was abandoned (its outcome is already recorded).
    pub(crate) fn was_abandoned(&self) -> bool {
        matches!(&self.phase, Phase::Running(run) if run.abandoned)
    }

    /// Whether the run in progress (if any) still holds the caller of a stop: it has neither
    /// returned nor been abandoned.
    pub(crate) fn run_in_progress(&self) -> bool {
        matches!(&self.phase, Phase::Running(run) if !run.abandoned)
    }

    /// Pauses at `now`; `false` when there is nothing to pause (already paused, stopped, ...).
    pub(crate) fn pause(&mut self) -> bool {
        match &mut self.phase {
            Phase::Scheduled { next } => {
                let pending = Some(*next);
                self.bump();
                self.phase = Phase::Paused { pending };
                true
            }
            Phase::Waiting { tick, attempt, .. } => {
                let pending = if *attempt > 1 {
                    // A retry of a tick that ran: the pause drops it (as a manual run would), and
                    // the pause begins at the tick after it, where the retry would have resumed.
                    let after = *tick;
                    self.stats_mut().retries_dropped += 1;
                    self.service.schedule.next_after(after)
                } else {
                    // The delayed run has not begun: it counts as skipped while paused.
                    Some(*tick)
                };
                self.bump();
                self.phase = Phase::Paused { pending };
                true
            }
            Phase::Queued {
                attempt, resume, ..
            } if *attempt > 1 => {
                // A retry waiting for a worker: dropped, as one waiting for its backoff is.
                let resume = *resume;
                self.stats_mut().retries_dropped += 1;
                let pending = self.pending(resume);
                self.bump();
                self.phase = Phase::Paused { pending };
                true
            }
            Phase::Queued {
                tick,
                trigger,
                resume,
                ..
            } => {
                // A queued tick has not begun: it is put back, and counts as skipped while paused.
                let pending = match (*trigger, *resume) {
                    (_, Resume::Exactly(at)) => Some(at),
                    // The rest of a catch-up is dropped too: its ticks count as skipped while paused.
                    (Trigger::Schedule, _) => Some(*tick),
                    (Trigger::Start | Trigger::Manual, Resume::From(from)) => from,
                    (Trigger::Start | Trigger::Manual, Resume::CatchUp(next)) => Some(next),
                    (Trigger::Start | Trigger::Manual, Resume::After(after)) => {
                        self.service.schedule.next_after(after)
                    }
                };
                self.bump();
                self.phase = Phase::Paused { pending };
                true
            }
            Phase::Running(run) if run.then == Then::Continue => {
                run.then = Then::Pause;
                true
            }
            _ => false,
        }
    }

    /// Resumes at `now` on the schedule's grid; the ticks that passed while paused are counted.
    pub(crate) fn resume(&mut self, now: DateTime<Utc>) -> Next {
        match &mut self.phase {
            Phase::Paused { pending } => {
                let (skipped, next) = catch_up(&self.service.schedule, *pending, now);
                self.stats_mut().skipped_paused += skipped;
                self.schedule_at(next)
            }
            Phase::Running(run) if run.then == Then::Pause => {
                run.then = Then::Continue;
                Next::Nothing
            }
            _ => Next::Nothing,
        }
    }

    /// Queues one manual run at `now`; the phase it came from is where it returns.
    pub(crate) fn run_now(&mut self, now: DateTime<Utc>) -> Result<Next, RunNowRefusal> {
        let (resume, then) = match self.phase {
            Phase::Scheduled { next } => (Resume::From(Some(next)), Then::Continue),
            Phase::Waiting { tick, attempt, .. } => {
                if attempt > 1 {
                    // The manual run takes the place of the pending retry, which is dropped.
                    self.stats_mut().retries_dropped += 1;
                    (Resume::After(tick), Then::Continue)
                } else {
                    // A tick held back by its jitter: the manual run comes first, and the tick,
                    // passed during it, is skipped as any tick during a run is.
                    (Resume::From(Some(tick)), Then::Continue)
                }
            }
            Phase::Finished => (Resume::From(None), Then::Continue),
            Phase::Paused { pending } => (Resume::From(pending), Then::Pause),
            Phase::Queued { .. } | Phase::Running(_) => return Err(RunNowRefusal::AlreadyRunning),
            Phase::NotStarted => return Err(RunNowRefusal::NotStarted),
            Phase::Stopped => return Err(RunNowRefusal::Stopped),
            Phase::Disabled => return Err(RunNowRefusal::Disabled),
        };
        let generation = self.bump();
        self.phase = Phase::Queued {
            tick: now,
            trigger: Trigger::Manual,
            attempt: 1,
            resume,
            then,
        };
        Ok(Next::Queue { generation })
    }

    /// Replaces the definition (a reload), keeping the counters. `scheduling` is `Some((now,
    /// anchor))` when the manager is started, so the new definition is scheduled at once.
    pub(crate) fn replace(
        &mut self,
        service: Service,
        origin: Origin,
        enabled: bool,
        scheduling: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Next {
        self.auto_anchor = needs_anchor(&service.schedule);
        self.service = service;
        self.origin = origin;
        if let Phase::Running(run) = &mut self.phase {
            if !enabled {
                run.then = Then::Disable;
                return Next::Nothing;
            }
            if run.then == Then::Disable {
                run.then = Then::Continue;
            }
            if let Some((now, anchor)) = scheduling {
                if self.auto_anchor {
                    self.service.schedule = self.service.schedule.clone().anchored_at(anchor);
                }
                run.resume = Resume::From(self.service.schedule.first_tick(now));
            }
            return Next::Nothing;
        }
        if !enabled {
            self.bump();
            self.phase = Phase::Disabled;
            return Next::Nothing;
        }
        if matches!(self.phase, Phase::Paused { .. }) {
            // The operator's pause holds across a reload; the new grid starts at the resume.
            if let Some((now, anchor)) = scheduling {
                if self.auto_anchor {
                    self.service.schedule = self.service.schedule.clone().anchored_at(anchor);
                }
                self.phase = Phase::Paused {
                    pending: self.service.schedule.first_tick(now),
                };
            }
            return Next::Nothing;
        }
        match scheduling {
            Some((now, anchor)) => self.schedule(now, anchor, false),
            None => {
                self.bump();
                self.phase = Phase::NotStarted;
                Next::Nothing
            }
        }
    }

    pub(crate) fn state(&self) -> ServiceState {
        match &self.phase {
            Phase::NotStarted => ServiceState::NotStarted,
            Phase::Scheduled { .. } | Phase::Waiting { .. } => ServiceState::Idle,
            Phase::Queued { .. } => ServiceState::WaitingForSlot,
            Phase::Running(run) => match run.then {
                Then::Stop | Then::Disable => ServiceState::Stopping,
                Then::Continue | Then::Pause => ServiceState::Running,
            },
            Phase::Paused { .. } => ServiceState::Paused,
            Phase::Stopped => ServiceState::Stopped,
            Phase::Finished => ServiceState::Finished,
            Phase::Disabled => ServiceState::Disabled,
        }
    }

    pub(crate) fn next_fire(&self) -> Option<DateTime<Utc>> {
        match &self.phase {
            Phase::Scheduled { next } => Some(*next),
            Phase::Waiting { at, .. } => Some(*at),
            Phase::Queued { tick, .. } => Some(*tick),
            Phase::Running(run) if run.then == Then::Continue => self.pending(run.resume),
            _ => None,
        }
    }

    /// The skip counters now, to compare with those after a transition.
    pub(crate) fn tally(&self) -> Tally {
        self.stats
            .as_deref()
            .map_or_else(Tally::default, |stats| Tally {
                overlap: stats.skipped,
                paused: stats.skipped_paused,
                misfire: stats.skipped_misfire,
                claimed_elsewhere: stats.claimed_elsewhere,
                late: stats.skipped_late,
                retry_dropped: stats.retries_dropped,
            })
    }

    /// What the service looks like at `now`. A tick queued before it is due (claimed ahead of it,
    /// [`claim_ahead`](crate::ServiceManagerBuilder::claim_ahead)) shows as `Idle`: it is not
    /// waiting for a worker, its tick has not come.
    pub(crate) fn status(&self, name: &str, now: DateTime<Utc>) -> ServiceStatus {
        let stats = self.stats.as_deref().unwrap_or(&NO_STATS);
        let shown = match self.phase {
            Phase::Queued { tick, .. } if tick > now => ServiceState::Idle,
            _ => self.state(),
        };
        ServiceStatus {
            name: name.to_owned(),
            schedule: self.service.schedule.to_string(),
            origin: self.origin,
            next_fire: self.next_fire(),
            state: shown,
            last_start: stats.last_start,
            last_duration: stats.last_duration,
            last_outcome: stats.last_outcome.clone(),
            last_error: stats.last_error.clone(),
            runs: stats.runs,
            failures: stats.failures,
            skipped: stats.skipped,
            claimed_elsewhere: stats.claimed_elsewhere,
            coordinator_error: stats.coordinator_error.clone(),
            held_elsewhere: stats.held_elsewhere.clone(),
            pending_report: stats.pending_report,
            skipped_late: stats.skipped_late,
            skipped_paused: stats.skipped_paused,
            skipped_misfire: stats.skipped_misfire,
            retries_dropped: stats.retries_dropped,
            last_trigger: stats.last_trigger,
        }
    }
}

fn add(at: DateTime<Utc>, delay: Duration) -> Option<DateTime<Utc>> {
    TimeDelta::from_std(delay)
        .ok()
        .and_then(|delay| at.checked_add_signed(delay))
}

/// Why [`SlotState::run_now`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunNowRefusal {
    AlreadyRunning,
    NotStarted,
    Stopped,
    Disabled,
}

/// One service name: its definition and state behind one lock.
pub(crate) struct Slot {
    pub(crate) name: Arc<str>,
    /// Its metrics, registered at its first run.
    pub(crate) meter: Meter,
    state: Mutex<SlotState>,
}

/// The slot's lock. Every transition happens under it, so its release is the one place that sees
/// every change of phase: there the "waiting for a slot" gauge follows `Queued` in and out, by
/// whatever way (a worker's begin, a pause, a stop, a reload, a misfire).
pub(crate) struct SlotGuard<'a> {
    slot: &'a Slot,
    state: MutexGuard<'a, SlotState>,
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = SlotState;

    fn deref(&self) -> &SlotState {
        &self.state
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut SlotState {
        &mut self.state
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let waiting = matches!(self.state.phase, Phase::Queued { .. });
        if self.state.metered_waiting != waiting {
            self.state.metered_waiting = waiting;
            self.slot.meter.waiting(&self.slot.name, waiting);
        }
    }
}

/// A slot's identity while it lives (its address): for telling slots apart without comparing them.
pub(crate) fn slot_id(slot: &Arc<Slot>) -> usize {
    Arc::as_ptr(slot) as usize
}

impl Slot {
    pub(crate) fn new(name: Arc<str>, state: SlotState) -> Self {
        Slot {
            name,
            meter: Meter::default(),
            state: Mutex::new(state),
        }
    }

    /// Whether a timer entry or queue item made under `generation` is still valid.
    pub(crate) fn is_current(&self, generation: u32) -> bool {
        self.lock().generation == generation
    }

    /// Like [`is_current`](Self::is_current), but never waits for the lock: `true` when the lock is
    /// taken. For the timer's compaction, which runs while the manager holds some slot's lock (the
    /// caller's own, whose stale entry is in the heap): waiting there would deadlock, and keeping an
    /// entry only delays its removal to when it is popped.
    pub(crate) fn is_current_or_busy(&self, generation: u32) -> bool {
        match self.state.try_lock() {
            Ok(state) => state.generation == generation,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().generation == generation
            }
            Err(std::sync::TryLockError::WouldBlock) => true,
        }
    }

    pub(crate) fn lock(&self) -> SlotGuard<'_> {
        // Only our own bookkeeping runs under this lock, never a job; the state stays consistent
        // even if a panic interrupted it, since every transition writes the phase last.
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        SlotGuard { slot: self, state }
    }
}

/// Whether a schedule counts from when it is scheduled: a fixed period without an anchor of its own,
/// or a one-shot delay (anchoring a one-shot instant changes nothing).
fn needs_anchor(schedule: &Schedule) -> bool {
    (schedule.period().is_some() && schedule.anchor().is_none()) || schedule.is_one_shot()
}

/// The first tick at or after `now`, starting from the candidate `from`, and how many ticks in
/// `[from, now)` were passed over.
pub(crate) fn catch_up(
    schedule: &Schedule,
    from: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (u64, Option<DateTime<Utc>>) {
    let Some(first) = from else {
        return (0, None);
    };
    if first >= now {
        return (0, Some(first));
    }
    let next = schedule.next_after(now - TimeDelta::nanoseconds(1));
    let skipped = match (schedule.period(), next) {
        (Some(period), Some(next)) => {
            let span = (next - first).to_std().unwrap_or(Duration::ZERO);
            (span.as_nanos() / period.as_nanos().max(1)) as u64
        }
        _ => count_ticks(schedule, first, now),
    };
    (skipped, next)
}

/// `now - start` in nanoseconds (0 if `now` is earlier): from the times of day when both are on
/// the same day, as nearly always, which is cheaper than calendar arithmetic on every tick.
fn nanos_between(start: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let (start, now) = (start.naive_utc(), now.naive_utc());
    if start.date() == now.date() {
        // At most 86 401 s of nanoseconds: far within a u64.
        let of_day = |t: chrono::NaiveTime| {
            u64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + u64::from(t.nanosecond())
        };
        return of_day(now.time()).saturating_sub(of_day(start.time()));
    }
    (now - start).to_std().map_or(0, |between| {
        u64::try_from(between.as_nanos()).unwrap_or(u64::MAX)
    })
}

/// The tick `n` ticks after `first` on the schedule (`first` itself for 0).
fn nth_tick(schedule: &Schedule, first: DateTime<Utc>, n: u64) -> Option<DateTime<Utc>> {
    if let Some(period) = schedule.period() {
        let nanos = period.as_nanos().checked_mul(u128::from(n))?;
        return first.checked_add_signed(TimeDelta::nanoseconds(i64::try_from(nanos).ok()?));
    }
    let mut at = Some(first);
    for _ in 0..n {
        at = schedule.next_after(at?);
    }
    at
}

/// Ticks of a cron schedule in `[from, until)`, counted one by one: cron ticks are whole seconds, so a
/// gap would have to last days for this to take noticeable time; past a cap it stops counting.
fn count_ticks(schedule: &Schedule, from: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    const CAP: u64 = 1_000_000;
    let mut count = 0;
    let mut at = Some(from);
    while let Some(t) = at.filter(|t| *t < until && count < CAP) {
        count += 1;
        at = schedule.next_after(t);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_measured_the_same_within_a_day_and_across_midnight() {
        use chrono::TimeZone;
        let at = |d, h, m, s, ns| {
            Utc.with_ymd_and_hms(2024, 1, d, h, m, s).unwrap() + TimeDelta::nanoseconds(ns)
        };
        let cases = [
            (at(1, 10, 0, 0, 0), at(1, 10, 0, 1, 500), 1_000_000_500),
            (
                at(1, 23, 59, 59, 900_000_000),
                at(2, 0, 0, 0, 100),
                100_000_100,
            ),
            (at(1, 10, 0, 1, 0), at(1, 10, 0, 0, 0), 0),
            (
                at(1, 0, 0, 0, 0),
                at(3, 0, 0, 0, 0),
                2 * 86_400 * 1_000_000_000,
            ),
        ];
        for (start, now, nanos) in cases {
            assert_eq!(nanos_between(start, now), nanos, "{start} → {now}");
        }
    }

    /// The history ring grows with the runs a service has had, by doubling, and stops at `keep`
    /// exactly: a service that ran three times holds 8 records, not 100, and a full ring never
    /// reallocates again (the hot path's budget is no allocation).
    #[test]
    fn the_history_ring_grows_to_its_exact_size_and_then_is_reused() {
        use chrono::TimeZone;
        let schedule = Schedule::every(Duration::from_secs(1)).unwrap();
        let service = Service::new(schedule, |_ctx| async {});
        let mut state = SlotState::new(service, Origin::Code, true);
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut capacities = Vec::new();
        for run in 0..250_i64 {
            let tick = t0 + TimeDelta::seconds(run);
            state.record(
                Outcome::Succeeded,
                &RunFacts {
                    name: Arc::from("ring"),
                    tick,
                    trigger: Trigger::Schedule,
                    attempt: 1,
                    started: tick,
                    duration: Duration::from_millis(1),
                    detail: None,
                    keep: 100,
                },
            );
            let capacity = state.stats().unwrap().history.capacity();
            assert!(
                capacity <= 100,
                "after run {run}: {capacity} records allocated"
            );
            if capacities.last() != Some(&capacity) {
                capacities.push(capacity);
            }
        }
        assert_eq!(capacities, [8, 16, 32, 64, 100], "each growth of the ring");
        let ticks: Vec<_> = state.history().map(|entry| entry.tick).collect();
        let expected: Vec<_> = (150..250).map(|run| t0 + TimeDelta::seconds(run)).collect();
        assert_eq!(ticks, expected, "the latest hundred runs, oldest first");
    }

    /// Every service that runs keeps up to `history_len` (100) of these: a byte here is a hundred
    /// per service.
    #[test]
    fn a_history_record_stays_small() {
        let record = std::mem::size_of::<HistoryEntry>();
        assert!(record <= 48, "a history record grew to {record} bytes");
    }

    #[test]
    fn a_history_record_keeps_the_duration_and_the_error() {
        use chrono::TimeZone;
        let schedule = Schedule::every(Duration::from_secs(1)).unwrap();
        let mut state = SlotState::new(Service::new(schedule, |_ctx| async {}), Origin::Code, true);
        let tick = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let facts = |duration| RunFacts {
            name: Arc::from("kept"),
            tick,
            trigger: Trigger::Schedule,
            attempt: 1,
            started: tick,
            duration,
            detail: None,
            keep: 10,
        };
        state.record(
            Outcome::Failed("disk full".to_owned()),
            &facts(Duration::new(3, 7)),
        );
        state.record(Outcome::Succeeded, &facts(Duration::MAX));
        let kept: Vec<_> = state
            .history()
            .map(|entry| {
                (
                    entry.duration(),
                    entry.error().map(str::to_owned),
                    entry.outcome,
                )
            })
            .collect();
        assert_eq!(
            kept,
            [
                (
                    Duration::new(3, 7),
                    Some("disk full".to_owned()),
                    OutcomeKind::Failed
                ),
                // Beyond 584 years, the nanoseconds saturate.
                (Duration::from_nanos(u64::MAX), None, OutcomeKind::Succeeded),
            ]
        );
    }

    /// Every idle service is one `Slot` (behind an `Arc`) plus a timer entry: keep it small (the
    /// runtime's target is 400 B of RSS per idle service, all costs included).
    #[test]
    fn an_idle_service_stays_small() {
        let slot = std::mem::size_of::<Slot>();
        println!(
            "Slot {slot} B (SlotState {}, Phase {}, Stats {}, Service {}, Schedule {})",
            std::mem::size_of::<SlotState>(),
            std::mem::size_of::<Phase>(),
            std::mem::size_of::<Stats>(),
            std::mem::size_of::<Service>(),
            std::mem::size_of::<Schedule>(),
        );
        assert!(slot <= 192, "a slot grew to {slot} bytes");
    }
}
