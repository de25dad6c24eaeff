//! A 4-ary min-heap keyed on `i64` (the timer's nanosecond deadlines).
//!
//! Why not `std::collections::BinaryHeap`: at 100 000 services the heap does not fit in the cache,
//! and a pop walks from the root to a leaf, one cache miss per level. Four children per node halve
//! the levels (⌈log₄ N⌉ = 9 at 100 000, against 17), and the four children of a node are
//! contiguous, so comparing them costs about one miss more than comparing two. The key is stored
//! next to the value, so ordering never looks into the value (a slot behind an `Arc`).
//!
//! Invariant: for every index `i > 0`, `entries[(i - 1) / 4].key <= entries[i].key`.

/// One entry: its key, and what it stands for.
pub(crate) struct Entry<T> {
    pub(crate) key: i64,
    pub(crate) value: T,
}

pub(crate) struct DeadlineHeap<T> {
    entries: Vec<Entry<T>>,
}

const ARITY: usize = 4;

impl<T> DeadlineHeap<T> {
    pub(crate) const fn new() -> Self {
        DeadlineHeap {
            entries: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The smallest key, if any.
    pub(crate) fn peek_key(&self) -> Option<i64> {
        self.entries.first().map(|entry| entry.key)
    }

    pub(crate) fn push(&mut self, key: i64, value: T) {
        self.entries.push(Entry { key, value });
        self.sift_up(self.entries.len() - 1);
    }

    /// Removes the entry with the smallest key (of equal keys, any one).
    pub(crate) fn pop(&mut self) -> Option<Entry<T>> {
        if self.entries.is_empty() {
            return None;
        }
        let popped = self.entries.swap_remove(0);
        if !self.entries.is_empty() {
            self.sift_down(0);
        }
        Some(popped)
    }

    /// Keeps only the entries for which `keep` holds, then restores the order (in O(n)).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.entries.retain(|entry| keep(&entry.value));
        if self.entries.len() > 1 {
            for parent in (0..=(self.entries.len() - 2) / ARITY).rev() {
                self.sift_down(parent);
            }
        }
    }

    /// Removes the first entry (in storage order) for which `matches` holds, restoring the order
    /// around the hole (in O(log n) after the O(n) search).
    pub(crate) fn remove_first(&mut self, mut matches: impl FnMut(&T) -> bool) -> Option<Entry<T>> {
        let at = self
            .entries
            .iter()
            .position(|entry| matches(&entry.value))?;
        let removed = self.entries.swap_remove(at);
        if at < self.entries.len() {
            // The last entry moved into the hole: it may belong above or below it.
            self.sift_up(at);
            self.sift_down(at);
        }
        Some(removed)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / ARITY;
            if self.entries[parent].key <= self.entries[at].key {
                break;
            }
            self.entries.swap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        let len = self.entries.len();
        loop {
            let first = at * ARITY + 1;
            if first >= len {
                break;
            }
            let end = (first + ARITY).min(len);
            let mut smallest = first;
            for child in first + 1..end {
                if self.entries[child].key < self.entries[smallest].key {
                    smallest = child;
                }
            }
            if self.entries[at].key <= self.entries[smallest].key {
                break;
            }
            self.entries.swap(at, smallest);
            at = smallest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so a failure replays exactly.
    struct Xorshift(u64);
    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Against a sorted list, through random pushes, pops and retains, with many equal keys (as when
    /// thousands of services share a tick) and the extremes of the key range.
    #[test]
    fn pops_come_out_in_key_order_through_any_mix_of_operations_and_removals() {
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut heap = DeadlineHeap::new();
        let mut reference: Vec<(i64, u64)> = Vec::new();
        for step in 0..20_000_u64 {
            match random.next() % 10 {
                0..=4 => {
                    let key = match random.next() % 8 {
                        0 => i64::MIN,
                        1 => i64::MAX,
                        2..=4 => (random.next() % 4) as i64,
                        _ => random.next() as i64,
                    };
                    heap.push(key, step);
                    reference.push((key, step));
                }
                8 => {
                    // Any entry, not only the least: the one pushed at a random earlier step.
                    let target = random.next() % (step + 1);
                    let removed = heap.remove_first(|value| *value == target);
                    let at = reference.iter().position(|(_, value)| *value == target);
                    assert_eq!(
                        removed.map(|entry| (entry.key, entry.value)),
                        at.map(|at| reference.swap_remove(at)),
                        "step {step}"
                    );
                }
                5..=7 => {
                    let least = reference.iter().map(|(key, _)| *key).min();
                    assert_eq!(heap.peek_key(), least, "step {step}");
                    let popped = heap.pop().map(|entry| (entry.key, entry.value));
                    assert_eq!(popped.map(|(key, _)| key), least, "step {step}");
                    // Of equal keys any may come out: the reference loses that very entry, which
                    // must have been in it.
                    if let Some(popped) = popped {
                        let at = reference.iter().position(|entry| *entry == popped);
                        reference.swap_remove(at.expect("popped an entry never pushed"));
                    }
                }
                _ => {
                    let drop_odd = |value: &u64| value % 3 != 0;
                    heap.retain(drop_odd);
                    reference.retain(|(_, value)| drop_odd(value));
                }
            }
            assert_eq!(heap.len(), reference.len());
        }
        reference.sort_unstable();
        let rest: Vec<i64> = std::iter::from_fn(|| heap.pop().map(|entry| entry.key)).collect();
        let expected: Vec<i64> = reference.iter().map(|(key, _)| *key).collect();
        assert_eq!(rest, expected);
    }
}
