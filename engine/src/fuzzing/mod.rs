//! Properties checked by the fuzz targets (`fuzz/`) and replayed over their corpora by
//! `cargo test` (`tests/fuzz_corpus.rs`), so CI covers them on stable without a fuzzer.
//! Each function panics only if the engine misbehaves; arbitrary input must not.

pub mod simulation;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::{self, RecordIter};
use crate::{CommitConfig, CommitGroup, Error, IoBackend, LogConfig, ShardLog};

/// Batch decoding: any bytes either fail validation or decode completely and consistently.
pub fn batch_decode(data: &[u8]) {
    let _ = batch::parse_header(data);
    if let Ok(header) = batch::validate(data) {
        let records: Vec<_> = RecordIter::new(data).expect("validated header parses").collect();
        assert_eq!(records.len(), header.record_count as usize);
        for (i, r) in records.iter().enumerate() {
            let r = r.as_ref().expect("validated batch decodes");
            assert_eq!(r.position, header.base_position + i as u64);
            assert!(r.timestamp_ms <= header.max_timestamp_ms);
        }
    }
    for item in batch::split_batches(data) {
        if item.is_err() {
            break;
        }
    }
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Segment recovery: any bytes as the only segment file of a log either open (and then
/// every record reads back, or reads report corruption) or fail with a corruption error.
pub fn segment_recovery(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!(
        "riffle-fuzz-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut file = data.to_vec();
    // Odd-length inputs are padded with zeros to the capacity their header claims (when
    // small), so the fuzzer reaches the active-segment path (validate by CRC, cut the torn
    // tail) as well as the sealed one (a file shorter than its capacity).
    if file.len() % 2 == 1 && file.len() >= 32 {
        let claimed = u64::from_le_bytes(file[24..32].try_into().expect("8 bytes"));
        if claimed > file.len() as u64 && claimed <= 1 << 20 {
            file.resize(claimed as usize, 0);
        }
    }
    std::fs::write(dir.join(format!("{:020}.log", 0)), &file).expect("write segment");
    let group =
        CommitGroup::start(CommitConfig { io_backend: IoBackend::Std, ..CommitConfig::default() })
            .expect("commit group");
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 128,
        batch_bytes_target: 16 * 1024,
        ..LogConfig::default()
    };
    match ShardLog::open(&dir, config, &group) {
        Ok(log) => {
            let mut position = 0;
            loop {
                match log.read(position, 1 << 16) {
                    Ok(Some(read)) => {
                        for b in batch::split_batches(&read.bytes) {
                            b.expect("a read returns only valid batches");
                        }
                        assert!(read.next_position > position);
                        position = read.next_position;
                    }
                    Ok(None) => break,
                    Err(Error::Corrupt { .. }) => break,
                    Err(e) => panic!("unexpected read error: {e}"),
                }
            }
        }
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("unexpected open error: {e}"),
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The log files the index target starts from: a log of two sealed segments and an active
/// one, with records of known contents and distinct, increasing arrival times.
struct Template {
    files: Vec<(String, Vec<u8>)>,
    /// Per position: (arrival ms, data).
    records: Vec<(u64, Vec<u8>)>,
}

fn index_config(clock: &crate::ManualClock) -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 256,
        batch_bytes_target: 4 * 1024,
        clock: std::sync::Arc::new(clock.clone()),
        prepare_segments: false,
        ..LogConfig::default()
    }
}

fn template() -> &'static Template {
    static TEMPLATE: std::sync::OnceLock<Template> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch_dir("index-template");
        let _cleanup = RemoveOnDrop(dir.clone());
        let clock = crate::ManualClock::new(1_000);
        let group = CommitGroup::start(CommitConfig {
            io_backend: IoBackend::Std,
            ..CommitConfig::default()
        })
        .expect("commit group");
        let log = ShardLog::open(&dir, index_config(&clock), &group).expect("template log");
        let mut records = Vec::new();
        for i in 0..400u64 {
            clock.advance(1 + i % 3);
            let data: Vec<u8> = (0..(20 + (i * 37) % 700)).map(|j| (i + j) as u8).collect();
            log.append_wait(&[crate::Record {
                partition_key: b"k",
                explicit_hash_key: None,
                data: &data,
            }])
            .expect("append");
            records.push((clock.now_ms(), data));
        }
        log.close().expect("close");
        drop(log);
        drop(group);
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("template dir")
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().to_string_lossy().into_owned();
                (name.ends_with(".log") || name.ends_with(".idx") || name.ends_with(".tix"))
                    .then(|| (name, std::fs::read(e.path()).expect("read template file")))
            })
            .collect();
        files.sort();
        assert!(files.len() >= 6, "the template has several segments");
        Template { files, records }
    })
}

use crate::Clock as _;

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "riffle-fuzz-{what}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Index files: arbitrary bytes in place of one of a valid log's index files (first byte:
/// which one). The log must open (a damaged index is rebuilt, never trusted), and every
/// read and timestamp lookup must agree with the records as written.
pub fn index_files(data: &[u8]) {
    let t = template();
    let indexes: Vec<usize> =
        (0..t.files.len()).filter(|&i| !t.files[i].0.ends_with(".log")).collect();
    let Some((&which, bytes)) = data.split_first() else { return };
    let target = indexes[usize::from(which) % indexes.len()];
    let dir = scratch_dir("index");
    let _cleanup = RemoveOnDrop(dir.clone());
    for (i, (name, contents)) in t.files.iter().enumerate() {
        let contents = if i == target { bytes } else { contents.as_slice() };
        std::fs::write(dir.join(name), contents).expect("write file");
    }
    let clock = crate::ManualClock::new(t.records.last().map_or(0, |r| r.0) + 1);
    let group =
        CommitGroup::start(CommitConfig { io_backend: IoBackend::Std, ..CommitConfig::default() })
            .expect("commit group");
    let log = ShardLog::open(&dir, index_config(&clock), &group)
        .expect("a damaged index is rebuilt, not an error");
    assert_eq!(log.end_position(), t.records.len() as u64);
    for (p, (ts, data)) in t.records.iter().enumerate() {
        let read = log.read(p as u64, 1).expect("read").expect("a record at every position");
        assert!(read.first_position <= p as u64 && (p as u64) < read.next_position);
        let found = batch::split_batches(&read.bytes)
            .map(|b| b.expect("valid batch"))
            .flat_map(|(_, bytes)| {
                RecordIter::new(bytes)
                    .expect("records")
                    .map(|r| r.expect("record"))
                    .collect::<Vec<_>>()
            })
            .find(|r| r.position == p as u64)
            .map(|r| (r.timestamp_ms, r.data.to_vec()));
        assert_eq!(found.as_ref(), Some(&(*ts, data.clone())), "position {p}");
    }
    // Timestamp lookups: the first record that arrived at or after each instant.
    let first_ts = t.records.first().map_or(0, |r| r.0);
    let last_ts = t.records.last().map_or(0, |r| r.0);
    for probe in (first_ts.saturating_sub(2)..=last_ts + 2).step_by(7) {
        let want = t.records.iter().position(|r| r.0 >= probe).map(|p| p as u64);
        assert_eq!(log.position_at_timestamp(probe).expect("lookup"), want, "timestamp {probe}");
    }
}
