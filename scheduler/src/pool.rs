//! The worker pool: at most `max_concurrent_jobs` runs at once.
//!
//! A counter of free slots rather than `tokio::sync::Semaphore`: taking and returning a slot is one
//! atomic operation each on the hot path (the semaphore takes a mutex on every release), and waiters
//! — rare, only when every slot is busy — park on a `Notify`.
//!
//! Invariant: `free` is the number of slots not held, minus slots removed by a shrink that are still
//! held (so it may be negative for a while); a slot is taken only while `free > 0`.

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use tokio::sync::Notify;

pub(crate) struct Pool {
    free: AtomicIsize,
    waiting: AtomicUsize,
    wake: Notify,
}

/// One slot, returned when dropped.
pub(crate) struct Slot<'a>(&'a Pool);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.free.fetch_add(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.wake.notify_one();
        }
    }
}

/// The largest pool: far beyond any useful number of concurrent jobs, and safely inside `isize`.
pub(crate) const MAX_SLOTS: usize = 1 << 30;

impl Pool {
    pub(crate) fn new(slots: usize) -> Self {
        Pool {
            free: AtomicIsize::new(slots.min(MAX_SLOTS) as isize),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
        }
    }

    pub(crate) fn try_acquire(&self) -> Option<Slot<'_>> {
        let mut free = self.free.load(Ordering::SeqCst);
        while free > 0 {
            match self.free.compare_exchange_weak(
                free,
                free - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Slot(self)),
                Err(now) => free = now,
            }
        }
        None
    }

    pub(crate) async fn acquire(&self) -> Slot<'_> {
        if let Some(slot) = self.try_acquire() {
            return slot;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(self);
        loop {
            let notified = self.wake.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the retry, so a slot returned in between still wakes us.
            notified.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            notified.await;
        }
    }

    /// Adds (or, with a negative `change`, removes) slots; removed slots that are busy disappear as
    /// their runs end.
    pub(crate) fn resize(&self, change: isize) {
        self.free.fetch_add(change, Ordering::SeqCst);
        if change > 0 {
            self.wake.notify_waiters();
        }
    }
}

struct Waiting<'a>(&'a Pool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn slots_are_bounded_and_returned() {
        let pool = Pool::new(2);
        let a = pool.try_acquire().expect("first slot");
        let _b = pool.try_acquire().expect("second slot");
        assert!(pool.try_acquire().is_none());
        drop(a);
        assert!(pool.try_acquire().is_some());
    }

    #[test]
    fn shrinking_takes_effect_as_busy_slots_return() {
        let pool = Pool::new(2);
        let a = pool.try_acquire().unwrap();
        let b = pool.try_acquire().unwrap();
        pool.resize(-1);
        drop(a);
        assert!(
            pool.try_acquire().is_none(),
            "the returned slot was the removed one"
        );
        drop(b);
        assert!(pool.try_acquire().is_some());
    }

    /// Spawns a task waiting for a slot, and returns once it is parked in `acquire`'s slow path,
    /// so the tests below exercise the wake-up, not the fast path.
    async fn parked_waiter(pool: &Arc<Pool>) -> tokio::task::JoinHandle<()> {
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let _slot = pool.acquire().await;
            })
        };
        while pool.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        waiter
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_wakes_when_a_slot_is_returned_or_added() {
        let pool = Arc::new(Pool::new(1));
        let held = pool.try_acquire().unwrap();
        let waiter = parked_waiter(&pool).await;
        drop(held);
        // The deadline only turns a lost wake-up into a failure instead of a hang.
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the returned slot")
            .unwrap();

        let held = pool.try_acquire().unwrap();
        let waiter = parked_waiter(&pool).await;
        pool.resize(1);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the added slot")
            .unwrap();
        drop(held);
    }
}
