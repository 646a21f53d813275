//! Pins the shard log's behaviour end to end on real files, under both I/O backends:
//! append and read back, group commit across threads, segment rolls, reopen, lookups by
//! time, seal, and the three durability modes.

use std::path::Path;
use std::sync::Arc;

use riffle_engine::batch::{split_batches, RecordIter};
use riffle_engine::{
    CommitConfig, CommitGroup, Durability, Error, IoBackend, LogConfig, ManualClock, Record,
    ShardLog,
};

/// Both backends, where the kernel allows io_uring (it does on the project's machines; a
/// machine that refuses it still runs the std half and says so).
fn backends() -> Vec<IoBackend> {
    match CommitGroup::start(CommitConfig {
        io_backend: IoBackend::Uring,
        ..CommitConfig::default()
    }) {
        Ok(_) => vec![IoBackend::Std, IoBackend::Uring],
        Err(e) => {
            eprintln!("io_uring unavailable here, testing the std backend only: {e}");
            vec![IoBackend::Std]
        }
    }
}

fn group(backend: IoBackend, durability: Durability) -> CommitGroup {
    CommitGroup::start(CommitConfig { durability, io_backend: backend, ..CommitConfig::default() })
        .expect("commit group")
}

fn small_config(clock: &ManualClock) -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        batch_bytes_target: 4096,
        segment_age_ms: 3_600_000,
        clock: Arc::new(clock.clone()),
        prepare_segments: true,
    }
}

fn rec(data: &[u8]) -> Record<'_> {
    Record { partition_key: b"key", explicit_hash_key: None, data }
}

/// Reads every durable record from `from` on: (position, timestamp, data).
fn read_all(log: &ShardLog, from: u64) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut position = from;
    while let Some(read) = log.read(position, 64 * 1024).expect("read") {
        for batch in split_batches(&read.bytes) {
            let (_, bytes) = batch.expect("valid batch");
            for r in RecordIter::new(bytes).expect("header") {
                let r = r.expect("record");
                if r.position >= position {
                    out.push((r.position, r.timestamp_ms, r.data.to_vec()));
                }
            }
        }
        assert!(read.next_position > position, "reads make progress");
        position = read.next_position;
    }
    out
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i:06}-").repeat(1 + (i % 7) as usize).into_bytes()
}

#[test]
fn appended_records_read_back_with_positions_and_contents() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000);
        let g = group(backend, Durability::Sync);
        let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
        for i in 0..600u64 {
            let data = payload(i);
            assert_eq!(log.append_wait(&[rec(&data)]).expect("append"), i);
        }
        let all = read_all(&log, 0);
        assert_eq!(all.len(), 600);
        for (i, (position, _, data)) in all.iter().enumerate() {
            assert_eq!(*position, i as u64);
            assert_eq!(data, &payload(i as u64));
        }
        assert!(log.segment_count() > 1, "64 KiB segments must have rolled");
        // A read from the middle starts at the batch holding that position.
        let tail = read_all(&log, 450);
        assert_eq!(tail.first().map(|r| r.0), Some(450));
    }
}

#[test]
fn concurrent_appenders_share_commits_and_lose_nothing() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000);
        let g = group(backend, Durability::Sync);
        let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..50u64 {
                        let data = format!("t{t}-{i}").into_bytes();
                        let position = log.append_wait(&[rec(&data)]).expect("append");
                        mine.push((position, data));
                    }
                    mine
                })
            })
            .collect();
        let acked: Vec<(u64, Vec<u8>)> =
            threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
        let all = read_all(&log, 0);
        assert_eq!(all.len(), 400);
        for (position, data) in acked {
            assert_eq!(all[position as usize].2, data, "position {position}");
        }
    }
}

