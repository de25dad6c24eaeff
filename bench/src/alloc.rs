//! A counting global allocator: the system allocator, plus counters of how often it is called.
//!
//! Allocation counts do not depend on how loaded the machine is, unlike lateness and, to a lesser
//! degree, CPU time, so they are the measure that stays comparable between runs on a shared machine.
//!
//! Counting must not itself cost what it measures: each thread adds to its own cache-line-sized
//! shard (relaxed atomics that stay in that core's cache), and the shards are summed only when a
//! child samples them, twice per run.
//!
//! Allocations made while the manager's dispatcher task is polled are also counted apart, so the
//! dispatcher's own cost per fire shows on its own. The dispatcher is recognised by its tokio task
//! id: [`ServiceManager::start`](scheduler::ServiceManager::start) spawns it first, so its id is the
//! one after a probe task spawned just before the start (tokio numbers tasks from one global counter).

// A global allocator is an `unsafe impl`: this module is the only unsafe code of the workspace, and
// only in the benchmark binary (the crate's lints deny unsafe code everywhere else).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The system allocator, counted.
pub(crate) struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// More shards than threads a child runs (2 runtime workers, the main thread, blocking threads):
/// threads beyond that share shards, which costs contention but never a count.
const SHARDS: usize = 64;

#[repr(align(64))]
struct Shard {
    /// Calls of `alloc`, `alloc_zeroed` and `realloc`: each may take the allocator's slow path.
    allocations: AtomicU64,
    /// Of those, the ones made while the dispatcher task was polled.
    dispatcher: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the array below, never used alone
const EMPTY: Shard = Shard {
    allocations: AtomicU64::new(0),
    dispatcher: AtomicU64::new(0),
};
static COUNTS: [Shard; SHARDS] = [EMPTY; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
/// The dispatcher's task id, 0 until known.
static DISPATCHER_TASK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Both `const` and without destructors, so reading them never allocates (which would recurse).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Set while this thread is inside the counting code, so a lookup that allocates (tokio's
    /// thread-local context registering its destructor on first use) is counted, not recursed into.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

fn shard() -> &'static Shard {
    let index = SHARD.with(|shard| {
        if shard.get() == usize::MAX {
            shard.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        shard.get()
    });
    &COUNTS[index]
}

fn count() {
    let shard = shard();
    shard.allocations.fetch_add(1, Ordering::Relaxed);
    let dispatcher = DISPATCHER_TASK.load(Ordering::Relaxed);
    if dispatcher != 0 && !INSIDE.with(|inside| inside.replace(true)) {
        if tokio::task::try_id().map(task_number) == Some(dispatcher) {
            shard.dispatcher.fetch_add(1, Ordering::Relaxed);
        }
        INSIDE.with(|inside| inside.set(false));
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract;
// the counting around it allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` was allocated by `System` (every allocation goes through here) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocator calls so far: all of them, and the dispatcher's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Allocations {
    pub(crate) total: u64,
    pub(crate) dispatcher: u64,
}

impl std::ops::Sub for Allocations {
    type Output = Allocations;
    fn sub(self, earlier: Allocations) -> Allocations {
        Allocations {
            total: self.total - earlier.total,
            dispatcher: self.dispatcher - earlier.dispatcher,
        }
    }
}

/// The counters now, summed over every thread.
pub(crate) fn allocations() -> Allocations {
    COUNTS
        .iter()
        .fold(Allocations::default(), |sum, shard| Allocations {
            total: sum.total + shard.allocations.load(Ordering::Relaxed),
            dispatcher: sum.dispatcher + shard.dispatcher.load(Ordering::Relaxed),
        })
}

/// From now on, allocations made while the task numbered `task` is polled count as the dispatcher's.
pub(crate) fn watch_dispatcher(task: u64) {
    DISPATCHER_TASK.store(task, Ordering::Relaxed);
}

/// A task id's number. tokio shows it only through `Display` and `Hash`; hashing it into a hasher that
/// keeps the last `u64` written reads it without allocating (`Display` would allocate a string,
/// which inside the allocator would recurse).
pub(crate) fn task_number(id: tokio::task::Id) -> u64 {
    #[derive(Default)]
    struct LastU64(u64);
    impl Hasher for LastU64 {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 = self.0 << 8 | u64::from(*byte);
            }
        }
        fn write_u64(&mut self, value: u64) {
            self.0 = value;
        }
    }
    let mut hasher = LastU64::default();
    id.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_number_is_the_id_tokio_displays() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let task = tokio::spawn(async {});
            let id = task.id();
            assert_eq!(task_number(id).to_string(), id.to_string());
            let next = tokio::spawn(async {});
            assert_eq!(task_number(next.id()), task_number(id) + 1);
        });
    }

    #[test]
    fn allocations_are_counted() {
        let before = allocations();
        let kept: Vec<Box<u64>> = (0..100).map(Box::new).collect();
        let after = allocations();
        assert!(after.total - before.total >= 101, "{before:?} → {after:?}");
        drop(kept);
    }
}
