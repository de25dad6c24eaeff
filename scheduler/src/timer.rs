//! The timer side: every scheduled service is one entry in a heap of deadlines, and one task, the
//! dispatcher, sleeps until the earliest and hands every due service to the workers in one wake-up.
//!
//! Deadlines are wall-clock instants read from the manager's [`Clock`](crate::Clock). The dispatcher
//! sleeps on tokio's monotonic timer, but never longer than [`RECHECK`] at a time, and re-reads the
//! wall clock whenever it wakes:
//!
//! ```text
//! wall clock  ──10:00:00──────────────────────[suspended 1 h]──────11:00:07──────────────▶
//! dispatcher     sleeps ≤ 1 s, re-reads the clock, sleeps ≤ 1 s ...  wakes: every tick due by
//!                                                                    11:00:07 fires now
//! ```
//!
//! So a suspended machine or a clock set forward fires its due ticks within about a second, and a
//! clock set back never fires a tick early: a tick fires only when the clock reads at least its
//! instant. That is one timer for the whole manager, not one per service.
//!
//! Entries are never searched for and removed: an entry carries the service's generation at the time
//! it was scheduled, and one that no longer matches (the service was stopped, paused or reloaded) is
//! dropped when it comes due; see [`crate::state`]. Stale entries are bounded by compaction.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::state::Slot;

/// The longest the dispatcher sleeps without re-reading the wall clock.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// How many due entries the dispatcher takes per lock, so workers rescheduling services are not held
/// up behind a burst of 100 000 due at once.
const BATCH: usize = 512;

pub(crate) struct Timer {
    heap: Mutex<Heap>,
    /// Wakes the dispatcher: an entry earlier than the one it sleeps until, or shutdown.
    pub(crate) wake: Notify,
}

struct Heap {
    entries: BinaryHeap<Due>,
    /// When the dispatcher looks next; an insert only wakes it when it is earlier than this.
    armed: Option<DateTime<Utc>>,
    /// Entries known to be stale (their service was stopped, paused or reloaded), for compaction.
    stale: usize,
}

pub(crate) struct Due {
    pub(crate) at: DateTime<Utc>,
    pub(crate) generation: u32,
    pub(crate) slot: Arc<Slot>,
}

// A min-heap on `at`.
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}

/// What [`Timer::take_due`] tells the dispatcher to do next.
pub(crate) enum Wait {
    /// More entries are due: take the next batch at once.
    Nothing,
    /// Sleep until the wall clock reads this (at most [`RECHECK`] from now).
    Until(DateTime<Utc>),
}

impl Timer {
    pub(crate) fn new() -> Self {
        Timer {
            heap: Mutex::new(Heap {
                entries: BinaryHeap::new(),
                armed: None,
                stale: 0,
            }),
            wake: Notify::new(),
        }
    }

    fn heap(&self) -> MutexGuard<'_, Heap> {
        self.heap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Schedules `slot` at `at` under `generation`.
    pub(crate) fn insert(&self, slot: Arc<Slot>, at: DateTime<Utc>, generation: u32) {
        let wake = {
            let mut heap = self.heap();
            heap.entries.push(Due {
                at,
                generation,
                slot,
            });
            let earlier = heap.armed.is_none_or(|armed| at < armed);
            if earlier {
                heap.armed = Some(at);
            }
            earlier
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// Notes that one entry went stale; compacts the heap when most of it is.
    ///
    /// Callers hold a slot's lock (the slot whose entry just went stale), so the compaction must not
    /// wait for any slot's lock: an entry whose slot is locked is kept, and dropped when popped.
    pub(crate) fn forget_one(&self) {
        let mut heap = self.heap();
        heap.stale += 1;
        if heap.stale > 1024 && heap.stale * 2 > heap.entries.len() {
            heap.entries
                .retain(|due| due.slot.is_current_or_busy(due.generation));
            heap.stale = 0;
        }
    }

    /// Moves up to one batch of the entries due at `now` into `out`.
    pub(crate) fn take_due(&self, now: DateTime<Utc>, out: &mut Vec<Due>) -> Wait {
        let mut heap = self.heap();
        while out.len() < BATCH {
            match heap.entries.peek() {
                Some(due) if due.at <= now => out.extend(heap.entries.pop()),
                _ => break,
            }
        }
        if out.len() == BATCH {
            // Looking again at once: no insert needs to wake us meanwhile.
            heap.armed = Some(DateTime::<Utc>::MIN_UTC);
            return Wait::Nothing;
        }
        let recheck = chrono::TimeDelta::from_std(RECHECK)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let until = heap
            .entries
            .peek()
            .map_or(recheck, |due| due.at.min(recheck));
        heap.armed = Some(until);
        Wait::Until(until)
    }

    /// Drops every entry (the manager stopped: every service left `Scheduled`).
    pub(crate) fn clear(&self) {
        let mut heap = self.heap();
        heap.entries.clear();
        heap.stale = 0;
        heap.armed = None;
    }
}