#[test]
fn reopening_keeps_every_record_and_continues_positions() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000);
        {
            let g = group(backend, Durability::Sync);
            let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
            for i in 0..120u64 {
                log.append_wait(&[rec(&payload(i))]).expect("append");
            }
            // No close: as after a crash of a process whose writes are all synced.
        }
        let g = group(backend, Durability::Sync);
        let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("reopen");
        assert_eq!(log.end_position(), 120);
        assert_eq!(log.append_wait(&[rec(b"after")]).expect("append"), 120);
        let all = read_all(&log, 0);
        assert_eq!(all.len(), 121);
        assert_eq!(all[119].2, payload(119));
        assert_eq!(all[120].2, b"after");
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(IoBackend::Std, Durability::Sync);
    let _log = ShardLog::open(dir.path(), LogConfig::default(), &g).expect("open");
    match ShardLog::open(dir.path(), LogConfig::default(), &g) {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn batches_of_records_get_contiguous_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000);
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
    let datas: Vec<Vec<u8>> = (0..100).map(payload).collect();
    let records: Vec<Record<'_>> = datas.iter().map(|d| rec(d)).collect();
    assert_eq!(log.append_wait(&records).expect("append"), 0);
    assert_eq!(log.append_wait(&records[..3]).expect("append"), 100);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 103);
    assert_eq!(all[99].2, payload(99));
    assert_eq!(all[102].2, payload(2));
}

#[test]
fn timestamps_never_decrease_and_are_found_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(10_000);
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
    for i in 0..300u64 {
        // The clock moves forward by 10 ms per record, but jumps back once.
        if i == 150 {
            clock.set(5_000);
        } else {
            clock.advance(10);
        }
        log.append_wait(&[rec(&payload(i))]).expect("append");
    }
    let all = read_all(&log, 0);
    assert!(all.windows(2).all(|w| w[0].1 <= w[1].1), "arrival timestamps never decrease");
    for probe in [0, 10_005, 10_010, 10_500, 11_000, 11_495, 11_500, 12_000] {
        let expected = all.iter().find(|r| r.1 >= probe).map(|r| r.0);
        assert_eq!(log.position_at_timestamp(probe).expect("lookup"), expected, "at {probe}");
    }
    assert_eq!(log.position_at_timestamp(u64::MAX).expect("lookup"), None);
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000);
    let mut config = small_config(&clock);
    config.segment_age_ms = 1_000;
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), config, &g).expect("open");
    log.append_wait(&[rec(b"a")]).expect("append");
    assert_eq!(log.segment_count(), 1);
    clock.advance(999);
    log.append_wait(&[rec(b"b")]).expect("append");
    assert_eq!(log.segment_count(), 1);
    clock.advance(1);
    log.append_wait(&[rec(b"c")]).expect("append");
    assert_eq!(log.segment_count(), 2);
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn a_sealed_log_refuses_writes_and_stays_readable_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000);
    {
        let g = group(IoBackend::Std, Durability::Sync);
        let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
        for i in 0..50u64 {
            log.append_wait(&[rec(&payload(i))]).expect("append");
        }
        log.seal().expect("seal");
        assert!(matches!(log.append(&[rec(b"late")]), Err(Error::Sealed)));
    }
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("reopen");
    assert_eq!(log.end_position(), 50);
    assert_eq!(read_all(&log, 0).len(), 50);
}

#[test]
fn every_durability_mode_acknowledges_and_reads_back() {
    for durability in [Durability::Sync, Durability::Interval { interval_ms: 5 }, Durability::None]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000);
        let g = group(IoBackend::Auto, durability);
        let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
        let tickets: Vec<_> =
            (0..100u64).map(|i| log.append(&[rec(&payload(i))]).expect("append")).collect();
        for (i, t) in tickets.into_iter().enumerate() {
            assert_eq!(t.wait().expect("ack"), i as u64);
        }
        assert_eq!(read_all(&log, 0).len(), 100, "{durability:?}");
        log.close().expect("close");
        assert!(matches!(log.append(&[rec(b"x")]), Err(Error::Closed)));
    }
}

#[test]
fn oversized_and_empty_appends_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000);
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
    assert!(matches!(log.append(&[]), Err(Error::InvalidArgument(_))));
    let big = vec![0u8; 70 * 1024];
    match log.append(&[rec(&big)]) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("does not fit"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(log.end_position(), 0);
}

#[test]
fn async_tickets_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), LogConfig::default(), &g).expect("open");
    let fut = log.append(&[rec(b"async")]).expect("append").into_future();
    let position = block_on(fut).expect("ack");
    assert_eq!(position, 0);
}

/// A minimal executor: enough to prove the ticket's waker is woken.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[allow(dead_code)]
fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into())
        .collect();
    names.sort();
    names
}

