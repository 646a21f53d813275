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

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use md5::{Digest, Md5};

mod found;
mod model;
use model::{MRecord, MShard, MStream, SavedIterator};
use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, Error, GetRecordsOutput, IoBackend,
    IteratorType, LimitsConfig, ListShardsInput, LogConfig, ManualClock, PutRecordInput, Shard,
    ShardFilter, StreamStatus,
};

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
const DEFAULT_SEEDS: [u64; 19] =
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 1234, 5678, 9999, 31337, 65537, 271828, 314159, 8675309];
const DEFAULT_OPS: usize = 150;

// ---------------------------------------------------------------------------------------
// Deterministic PRNG (splitmix64)

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "empty range");
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        lo + self.below(hi - lo + 1)
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }

    /// Uniform in `lo..=hi`.
    fn u128_in(&mut self, lo: u128, hi: u128) -> u128 {
        assert!(lo <= hi, "empty range");
        match (hi - lo).checked_add(1) {
            None => self.u128(),
            Some(width) => lo + self.u128() % width,
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(text) = std::env::var("RIFFLE_TEST_SEED") {
        return vec![text.trim().parse().expect("RIFFLE_TEST_SEED must be a u64")];
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut seeds = DEFAULT_SEEDS.to_vec();
    seeds.push(Rng(nanos).next());
    seeds
}

fn ops_per_seed() -> usize {
    std::env::var("RIFFLE_TEST_OPS")
        .ok()
        .map_or(DEFAULT_OPS, |t| t.trim().parse().expect("RIFFLE_TEST_OPS must be a number"))
}

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

    // ---- operations ----

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

    fn op_read(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let e = self.e();
        if self.rng.chance(5) {
            // A shard that does not exist (never created, or expired and removed).
            let m = &self.streams[&name];
            let mut gone: Vec<u32> = m.removed.iter().copied().collect();
            gone.push(m.next_index + self.rng.range(0, 3) as u32);
            let index = *self.rng.pick(&gone);
            self.note(format!("get_shard_iterator({name}, {}) [no such shard]", sid(index)));
            let result = e.get_shard_iterator(&name, &sid(index), IteratorType::Latest, None, None);
            return expect_err(result, &["ResourceNotFound"], "iterator of a missing shard");
        }
        let m = &self.streams[&name];
        let indexes: Vec<u32> = m.shards.keys().copied().collect();
        let index = *self.rng.pick(&indexes);
        let shard = m.shards[&index].clone();
        // Records of the other shards of the stream.
        let others: Vec<u128> = m
            .shards
            .values()
            .filter(|s| s.index != index)
            .flat_map(|s| s.records.iter().map(|r| r.seq))
            .collect();
        let now = self.now();
        let len = shard.records.len();
        let spelled = self.spell(index);
        let (ty, seq, ts, from): (IteratorType, Option<u128>, Option<u64>, usize) =
            match self.rng.below(6) {
                0 => (IteratorType::TrimHorizon, None, None, 0),
                1 => (IteratorType::Latest, None, None, len),
                2 | 3 => {
                    let after = self.rng.chance(50);
                    let ty = if after {
                        IteratorType::AfterSequenceNumber
                    } else {
                        IteratorType::AtSequenceNumber
                    };
                    let roll = self.rng.below(10);
                    if len > 0 && roll < 7 {
                        let i = self.rng.index(len);
                        (ty, Some(shard.records[i].seq), None, i + usize::from(after))
                    } else if roll < 9 || shard.ending_seq.is_none() {
                        // The starting number reads from the first record, AT or AFTER.
                        (ty, shard.starting_seq, None, 0)
                    } else {
                        (ty, shard.ending_seq, None, len)
                    }
                }
                4 => {
                    // A record of another shard of the stream: refused.
                    if others.is_empty() {
                        (IteratorType::TrimHorizon, None, None, 0)
                    } else {
                        let seq = *self.rng.pick(&others);
                        self.note(format!(
                            "get_shard_iterator({name}, {spelled}, AT_SEQUENCE_NUMBER {seq}) \
                             [number of another shard]"
                        ));
                        let result = e.get_shard_iterator(
                            &name,
                            &spelled,
                            IteratorType::AtSequenceNumber,
                            Some(&seq.to_string()),
                            None,
                        );
                        return expect_err(result, &["InvalidArgument"], "foreign sequence number");
                    }
                }
                _ => {
                    let mut candidates = vec![now, now.saturating_sub(self.rng.range(0, 3 * DAY))];
                    if len > 0 {
                        let r = shard.records[self.rng.index(len)].arrival;
                        candidates.extend([r, r - 1, (r + 1).min(now)]);
                    }
                    if self.rng.chance(5) {
                        candidates = vec![now + 1];
                    }
                    let ts = *self.rng.pick(&candidates);
                    let from = shard.records.iter().position(|r| r.arrival >= ts).unwrap_or(len);
                    (IteratorType::AtTimestamp, None, Some(ts), from)
                }
            };
        let seq_text = seq.map(|s| s.to_string());
        self.note(format!(
            "get_shard_iterator({name}, {spelled}, {}, seq={seq_text:?}, ts={ts:?})",
            ty.as_str()
        ));
        let result = e.get_shard_iterator(&name, &spelled, ty, seq_text.as_deref(), ts);
        if ts.is_some_and(|t| t > now) {
            return expect_err(result, &["InvalidArgument"], "AT_TIMESTAMP in the future");
        }
        let token = result.unwrap_or_else(|e| panic!("get_shard_iterator: {e}"));
        self.drain(token, &name, index, from, now);
    }

    /// Follows `token` with GetRecords (random limits) to the end and checks every page
    /// against the model: the readable records of the shard from model position `from` on.
    fn drain(&mut self, token: String, name: &str, index: u32, from: usize, issued_ms: u64) {
        let e = self.e();
        let now = self.now();
        let m = &self.streams[name];
        let incarnation = m.incarnation;
        let shard = &m.shards[&index];
        let closed = shard.closed_ms.is_some();
        let expected: Vec<(usize, MRecord)> = shard
            .records
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, r)| !r.expired)
            .map(|(i, r)| (i, r.clone()))
            .collect();
        let children = if closed { Some(m.children(index)) } else { None };
        let retention = u64::from(m.retention_hours) * HOUR;
        let mut save = if self.rng.chance(15) {
            Some(SavedIterator {
                token: token.clone(),
                stream: name.to_string(),
                incarnation,
                shard: index,
                from,
                issued_ms,
            })
        } else {
            None
        };
        let mut got = 0usize;
        let mut position = from;
        let mut iterator = token;
        let mut empty_pages_at_end = 0;
        loop {
            let limit = match self.rng.below(10) {
                0 => None,
                1 => Some(10_000),
                _ => Some(self.rng.range(1, 8) as u32),
            };
            let page: GetRecordsOutput = e
                .get_records(&iterator, limit)
                .unwrap_or_else(|err| panic!("get_records({name}, {}): {err}", sid(index)));
            let n = page.records.len();
            let rest = &expected[got..];
            // What the page must hold: as many records as the limit and 10 MiB allow.
            let mut want = 0usize;
            let mut bytes = 0usize;
            for (_, r) in rest.iter().take(limit.unwrap_or(10_000) as usize) {
                let size = r.data.len() + r.key.len();
                if want > 0 && bytes + size > GET_RECORDS_BYTES_MAX {
                    break;
                }
                bytes += size;
                want += 1;
            }
            assert_eq!(
                n,
                want,
                "get_records({name}, {}, limit {limit:?}) from model position {position}: \
                 {n} records, expected {want} ({} readable remain)",
                sid(index),
                rest.len()
            );
            for (k, r) in page.records.iter().enumerate() {
                let (i, want) = &expected[got + k];
                let what = format!("{name} {} record at model position {i}", sid(index));
                assert_eq!(r.sequence_number.0, want.seq, "{what}: sequence number");
                assert_eq!(r.partition_key_str(), want.key, "{what}: partition key");
                assert!(r.data.as_ref() == want.data.as_slice(), "{what}: data differs");
                assert_eq!(r.approximate_arrival_ms, want.arrival, "{what}: arrival time");
                assert!(
                    now - r.approximate_arrival_ms < retention,
                    "{what}: returned though older than the retention period"
                );
            }
            if n > 0 {
                position = expected[got + n - 1].0 + 1;
            }
            self.count("records read and compared", n);
            self.count("get_records calls", 1);
            got += n;
            let done = got == expected.len();
            match page.next_shard_iterator {
                None => {
                    assert!(closed, "next_shard_iterator None on open shard {}", sid(index));
                    assert!(done, "next_shard_iterator None before the last record");
                    assert_eq!(n, 0, "the closing response holds no records");
                    let mut reported: Vec<(String, Vec<String>, u128, u128)> = page
                        .child_shards
                        .as_ref()
                        .unwrap_or_else(|| panic!("no child_shards at the end of {}", sid(index)))
                        .iter()
                        .map(|c| {
                            let range = (c.hash_key_range.start, c.hash_key_range.end);
                            (c.shard_id.clone(), c.parent_shards.clone(), range.0, range.1)
                        })
                        .collect();
                    reported.sort();
                    assert_eq!(Some(reported), children, "child shards of {}", sid(index));
                    break;
                }
                Some(next) => {
                    assert!(page.child_shards.is_none(), "child_shards before the end");
                    let behind = page.millis_behind_latest;
                    match page.records.last() {
                        Some(last) if !done => assert_eq!(
                            behind,
                            now - last.approximate_arrival_ms,
                            "millis_behind_latest with records remaining"
                        ),
                        _ => assert_eq!(behind, 0, "millis_behind_latest at the tip"),
                    }
                    if done && n == 0 {
                        if !closed {
                            break;
                        }
                        empty_pages_at_end += 1;
                        assert!(
                            empty_pages_at_end <= 1,
                            "closed shard {}: empty pages past the last record without the end",
                            sid(index)
                        );
                    }
                    if save.is_none() && self.rng.chance(5) {
                        save = Some(SavedIterator {
                            token: next.clone(),
                            stream: name.to_string(),
                            incarnation,
                            shard: index,
                            from: position,
                            issued_ms: now,
                        });
                    }
                    iterator = next;
                }
            }
        }
        if let Some(saved) = save {
            if self.saved.len() >= 6 {
                let at = self.rng.index(self.saved.len());
                self.saved.swap_remove(at);
            }
            self.saved.push(saved);
        }
    }

    /// LATEST on an open shard, then puts: the iterator returns exactly the new records of
    /// that shard.
    fn op_latest_then_put(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let open: Vec<(u32, u128, u128)> =
            self.streams[&name].open_sorted().iter().map(|s| (s.index, s.start, s.end)).collect();
        let (index, start, end) = *self.rng.pick(&open);
        let now = self.now();
        self.note(format!("get_shard_iterator({name}, {}, LATEST)", sid(index)));
        let token = self
            .e()
            .get_shard_iterator(&name, &sid(index), IteratorType::Latest, None, None)
            .unwrap_or_else(|e| panic!("LATEST iterator: {e}"));
        let from = self.streams[&name].shards[&index].records.len();
        for _ in 0..self.rng.range(1, 4) {
            let key = *self.rng.pick(&KEYS);
            let data = self.data(false);
            let explicit =
                if self.rng.chance(50) { Some(self.rng.u128_in(start, end)) } else { None };
            self.put_one(&name, key, &data, explicit, None);
        }
        self.drain(token, &name, index, from, now);
    }

    fn op_saved_iterator(&mut self) {
        if self.saved.is_empty() {
            return self.op_read();
        }
        let saved = self.saved[self.rng.index(self.saved.len())].clone();
        let now = self.now();
        self.note(format!(
            "get_records(saved iterator of {} {} from model position {}, issued {} ms ago)",
            saved.stream,
            sid(saved.shard),
            saved.from,
            now - saved.issued_ms
        ));
        let live = self.streams.get(&saved.stream).is_some_and(|m| {
            m.incarnation == saved.incarnation && m.shards.contains_key(&saved.shard)
        });
        let expired = now - saved.issued_ms > ITERATOR_LIFETIME_MS;
        if expired || !live {
            let kinds: &[&str] = match (expired, live) {
                (true, true) => &["ExpiredIterator"],
                (false, _) => &["ResourceNotFound"],
                // Both apply; the spec does not order the checks.
                (true, false) => &["ExpiredIterator", "ResourceNotFound"],
            };
            let result = self.e().get_records(&saved.token, None);
            self.count("stale saved iterators refused", 1);
            return expect_err(result, kinds, "stale saved iterator");
        }
        self.count("saved iterators reused", 1);
        self.drain(saved.token, &saved.stream, saved.shard, saved.from, saved.issued_ms);
    }

    fn op_split(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let m = &self.streams[&name];
        let candidates: Vec<(u32, u128, u128)> = m
            .open_sorted()
            .iter()
            .filter(|s| s.end - s.start >= 3)
            .map(|s| (s.index, s.start, s.end))
            .collect();
        if m.open_sorted().len() >= MAX_OPEN || candidates.is_empty() {
            return self.op_merge();
        }
        let (index, start, end) = *self.rng.pick(&candidates);
        // Valid keys: start + 1 < key < end (spec 5.1).
        let key = match self.rng.below(4) {
            0 => start + 2,
            1 => end - 1,
            2 => (start + (end - start) / 2).clamp(start + 2, end - 1),
            _ => self.rng.u128_in(start + 2, end - 1),
        };
        let spelled = self.spell(index);
        self.note(format!("split_shard({name}, {spelled}, {key})"));
        self.count("splits", 1);
        self.e()
            .split_shard(&name, &spelled, &key.to_string())
            .unwrap_or_else(|e| panic!("split_shard({name}, {spelled}, {key}): {e}"));
        let now = self.now();
        let m = self.streams.get_mut(&name).expect("model stream");
        m.shards.get_mut(&index).expect("parent").closed_ms = Some(now);
        let lower = m.next_index;
        m.shards.insert(lower, MShard::new(lower, (start, key - 1), (Some(index), None)));
        m.shards.insert(lower + 1, MShard::new(lower + 1, (key, end), (Some(index), None)));
        m.next_index += 2;
        self.check_listing(&name);
    }

    fn adjacent_pairs(&self, name: &str) -> Vec<(u32, u32)> {
        let open = self.streams[name].open_sorted();
        open.windows(2).map(|w| (w[0].index, w[1].index)).collect()
    }

    fn op_merge(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let pairs = self.adjacent_pairs(&name);
        if pairs.is_empty() {
            return self.op_put_record();
        }
        let (left, right) = *self.rng.pick(&pairs);
        let (a, b) = (self.spell(left), self.spell(right));
        self.note(format!("merge_shards({name}, {a}, {b})"));
        self.count("merges", 1);
        self.e()
            .merge_shards(&name, &a, &b)
            .unwrap_or_else(|e| panic!("merge_shards({name}, {a}, {b}): {e}"));
        let now = self.now();
        let m = self.streams.get_mut(&name).expect("model stream");
        let start = m.shards[&left].start;
        let end = m.shards[&right].end;
        m.shards.get_mut(&left).expect("left").closed_ms = Some(now);
        m.shards.get_mut(&right).expect("right").closed_ms = Some(now);
        let child = m.next_index;
        m.shards.insert(child, MShard::new(child, (start, end), (Some(left), Some(right))));
        m.next_index += 1;
        self.check_listing(&name);
    }

    /// Splits and merges that must be refused, and leave the stream as it was.
    fn op_invalid_reshard(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let e = self.e();
        let m = &self.streams[&name];
        let open = m.open_sorted();
        let closed: Vec<u32> =
            m.shards.values().filter(|s| s.closed_ms.is_some()).map(|s| s.index).collect();
        let shard = open[self.rng.index(open.len())];
        let (index, start, end) = (shard.index, shard.start, shard.end);
        let pairs = self.adjacent_pairs(&name);
        match self.rng.below(6) {
            0 => {
                let key = *self.rng.pick(&[start, start.saturating_add(1), end]);
                self.note(format!(
                    "split_shard({name}, {}, {key}) [key out of bounds]",
                    sid(index)
                ));
                let result = e.split_shard(&name, &sid(index), &key.to_string());
                expect_err(result, &["InvalidArgument"], "split at an invalid key");
            }
            1 if !closed.is_empty() => {
                let c = *self.rng.pick(&closed);
                let (s, t) = (m.shards[&c].start, m.shards[&c].end);
                let key = s + (t - s) / 2;
                self.note(format!("split_shard({name}, {}, {key}) [closed shard]", sid(c)));
                let result = e.split_shard(&name, &sid(c), &key.to_string());
                expect_err(result, &["InvalidArgument"], "split of a closed shard");
            }
            2 if !pairs.is_empty() => {
                let (l, r) = *self.rng.pick(&pairs);
                self.note(format!("merge_shards({name}, {}, {}) [reversed]", sid(r), sid(l)));
                let result = e.merge_shards(&name, &sid(r), &sid(l));
                expect_err(result, &["InvalidArgument"], "merge in the wrong order");
            }
            3 if open.len() >= 3 => {
                let i = self.rng.index(open.len() - 2);
                let (l, r) = (open[i].index, open[i + 2].index);
                self.note(format!("merge_shards({name}, {}, {}) [not adjacent]", sid(l), sid(r)));
                let result = e.merge_shards(&name, &sid(l), &sid(r));
                expect_err(result, &["InvalidArgument"], "merge of non-adjacent shards");
            }
            4 if !closed.is_empty() => {
                let c = *self.rng.pick(&closed);
                self.note(format!("merge_shards({name}, {}, {}) [closed]", sid(c), sid(index)));
                let result = e.merge_shards(&name, &sid(c), &sid(index));
                expect_err(result, &["InvalidArgument"], "merge of a closed shard");
            }
            _ => {
                let missing = m.next_index + 3;
                self.note(format!("split_shard({name}, {}) [no such shard]", sid(missing)));
                let result = e.split_shard(&name, &sid(missing), "12345");
                expect_err(result, &["ResourceNotFound"], "split of a missing shard");
            }
        }
        self.check_listing(&name);
    }

    fn op_update_shard_count(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let now = self.now();
        let m = &self.streams[&name];
        let current = m.open_sorted().len() as u32;
        let recent = m.scale_calls.iter().filter(|t| now - **t < DAY).count();
        let low = current.div_ceil(2);
        let high = (2 * current).min(MAX_OPEN as u32).max(low);
        let invalid = recent < 10 && self.rng.chance(10);
        let target = if invalid {
            *self.rng.pick(&[2 * current + 1, low.saturating_sub(1).max(1)])
        } else {
            self.rng.range(u64::from(low), u64::from(high)) as u32
        };
        self.note(format!("update_shard_count({name}, {current} -> {target})"));
        let result = self.e().update_shard_count(&name, target, "UNIFORM_SCALING");
        if recent >= 10 {
            return expect_err(result, &["LimitExceeded"], "11th scaling in 24 hours");
        }
        if target < low || target > 2 * current {
            return expect_err(result, &["InvalidArgument"], "target outside [n/2, 2n]");
        }
        let out = result.unwrap_or_else(|e| panic!("update_shard_count: {e}"));
        self.count("shard count updates", 1);
        assert_eq!((out.current_shard_count, out.target_shard_count), (current, target));
        self.streams.get_mut(&name).expect("model stream").scale_calls.push(now);
        let listing = self.listing(&name);
        self.adopt_update(&name, target, &listing);
        self.check_listing(&name);
    }

    /// UpdateShardCount may take any steps (spec 5.3): checks that the new shards are a valid
    /// sequence of splits and merges of the open shards, with sequential indexes, ending in
    /// `target` uniform ranges, then takes them into the model.
    fn adopt_update(&mut self, name: &str, target: u32, listing: &[Shard]) {
        let now = self.now();
        let m = self.streams.get_mut(name).expect("model stream");
        let listed: BTreeMap<u32, &Shard> =
            listing.iter().map(|s| (index_of(&s.shard_id), s)).collect();
        for s in m.shards.values() {
            let l = listed.get(&s.index).unwrap_or_else(|| panic!("{} vanished", sid(s.index)));
            let range = (l.hash_key_range.start, l.hash_key_range.end);
            assert_eq!(range, (s.start, s.end), "{} changed its range", sid(s.index));
            if s.closed_ms.is_some() {
                assert!(l.ending_sequence_number.is_some(), "{} reopened", sid(s.index));
            }
        }
        let new: Vec<&Shard> =
            listing.iter().filter(|s| index_of(&s.shard_id) >= m.next_index).collect();
        for (k, s) in new.iter().enumerate() {
            assert_eq!(index_of(&s.shard_id), m.next_index + k as u32, "new shard ids in order");
        }
        let parent_of = |s: &Shard| {
            index_of(s.parent_shard_id.as_deref().unwrap_or_else(|| panic!("{s:?}: no parent")))
        };
        let mut open: BTreeMap<u32, (u128, u128)> =
            m.open_sorted().iter().map(|s| (s.index, (s.start, s.end))).collect();
        let mut k = 0;
        while k < new.len() {
            let s = new[k];
            let parent = parent_of(s);
            let range = (s.hash_key_range.start, s.hash_key_range.end);
            match s.adjacent_parent_shard_id.as_deref() {
                None => {
                    let upper =
                        new.get(k + 1).unwrap_or_else(|| panic!("{s:?}: a lone split child"));
                    assert!(upper.adjacent_parent_shard_id.is_none(), "{upper:?}: split child");
                    assert_eq!(parent_of(upper), parent, "split children share their parent");
                    let upper_range = (upper.hash_key_range.start, upper.hash_key_range.end);
                    let p =
                        open.remove(&parent).unwrap_or_else(|| panic!("split of closed {parent}"));
                    assert!(
                        range.0 == p.0 && range.1 < upper_range.0 && upper_range.1 == p.1,
                        "split children {range:?} {upper_range:?} of {p:?}"
                    );
                    assert_eq!(range.1 + 1, upper_range.0, "split children touch");
                    open.insert(index_of(&s.shard_id), range);
                    open.insert(index_of(&upper.shard_id), upper_range);
                    k += 2;
                }
                Some(adjacent) => {
                    let adjacent = index_of(adjacent);
                    let l =
                        open.remove(&parent).unwrap_or_else(|| panic!("merge of closed {parent}"));
                    let r = open.remove(&adjacent).unwrap_or_else(|| panic!("merge of {adjacent}"));
                    assert_eq!(l.1 + 1, r.0, "merged parents are adjacent");
                    assert_eq!(range, (l.0, r.1), "merge child covers its parents");
                    open.insert(index_of(&s.shard_id), range);
                    k += 1;
                }
            }
        }
        let listed_open: BTreeMap<u32, (u128, u128)> = listing
            .iter()
            .filter(|s| s.ending_sequence_number.is_none())
            .map(|s| (index_of(&s.shard_id), (s.hash_key_range.start, s.hash_key_range.end)))
            .collect();
        assert_eq!(open, listed_open, "open shards after the replayed steps");
        let mut ranges: Vec<(u128, u128)> = open.values().copied().collect();
        ranges.sort();
        assert_eq!(ranges, uniform(target), "UpdateShardCount({target}) ends uniform");
        for s in m.shards.values_mut() {
            if s.closed_ms.is_none() && !open.contains_key(&s.index) {
                s.closed_ms = Some(now);
            }
        }
        for s in &new {
            let index = index_of(&s.shard_id);
            let range = (s.hash_key_range.start, s.hash_key_range.end);
            let adjacent = s.adjacent_parent_shard_id.as_deref().map(index_of);
            let mut shard = MShard::new(index, range, (Some(parent_of(s)), adjacent));
            if !open.contains_key(&index) {
                shard.closed_ms = Some(now);
            }
            m.shards.insert(index, shard);
        }
        m.next_index += new.len() as u32;
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

    // ---- checks ----

    /// Every shard of the stream, through DescribeStream's pages.
    fn listing(&mut self, name: &str) -> Vec<Shard> {
        let e = self.e();
        let mut shards: Vec<Shard> = Vec::new();
        loop {
            let limit = if self.rng.chance(30) { self.rng.range(1, 3) } else { 100 } as u32;
            let after = shards.last().map(|s| s.shard_id.clone());
            let page = e
                .describe_stream(name, Some(limit), after.as_deref())
                .unwrap_or_else(|e| panic!("describe_stream({name}): {e}"));
            assert_eq!(page.stream_status, StreamStatus::Active, "{name} status");
            assert_eq!(
                page.retention_period_hours, self.streams[name].retention_hours,
                "{name} retention"
            );
            assert!(page.shards.len() <= limit as usize, "describe_stream page size");
            let more = page.has_more_shards;
            shards.extend(page.shards);
            if !more {
                return shards;
            }
        }
    }

    fn check_stream_names(&mut self) {
        let names = self.e().list_streams(None, None, None).expect("list_streams").stream_names;
        let want: Vec<String> = self.streams.keys().cloned().collect();
        assert_eq!(names, want, "list_streams");
    }

    fn check_all(&mut self) {
        self.check_stream_names();
        let names: Vec<String> = self.streams.keys().cloned().collect();
        for name in names {
            self.check_listing(&name);
        }
    }

    /// DescribeStream and ListShards agree with each other and with the model.
    fn check_listing(&mut self, name: &str) {
        let e = self.e();
        let described = self.listing(name);
        // ListShards, paged through NextToken.
        let max = self.rng.range(1, 5) as u32;
        let mut page = e
            .list_shards(&ListShardsInput {
                stream: Some(name),
                max_results: Some(max),
                ..ListShardsInput::default()
            })
            .unwrap_or_else(|e| panic!("list_shards({name}): {e}"));
        let mut listed = std::mem::take(&mut page.shards);
        while let Some(token) = page.next_token.take() {
            page = e
                .list_shards(&ListShardsInput {
                    next_token: Some(&token),
                    max_results: Some(max),
                    ..ListShardsInput::default()
                })
                .unwrap_or_else(|e| panic!("list_shards({name}) next page: {e}"));
            listed.append(&mut page.shards);
        }
        assert_eq!(listed, described, "list_shards vs describe_stream of {name}");
        let at_latest = e
            .list_shards(&ListShardsInput {
                stream: Some(name),
                shard_filter: Some(ShardFilter::AtLatest),
                ..ListShardsInput::default()
            })
            .unwrap_or_else(|e| panic!("list_shards({name}, AT_LATEST): {e}"))
            .shards;
        let open_described: Vec<Shard> =
            described.iter().filter(|s| s.ending_sequence_number.is_none()).cloned().collect();
        assert_eq!(at_latest, open_described, "AT_LATEST lists the open shards of {name}");
        let summary = e.describe_stream_summary(name).expect("describe_stream_summary");
        assert_eq!(summary.open_shard_count, open_described.len(), "open shard count");

        let m = self.streams.get_mut(name).expect("model stream");
        let ids: Vec<String> = described.iter().map(|s| s.shard_id.clone()).collect();
        let want: Vec<String> = m.shards.keys().map(|i| sid(*i)).collect();
        assert_eq!(ids, want, "shards of {name}");
        for s in &described {
            let index = index_of(&s.shard_id);
            assert!(index < m.next_index, "{} beyond the allocated indexes", s.shard_id);
            let ms = m.shards.get_mut(&index).expect("listed shard in the model");
            let what = format!("{name} {}", s.shard_id);
            assert_eq!(
                (s.hash_key_range.start, s.hash_key_range.end),
                (ms.start, ms.end),
                "{what}"
            );
            assert_eq!(s.parent_shard_id, ms.parent.map(sid), "{what}: parent");
            assert_eq!(s.adjacent_parent_shard_id, ms.adjacent.map(sid), "{what}: adjacent parent");
            assert_eq!(
                s.ending_sequence_number.is_some(),
                ms.closed_ms.is_some(),
                "{what}: EndingSequenceNumber present exactly when closed"
            );
            let start = s.starting_sequence_number.0;
            assert_eq!(*ms.starting_seq.get_or_insert(start), start, "{what}: starting number");
            if let Some(end) = s.ending_sequence_number {
                assert_eq!(*ms.ending_seq.get_or_insert(end.0), end.0, "{what}: ending number");
                assert!(end.0 >= start, "{what}: ending below starting number");
            }
            for r in &ms.records {
                assert!(r.seq > start, "{what}: record {} not above the start {start}", r.seq);
                if let Some(end) = s.ending_sequence_number {
                    assert!(r.seq <= end.0, "{what}: record {} above the end {}", r.seq, end.0);
                }
            }
        }
        // Open shards tile [0, 2^128 - 1].
        let mut open: Vec<(u128, u128)> =
            open_described.iter().map(|s| (s.hash_key_range.start, s.hash_key_range.end)).collect();
        open.sort();
        assert_eq!(open.first().map(|r| r.0), Some(0), "{name}: open shards start at 0");
        assert_eq!(open.last().map(|r| r.1), Some(u128::MAX), "{name}: open shards reach the end");
        for w in open.windows(2) {
            assert!(w[0].0 <= w[0].1, "{name}: empty range {w:?}");
            assert_eq!(w[0].1.checked_add(1), Some(w[1].0), "{name}: gap or overlap {w:?}");
        }
        // Children above parents.
        for child in m.shards.values() {
            for p in child.parent.into_iter().chain(child.adjacent) {
                assert!(p < child.index, "{name}: parent {p} of {} allocated later", child.index);
                let Some(parent) = m.shards.get(&p) else { continue };
                let (Some(end), Some(start)) = (parent.ending_seq, child.starting_seq) else {
                    panic!("{name}: parent {p} of {} is not closed", child.index)
                };
                assert!(
                    start > end,
                    "{name}: child {} starts at {start} <= parent end {end}",
                    child.index
                );
            }
        }
    }

    /// Reads every shard of every stream from TRIM_HORIZON.
    fn verify_all(&mut self) {
        let shards: Vec<(String, u32)> = self
            .streams
            .iter()
            .flat_map(|(n, m)| m.shards.keys().map(move |i| (n.clone(), *i)))
            .collect();
        for (name, index) in shards {
            let now = self.now();
            self.note(format!("verify {name} {} from TRIM_HORIZON", sid(index)));
            let token = self
                .e()
                .get_shard_iterator(&name, &sid(index), IteratorType::TrimHorizon, None, None)
                .unwrap_or_else(|e| panic!("TRIM_HORIZON iterator of {name} {}: {e}", sid(index)));
            self.drain(token, &name, index, 0, now);
        }
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
