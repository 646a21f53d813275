//! Deterministic simulation: the [`Engine`] on a [`SimDisk`] under a random workload with
//! power losses and I/O faults, checked against a model of what Kinesis promises.
//!
//! A run opens an engine (std backend, `sync` durability, one commit group with or without a
//! journal, chosen at every open, no background maintenance, a manual clock) in a fresh
//! directory mounted as a simulated disk, and applies operations chosen by a `Source`
//! (seeded, or the fuzzer's bytes): PutRecord and PutRecords of records whose bytes are
//! derived from a unique id, splits and merges, clock moves (which roll segments by age),
//! scheduled faults (EIO or ENOSPC on the next write, sync, length change,
//! create, rename or directory sync), power losses (now, or at a chosen future
//! operation), clean reopens, and full checks. After every power loss it restarts the disk,
//! reopens the engine and checks, against the model:
//!
//! - every acknowledged record is present in its shard with its sequence number, its key
//!   and its bytes;
//! - every record present was put (acknowledged, or in flight when a fault or the power
//!   cut came), whole and byte-exact, and at most once; nothing else appears;
//! - sequence numbers increase within a shard, and new records get higher ones;
//! - the shard layout is the one the model knows, or, if a split or merge failed in
//!   flight, that layout after the operation completed;
//! - no operation fails unless a fault or the power loss came first.
//!
//! Acknowledging a record whose `fdatasync` failed would lose it at the next power loss
//! (the simulated disk drops a failed sync's data, as Linux does), which the first property
//! catches.
//!
//! The same run is driven by a seed ([`run_seed`], the `simulation` test) or by fuzzer bytes
//! ([`run_bytes`], the `differential` fuzz target). A failure panics with the seed (or the
//! input) and the operations that led to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::io::sim::{Fault, OpKind, SimDisk, SimStats, SplitMix64};
use crate::{
    CommitConfig, Durability, Engine, EngineConfig, Error, IoBackend, IteratorType, LimitsConfig,
    ListShardsInput, LogConfig, ManualClock, PutRecordInput, Shard,
};

const T0: u64 = 1_700_000_000_000;
const MINUTE: u64 = 60_000;
/// Clock moves stop short of the 24-hour retention: the model keeps every record.
const CLOCK_BUDGET_MS: u64 = 20 * 60 * MINUTE;
const STREAMS: [&str; 2] = ["orders", "clicks"];
/// Records of a PutRecords call.
const BATCH_MAX: u64 = 24;
/// Open shards per stream at most (splits stop there).
const OPEN_SHARDS_MAX: usize = 6;
/// Operations kept for a failure report.
const TRACE_KEEP: usize = 60;

/// Where a run's choices come from.
pub(crate) enum Source<'a> {
    /// A seeded generator; the run ends after `ops` operations.
    Seeded {
        /// The generator (the simulated disk's splitmix64).
        rng: SplitMix64,
        /// Operations left.
        ops: usize,
    },
    /// Fuzzer bytes; the run ends when they are used up.
    Bytes(&'a [u8]),
}

impl Source<'_> {
    /// A choice in `0..n` (`n` > 0), or `None` when the source is exhausted.
    fn below(&mut self, n: u64) -> Option<u64> {
        match self {
            Source::Seeded { rng, .. } => Some(rng.below(n)),
            Source::Bytes(bytes) => {
                let (&first, rest) = bytes.split_first()?;
                let mut value = u64::from(first);
                let mut rest = rest;
                if n > 256 {
                    let (&second, tail) = rest.split_first()?;
                    value = value << 8 | u64::from(second);
                    rest = tail;
                }
                *bytes = rest;
                Some(value % n)
            }
        }
    }

    /// Whether another operation may start.
    fn next_op(&mut self) -> bool {
        match self {
            Source::Seeded { ops, .. } => {
                let more = *ops > 0;
                *ops = ops.saturating_sub(1);
                more
            }
            Source::Bytes(bytes) => !bytes.is_empty(),
        }
    }
}

/// What a passing run did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Operations applied.
    pub ops: usize,
    /// Records acknowledged.
    pub acked: usize,
    /// Records whose put failed or was cut off (each may or may not have survived).
    pub unacked: usize,
    /// Full checks of the engine against the model.
    pub checks: usize,
    /// What the simulated disk counted.
    pub disk: SimStats,
}

