//! The worker pool's size: how many workers there are, and how many there should be.
//!
//! The pool *is* the set of workers (see [`crate::worker`]), so bounding concurrent runs means
//! bounding workers. Invariant: `alive` counts every worker task from the moment it is reserved until
//! it exits, including a worker of an earlier start still finishing an abandoned blocking run, so a
//! start after a stop never makes more than `target` runs possible at once.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest pool: each place is a worker task, and far more than any useful number of jobs
/// running at once.
pub(crate) const MAX_WORKERS: usize = 1 << 16;

/// How many workers there are, and how many there should be.
pub(crate) struct Pool {
    alive: AtomicUsize,
    target: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(target: usize) -> Self {
        Pool {
            alive: AtomicUsize::new(0),
            target: AtomicUsize::new(target),
        }
    }

    pub(crate) fn target(&self) -> usize {
        self.target.load(Ordering::Acquire)
    }

    pub(crate) fn set_target(&self, target: usize) {
        self.target.store(target, Ordering::Release);
    }

    /// Reserves a place for one more worker, if there are fewer than the target.
    pub(crate) fn reserve(&self) -> bool {
        loop {
            let alive = self.alive.load(Ordering::Acquire);
            if alive >= self.target() {
                return false;
            }
            if self
                .alive
                .compare_exchange(alive, alive + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Lets a worker go if there are more than the target; `true` if it must exit.
    pub(crate) fn leave_if_surplus(&self) -> bool {
        loop {
            let alive = self.alive.load(Ordering::Acquire);
            if alive <= self.target() {
                return false;
            }
            if self
                .alive
                .compare_exchange(alive, alive - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Whether there are more workers than the target (a surplus worker is about to leave).
    pub(crate) fn is_surplus(&self) -> bool {
        self.alive.load(Ordering::Acquire) > self.target()
    }

    pub(crate) fn leave(&self) {
        self.alive.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_surplus_workers_leave() {
        let pool = Pool::new(2);
        assert!(pool.reserve() && pool.reserve());
        assert!(!pool.reserve(), "a third worker would exceed the bound");
        pool.set_target(1);
        assert!(pool.leave_if_surplus());
        assert!(!pool.leave_if_surplus(), "one worker is the target");
        pool.leave();
        assert!(pool.reserve());
    }
}
