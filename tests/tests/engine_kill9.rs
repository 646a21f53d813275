//! Crash consistency of the stream engine under kill -9, with resharding in flight: a child
//! process (`riffle-engine-crash-child`) puts records under `sync` durability from three
//! producers while a fourth thread splits and merges shards; the test kills it with SIGKILL
//! at a random moment, reopens the engine in-process, and checks that
//!
//! - the engine opens (the catalog and every shard log agree: a closed shard holds exactly
//!   the records its catalog entry says);
//! - every acknowledged record, from every run so far, is readable at its acknowledged
//!   sequence number, in its acknowledged shard, with exactly its contents;
//! - every readable record is one a producer made (none half-written or foreign);
//! - the open shards tile the hash key space, and every closed shard's ending sequence
//!   number is above all of its records and below its children's starting numbers;
//! - reading shards parents first (index order), each key's records come in the order its
//!   producer put them.
//!
//! Several cycles per I/O backend on one data directory that keeps growing. The kill
//! moments come from a seeded generator (`RIFFLE_TEST_SEED` replays them).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, IoBackend, IteratorType, ListShardsInput,
    SequenceNumber,
};
use riffle_tests::{test_seed, SplitMix64};

const CHILD: &str = env!("CARGO_BIN_EXE_riffle-engine-crash-child");
const STALL_LIMIT: Duration = Duration::from_secs(20);

/// An acknowledged record: sequence number, shard id, key, data.
type Ack = (SequenceNumber, String, String, String);

fn run_child(root: &Path, backend: &str, run: u64, kill_after: Duration) -> Vec<Ack> {
    let mut child = Command::new(CHILD)
        .arg(root)
        .arg(backend)
        .arg(run.to_string())
        // Even runs use the smallest journal (two 32 KiB halves), so that its halves switch
        // and checkpoint in the background every few dozen records; odd runs the default
        // (so each open also replays a journal of the other size).
        .arg(if run.is_multiple_of(2) { "65536" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the engine crash child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.last() != Some(&b'\n') => return, // cut by the kill
                Ok(_) => {
                    let text = String::from_utf8(line[..line.len() - 1].to_vec()).expect("UTF-8");
                    if tx.send(text).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut ready = None;
    loop {
        let deadline = match ready {
            Some(at) => at + kill_after,
            None => started + STALL_LIMIT,
        };
        let now = Instant::now();
        if now >= deadline {
            assert!(ready.is_some(), "run {run}: the child never became ready");
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                if line == "READY" {
                    ready = Some(Instant::now());
                }
                lines.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    child.kill().expect("kill");
    let status = child.wait().expect("reap");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    assert_eq!(
        status.signal(),
        Some(9),
        "run {run}: the child must die of the kill, not {status:?}"
    );
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK "))
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let seq = parts.next().and_then(|s| s.parse().ok()).expect("sequence number");
            let shard = parts.next().expect("shard").to_string();
            let key = parts.next().expect("key").to_string();
            let data = parts.next().expect("data").to_string();
            (SequenceNumber(seq), shard, key, data)
        })
        .collect()
}

/// Reopens the engine and checks every invariant; returns the number of records read.
fn verify(root: &Path, acked: &[Ack]) -> usize {
    let config = EngineConfig {
        commit: CommitConfig {
            durability: Durability::Sync,
            io_backend: IoBackend::Std,
            ..CommitConfig::default()
        },
        log: riffle_engine::LogConfig { segment_bytes: 2 * 1024 * 1024, ..Default::default() },
        limits: riffle_engine::LimitsConfig::unlimited(),
        maintenance_interval_ms: 0,
        ..EngineConfig::default()
    };
    let engine = Engine::open(root, config).expect("the engine reopens after kill -9");
    let shards = engine
        .list_shards(&ListShardsInput { stream: Some("crash"), ..Default::default() })
        .expect("list_shards")
        .shards;
    // Open shards tile the key space.
    let mut open: Vec<_> = shards.iter().filter(|s| s.ending_sequence_number.is_none()).collect();
    open.sort_by_key(|s| s.hash_key_range.start);
    assert_eq!(open.first().map(|s| s.hash_key_range.start), Some(0));
    assert_eq!(open.last().map(|s| s.hash_key_range.end), Some(u128::MAX));
    for pair in open.windows(2) {
        assert_eq!(pair[0].hash_key_range.end + 1, pair[1].hash_key_range.start);
    }
    let mut found: BTreeMap<SequenceNumber, (String, String, String)> = BTreeMap::new();
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for shard in &shards {
        let mut it = engine
            .get_shard_iterator("crash", &shard.shard_id, IteratorType::TrimHorizon, None, None)
            .expect("iterator");
        loop {
            let page = engine.get_records(&it, None).expect("get_records");
            for r in &page.records {
                let data = std::str::from_utf8(&r.data).expect("UTF-8 data").to_string();
                let key = r.partition_key_str().to_string();
                let fields: Vec<&str> = data.splitn(4, ':').collect();
                assert_eq!(fields.len(), 4, "a record the producers made: {data:?}");
                assert!(
                    key.starts_with(&format!("r{}-p{}-", fields[0], fields[1])),
                    "{key} {data}"
                );
                assert!(r.sequence_number >= shard.starting_sequence_number);
                if let Some(end) = shard.ending_sequence_number {
                    assert!(r.sequence_number <= end);
                }
                per_key.entry(key.clone()).or_default().push(fields[2].parse().expect("seq"));
                found.insert(r.sequence_number, (shard.shard_id.clone(), key, data));
            }
            match page.next_shard_iterator {
                Some(next) if !page.records.is_empty() => it = next,
                _ => break,
            }
        }
    }
    for child in &shards {
        for parent in child.parent_shard_id.iter().chain(child.adjacent_parent_shard_id.iter()) {
            if let Some(p) = shards.iter().find(|s| &s.shard_id == parent) {
                let end = p.ending_sequence_number.expect("a parent is closed");
                assert!(end < child.starting_sequence_number, "{parent} -> {}", child.shard_id);
            }
        }
    }
    for (seq, shard, key, data) in acked {
        let got = found
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged record {seq} ({key}) is missing"));
        assert_eq!(got, &(shard.clone(), key.clone(), data.clone()), "record {seq}");
    }
    for (key, seqs) in &per_key {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "key {key} out of order: {seqs:?}");
    }
    found.len()
}

#[test]
fn acknowledged_records_survive_kill_9_during_resharding() {
    let seed = test_seed("engine kill9");
    let mut rng = SplitMix64::new(seed);
    for backend in ["std", "auto"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut acked: Vec<Ack> = Vec::new();
        for run in 0..5u64 {
            let kill_after = Duration::from_millis(rng.between(30, 400));
            let acks = run_child(dir.path(), backend, run, kill_after);
            acked.extend(acks);
            let records = verify(dir.path(), &acked);
            println!(
                "{backend} run {run}: killed after {kill_after:?}; {} acknowledged so far, {records} readable",
                acked.len()
            );
            assert!(records >= acked.len());
        }
        assert!(!acked.is_empty(), "the child acknowledged something");
    }
}
