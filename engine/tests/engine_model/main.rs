//! Model-based test of the [`Engine`] API against a small in-memory model of Kinesis Data
//! Streams semantics (spec sections 1.4-1.6, 2, 3, 5 and 6).
//!
//! Each run opens an engine on a [`ManualClock`] and applies random operations: create and
//! delete streams, PutRecord / PutRecords (with explicit hash keys and
//! SequenceNumberForOrdering), every iterator type followed by GetRecords loops, split,
//! merge, UpdateShardCount, retention changes, clock moves (including to the exact instant
//! a record expires), maintenance passes, and close + reopen. The model is a list of records
//! per (stream, shard) plus shard metadata per stream; after every operation the engine must
//! agree with it exactly: same records in the same order, open shards tiling the key space,
//! lineage and sequence-number ordering between parents and children, sequential shard ids.
//!
//! The seeds are fixed plus one derived from the time; `RIFFLE_TEST_SEED=<n>` replays one
//! seed, `RIFFLE_TEST_OPS=<n>` changes the number of operations per seed, and
//! `RIFFLE_TEST_TRACE=1` prints every operation of a failing seed instead of the last 40.
//!
//! Here: the harness, the stream, put, retention, clock and reopen operations, and the run.
//! Beside it: `model.rs` (the model), `reads.rs` and `reshard.rs` (those operations),
//! `checks.rs` (what must agree after each one), `rng.rs` (PRNG and seeds), and `found.rs`
//! (plain regression tests of what the model found).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use md5::{Digest, Md5};

mod checks;
mod found;
mod model;
mod reads;
mod reshard;
mod rng;
use model::{MRecord, MShard, MStream, SavedIterator};
use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, Error, GetRecordsOutput, IoBackend,
    IteratorType, LimitsConfig, ListShardsInput, LogConfig, ManualClock, PutRecordInput, Shard,
    ShardFilter, StreamStatus,
};
use rng::{ops_per_seed, seeds, Rng};

const T0: u64 = 1_700_000_000_000;
const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// Shard iterators are valid for five minutes (spec 3.2).
const ITERATOR_LIFETIME_MS: u64 = 300_000;
/// GetRecords returns at most 10 MiB (spec 3.3).
const GET_RECORDS_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Stream names: few, so that creates hit existing names.
const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Partition keys: few, so that keys repeat (and some are not ASCII).
const KEYS: [&str; 10] = ["a", "b", "c", "d", "e", "f", "user-17", "order#42", "é", "😀k"];
/// The model keeps streams small: no split or scale-up beyond this many open shards.
const MAX_OPEN: usize = 12;

// ---------------------------------------------------------------------------------------
// Independent helpers (not the engine's)

/// MD5 of the key's UTF-8 bytes as a big-endian u128 (spec 1.5).
fn md5_key(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

fn sid(index: u32) -> String {
    format!("shardId-{index:012}")
}

fn index_of(shard_id: &str) -> u32 {
    shard_id
        .strip_prefix("shardId-")
        .filter(|d| d.len() == 12)
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{shard_id:?} is not a canonical shard id"))
}

/// CreateStream's ranges for `n` shards: width floor(2^128 / n), the last ending at 2^128-1.
fn uniform(n: u32) -> Vec<(u128, u128)> {
    if n == 1 {
        return vec![(0, u128::MAX)];
    }
    let n = u128::from(n);
    // floor(2^128 / n) = floor((MAX + 1) / n) = MAX / n, plus one when n divides MAX + 1.
    let width = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..n).map(|i| (i * width, if i + 1 == n { u128::MAX } else { (i + 1) * width - 1 })).collect()
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::Validation(_) => "Validation",
        Error::ResourceNotFound(_) => "ResourceNotFound",
        Error::ResourceInUse(_) => "ResourceInUse",
        Error::LimitExceeded(_) => "LimitExceeded",
        Error::ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceeded",
        Error::ExpiredIterator(_) => "ExpiredIterator",
        Error::ExpiredNextToken(_) => "ExpiredNextToken",
        Error::Sealed => "Sealed",
        Error::Closed => "Closed",
        Error::Io { .. } => "Io",
        Error::Corrupt { .. } => "Corrupt",
        Error::Poisoned { .. } => "Poisoned",
        Error::Config(_) => "Config",
        Error::Locked { .. } => "Locked",
    }
}

/// Asserts that `result` failed with one of `kinds`.
fn expect_err<T: std::fmt::Debug>(result: riffle_engine::Result<T>, kinds: &[&str], what: &str) {
    match result {
        Err(e) if kinds.contains(&kind(&e)) => {}
        Err(e) => panic!("{what}: expected {kinds:?}, got {} ({e})", kind(&e)),
        Ok(v) => panic!("{what}: expected {kinds:?}, got Ok({v:?})"),
    }
}

