//! The durable watermark: the position up to which a shard's records may be read.
//!
//! One writer (the log's committer) publishes with a release store after the bytes below
//! the new value are durable and visible through the segment map; any number of readers on
//! any thread load it with acquire and may then read everything below it without a lock.
//! Model-checked in `tests/loom_group_commit.rs`.

use crate::sync::{AtomicU64, Ordering};

/// A monotonic position published by one writer to many readers.
#[derive(Debug)]
pub struct Watermark {
    value: AtomicU64,
}

impl Watermark {
    pub fn new(value: u64) -> Self {
        Watermark { value: AtomicU64::new(value) }
    }

    /// Everything below the returned value is published.
    pub fn load(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Publishes `value`. Writer only; the watermark never moves backwards.
    pub fn publish(&self, value: u64) {
        let previous = self.value.load(Ordering::Relaxed);
        assert!(value >= previous, "watermark moved backwards: {previous} -> {value}");
        self.value.store(value, Ordering::Release);
    }
}