/// Runs one seeded simulation of `ops` operations; panics with the seed and the trace on a
/// violation.
pub fn run_seed(seed: u64, ops: usize) -> SimReport {
    let source = Source::Seeded { rng: SplitMix64(seed), ops };
    run(source, seed, &format!("seed {seed} (RIFFLE_SIM_SEED={seed})"))
}

/// Runs one simulation driven by fuzzer bytes; panics on a violation.
pub fn run_bytes(data: &[u8]) -> SimReport {
    let disk_seed = data
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    run(Source::Bytes(data), disk_seed, "fuzz input")
}

fn run(source: Source<'_>, disk_seed: u64, what: &str) -> SimReport {
    let mut sim = Sim::new(source, disk_seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    match outcome {
        Ok(Ok(())) => sim.report(),
        Ok(Err(violation)) => panic!("simulation failed, {what}: {violation}\n{}", sim.trace()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("simulation panicked, {what}: {message}\n{}", sim.trace())
        }
    }
}

/// What the model knows of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Acknowledged: must be present, here, forever.
    Acked { stream: &'static str, shard: String, seq: u128 },
    /// Put without an acknowledgement: may be present (whole), or not.
    InFlight { stream: &'static str },
}

/// A stream's shards as listed: id -> (open, parents, hash range).
type Layout = BTreeMap<String, ShardFacts>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct ShardFacts {
    open: bool,
    parents: Vec<String>,
    range: (u128, u128),
}

/// A reshard whose outcome is unknown (it failed in flight).
#[derive(Debug, Clone)]
enum Reshard {
    Split { parent: String },
    Merge { left: String, right: String },
}

struct Stream {
    layout: Layout,
    /// A reshard the listing may or may not show yet, and whether it was acknowledged (then
    /// the next listing must show it).
    in_doubt: Option<(Reshard, bool)>,
    /// Records per shard in sequence order: (seq, id).
    records: BTreeMap<String, Vec<(u128, u64)>>,
}

struct Sim<'a> {
    source: Source<'a>,
    root: TempRoot,
    disk: Arc<SimDisk>,
    clock: ManualClock,
    clock_used: u64,
    engine: Option<Engine>,
    streams: BTreeMap<&'static str, Stream>,
    fates: HashMap<u64, Fate>,
    next_id: u64,
    /// Faults and power losses the disk had counted at the last restart or reopen.
    trouble_seen: u64,
    ops: usize,
    checks: usize,
    trace: Vec<String>,
}

static NEXT_ROOT: AtomicU64 = AtomicU64::new(0);

/// A temporary directory removed on drop.
struct TempRoot(PathBuf);

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Checked = Result<(), String>;

impl<'a> Sim<'a> {
    fn new(source: Source<'a>, disk_seed: u64) -> Self {
        let root = std::env::temp_dir().join(format!(
            "riffle-sim-{}-{}",
            std::process::id(),
            NEXT_ROOT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).expect("create the simulation directory");
        let root = TempRoot(root);
        let disk = SimDisk::mount(&root.0, disk_seed).expect("mount the simulated disk");
        Sim {
            source,
            root,
            disk,
            clock: ManualClock::new(T0),
            clock_used: 0,
            engine: None,
            streams: BTreeMap::new(),
            fates: HashMap::new(),
            next_id: 0,
            trouble_seen: 0,
            ops: 0,
            checks: 0,
            trace: Vec::new(),
        }
    }

    fn report(&self) -> SimReport {
        let acked = self.fates.values().filter(|f| matches!(f, Fate::Acked { .. })).count();
        SimReport {
            ops: self.ops,
            acked,
            unacked: self.fates.len() - acked,
            checks: self.checks,
            disk: self.disk.stats(),
        }
    }

    fn trace(&self) -> String {
        let skipped = self.trace.len().saturating_sub(TRACE_KEEP);
        let mut out = format!("last operations ({skipped} earlier not shown):\n");
        for line in &self.trace[skipped..] {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    fn note(&mut self, line: String) {
        self.trace.push(format!("[op {} disk op {}] {line}", self.ops, self.disk.ops()));
    }

    fn choose(&mut self, n: u64) -> u64 {
        self.source.below(n).unwrap_or(0)
    }

    fn e(&self) -> &Engine {
        self.engine.as_ref().expect("engine is open")
    }

    /// Faults or power losses since the engine last (re)opened: operations may fail.
    fn troubled(&self) -> bool {
        self.trouble() > self.trouble_seen
    }

    /// Faults and power losses so far.
    fn trouble(&self) -> u64 {
        let s = self.disk.stats();
        s.faults + s.power_losses
    }

    fn open_engine(&mut self) -> Checked {
        // Each open picks whether the commit group journals (a journal left by the previous
        // run is replayed either way).
        // Small journals, so that checkpoints and wraps are frequent.
        let journal_bytes = [0, 64 * 1024, 256 * 1024][self.choose(3) as usize];
        self.note(format!("  open (journal of {journal_bytes} bytes)"));
        let config = EngineConfig {
            journal_bytes,
            clock: Arc::new(self.clock.clone()),
            limits: LimitsConfig::unlimited(),
            maintenance_interval_ms: 0,
            transition_ms: 0,
            commit_groups: 1,
            commit: CommitConfig {
                durability: Durability::Sync,
                io_backend: IoBackend::Std,
                ..CommitConfig::default()
            },
            log: LogConfig {
                segment_bytes: 2 * 1024 * 1024,
                segment_age_ms: 30 * MINUTE,
                batch_bytes_target: 8 * 1024,
                index_interval_bytes: 512,
                // The preparer is a background thread: its file operations would interleave
                // with the commit thread's in a different order on every run.
                prepare_segments: false,
                ..LogConfig::default()
            },
            ..EngineConfig::default()
        };
        let engine = loop {
            let trouble_before = self.trouble();
            match Engine::open(&self.root.0, config.clone()) {
                Ok(engine) => break engine,
                // A scheduled fault or power loss may hit the open itself; the operator
                // tries again (after the restart, if the power went).
                Err(e) if self.trouble() > trouble_before => {
                    self.note(format!("  open failed: {e}"));
                    if !self.disk.powered() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(format!("the engine does not open: {e}")),
            }
        };
        self.engine = Some(engine);
        self.trouble_seen = self.trouble();
        Ok(())
    }

    fn run(&mut self) -> Checked {
        self.note("open engine".into());
        self.open_engine()?;
        for name in STREAMS {
            let shards = 1 + self.choose(3) as u32;
            self.note(format!("create_stream({name}, {shards})"));
            self.e()
                .create_stream(name, Some(shards), None, &[])
                .map_err(|e| format!("create_stream: {e}"))?;
            let layout = self.list(name)?;
            let records = layout.keys().map(|id| (id.clone(), Vec::new())).collect();
            self.streams.insert(name, Stream { layout, in_doubt: None, records });
        }
        while self.source.next_op() {
            self.ops += 1;
            self.step()?;
            while !self.disk.powered() {
                self.restart()?;
            }
        }
        self.note("final power loss".into());
        self.disk.power_off();
        self.restart()
    }

    fn step(&mut self) -> Checked {
        match self.choose(100) {
            0..=39 => self.put_record(),
            40..=64 => self.put_records(),
            65..=69 => self.split(),
            70..=73 => self.merge(),
            74..=79 => {
                let by = self.choose(20 * MINUTE);
                if self.clock_used + by <= CLOCK_BUDGET_MS {
                    self.clock_used += by;
                    self.clock.advance(by);
                    self.note(format!("clock +{by} ms"));
                }
                Ok(())
            }
            80..=85 => {
                let kinds = [
                    OpKind::Write,
                    OpKind::Sync,
                    OpKind::SetLen,
                    OpKind::Create,
                    OpKind::Rename,
                    OpKind::SyncDir,
                ];
                let kind = kinds[self.choose(kinds.len() as u64) as usize];
                let fault = if self.choose(3) == 0 { Fault::NoSpace } else { Fault::Eio };
                let at = self.disk.ops() + self.choose(30);
                self.note(format!("schedule {fault:?} on the first {kind:?} from disk op {at}"));
                self.disk.schedule(Some(kind), at, fault);
                Ok(())
            }
            86..=90 => {
                // Half of them as a sync starts: the writes before it are in the cache only.
                let kind = if self.choose(2) == 0 { None } else { Some(OpKind::Sync) };
                let at = self.disk.ops() + self.choose(60);
                self.note(format!("schedule power loss at the first {kind:?} from disk op {at}"));
                self.disk.schedule(kind, at, Fault::PowerLoss);
                Ok(())
            }
            91..=93 => {
                self.note("power loss now".into());
                self.disk.power_off();
                Ok(())
            }
            94..=95 => self.reopen(),
            96 => {
                // Nothing has expired (the clock stays within retention), so a pass must
                // change nothing the model sees; it still rolls and syncs under faults.
                self.note("run_maintenance".into());
                match self.e().run_maintenance() {
                    Ok(report) => {
                        self.note(format!("  -> {report:?}"));
                        Ok(())
                    }
                    Err(e) => self.failed("run_maintenance", &e),
                }
            }
            _ => self.check(false),
        }
    }

    // ---- Operations ----

    /// A record's bytes, derived from its id: an 8-byte id, then filler from the id.
    fn record_bytes(id: u64, len: usize) -> Vec<u8> {
        let mut data = id.to_le_bytes().to_vec();
        let mut x = id.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.push(x as u8);
        }
        data
    }

    fn key_of(id: u64) -> String {
        format!("key-{}", id % 17)
    }

    fn new_record(&mut self) -> (u64, String, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let len = match self.choose(10) {
            0 => 8 + self.choose(200_000) as usize,
            1..=3 => 8,
            _ => 8 + self.choose(3_000) as usize,
        };
        (id, Self::key_of(id), Self::record_bytes(id, len))
    }

    fn pick_stream(&mut self) -> &'static str {
        STREAMS[self.choose(STREAMS.len() as u64) as usize]
    }

    fn put_record(&mut self) -> Checked {
        let stream = self.pick_stream();
        let (id, key, data) = self.new_record();
        self.note(format!("put_record({stream}, id {id}, {} bytes)", data.len()));
        self.fates.insert(id, Fate::InFlight { stream });
        match self.e().put_record(stream, &PutRecordInput::new(&key, &data)) {
            Ok(out) => {
                let (shard, seq) = (out.shard_id.to_string(), out.sequence_number.0);
                self.note(format!("  -> acked {shard} {seq}"));
                self.ack(stream, id, shard, seq)
            }
            Err(e) => self.failed("put_record", &e),
        }
    }

    fn put_records(&mut self) -> Checked {
        let stream = self.pick_stream();
        let n = 1 + self.choose(BATCH_MAX);
        let batch: Vec<(u64, String, Vec<u8>)> = (0..n).map(|_| self.new_record()).collect();
        let inputs: Vec<PutRecordInput<'_>> =
            batch.iter().map(|(_, key, data)| PutRecordInput::new(key, data)).collect();
        self.note(format!(
            "put_records({stream}, ids {}..={})",
            batch[0].0,
            batch[batch.len() - 1].0
        ));
        for (id, _, _) in &batch {
            self.fates.insert(*id, Fate::InFlight { stream });
        }
        let result = self.e().put_records(stream, &inputs);
        match result {
            Ok(out) => {
                if out.records.len() != batch.len() {
                    return Err(format!(
                        "put_records answered {} of {} records",
                        out.records.len(),
                        batch.len()
                    ));
                }
                for ((id, _, _), result) in batch.iter().zip(out.records) {
                    match result {
                        Ok(ok) => {
                            self.ack(stream, *id, ok.shard_id.to_string(), ok.sequence_number.0)?
                        }
                        Err(failure) if self.troubled() => {
                            self.note(format!("  id {id} failed: {}", failure.error_code));
                        }
                        Err(failure) => {
                            return Err(format!(
                                "record {id} failed with no fault injected: {failure:?}"
                            ))
                        }
                    }
                }
                Ok(())
            }
            Err(e) => self.failed("put_records", &e),
        }
    }

    /// An error is fine only after a fault or a power loss.
    fn failed(&mut self, what: &str, e: &Error) -> Checked {
        self.note(format!("  -> {what} failed: {e}"));
        if self.troubled() {
            Ok(())
        } else {
            Err(format!("{what} failed with no fault injected: {e}"))
        }
    }

    fn ack(&mut self, stream: &'static str, id: u64, shard: String, seq: u128) -> Checked {
        let model = self.streams.get_mut(stream).expect("stream");
        let Some(facts) = model.layout.get(&shard) else {
            return Err(format!(
                "record {id} acknowledged in {shard}, which the model does not know"
            ));
        };
        if !facts.open {
            return Err(format!("record {id} acknowledged in closed shard {shard}"));
        }
        let list = model.records.entry(shard.clone()).or_default();
        if let Some((last, _)) = list.last() {
            if seq <= *last {
                return Err(format!(
                    "record {id} got sequence number {seq}, not above {last} in {shard}"
                ));
            }
        }
        list.push((seq, id));
        self.fates.insert(id, Fate::Acked { stream, shard, seq });
        Ok(())
    }

    fn split(&mut self) -> Checked {
        let stream = self.pick_stream();
        let open: Vec<(String, (u128, u128))> = self.streams[stream]
            .layout
            .iter()
            .filter(|(_, f)| f.open && f.range.1 > f.range.0)
            .map(|(id, f)| (id.clone(), f.range))
            .collect();
        if open.is_empty()
            || open.len() >= OPEN_SHARDS_MAX
            || self.streams[stream].in_doubt.is_some()
        {
            return Ok(());
        }
        let (parent, (start, end)) = open[self.choose(open.len() as u64) as usize].clone();
        let key = start + 1 + (end - start - 1) / 2;
        self.note(format!("split_shard({stream}, {parent}, {key})"));
        match self.e().split_shard(stream, &parent, &key.to_string()) {
            Ok(()) => self.settle(stream, Reshard::Split { parent }),
            Err(e) => {
                self.streams.get_mut(stream).expect("stream").in_doubt =
                    Some((Reshard::Split { parent }, false));
                self.settle_in_doubt(stream);
                self.failed("split_shard", &e)
            }
        }
    }

    fn merge(&mut self) -> Checked {
        let stream = self.pick_stream();
        let mut open: Vec<(String, (u128, u128))> = self.streams[stream]
            .layout
            .iter()
            .filter(|(_, f)| f.open)
            .map(|(id, f)| (id.clone(), f.range))
            .collect();
        open.sort_by_key(|(_, r)| r.0);
        if open.len() < 2 || self.streams[stream].in_doubt.is_some() {
            return Ok(());
        }
        let i = self.choose(open.len() as u64 - 1) as usize;
        let (left, right) = (open[i].0.clone(), open[i + 1].0.clone());
        self.note(format!("merge_shards({stream}, {left}, {right})"));
        match self.e().merge_shards(stream, &left, &right) {
            Ok(()) => self.settle(stream, Reshard::Merge { left, right }),
            Err(e) => {
                self.streams.get_mut(stream).expect("stream").in_doubt =
                    Some((Reshard::Merge { left, right }, false));
                self.settle_in_doubt(stream);
                self.failed("merge_shards", &e)
            }
        }
    }

    /// After a reshard that succeeded: the listing must be the model's layout with the
    /// reshard applied.
    fn settle(&mut self, stream: &'static str, reshard: Reshard) -> Checked {
        let listed = match self.list(stream) {
            Ok(listed) => listed,
            Err(e) if self.troubled() => {
                // Listing ran a due status change whose catalog commit met a fault.
                self.note(format!("  listing failed: {e}"));
                self.streams.get_mut(stream).expect("stream").in_doubt = Some((reshard, true));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let before = &self.streams[stream].layout;
        if !reshard_applied(before, &listed, &reshard) {
            return Err(format!("after {reshard:?} the layout is {listed:?}, from {before:?}"));
        }
        let model = self.streams.get_mut(stream).expect("stream");
        for id in listed.keys() {
            model.records.entry(id.clone()).or_default();
        }
        model.layout = listed;
        Ok(())
    }

    /// After a failed reshard: if the engine shows it done, the model takes it; otherwise it
    /// stays in doubt until the next restart (the catalog may have reached the disk).
    fn settle_in_doubt(&mut self, stream: &'static str) {
        let Ok(listed) = self.list(stream) else { return };
        let model = self.streams.get_mut(stream).expect("stream");
        if let Some((reshard, _)) = &model.in_doubt {
            if reshard_applied(&model.layout, &listed, reshard) {
                for id in listed.keys() {
                    model.records.entry(id.clone()).or_default();
                }
                model.layout = listed;
                model.in_doubt = None;
            }
        }
    }

    fn reopen(&mut self) -> Checked {
        self.note("clean reopen".into());
        if let Some(engine) = self.engine.take() {
            let _ = engine.close();
        }
        if !self.disk.powered() {
            return Ok(()); // the power went during the close; the caller restarts
        }
        self.open_engine()?;
        if self.engine.is_none() {
            return Ok(()); // the power went during the open; the caller restarts
        }
        self.check(false)
    }

    /// Power loss, then the machine comes back: restart the disk, reopen, check.
    fn restart(&mut self) -> Checked {
        self.note("power lost: restart".into());
        self.engine = None;
        self.disk.restart().map_err(|e| format!("restarting the simulated disk: {e}"))?;
        self.open_engine()?;
        if self.engine.is_none() {
            return Ok(()); // the power went again during the open
        }
        self.check(true)
    }

    // ---- Checks ----

    fn list(&self, stream: &str) -> Result<Layout, String> {
        let input = ListShardsInput {
            stream: Some(stream),
            next_token: None,
            exclusive_start_shard_id: None,
            max_results: Some(1000),
            stream_creation_ms: None,
            shard_filter: None,
        };
        let out =
            self.e().list_shards(&input).map_err(|e| format!("list_shards({stream}): {e}"))?;
        Ok(out.shards.iter().map(facts).collect())
    }

    /// Reads every shard of every stream and compares with the model. After a restart, a
    /// record in flight is settled: present (it survived) or gone for good.
    fn check(&mut self, after_restart: bool) -> Checked {
        if self.troubled() && !after_restart {
            // After a fault the engine may have stopped (a failed catalog commit stops it
            // whole); an operator restarts the process, and then everything must hold.
            return self.reopen();
        }
        self.checks += 1;
        self.note(format!("check (after restart: {after_restart})"));
        let mut seen: HashMap<u64, (String, u128)> = HashMap::new();
        for stream in STREAMS {
            let listed = self.list(stream)?;
            let model = self.streams.get_mut(stream).expect("stream");
            if let Some((reshard, true)) = &model.in_doubt {
                if !reshard_applied(&model.layout, &listed, reshard) {
                    return Err(format!(
                        "{stream}: acknowledged {reshard:?} is not in the listing {listed:?}"
                    ));
                }
            }
            if listed != model.layout {
                let settled = model
                    .in_doubt
                    .as_ref()
                    .is_some_and(|(reshard, _)| reshard_applied(&model.layout, &listed, reshard));
                if !settled {
                    return Err(format!(
                        "{stream}: shards are {listed:?}, the model has {:?} (in doubt: {:?})",
                        model.layout, model.in_doubt
                    ));
                }
                for id in listed.keys() {
                    model.records.entry(id.clone()).or_default();
                }
                model.layout = listed.clone();
                model.in_doubt = None;
            }
            if after_restart {
                model.in_doubt = None;
            }
            for shard in listed.keys() {
                let read = self.read_shard(stream, shard)?;
                let mut last = None;
                for (seq, id, ok) in read {
                    if !ok {
                        return Err(format!(
                            "{stream} {shard}: record {id} (seq {seq}) has the wrong key or bytes"
                        ));
                    }
                    if last.is_some_and(|l| seq <= l) {
                        return Err(format!(
                            "{stream} {shard}: sequence numbers out of order at {seq}"
                        ));
                    }
                    last = Some(seq);
                    if seen.insert(id, (shard.clone(), seq)).is_some() {
                        return Err(format!("record {id} appears twice"));
                    }
                    match self.fates.get(&id) {
                        None => return Err(format!("{stream} {shard}: record {id} was never put")),
                        Some(Fate::Acked { stream: s, shard: sh, seq: q }) => {
                            if (*s, sh.as_str(), *q) != (stream, shard.as_str(), seq) {
                                return Err(format!(
                                    "record {id} was acknowledged in {s} {sh} at {q}, found in {stream} {shard} at {seq}"
                                ));
                            }
                        }
                        Some(Fate::InFlight { stream: s }) if *s != stream => {
                            return Err(format!("record {id} was put to {s}, found in {stream}"));
                        }
                        Some(Fate::InFlight { .. }) => {}
                    }
                }
            }
        }
        // Every acknowledged record was seen; records in flight are settled by a restart.
        let mut survivors = Vec::new();
        for (id, fate) in &self.fates {
            match fate {
                Fate::Acked { stream, shard, seq } => {
                    if !seen.contains_key(id) {
                        return Err(format!(
                            "acknowledged record {id} ({stream} {shard} seq {seq}) is lost"
                        ));
                    }
                }
                Fate::InFlight { stream } => {
                    if after_restart {
                        survivors.push((*id, *stream, seen.get(id).cloned()));
                    }
                }
            }
        }
        for (id, stream, found) in survivors {
            match found {
                Some((shard, seq)) => {
                    let list = self
                        .streams
                        .get_mut(stream)
                        .expect("stream")
                        .records
                        .entry(shard.clone())
                        .or_default();
                    list.push((seq, id));
                    list.sort_unstable();
                    self.fates.insert(id, Fate::Acked { stream, shard, seq });
                }
                None => {
                    self.fates.remove(&id);
                }
            }
        }
        Ok(())
    }

    /// Every record of a shard: (sequence number, id, key and bytes right).
    fn read_shard(&self, stream: &str, shard: &str) -> Result<Vec<(u128, u64, bool)>, String> {
        let e = self.e();
        let mut iterator = e
            .get_shard_iterator(stream, shard, IteratorType::TrimHorizon, None, None)
            .map_err(|err| format!("get_shard_iterator({stream}, {shard}): {err}"))?;
        let mut out = Vec::new();
        loop {
            let page = e
                .get_records(&iterator, Some(10_000))
                .map_err(|err| format!("get_records({stream}, {shard}): {err}"))?;
            let empty = page.records.is_empty();
            for r in &page.records {
                let Some(id) =
                    r.data.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                else {
                    return Err(format!(
                        "{stream} {shard}: a record of {} bytes has no id",
                        r.data.len()
                    ));
                };
                let ok = r.data[..] == Self::record_bytes(id, r.data.len())[..]
                    && r.partition_key_str() == Self::key_of(id);
                out.push((r.sequence_number.0, id, ok));
            }
            match page.next_shard_iterator {
                Some(next) if !empty => iterator = next,
                _ => return Ok(out),
            }
        }
    }
}

fn facts(shard: &Shard) -> (String, ShardFacts) {
    let parents = [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let range = (shard.hash_key_range.start, shard.hash_key_range.end);
    (
        shard.shard_id.clone(),
        ShardFacts { open: shard.ending_sequence_number.is_none(), parents, range },
    )
}

/// Whether `after` is `before` with `reshard` done: its parents closed, and new open
/// children that descend from them and cover exactly their hash keys.
fn reshard_applied(before: &Layout, after: &Layout, reshard: &Reshard) -> bool {
    let parents: Vec<&String> = match reshard {
        Reshard::Split { parent } => vec![parent],
        Reshard::Merge { left, right } => vec![left, right],
    };
    let mut expected = before.clone();
    for p in &parents {
        match expected.get_mut(*p) {
            Some(f) if f.open => f.open = false,
            _ => return false,
        }
    }
    let new: Vec<(&String, &ShardFacts)> =
        after.iter().filter(|(id, _)| !before.contains_key(*id)).collect();
    let old_part: Layout = after
        .iter()
        .filter(|(id, _)| before.contains_key(*id))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if old_part != expected {
        return false;
    }
    let parent_keys: BTreeSet<String> = parents.iter().map(|p| (*p).clone()).collect();
    let mut ranges: Vec<(u128, u128)> = Vec::new();
    for (_, f) in &new {
        let from: BTreeSet<String> = f.parents.iter().cloned().collect();
        if !f.open || !from.is_subset(&parent_keys) || from.is_empty() {
            return false;
        }
        ranges.push(f.range);
    }
    let mut covered: Vec<(u128, u128)> = parents.iter().map(|p| before[*p].range).collect();
    covered.sort_unstable();
    ranges.sort_unstable();
    let joined = |rs: &[(u128, u128)]| -> Option<(u128, u128)> {
        let mut it = rs.iter();
        let first = *it.next()?;
        it.try_fold(first, |(s, e), (ns, ne)| (e.checked_add(1) == Some(*ns)).then_some((s, *ne)))
    };
    let expected_children = match reshard {
        Reshard::Split { .. } => 2,
        Reshard::Merge { .. } => 1,
    };
    new.len() == expected_children
        && joined(&ranges).is_some()
        && joined(&ranges) == joined(&covered)
}