// ---------------------------------------------------------------------------------------
// The harness: engine + model + random operations

struct Harness<'t> {
    rng: Rng,
    dir: tempfile::TempDir,
    clock: ManualClock,
    engine: Option<Engine>,
    streams: BTreeMap<String, MStream>,
    next_incarnation: u64,
    saved: Vec<SavedIterator>,
    trace: &'t mut Vec<String>,
    /// What the run exercised, for the summary line.
    counts: BTreeMap<&'static str, usize>,
}

impl<'t> Harness<'t> {
    fn new(seed: u64, trace: &'t mut Vec<String>) -> Self {
        let mut h = Harness {
            rng: Rng(seed),
            dir: tempfile::tempdir().expect("tempdir"),
            clock: ManualClock::new(T0),
            engine: None,
            streams: BTreeMap::new(),
            next_incarnation: 0,
            saved: Vec::new(),
            trace,
            counts: BTreeMap::new(),
        };
        h.open_engine();
        h
    }

    fn count(&mut self, what: &'static str, n: usize) {
        *self.counts.entry(what).or_default() += n;
    }

    fn note(&mut self, line: String) {
        self.trace.push(format!("[t={}] {line}", self.now() - T0));
    }

    fn now(&self) -> u64 {
        use riffle_engine::Clock;
        self.clock.now_ms()
    }

    fn e(&self) -> Engine {
        self.engine.clone().expect("engine is open")
    }

    fn open_engine(&mut self) {
        let durability = if self.rng.chance(50) { Durability::Sync } else { Durability::None };
        let config = EngineConfig {
            clock: Arc::new(self.clock.clone()),
            limits: LimitsConfig::unlimited(),
            maintenance_interval_ms: 0,
            transition_ms: 0,
            commit: CommitConfig {
                durability,
                io_backend: IoBackend::Std,
                ..CommitConfig::default()
            },
            log: LogConfig {
                // The engine refuses segments below 2 MiB (room for a 1 MiB record); rolls
                // come from the segment age instead, which clock moves exceed often.
                segment_bytes: 2 * 1024 * 1024,
                segment_age_ms: 20 * MINUTE,
                batch_bytes_target: 16 * 1024,
                index_interval_bytes: 1024,
                ..LogConfig::default()
            },
            ..EngineConfig::default()
        };
        self.note(format!("open engine ({durability:?})"));
        self.engine = Some(Engine::open(self.dir.path(), config).expect("open engine"));
    }

    /// Marks as expired what is now older than the retention period. Only clock moves and
    /// retention changes make this necessary; it runs before every operation so that an
    /// increase of the retention period sees the records expired under the old one.
    fn sweep(&mut self) {
        let now = self.now();
        for m in self.streams.values_mut() {
            let retention = u64::from(m.retention_hours) * HOUR;
            for s in m.shards.values_mut() {
                for r in &mut s.records {
                    if now - r.arrival >= retention {
                        r.expired = true;
                    }
                }
                if s.closed_ms.is_some_and(|c| now - c >= retention) {
                    s.close_expired = true;
                }
            }
        }
    }

    fn pick_stream(&mut self) -> Option<String> {
        let names: Vec<String> = self.streams.keys().cloned().collect();
        if names.is_empty() {
            return None;
        }
        Some(self.rng.pick(&names).clone())
    }

