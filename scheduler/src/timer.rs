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
//! The heap is keyed on 64-bit nanoseconds since the Unix epoch, converted once per insert and once
//! per wake-up: ordering 100 000 entries then compares one integer, not a date, a second and a
//! fraction. The key covers 1677–2262; an instant outside is clamped to the nearest end, which only
//! a clock set beyond 2262 could reach.
//!
//! Entries are never searched for and removed: an entry carries the service's generation at the time
//! it was scheduled, and one that no longer matches (the service was stopped, paused or reloaded) is
//! dropped when it comes due; see [`crate::state`]. Stale entries are bounded by compaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::deadline_heap::{DeadlineHeap, Entry};
use crate::queue::Fire;
use crate::state::{slot_id, Slot};

/// The longest the dispatcher sleeps without re-reading the wall clock.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// How many due entries the dispatcher takes per lock, so workers rescheduling services are not held
/// up behind a burst of 100 000 due at once.
const BATCH: usize = 512;

pub(crate) struct Timer {
    heap: Mutex<Heap>,
    /// Wakes the dispatcher: an entry earlier than the one it sleeps until, or shutdown.
    pub(crate) wake: Notify,
    /// How far ahead of its deadline an entry is taken, in nanoseconds (zero but with a
    /// coordinator and [`claim_ahead`](crate::ServiceManagerBuilder::claim_ahead)).
    ahead: i64,
}

struct Heap {
    /// Keyed on the deadline ([`key`]), the slot and the generation it was scheduled under.
    entries: DeadlineHeap<Due>,
    /// Runs whose tick was claimed ahead of it, keyed on their start: handed to the workers by the
    /// dispatcher when it comes, all in one batch, rather than by a task per run.
    held: DeadlineHeap<Fire>,
    /// How many held runs each slot has (by its address), so that [`Timer::adopt_held`] searches
    /// the held runs only for a slot that has one.
    held_slots: HashMap<usize, u32>,
    /// Set by [`Timer::clear`] (the manager stopped), unset by [`Timer::open`]: a run granted
    /// after a stop is not held.
    closed: bool,
    /// When the dispatcher looks next (a key); an insert only wakes it when it is earlier than this.
    armed: Option<i64>,
    /// Entries known to be stale (their service was stopped, paused or reloaded), for compaction.
    stale: usize,
}

pub(crate) struct Due {
    pub(crate) generation: u32,
    pub(crate) slot: Arc<Slot>,
}

/// What [`Timer::take_due`] tells the dispatcher to do next.
pub(crate) enum Wait {
    /// More entries are due: take the next batch at once.
    Nothing,
    /// Sleep this long: until the wall clock reads the earliest deadline, at most [`RECHECK`].
    For(Duration),
}

/// A deadline's key: nanoseconds since the Unix epoch, clamped to what an `i64` holds.
pub(crate) fn key(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

impl Heap {
    /// Something is due at `at` (a key): whether the dispatcher, armed for later, must be woken.
    fn arm_before(&mut self, at: i64) -> bool {
        let earlier = self.armed.is_none_or(|armed| at < armed);
        if earlier {
            self.armed = Some(at);
        }
        earlier
    }

    /// A held run left the held heap.
    fn forget_held(&mut self, fire: &Fire) {
        let id = slot_id(&fire.slot);
        if let Some(count) = self.held_slots.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                self.held_slots.remove(&id);
            }
        }
    }
}

/// The instant a key stands for (the inverse of [`key`] within 1677–2262).
pub(crate) fn instant_of(key: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(key)
}

impl Timer {
    /// A timer whose entries are taken `ahead` of their deadline (zero: when it comes).
    pub(crate) fn new(ahead: Duration) -> Self {
        Timer {
            heap: Mutex::new(Heap {
                entries: DeadlineHeap::new(),
                held: DeadlineHeap::new(),
                held_slots: HashMap::new(),
                closed: false,
                armed: None,
                stale: 0,
            }),
            wake: Notify::new(),
            ahead: i64::try_from(ahead.as_nanos()).unwrap_or(i64::MAX),
        }
    }

