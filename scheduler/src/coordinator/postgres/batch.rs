//! Group commit: calls made at about the same time share one round trip to the database.
//!
//! Every caller puts its request in a shared queue. A caller that finds a lane free becomes that
//! lane's *leader*: it takes up to `max_batch` requests from the queue, sends them as one batch,
//! hands every answer to its caller, and goes on until the queue is empty. Requests that arrive
//! while every lane is busy wait for the next batch, so under load the batches grow by themselves
//! and with one caller at a time each call goes alone, with no added delay:
//!
//! ```text
//! dispatcher wake: 900 ticks due ─ 900 claim tasks spawned
//!   task 1: queue [1], lane 0 free ─ leader of lane 0; yields once, so its siblings queue too
//!   tasks 2..900: queue [1..900]; lane 1 free ─ task 2 leads lane 1
//!   lane 0 takes [1..256] ─ one statement ─ answers 1..256
//!   lane 1 takes [257..512] ─ one statement ─ answers 257..512
//!   lane 0 takes [513..768], lane 1 takes [769..900]; queue empty: both lanes free again
//! ```
//!
//! A leader whose future is dropped mid-batch (its caller gave up) drops that batch's answers (its
//! callers get `None`) and frees its lane; a waiting caller then takes the lane over, so nothing
//! queued is stranded.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::sync::{oneshot, Notify};

/// A queue of requests of type `T`, answered by `R`, sent in batches over `lanes` lanes.
pub(crate) struct GroupCommit<T, R> {
    state: Mutex<Queue<T, R>>,
    /// Woken when a lane is freed with requests still queued.
    lane_freed: Notify,
    max_batch: usize,
}

struct Queue<T, R> {
    waiting: Vec<(T, oneshot::Sender<R>)>,
    /// Which lanes have a leader.
    busy: Vec<bool>,
}

impl<T, R> Queue<T, R> {
    /// Takes a free lane, if any.
    fn take_lane(&mut self) -> Option<usize> {
        let lane = self.busy.iter().position(|busy| !busy)?;
        self.busy[lane] = true;
        Some(lane)
    }
}

impl<T, R> GroupCommit<T, R> {
    /// `lanes` batches may be in flight at once (at least 1), each of at most `max_batch`
    /// requests (at least 1).
    pub(crate) fn new(lanes: usize, max_batch: usize) -> Self {
        GroupCommit {
            state: Mutex::new(Queue {
                waiting: Vec::new(),
                busy: vec![false; lanes.max(1)],
            }),
            lane_freed: Notify::new(),
            max_batch: max_batch.max(1),
        }
    }

    /// The most requests one batch carries.
    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<T, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `request` in the next batch and waits for its answer. `send(lane, batch)` sends one
    /// batch over `lane` and returns one answer per request, in order. `None` when the batch that
    /// carried the request was dropped before it answered (its leader's caller gave up), or `send`
    /// answered fewer requests than it was given.
    pub(crate) async fn submit<F, Fut>(&self, request: T, send: F) -> Option<R>
    where
        F: Fn(usize, Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let (answer, mut answered) = oneshot::channel();
        let lane = {
            let mut queue = self.queue();
            queue.waiting.push((request, answer));
            queue.take_lane()
        };
        if let Some(lane) = lane {
            // Let the tasks woken with this one (the rest of a dispatcher wake) queue theirs.
            tokio::task::yield_now().await;
            self.lead(lane, &send).await;
        }
        loop {
            let freed = self.lane_freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before the checks: a lane freed after them still wakes us.
            freed.as_mut().enable();
            match answered.try_recv() {
                Ok(value) => return Some(value),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // A lane freed before we were registered: requests queued and nobody sending them.
            let lane = {
                let mut queue = self.queue();
                if queue.waiting.is_empty() {
                    None
                } else {
                    queue.take_lane()
                }
            };
            if let Some(lane) = lane {
                self.lead(lane, &send).await;
                continue;
            }
            tokio::select! {
                value = &mut answered => return value.ok(),
                () = freed => {}
            }
        }
    }

    /// Sends batches over `lane` until the queue is empty, then frees it.
    async fn lead<F, Fut>(&self, lane: usize, send: &F)
    where
        F: Fn(usize, Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let lane_guard = LaneGuard { owner: self, lane };
        loop {
            let batch: Vec<_> = {
                let mut queue = self.queue();
                if queue.waiting.is_empty() {
                    break;
                }
                let take = queue.waiting.len().min(self.max_batch);
                queue.waiting.drain(..take).collect()
            };
            let (requests, answers): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
            let values = send(lane, requests).await;
            for (answer, value) in answers.into_iter().zip(values) {
                let _ = answer.send(value);
            }
        }
        drop(lane_guard);
    }
}

/// Frees a lane when its leader is done, or dropped; wakes a waiting caller to take it over when
/// requests are still queued.
struct LaneGuard<'a, T, R> {
    owner: &'a GroupCommit<T, R>,
    lane: usize,
}