    fn missing_name(&mut self) -> Option<&'static str> {
        let missing: Vec<&'static str> =
            NAMES.iter().copied().filter(|n| !self.streams.contains_key(*n)).collect();
        if missing.is_empty() {
            None
        } else {
            Some(*self.rng.pick(&missing))
        }
    }

    /// A shard id as a caller may spell it (spec 1.4: lenient parsing).
    fn spell(&mut self, index: u32) -> String {
        match self.rng.below(10) {
            0 => format!("shardId-{index}"),
            1 => index.to_string(),
            _ => sid(index),
        }
    }

    fn data(&mut self, allow_big: bool) -> Vec<u8> {
        let len = match self.rng.below(100) {
            0..=9 => 0,
            10..=89 => self.rng.range(1, 200),
            90..=98 => self.rng.range(1_000, 20_000),
            _ if allow_big => self.rng.range(200_000, 700_000),
            _ => self.rng.range(20_000, 60_000),
        };
        (0..len).map(|_| self.rng.next() as u8).collect()
    }

    fn explicit_key(&mut self, name: &str) -> Option<u128> {
        if !self.rng.chance(25) {
            return None;
        }
        let ranges: Vec<(u128, u128)> =
            self.streams[name].open_sorted().iter().map(|s| (s.start, s.end)).collect();
        let (start, end) = *self.rng.pick(&ranges);
        Some(match self.rng.below(4) {
            0 => start,
            1 => end,
            2 => self.rng.u128_in(start, end),
            _ => self.rng.u128(),
        })
    }

    // ---- operations (reads in `reads.rs`, resharding in `reshard.rs`) ----

    fn step(&mut self) {
        self.sweep();
        if self.streams.is_empty() && self.rng.chance(80) {
            return self.op_create();
        }
        match self.rng.below(100) {
            0..=5 => self.op_create(),
            6..=7 => self.op_delete(),
            8..=26 => self.op_put_record(),
            27..=38 => self.op_put_records(),
            39..=55 => self.op_read(),
            56..=58 => self.op_latest_then_put(),
            59..=62 => self.op_saved_iterator(),
            63..=68 => self.op_split(),
            69..=73 => self.op_merge(),
            74..=76 => self.op_update_shard_count(),
            77..=80 => self.op_retention(),
            81..=87 => self.op_advance(),
            88..=90 => self.op_advance_to_expiry(),
            91..=93 => self.op_maintenance(),
            94..=96 => self.op_invalid_reshard(),
            _ => self.op_reopen(),
        }
    }

    fn op_create(&mut self) {
        let name = *self.rng.pick(&NAMES);
        let count = self.rng.range(1, 4) as u32;
        self.note(format!("create_stream({name}, {count})"));
        let result = self.e().create_stream(name, Some(count), None, &[]);
        self.count("create_stream calls", 1);
        if self.streams.contains_key(name) {
            return expect_err(result, &["ResourceInUse"], "create_stream of an existing name");
        }
        result.unwrap_or_else(|e| panic!("create_stream({name}, {count}): {e}"));
        let shards = uniform(count)
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u32, MShard::new(i as u32, r, (None, None))))
            .collect();
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        self.streams.insert(
            name.to_string(),
            MStream {
                incarnation,
                shards,
                removed: BTreeSet::new(),
                next_index: count,
                retention_hours: 24,
                scale_calls: Vec::new(),
                seqs: BTreeSet::new(),
                last_seq_by_key: BTreeMap::new(),
            },
        );
        self.check_listing(name);
    }

    fn op_delete(&mut self) {
        let name = *self.rng.pick(&NAMES);
        self.note(format!("delete_stream({name})"));
        let e = self.e();
        let result = e.delete_stream(name, false);
        self.count("delete_stream calls", 1);
        if !self.streams.contains_key(name) {
            return expect_err(result, &["ResourceNotFound"], "delete_stream of a missing stream");
        }
        result.unwrap_or_else(|e| panic!("delete_stream({name}): {e}"));
        self.streams.remove(name);
        // transition_ms is 0: the stream is gone at once.
        expect_err(e.describe_stream(name, None, None), &["ResourceNotFound"], "describe deleted");
        expect_err(
            e.put_record(name, &PutRecordInput::new("a", b"x")),
            &["ResourceNotFound"],
            "put_record to a deleted stream",
        );
        expect_err(
            e.get_shard_iterator(name, &sid(0), IteratorType::TrimHorizon, None, None),
            &["ResourceNotFound"],
            "get_shard_iterator of a deleted stream",
        );
        self.check_stream_names();
    }

    fn op_put_record(&mut self) {
        if self.rng.chance(4) {
            if let Some(name) = self.missing_name() {
                self.note(format!("put_record({name}) [missing stream]"));
                let result = self.e().put_record(name, &PutRecordInput::new("a", b"x"));
                return expect_err(result, &["ResourceNotFound"], "put_record to a missing stream");
            }
        }
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let key = *self.rng.pick(&KEYS);
        let data = self.data(true);
        let explicit = self.explicit_key(&name);
        let ordering = match explicit {
            None if self.rng.chance(20) => self.streams[&name].last_seq_by_key.get(key).copied(),
            _ => None,
        };
        self.put_one(&name, key, &data, explicit, ordering);
    }

    /// One PutRecord, checked and recorded in the model. Returns the shard index.
    fn put_one(
        &mut self,
        name: &str,
        key: &str,
        data: &[u8],
        explicit: Option<u128>,
        ordering: Option<u128>,
    ) -> u32 {
        let explicit_text = explicit.map(|k| k.to_string());
        let ordering_text = ordering.map(|s| s.to_string());
        let input = PutRecordInput {
            partition_key: key,
            data,
            explicit_hash_key: explicit_text.as_deref(),
            sequence_number_for_ordering: ordering_text.as_deref(),
        };
        self.note(format!(
            "put_record({name}, key={key:?}, {} bytes, explicit={explicit_text:?}, \
             ordering={ordering_text:?})",
            data.len()
        ));
        let out = self
            .e()
            .put_record(name, &input)
            .unwrap_or_else(|e| panic!("put_record({name}, {key:?}) failed: {e}"));
        let seq = out.sequence_number.0;
        self.note(format!("  -> {} {seq}", out.shard_id));
        if let Some(min) = ordering {
            assert!(seq > min, "SequenceNumberForOrdering {min} not honoured: got {seq}");
        }
        self.accept(name, key, data, explicit, &out.shard_id.to_string(), seq)
    }

    /// Checks where an acknowledged record went and records it.
    fn accept(
        &mut self,
        name: &str,
        key: &str,
        data: &[u8],
        explicit: Option<u128>,
        shard_id: &str,
        seq: u128,
    ) -> u32 {
        let now = self.now();
        let m = self.streams.get_mut(name).expect("model stream");
        let hash = explicit.unwrap_or_else(|| md5_key(key));
        let want = m.route(hash);
        assert_eq!(
            shard_id,
            sid(want),
            "record with key {key:?} (hash {hash}, explicit {explicit:?}) of {name} went to \
             {shard_id}, but the open shard holding that hash is {}",
            sid(want)
        );
        assert!(m.seqs.insert(seq), "sequence number {seq} handed out twice in {name}");
        let shard = m.shards.get_mut(&want).expect("routed shard");
        if let Some(last) = shard.records.last() {
            assert!(
                seq > last.seq,
                "sequence numbers must increase within {shard_id}: {seq} after {}",
                last.seq
            );
        }
        if let Some(start) = shard.starting_seq {
            assert!(seq > start, "{seq} is not above {shard_id}'s starting number {start}");
        }
        *self.counts.entry("records put").or_default() += 1;
        shard.records.push(MRecord {
            key: key.to_string(),
            data: data.to_vec(),
            seq,
            arrival: now,
            expired: false,
        });
        if explicit.is_none() {
            m.last_seq_by_key.insert(key.to_string(), seq);
        }
        want
    }

    fn op_put_records(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let n = self.rng.range(1, 12) as usize;
        let mut batch: Vec<(&'static str, Vec<u8>, Option<u128>)> = Vec::new();
        for _ in 0..n {
            let key = *self.rng.pick(&KEYS);
            let data = self.data(false);
            let explicit = self.explicit_key(&name);
            batch.push((key, data, explicit));
        }
        let texts: Vec<Option<String>> = batch.iter().map(|b| b.2.map(|k| k.to_string())).collect();
        let inputs: Vec<PutRecordInput<'_>> = batch
            .iter()
            .zip(&texts)
            .map(|((key, data, _), text)| PutRecordInput {
                partition_key: key,
                data,
                explicit_hash_key: text.as_deref(),
                sequence_number_for_ordering: None,
            })
            .collect();
        self.note(format!(
            "put_records({name}, {:?})",
            batch.iter().map(|b| (b.0, b.1.len(), b.2)).collect::<Vec<_>>()
        ));
        let out = self
            .e()
            .put_records(&name, &inputs)
            .unwrap_or_else(|e| panic!("put_records({name}) failed: {e}"));
        assert_eq!(out.failed_record_count, 0, "no throttling configured: {out:?}");
        assert_eq!(out.records.len(), n, "one result per record");
        for (i, result) in out.records.iter().enumerate() {
            let ok = result.as_ref().unwrap_or_else(|f| panic!("record {i} failed: {f:?}"));
            let (key, data, explicit) = &batch[i];
            self.accept(
                &name,
                key,
                data,
                *explicit,
                &ok.shard_id.to_string(),
                ok.sequence_number.0,
            );
        }
    }

    fn op_retention(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let increase = self.rng.chance(50);
        let hours =
            if self.rng.chance(8) { self.rng.range(1, 23) } else { self.rng.range(24, 200) } as u32;
        let current = self.streams[&name].retention_hours;
        self.note(format!(
            "{}_stream_retention_period({name}, {hours}) [current {current}]",
            if increase { "increase" } else { "decrease" }
        ));
        let e = self.e();
        let result = if increase {
            e.increase_stream_retention_period(&name, hours)
        } else {
            e.decrease_stream_retention_period(&name, hours)
        };
        if hours < 24 || (increase && hours < current) || (!increase && hours > current) {
            return expect_err(result, &["InvalidArgument"], "retention change");
        }
        result.unwrap_or_else(|e| panic!("retention change: {e}"));
        self.streams.get_mut(&name).expect("model stream").retention_hours = hours;
        self.sweep();
        self.check_listing(&name);
    }

    fn op_advance(&mut self) {
        let by = match self.rng.below(10) {
            0..=3 => self.rng.range(1, 5 * MINUTE),
            4..=6 => self.rng.range(1, 120) * MINUTE,
            7..=8 => self.rng.range(1, 30) * HOUR,
            _ => self.rng.range(1, 4) * DAY + self.rng.below(DAY),
        };
        self.note(format!("advance clock by {by} ms"));
        self.clock.advance(by);
        self.sweep();
    }

    /// Moves the clock to just before, exactly at, or just after the instant a record (or a
    /// closed shard's close) reaches the retention period.
    fn op_advance_to_expiry(&mut self) {
        let now = self.now();
        let mut instants = Vec::new();
        for m in self.streams.values() {
            let retention = u64::from(m.retention_hours) * HOUR;
            for s in m.shards.values() {
                let live = s.records.iter().filter(|r| !r.expired).map(|r| r.arrival);
                instants.extend(live.map(|t| t + retention));
                if let Some(c) = s.closed_ms.filter(|_| !s.close_expired) {
                    instants.push(c + retention);
                }
            }
        }
        let targets: Vec<u64> =
            instants.iter().flat_map(|t| [*t - 1, *t, *t + 1]).filter(|t| *t > now).collect();
        if targets.is_empty() {
            return self.op_advance();
        }
        let to = *self.rng.pick(&targets);
        self.note(format!("set clock to t={} (+{} ms)", to - T0, to - now));
        self.clock.set(to);
        self.count("clock set to a retention edge", 1);
        self.sweep();
        // Read something right at the edge.
        self.op_read();
    }

    fn op_maintenance(&mut self) {
        self.note("run_maintenance()".to_string());
        let report = self.e().run_maintenance().unwrap_or_else(|e| panic!("maintenance: {e}"));
        let mut removed = 0;
        for m in self.streams.values_mut() {
            let gone: Vec<u32> =
                m.shards.values().filter(|s| s.close_expired).map(|s| s.index).collect();
            for index in gone {
                m.shards.remove(&index);
                m.removed.insert(index);
                removed += 1;
            }
        }
        self.note(format!("  -> {report:?}, model removed {removed} shards"));
        assert_eq!(report.shards_expired, removed, "closed shards removed as expired");
        self.count("segments deleted by maintenance", report.segments_deleted);
        self.count("closed shards expired", removed);
        assert_eq!(report.streams_deleted, 0, "no stream was being deleted");
        self.check_all();
    }

    fn op_reopen(&mut self) {
        let engine = self.engine.take().expect("engine is open");
        if self.rng.chance(50) {
            self.note("close engine".to_string());
            engine.close().unwrap_or_else(|e| panic!("close: {e}"));
        }
        self.note("drop engine".to_string());
        self.count("reopens", 1);
        drop(engine);
        self.open_engine();
        self.check_all();
        self.verify_all();
    }
}