    /// Holds `fire`, whose claim was granted ahead of its tick, until `start`: the dispatcher then
    /// queues it with the others due. Gives it back when the manager has stopped.
    pub(crate) fn hold(&self, start: DateTime<Utc>, fire: Fire) -> Result<(), Fire> {
        let start = key(start);
        // `armed` is on the entries' scale, `ahead` after the dispatcher's wake-up.
        let wake_key = start.saturating_add(self.ahead);
        let wake = {
            let mut heap = self.heap();
            if heap.closed {
                return Err(fire);
            }
            *heap.held_slots.entry(slot_id(&fire.slot)).or_default() += 1;
            heap.held.push(start, fire);
            heap.arm_before(wake_key)
        };
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Takes out the held run of `slot` whose claim is for `tick`, if there is one: the service was
    /// paused and resumed, or reloaded, between the claim and the tick, and fires the same tick
    /// again. Its claim is still this replica's; claimed again, the tick would answer taken (by
    /// this replica), and run nowhere.
    pub(crate) fn adopt_held(&self, slot: &Arc<Slot>, tick: DateTime<Utc>) -> Option<Fire> {
        let id = slot_id(slot);
        let mut heap = self.heap();
        if !heap.held_slots.contains_key(&id) {
            return None;
        }
        let fire = heap
            .held
            .remove_first(|fire| {
                slot_id(&fire.slot) == id
                    && fire.ticket.as_ref().is_some_and(|t| t.ticket.tick == tick)
            })?
            .value;
        heap.forget_held(&fire);
        Some(fire)
    }

    /// Takes every held run out (the manager is stopping: their claims are to be given back).
    pub(crate) fn take_held(&self) -> Vec<Fire> {
        let mut heap = self.heap();
        heap.held_slots.clear();
        std::iter::from_fn(|| heap.held.pop().map(|entry| entry.value)).collect()
    }

    /// Lets runs be held again (the manager started).
    pub(crate) fn open(&self) {
        self.heap().closed = false;
    }

    fn heap(&self) -> MutexGuard<'_, Heap> {
        self.heap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Schedules `slot` at `at` under `generation`.
    pub(crate) fn insert(&self, slot: Arc<Slot>, at: DateTime<Utc>, generation: u32) {
        let at = key(at);
        let wake = {
            let mut heap = self.heap();
            heap.entries.push(at, Due { generation, slot });
            heap.arm_before(at)
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

    /// At `now`: moves the held runs whose start has come into `ready`, and up to one batch of the
    /// entries due by the horizon (`now`, plus how far ahead entries are taken) into `due`, each
    /// with its deadline (the key). The wait returned counts from `now`.
    ///
    /// ```text
    /// now ───────────── now + ahead (the horizon) ────▶
    /// held runs ≤ now: ready    entries ≤ horizon: due (claimed now, run at their deadline)
    /// ```
    pub(crate) fn take_due(
        &self,
        now: DateTime<Utc>,
        due: &mut Vec<Entry<Due>>,
        ready: &mut Vec<Fire>,
    ) -> Wait {
        let now_key = key(now);
        let horizon = now_key.saturating_add(self.ahead);
        let mut heap = self.heap();
        while heap.held.peek_key().is_some_and(|start| start <= now_key) {
            if let Some(entry) = heap.held.pop() {
                heap.forget_held(&entry.value);
                ready.push(entry.value);
            }
        }
        while due.len() < BATCH {
            match heap.entries.peek_key() {
                Some(at) if at <= horizon => {
                    due.extend(heap.entries.pop());
                }
                _ => break,
            }
        }
        if due.len() == BATCH {
            // Looking again at once: no insert needs to wake us meanwhile.
            heap.armed = Some(i64::MIN);
            return Wait::Nothing;
        }
        // On the entries' scale: a held run starting at s wakes us when s + ahead is "due".
        let recheck = horizon.saturating_add(RECHECK.as_nanos() as i64);
        let next_held = heap
            .held
            .peek_key()
            .map(|start| start.saturating_add(self.ahead));
        let until = [heap.entries.peek_key(), next_held]
            .into_iter()
            .flatten()
            .fold(recheck, i64::min);
        heap.armed = Some(until);
        // `until` is after the horizon (every entry due by it was taken), at most RECHECK later.
        Wait::For(Duration::from_nanos(
            until.saturating_sub(horizon).max(0) as u64
        ))
    }

    /// Drops every entry and held run (the manager stopped: every service left `Scheduled`), and
    /// holds no run until [`open`](Self::open).
    pub(crate) fn clear(&self) {
        let mut heap = self.heap();
        heap.entries.clear();
        heap.held.clear();
        heap.held_slots.clear();
        heap.closed = true;
        heap.stale = 0;
        heap.armed = None;
    }
}