#[test]
fn reads_are_zero_copy_views_of_the_segment_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), LogConfig::default(), &g).expect("open");
    for i in 0..10u64 {
        log.append_wait(&[rec(&payload(i))]).expect("append");
    }
    let a = log.read(3, 1 << 20).expect("read").expect("data");
    let b = log.read(3, 1 << 20).expect("read").expect("data");
    // Two reads of the same batch point at the same memory: the mapping, not a copy.
    assert_eq!(a.bytes.as_ptr(), b.bytes.as_ptr());
    let c = log.read(0, 1 << 20).expect("read").expect("data");
    let offset = a.bytes.as_ptr() as usize - c.bytes.as_ptr() as usize;
    assert_eq!(&c.bytes[offset..offset + a.bytes.len()], &a.bytes[..]);
}

#[test]
fn bytes_stay_valid_after_the_segment_file_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000);
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
    for i in 0..20u64 {
        log.append_wait(&[rec(&payload(i))]).expect("append");
    }
    let read = log.read(0, 1 << 20).expect("read").expect("data");
    let copy = read.bytes.to_vec();
    drop(log);
    drop(g);
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    drop(dir);
    assert_eq!(&read.bytes[..], &copy[..]);
    let records: usize =
        split_batches(&read.bytes).map(|b| b.expect("valid").0.record_count as usize).sum();
    assert_eq!(records, 20);
}

#[test]
fn readers_on_other_threads_see_only_whole_durable_batches_while_writers_append() {
    for backend in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000);
        let g = group(backend, Durability::Sync);
        let log = ShardLog::open(dir.path(), small_config(&clock), &g).expect("open");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut position = 0;
                let mut seen = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire)
                    || position < log.end_position()
                {
                    match log.read(position, 8192).expect("read") {
                        Some(read) => {
                            for b in split_batches(&read.bytes) {
                                let (_, bytes) = b.expect("only whole, valid batches are visible");
                                for r in RecordIter::new(bytes).expect("header") {
                                    let r = r.expect("record");
                                    if r.position >= position {
                                        assert_eq!(r.data, &payload(r.position)[..]);
                                        seen += 1;
                                    }
                                }
                            }
                            position = read.next_position;
                        }
                        None => std::thread::yield_now(),
                    }
                }
                seen
            })
        };
        // One writer, so that position i holds payload(i).
        for i in 0..1_500u64 {
            let d = payload(i);
            let t = log.append(&[rec(&d)]).expect("append");
            if i % 50 == 49 {
                t.wait().expect("ack");
            }
        }
        log.flush().expect("flush");
        done.store(true, std::sync::atomic::Ordering::Release);
        assert_eq!(reader.join().expect("reader"), 1_500);
    }
}

#[test]
fn the_next_segment_is_zero_filled_in_the_background_and_used_at_the_roll() {
    use std::os::unix::fs::MetadataExt;
    for prepare_segments in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000);
        let config = LogConfig { prepare_segments, ..small_config(&clock) };
        let g = group(IoBackend::Std, Durability::Sync);
        let log = ShardLog::open(dir.path(), config, &g).expect("open");
        let record = vec![7u8; 1000];
        let mut i = 0;
        // Fill just over half of the first 64 KiB segment.
        while i < 40 {
            log.append_wait(&[rec(&record)]).expect("append");
            i += 1;
        }
        let prep = dir.path().join("next.log.prep");
        if prepare_segments {
            // The preparer runs in the background: wait (bounded) for its file.
            let mut waited = 0;
            while !(prep.exists()
                && std::fs::metadata(&prep).expect("meta").blocks() * 512 >= 64 * 1024)
            {
                assert!(waited < 500, "no prepared segment after 5 s");
                std::thread::sleep(std::time::Duration::from_millis(10));
                waited += 1;
            }
            log.flush().expect("flush");
        }
        while log.segment_count() < 2 {
            log.append_wait(&[rec(&record)]).expect("append");
            i += 1;
        }
        let second = list(dir.path())
            .into_iter()
            .filter(|n| n.ends_with(".log"))
            .nth(1)
            .expect("second segment");
        let blocks = std::fs::metadata(dir.path().join(&second)).expect("meta").blocks() * 512;
        if prepare_segments {
            assert!(
                blocks >= 64 * 1024,
                "the prepared, fully allocated file was used ({blocks} bytes allocated)"
            );
        } else {
            assert!(blocks < 64 * 1024, "a sparse segment ({blocks} bytes allocated)");
        }
        assert_eq!(read_all(&log, 0).len(), i);
    }
}

