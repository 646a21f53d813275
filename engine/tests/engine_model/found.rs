//! Minimal reproductions of the disagreements the model found: each a plain test of the
//! Engine API, kept beside the model that found it.

use super::*;

fn simple_config(clock: &ManualClock) -> EngineConfig {
    EngineConfig {
        clock: Arc::new(clock.clone()),
        limits: LimitsConfig::unlimited(),
        maintenance_interval_ms: 0,
        commit: CommitConfig {
            durability: Durability::Sync,
            io_backend: IoBackend::Std,
            ..CommitConfig::default()
        },
        log: LogConfig { segment_bytes: 2 * 1024 * 1024, ..LogConfig::default() },
        ..EngineConfig::default()
    }
}

/// Spec 6 (and the engine's own module docs): a record is readable iff
/// `now - arrival < retention`. At exactly `arrival + retention` it has expired.
#[test]
fn a_record_exactly_as_old_as_the_retention_period_is_not_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = Engine::open(dir.path(), simple_config(&clock)).expect("open");
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    engine.put_record("s", &PutRecordInput::new("k", b"old")).expect("put");
    clock.advance(24 * HOUR - 1);
    let it = engine
        .get_shard_iterator("s", &sid(0), IteratorType::TrimHorizon, None, None)
        .expect("iterator");
    assert_eq!(engine.get_records(&it, None).expect("get").records.len(), 1, "1 ms before");
    clock.advance(1);
    let it = engine
        .get_shard_iterator("s", &sid(0), IteratorType::TrimHorizon, None, None)
        .expect("iterator");
    let page = engine.get_records(&it, None).expect("get");
    assert!(
        page.records.is_empty(),
        "a record aged exactly 24 h under a 24 h retention period was returned: {:?}",
        page.records
    );
    // Raising the retention period must not bring it back either.
    engine.increase_stream_retention_period("s", 48).expect("increase");
    let it = engine
        .get_shard_iterator("s", &sid(0), IteratorType::TrimHorizon, None, None)
        .expect("iterator");
    let page = engine.get_records(&it, None).expect("get");
    assert!(page.records.is_empty(), "resurrected by the increase: {:?}", page.records);
}

/// A closed shard whose records expired before it was closed keeps an empty, sealed
/// segment. After a reopen its log takes appends again, so maintenance "rolls" that segment
/// into a new one with the same base position (the same file names) and then deletes the
/// old one's files, which are the new one's. The next open finds no segment and refuses the
/// whole data directory.
#[test]
fn maintenance_after_a_reopen_keeps_an_expired_closed_shard_openable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = Engine::open(dir.path(), simple_config(&clock)).expect("open");
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    for i in 0..3u8 {
        engine.put_record("s", &PutRecordInput::new("k", &[i])).expect("put");
    }
    clock.advance(25 * HOUR);
    // The only segment expired: it is rolled to an empty segment starting at position 3.
    engine.run_maintenance().expect("maintenance 1");
    // Closing the shard seals that empty segment.
    engine.split_shard("s", &sid(0), &(1u128 << 127).to_string()).expect("split");
    drop(engine);
    let engine = Engine::open(dir.path(), simple_config(&clock)).expect("reopen 1");
    engine.run_maintenance().expect("maintenance 2");
    let shard_dir = dir.path().join("streams").join("s.0").join(sid(0));
    let logs: Vec<String> = std::fs::read_dir(&shard_dir)
        .expect("shard directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    drop(engine);
    let reopened = Engine::open(dir.path(), simple_config(&clock));
    assert!(
        reopened.is_ok(),
        "the engine no longer opens after maintenance (segment files left: {logs:?}): {:?}",
        reopened.err()
    );
}
