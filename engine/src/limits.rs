//! Per-shard throughput limits: token buckets that answer
//! `ProvisionedThroughputExceededException`, as Kinesis does.
//!
//! Each bucket refills continuously at its rate and holds at most one second of it (the
//! spec leaves the burst shape to the implementer; one second is the natural reading of
//! "per second"). Write buckets (bytes and records) must hold the whole charge, so a
//! record either fits or fails alone. The read-bytes bucket may go into debt: a call is
//! admitted while the bucket is positive and then pays for what it returned. That is how
//! Kinesis behaves at 2 MiB/s per shard: a 10 MiB response is served, and the shard's next
//! calls are refused for the ~4–5 s the debt takes to repay.
//!
//! Time comes from the engine's [`Clock`](crate::Clock) in milliseconds, so tests move it.

use crate::sync::{lock, Mutex};

/// The limits of one shard, per second. Defaults are Kinesis's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Off: nothing is ever throttled (benchmarks).
    pub enabled: bool,
    /// Write bytes (data + partition key) per second per shard: 1 MiB.
    pub write_bytes_per_sec: u64,
    /// Records written per second per shard: 1,000.
    pub write_records_per_sec: u64,
    /// GetRecords bytes per second per shard, all readers together: 2 MiB.
    pub read_bytes_per_sec: u64,
    /// GetRecords calls per second per shard: 5.
    pub read_calls_per_sec: u64,
    /// GetShardIterator calls per second per shard: 5.
    pub iterator_calls_per_sec: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            write_bytes_per_sec: 1024 * 1024,
            write_records_per_sec: 1000,
            read_bytes_per_sec: 2 * 1024 * 1024,
            read_calls_per_sec: 5,
            iterator_calls_per_sec: 5,
        }
    }
}

impl LimitsConfig {
    /// No limits at all.
    pub fn unlimited() -> Self {
        LimitsConfig { enabled: false, ..LimitsConfig::default() }
    }
}

/// A token bucket in milli-tokens (so that a rate of 5 per second refills smoothly at one
/// token per 200 ms). `level` may be negative (debt) for buckets charged after the fact.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens per second.
    rate: u64,
    /// Current level, in thousandths of a token; at most `rate * 1000`.
    level_milli: i128,
    /// Clock reading of the last refill.
    refilled_ms: u64,
}

impl Bucket {
    fn full(rate: u64, now_ms: u64) -> Self {
        Bucket { rate, level_milli: i128::from(rate) * 1000, refilled_ms: now_ms }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.refilled_ms);
        self.refilled_ms = self.refilled_ms.max(now_ms);
        let cap = i128::from(self.rate) * 1000;
        self.level_milli =
            (self.level_milli + i128::from(elapsed) * i128::from(self.rate)).min(cap);
    }

    fn has(&self, tokens: u64) -> bool {
        self.level_milli >= i128::from(tokens) * 1000
    }

    fn take(&mut self, tokens: u64) {
        self.level_milli -= i128::from(tokens) * 1000;
    }
}

#[derive(Debug)]
struct Buckets {
    write_bytes: Bucket,
    write_records: Bucket,
    read_bytes: Bucket,
    read_calls: Bucket,
    iterator_calls: Bucket,
}

/// The buckets of one shard. Cheap when disabled (no lock taken).
#[derive(Debug)]
pub(crate) struct ShardLimits {
    config: LimitsConfig,
    buckets: Mutex<Buckets>,
}

impl ShardLimits {
    pub(crate) fn new(config: LimitsConfig, now_ms: u64) -> Self {
        ShardLimits {
            config,
            buckets: Mutex::new(Buckets {
                write_bytes: Bucket::full(config.write_bytes_per_sec, now_ms),
                write_records: Bucket::full(config.write_records_per_sec, now_ms),
                read_bytes: Bucket::full(config.read_bytes_per_sec, now_ms),
                read_calls: Bucket::full(config.read_calls_per_sec, now_ms),
                iterator_calls: Bucket::full(config.iterator_calls_per_sec, now_ms),
            }),
        }
    }