/// Under a journal, segment syncs are the background checkpoints', so zero-filling the next
/// segment would only write every byte twice: a journaled group does not prepare, even
/// with `prepare_segments` on, and its segments stay sparse.
#[test]
fn a_journaled_group_does_not_prepare_segments() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000);
    let g = CommitGroup::start(CommitConfig {
        durability: Durability::Sync,
        io_backend: IoBackend::Std,
        journal: Some(dir.path().join("journal-0.log")),
        journal_bytes: 256 * 1024,
    })
    .expect("commit group");
    assert!(g.journaled());
    let logs = dir.path().join("log");
    let log = ShardLog::open(&logs, small_config(&clock), &g).expect("open");
    let record = vec![7u8; 1000];
    let mut i = 0;
    while log.segment_count() < 3 {
        log.append_wait(&[rec(&record)]).expect("append");
        i += 1;
    }
    assert!(!logs.join("next.log.prep").exists(), "no segment was prepared");
    // The active segment, just rolled to, holds a record or two: a prepared file would be
    // fully allocated.
    let active = list(&logs).into_iter().rfind(|n| n.ends_with(".log")).expect("active");
    let blocks = std::fs::metadata(logs.join(&active)).expect("meta").blocks() * 512;
    assert!(blocks < 32 * 1024, "a sparse segment ({blocks} bytes allocated)");
    assert_eq!(read_all(&log, 0).len(), i);
}

#[test]
fn dropping_the_commit_group_closes_its_logs_instead_of_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), LogConfig::default(), &g).expect("open");
    log.append_wait(&[rec(b"before")]).expect("append");
    drop(g);
    assert!(matches!(log.append(&[rec(b"after")]), Err(Error::Closed)));
    assert!(matches!(log.append(&[rec(b"again")]), Err(Error::Closed)));
    assert_eq!(read_all(&log, 0).len(), 1);
}

#[test]
fn a_failed_roll_writes_and_acknowledges_nothing_of_its_cycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000);
    let config = LogConfig { prepare_segments: false, ..small_config(&clock) };
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), config.clone(), &g).expect("open");
    log.append_wait(&[rec(b"first")]).expect("append");
    // Make creating any next segment fail: its temporary file name is taken by a directory.
    let blockers: Vec<_> =
        (1..=200u64).map(|b| dir.path().join(format!("{b:020}.log.tmp"))).collect();
    for b in &blockers {
        std::fs::create_dir(b).expect("blocker");
    }
    let data = vec![5u8; 1000];
    let records: Vec<Record<'_>> = (0..100).map(|_| rec(&data)).collect();
    assert!(log.append_wait(&records).is_err(), "the cycle that needed a new segment fails");
    assert_eq!(log.end_position(), 1, "nothing of the failed cycle is visible");
    assert_eq!(read_all(&log, 0).len(), 1);
    assert!(log.poisoned().is_some());
    drop(log);
    drop(g);
    for b in &blockers {
        std::fs::remove_dir(b).expect("remove blocker");
    }
    let g = group(IoBackend::Std, Durability::Sync);
    let log = ShardLog::open(dir.path(), config, &g).expect("reopen");
    assert_eq!(log.end_position(), 1, "nothing of the failed cycle was written");
}

#[test]
fn many_logs_in_one_group_commit_together_on_both_backends() {
    // With several dirty logs, a cycle hands several ops to the backend at once: this is
    // where the io_uring backend submits writes and syncs concurrently.
    for backend in backends() {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        let clock = ManualClock::new(1_000);
        let g = group(backend, Durability::Sync);
        let logs: Vec<ShardLog> = dirs
            .iter()
            .map(|d| ShardLog::open(d.path(), small_config(&clock), &g).expect("open"))
            .collect();
        std::thread::scope(|s| {
            for (t, log) in logs.iter().enumerate() {
                for producer in 0..3u64 {
                    s.spawn(move || {
                        for i in 0..80u64 {
                            let data = format!("log{t}-p{producer}-{i}").repeat(40).into_bytes();
                            log.append_wait(&[rec(&data)]).expect("append");
                        }
                    });
                }
            }
        });
        for log in &logs {
            assert_eq!(log.end_position(), 240);
            assert_eq!(read_all(log, 0).len(), 240);
            assert!(log.segment_count() > 1, "rolled while sharing cycles with other logs");
        }
    }
}