impl<T, R> Drop for LaneGuard<'_, T, R> {
    fn drop(&mut self) {
        let queued = {
            let mut queue = self.owner.queue();
            queue.busy[self.lane] = false;
            !queue.waiting.is_empty()
        };
        if queued {
            self.owner.lane_freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::GroupCommit;

    /// Answers each request with itself doubled, after `delay`, recording batch sizes.
    fn doubler(
        batches: &Arc<std::sync::Mutex<Vec<usize>>>,
        delay: Duration,
    ) -> impl Fn(usize, Vec<u32>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u32>> + Send>>
    {
        let batches = batches.clone();
        move |_lane, requests: Vec<u32>| {
            batches.lock().unwrap().push(requests.len());
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                requests.into_iter().map(|r| r * 2).collect()
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_made_together_share_one_batch_and_each_gets_its_own_answer() {
        let commit = Arc::new(GroupCommit::new(1, 1000));
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..500u32)
            .map(|n| {
                let (commit, batches) = (commit.clone(), batches.clone());
                tokio::spawn(async move {
                    commit
                        .submit(n, doubler(&batches, Duration::from_millis(5)))
                        .await
                })
            })
            .collect();
        for (n, task) in (0..500u32).zip(tasks) {
            assert_eq!(task.await.unwrap(), Some(n * 2));
        }
        assert_eq!(*batches.lock().unwrap(), vec![500]);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_cut_at_the_limit_and_spread_over_the_lanes() {
        let commit = Arc::new(GroupCommit::new(2, 100));
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let lanes_used = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..450u32)
            .map(|n| {
                let (commit, batches, lanes_used) =
                    (commit.clone(), batches.clone(), lanes_used.clone());
                tokio::spawn(async move {
                    let send = doubler(&batches, Duration::from_millis(5));
                    commit
                        .submit(n, move |lane, requests| {
                            lanes_used.fetch_or(1 << lane, Ordering::Relaxed);
                            send(lane, requests)
                        })
                        .await
                })
            })
            .collect();
        for (n, task) in (0..450u32).zip(tasks) {
            assert_eq!(task.await.unwrap(), Some(n * 2));
        }
        let mut sizes = batches.lock().unwrap().clone();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![50, 100, 100, 100, 100]);
        assert_eq!(
            lanes_used.load(Ordering::Relaxed),
            0b11,
            "both lanes carried batches"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_alone_goes_at_once() {
        let commit = GroupCommit::new(1, 100);
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let began = tokio::time::Instant::now();
        let answer = commit.submit(7, doubler(&batches, Duration::ZERO)).await;
        assert_eq!(answer, Some(14));
        assert_eq!(began.elapsed(), Duration::ZERO);
        assert_eq!(*batches.lock().unwrap(), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_gives_up_hands_its_lane_to_a_waiting_caller() {
        let commit = Arc::new(GroupCommit::new(1, 1));
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        // The leader's batch takes an hour; its caller gives up after a second.
        let leader = {
            let (commit, batches) = (commit.clone(), batches.clone());
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(1),
                    commit.submit(1, doubler(&batches, Duration::from_secs(3600))),
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        let follower = {
            let (commit, batches) = (commit.clone(), batches.clone());
            tokio::spawn(async move {
                commit
                    .submit(2, doubler(&batches, Duration::from_millis(1)))
                    .await
            })
        };
        assert!(leader.await.unwrap().is_err(), "the leader timed out");
        let answer = tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("the follower is not stranded")
            .unwrap();
        assert_eq!(answer, Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_answered_short_leaves_the_rest_without_an_answer() {
        let commit = Arc::new(GroupCommit::new(1, 10));
        let short = |_lane, requests: Vec<u32>| async move {
            requests.into_iter().take(1).collect::<Vec<u32>>()
        };
        let (a, b) = tokio::join!(commit.submit(1, short), commit.submit(2, short));
        assert_eq!((a, b), (Some(1), None));
    }
}
