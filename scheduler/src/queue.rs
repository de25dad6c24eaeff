//! The run queue: due services waiting for a worker, in the order they came due.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::cluster::Held;
use crate::state::Slot;

/// A due service for a worker: the slot and the generation it was queued under.
pub(crate) struct Fire {
    pub(crate) slot: Arc<Slot>,
    pub(crate) generation: u32,
    /// With a coordinator: the claim this run holds.
    pub(crate) ticket: Option<Box<Held>>,
}

pub(crate) struct RunQueue {
    items: Mutex<VecDeque<Fire>>,
    pub(crate) ready: Notify,
}

impl RunQueue {
    pub(crate) fn new() -> Self {
        RunQueue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
        }
    }

    pub(crate) fn items(&self) -> MutexGuard<'_, VecDeque<Fire>> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn push(&self, fire: Fire) {
        self.items().push_back(fire);
        self.ready.notify_waiters();
    }

    /// Queues every fire in `fires` under one lock, and wakes the idle workers once.
    pub(crate) fn push_all(&self, fires: &mut Vec<Fire>) {
        if fires.is_empty() {
            return;
        }
        self.items().extend(fires.drain(..));
        self.ready.notify_waiters();
    }

    pub(crate) fn clear(&self) {
        self.items().clear();
    }

    pub(crate) fn wake_all(&self) {
        self.ready.notify_waiters();
    }
}