    /// Charges one record of `bytes` (data + partition key) to the write buckets; false
    /// (and nothing charged) if either bucket cannot pay.
    pub(crate) fn admit_write(&self, bytes: u64, now_ms: u64) -> bool {
        if !self.config.enabled {
            return true;
        }
        let mut b = lock(&self.buckets);
        b.write_bytes.refill(now_ms);
        b.write_records.refill(now_ms);
        if !b.write_bytes.has(bytes) || !b.write_records.has(1) {
            return false;
        }
        b.write_bytes.take(bytes);
        b.write_records.take(1);
        true
    }

    /// Admits one GetRecords call if the call bucket has a token and the bytes bucket is
    /// not in debt. The bytes are charged afterwards with [`ShardLimits::charge_read`].
    pub(crate) fn admit_read(&self, now_ms: u64) -> bool {
        if !self.config.enabled {
            return true;
        }
        let mut b = lock(&self.buckets);
        b.read_calls.refill(now_ms);
        b.read_bytes.refill(now_ms);
        if !b.read_calls.has(1) || b.read_bytes.level_milli <= 0 {
            return false;
        }
        b.read_calls.take(1);
        true
    }

    /// Charges the bytes a GetRecords call returned (may put the bucket in debt).
    pub(crate) fn charge_read(&self, bytes: u64) {
        if self.config.enabled {
            lock(&self.buckets).read_bytes.take(bytes);
        }
    }

    /// Admits one GetShardIterator call.
    pub(crate) fn admit_iterator(&self, now_ms: u64) -> bool {
        if !self.config.enabled {
            return true;
        }
        let mut b = lock(&self.buckets);
        b.iterator_calls.refill(now_ms);
        if !b.iterator_calls.has(1) {
            return false;
        }
        b.iterator_calls.take(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_limited_by_records_and_by_bytes_and_refill_continuously() {
        let limits = ShardLimits::new(LimitsConfig::default(), 0);
        for _ in 0..1000 {
            assert!(limits.admit_write(10, 0));
        }
        assert!(!limits.admit_write(10, 0), "the 1,001st record in a second is refused");
        assert!(!limits.admit_write(10, 0));
        assert!(limits.admit_write(10, 1), "one millisecond refills one record");
        assert!(!limits.admit_write(10, 1));

        let limits = ShardLimits::new(LimitsConfig::default(), 0);
        assert!(limits.admit_write(1024 * 1024, 0), "exactly one MiB fits");
        assert!(!limits.admit_write(1, 0));
        assert!(!limits.admit_write(600 * 1024, 500), "half a second refills half a MiB");
        assert!(limits.admit_write(500 * 1024, 500));
    }

    #[test]
    fn a_refused_record_charges_nothing() {
        let limits = ShardLimits::new(LimitsConfig::default(), 0);
        assert!(limits.admit_write(1024 * 1024 - 100, 0));
        assert!(!limits.admit_write(1000, 0));
        assert!(limits.admit_write(100, 0), "the refused record took no bytes");
    }

    #[test]
    fn a_large_read_blocks_the_shard_until_its_debt_is_repaid() {
        let limits = ShardLimits::new(LimitsConfig::default(), 0);
        assert!(limits.admit_read(0));
        limits.charge_read(10 * 1024 * 1024);
        // 2 MiB in the bucket, 10 MiB taken: 8 MiB of debt, 4 s at 2 MiB/s.
        assert!(!limits.admit_read(1000));
        assert!(!limits.admit_read(3999));
        assert!(limits.admit_read(4001));
    }

    #[test]
    fn five_calls_per_second() {
        let limits = ShardLimits::new(LimitsConfig::default(), 0);
        for _ in 0..5 {
            assert!(limits.admit_read(0));
            assert!(limits.admit_iterator(0));
        }
        assert!(!limits.admit_read(0));
        assert!(!limits.admit_iterator(0));
        assert!(limits.admit_read(200), "one call every 200 ms");
        assert!(!limits.admit_read(200));
    }

    #[test]
    fn disabled_limits_admit_everything() {
        let limits = ShardLimits::new(LimitsConfig::unlimited(), 0);
        for _ in 0..10_000 {
            assert!(limits.admit_write(1024 * 1024, 0));
            assert!(limits.admit_read(0));
        }
    }
}
