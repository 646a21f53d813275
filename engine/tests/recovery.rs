//! Pins what reopening a log does with damaged files: a torn last batch is cut at every
//! possible byte, flipped bytes and zeroed pages in the active segment cut the log at the
//! first bad batch, stale bytes past the cut never come back, corruption in a sealed
//! segment is reported with its file and offset, and damaged indexes are rebuilt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use riffle_engine::batch::{self, split_batches, RecordIter};
use riffle_engine::{
    CommitConfig, CommitGroup, Error, IoBackend, LogConfig, ManualClock, Record, ShardLog,
};

fn config(clock: &ManualClock) -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 256,
        batch_bytes_target: 2048,
        segment_age_ms: u64::MAX,
        clock: Arc::new(clock.clone()),
        prepare_segments: true,
    }
}

fn group() -> CommitGroup {
    CommitGroup::start(CommitConfig { io_backend: IoBackend::Std, ..CommitConfig::default() })
        .expect("group")
}

fn data(i: u64) -> Vec<u8> {
    format!("payload {i} ").repeat(1 + (i % 5) as usize).into_bytes()
}

/// Writes `n` single-record appends (one batch each) and returns the clock used.
fn fill(dir: &Path, n: u64) -> ManualClock {
    let clock = ManualClock::new(1_000_000);
    let g = group();
    let log = ShardLog::open(dir, config(&clock), &g).expect("open");
    for i in 0..n {
        clock.advance(3);
        let d = data(i);
        log.append_wait(&[Record { partition_key: b"pk", explicit_hash_key: None, data: &d }])
            .expect("append");
    }
    log.close().expect("close");
    clock
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// (file offset, header) of every batch in a segment file.
fn batches_in(path: &Path) -> Vec<(usize, batch::BatchHeader)> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut at = 64;
    let mut out = Vec::new();
    while let Ok(h) = batch::validate(&bytes[at..]) {
        out.push((at, h));
        at += h.batch_bytes as usize;
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    f(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

/// Every record readable from the log, checked against the generator.
fn check_contents(log: &ShardLog) -> u64 {
    let mut position = 0;
    let mut count = 0;
    while let Some(read) = log.read(position, 1 << 20).expect("read") {
        for b in split_batches(&read.bytes) {
            let (_, bytes) = b.expect("valid batch");
            for r in RecordIter::new(bytes).expect("header") {
                let r = r.expect("record");
                assert_eq!(r.position, count, "positions are contiguous");
                assert_eq!(r.data, &data(r.position)[..], "record {} intact", r.position);
                count += 1;
            }
        }
        position = read.next_position;
    }
    assert_eq!(count, log.end_position());
    count
}

#[test]
fn torn_last_batch_is_cut_at_every_byte_and_complete_batches_are_kept() {
    let original = tempfile::tempdir().expect("tempdir");
    let clock = fill(original.path(), 30);
    let segment = segment_files(original.path()).pop().expect("one segment");
    let batches = batches_in(&segment);
    let (last_start, last) = *batches.last().expect("batches");
    let last_end = last_start + last.batch_bytes as usize;
    let name = segment.file_name().expect("name").to_owned();
    for cut in last_start..last_end {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(original.path(), dir.path());
        // The write of the last batch reached the disk only up to `cut`.
        modify(&dir.path().join(&name), |b| b[cut..last_end].fill(0));
        let g = group();
        let log = ShardLog::open(dir.path(), config(&clock), &g).expect("reopen after torn write");
        assert_eq!(log.end_position(), last.base_position, "cut at {cut}");
        assert_eq!(check_contents(&log), last.base_position);
        // The log continues where the complete batches end.
        let d = data(last.base_position);
        let p = log
            .append_wait(&[Record { partition_key: b"pk", explicit_hash_key: None, data: &d }])
            .expect("append");
        assert_eq!(p, last.base_position);
    }
}

#[test]
fn flipped_byte_in_the_active_segment_is_cut_or_reported_never_returned() {
    let original = tempfile::tempdir().expect("tempdir");
    let clock = fill(original.path(), 30);
    let segment = segment_files(original.path()).pop().expect("segment");
    let name = segment.file_name().expect("name").to_owned();
    let batches = batches_in(&segment);
    for &(start, header) in &batches {
        for delta in [0, 5, 13, 47, header.batch_bytes as usize - 1] {
            let dir = tempfile::tempdir().expect("tempdir");
            copy_dir(original.path(), dir.path());
            modify(&dir.path().join(&name), |b| b[start + delta] ^= 0x40);
            let g = group();
            let log = ShardLog::open(dir.path(), config(&clock), &g).expect("reopen");
            // Recovery validates by CRC from the last index entry on, so damage there cuts
            // the log; damage before it (in data that was synced and indexed) is reported
            // by the read that reaches it, with the file and the batch's offset.
            if log.end_position() == header.base_position {
                check_contents(&log);
                continue;
            }
            assert_eq!(log.end_position(), 30, "flip at {}", start + delta);
            let mut position = 0;
            loop {
                match log.read(position, 1 << 20) {
                    Ok(Some(read)) => {
                        for b in split_batches(&read.bytes) {
                            let (h, _) = b.expect("returned batches are valid");
                            assert!(
                                h.end_position() <= header.base_position,
                                "damaged batch was returned"
                            );
                        }
                        position = read.next_position;
                    }
                    Ok(None) => panic!("flip at {} went unnoticed", start + delta),
                    Err(Error::Corrupt { path, file_offset, .. }) => {
                        assert_eq!(path.file_name(), Some(name.as_os_str()));
                        assert_eq!(file_offset, start as u64, "flip at {}", start + delta);
                        break;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
    }
}

#[test]
fn zeroed_page_in_the_active_segment_cuts_the_log_before_it() {
    let original = tempfile::tempdir().expect("tempdir");
    let clock = fill(original.path(), 60);
    let segment = segment_files(original.path()).pop().expect("segment");
    let name = segment.file_name().expect("name").to_owned();
    let batches = batches_in(&segment);
    let page = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(original.path(), dir.path());
    modify(&dir.path().join(&name), |b| b[page..2 * page].fill(0));
    let first_damaged = batches
        .iter()
        .find(|(s, h)| s + h.batch_bytes as usize > page)
        .expect("a batch spans the page");
    let g = group();
    let log = ShardLog::open(dir.path(), config(&clock), &g).expect("reopen");
    assert_eq!(log.end_position(), first_damaged.1.base_position);
    check_contents(&log);
}

#[test]
fn stale_batches_after_a_cut_never_reappear() {
    let original = tempfile::tempdir().expect("tempdir");
    let clock = fill(original.path(), 20);
    let segment = segment_files(original.path()).pop().expect("segment");
    let name = segment.file_name().expect("name").to_owned();
    let batches = batches_in(&segment);
    let (start, damaged) = batches[10];
    modify(&original.path().join(&name), |b| b[start + 20] ^= 1);
    // Without indexes recovery validates the whole active segment, so it cuts at batch 10
    // and leaves intact batches 11.. of the old run behind the cut on disk.
    for entry in std::fs::read_dir(original.path()).expect("dir") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "idx" || e == "tix") {
            std::fs::remove_file(p).expect("remove index");
        }
    }
    {
        let g = group();
        let log = ShardLog::open(original.path(), config(&clock), &g).expect("reopen");
        assert_eq!(log.end_position(), damaged.base_position);
        // A shorter record where the damaged one was.
        log.append_wait(&[Record { partition_key: b"", explicit_hash_key: None, data: b"" }])
            .expect("append");
    }
    let g = group();
    let log = ShardLog::open(original.path(), config(&clock), &g).expect("reopen again");
    assert_eq!(log.end_position(), damaged.base_position + 1, "old batches came back");
}

#[test]
fn corruption_in_a_sealed_segment_is_reported_with_file_and_offset() {
    let original = tempfile::tempdir().expect("tempdir");
    let clock = fill(original.path(), 1000);
    let segments = segment_files(original.path());
    assert!(segments.len() >= 2, "need a sealed segment");
    let sealed = &segments[0];
    let batches = batches_in(sealed);
    let (start, header) = batches[batches.len() / 2];
    modify(sealed, |b| b[start + 60] ^= 0x10);
    let g = group();
    let log = ShardLog::open(original.path(), config(&clock), &g)
        .expect("open does not scan sealed data");
    match log.read(header.base_position, 1 << 20) {
        Err(Error::Corrupt { path, file_offset, .. }) => {
            assert_eq!(path, *sealed);
            assert_eq!(file_offset, start as u64);
        }
        other => panic!("expected a corruption report, got {other:?}"),
    }
    // Records before the damaged batch are still readable.
    assert!(log.read(0, 64).expect("read").is_some());
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt_from_the_log() {
    let original = tempfile::tempdir().expect("tempdir");
    let clock = fill(original.path(), 400);
    let reference = {
        let g = group();
        let log = ShardLog::open(original.path(), config(&clock), &g).expect("open");
        let probes: Vec<_> = (0..20).map(|i| 1_000_000 + i * 61).collect();
        let at: Vec<_> =
            probes.iter().map(|t| log.position_at_timestamp(*t).expect("lookup")).collect();
        (check_contents(&log), probes, at)
    };
    type Damage = (&'static str, fn(&Path));
    let damage: [Damage; 4] = [
        ("deleted", |p| std::fs::remove_file(p).expect("remove")),
        ("garbage", |p| {
            modify(p, |b| b.iter_mut().enumerate().for_each(|(i, x)| *x = (i * 7) as u8))
        }),
        ("truncated", |p| modify(p, |b| b.truncate(20))),
        ("zeroed", |p| modify(p, |b| b[16..].fill(0))),
    ];
    for (what, hurt) in damage {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(original.path(), dir.path());
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            let p = entry.expect("entry").path();
            if p.extension().is_some_and(|e| e == "idx" || e == "tix") {
                hurt(&p);
            }
        }
        let g = group();
        let log = ShardLog::open(dir.path(), config(&clock), &g)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(check_contents(&log), reference.0, "{what}");
        for (t, expected) in reference.1.iter().zip(&reference.2) {
            assert_eq!(log.position_at_timestamp(*t).expect("lookup"), *expected, "{what} at {t}");
        }
    }
}

#[test]
fn arbitrary_bytes_as_a_segment_never_panic() {
    let clock = ManualClock::new(1);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..200 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = vec![0u8; 64 + (round * 37) % 3000];
        for b in bytes.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        if round % 2 == 0 {
            bytes[..8].copy_from_slice(b"RIFFLSEG");
        }
        std::fs::write(dir.path().join(format!("{:020}.log", 0)), &bytes).expect("write");
        let g = group();
        match ShardLog::open(dir.path(), config(&clock), &g) {
            Ok(log) => {
                check_contents(&log);
            }
            Err(e) => assert!(matches!(e, Error::Corrupt { .. }), "round {round}: {e}"),
        }
    }
}