fn run(seed: u64, ops: usize, trace: &mut Vec<String>) -> BTreeMap<&'static str, usize> {
    let mut h = Harness::new(seed, trace);
    for _ in 0..ops {
        h.step();
    }
    h.check_all();
    h.verify_all();
    h.op_reopen();
    let engine = h.engine.take().expect("engine is open");
    engine.close().expect("close");
    h.counts
}

#[test]
fn engine_agrees_with_the_kinesis_model() {
    let seeds = seeds();
    let ops = ops_per_seed();
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut totals: BTreeMap<&'static str, usize> = BTreeMap::new();
    for &seed in &seeds {
        let mut trace = Vec::new();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(seed, ops, &mut trace)));
        match result {
            Ok(counts) => {
                for (what, n) in counts {
                    *totals.entry(what).or_default() += n;
                }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let full = std::env::var_os("RIFFLE_TEST_TRACE").is_some();
                let tail = if full { 0 } else { trace.len().saturating_sub(40) };
                eprintln!(
                "\n=== seed {seed} failed: {message}\n    replay: RIFFLE_TEST_SEED={seed} cargo test \
                 -p riffle-engine --test engine_model\n    last operations:\n      {}\n",
                trace[tail..].join("\n      ")
            );
                failures.push(seed);
            }
        }
    }
    eprintln!(
        "engine_model: {} seeds x {ops} operations in {:.1?}; passing seeds exercised {totals:?}",
        seeds.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "the engine disagreed with the model for seeds {failures:?}");
}
