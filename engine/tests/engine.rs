//! The Engine API end to end: streams, routing, put, iterators, get, resharding with
//! lineage, retention, limits, consumers, tags, reopen, and the spec's errors.

use std::sync::Arc;

use riffle_engine::catalog::CommitStep;
use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, Error, IoBackend, IteratorType, LimitsConfig,
    ListShardsInput, LogConfig, ManualClock, PutRecordInput, SequenceNumber, ShardFilter,
    StreamMode, StreamStatus,
};

const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn config(clock: &ManualClock) -> EngineConfig {
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

fn open(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    Engine::open(dir, config(clock)).expect("open engine")
}

fn put(engine: &Engine, stream: &str, key: &str, data: &[u8]) -> (String, SequenceNumber) {
    let out = engine.put_record(stream, &PutRecordInput::new(key, data)).expect("put_record");
    (out.shard_id.to_string(), out.sequence_number)
}

/// Every record of a shard from TRIM_HORIZON, following next iterators to the end (closed
/// shard) or until an empty page (open shard).
fn read_all(engine: &Engine, stream: &str, shard: &str) -> (Vec<(String, Vec<u8>)>, bool) {
    let mut it = engine
        .get_shard_iterator(stream, shard, IteratorType::TrimHorizon, None, None)
        .expect("iterator");
    let mut out = Vec::new();
    loop {
        let page = engine.get_records(&it, Some(7)).expect("get_records");
        let empty = page.records.is_empty();
        for r in page.records {
            out.push((r.partition_key_str().to_string(), r.data.to_vec()));
        }
        match page.next_shard_iterator {
            None => return (out, true),
            Some(next) if empty => {
                let _ = next;
                return (out, false);
            }
            Some(next) => it = next,
        }
    }
}

fn kind(e: &Error) -> &'static str {
    e.kinesis_name()
}

#[test]
fn create_put_get_round_trip_with_md5_routing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("orders", Some(3), None, &[]).expect("create");
    let d = engine.describe_stream("orders", None, None).expect("describe");
    assert_eq!(d.stream_status, StreamStatus::Active, "transition_ms 0: active at the next call");
    assert_eq!(d.shards.len(), 3);
    assert_eq!(d.shards[1].hash_key_range.start, 113427455640312821154458202477256070485);
    assert_eq!(d.stream_arn, "arn:aws:kinesis:us-east-1:000000000000:stream/orders");
    // Spec §1.5 reference keys.
    for (key, shard) in [("a", 0), ("b", 1), ("c", 0), ("d", 1), ("e", 2), ("f", 1)] {
        let (id, _) = put(&engine, "orders", key, key.as_bytes());
        assert_eq!(id, format!("shardId-{shard:012}"), "key {key}");
    }
    let (records, closed) = read_all(&engine, "orders", "shardId-000000000001");
    assert!(!closed);
    let keys: Vec<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["b", "d", "f"]);
    // By ARN too.
    let arn = engine.stream_arn("orders");
    assert_eq!(engine.describe_stream_summary(&arn).expect("summary").open_shard_count, 3);
}

#[test]
fn sequence_numbers_increase_and_iterators_position_correctly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    let mut seqs = Vec::new();
    for i in 0..10u8 {
        clock.advance(1000);
        seqs.push(put(&engine, "s", "k", &[i]).1);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    let shard = "shardId-000000000000";
    let first_data = |it: &str| {
        let page = engine.get_records(it, Some(1)).expect("get");
        page.records.first().map(|r| r.data[0])
    };
    let at = engine
        .get_shard_iterator(
            "s",
            shard,
            IteratorType::AtSequenceNumber,
            Some(&seqs[4].to_string()),
            None,
        )
        .expect("at");
    assert_eq!(first_data(&at), Some(4));
    let after = engine
        .get_shard_iterator(
            "s",
            shard,
            IteratorType::AfterSequenceNumber,
            Some(&seqs[4].to_string()),
            None,
        )
        .expect("after");
    assert_eq!(first_data(&after), Some(5));
    let ts = engine
        .get_shard_iterator("s", shard, IteratorType::AtTimestamp, None, Some(T0 + 3000))
        .expect("at timestamp");
    assert_eq!(first_data(&ts), Some(2));
    let latest =
        engine.get_shard_iterator("s", shard, IteratorType::Latest, None, None).expect("latest");
    assert_eq!(first_data(&latest), None);
    put(&engine, "s", "k", &[10]);
    assert_eq!(first_data(&latest), Some(10), "LATEST returns records written after issue");
    // The shard's starting sequence number is a valid AFTER anchor: reads from the first record.
    let start =
        engine.describe_stream("s", None, None).expect("d").shards[0].starting_sequence_number;
    let from_start = engine
        .get_shard_iterator(
            "s",
            shard,
            IteratorType::AfterSequenceNumber,
            Some(&start.to_string()),
            None,
        )
        .expect("after start");
    assert_eq!(first_data(&from_start), Some(0));
    // An iterator is a position, not a cursor: reusable.
    assert_eq!(first_data(&at), Some(4));
    // Lag: reading the first record of eleven is behind the tip.
    let page = engine.get_records(&from_start, Some(1)).expect("get");
    assert!(page.millis_behind_latest > 0);
    let page = engine.get_records(&latest, None).expect("get");
    assert_eq!(page.millis_behind_latest, 0);
}

#[test]
fn iterators_expire_after_five_minutes_and_reject_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    let it = engine
        .get_shard_iterator("s", "shardId-000000000000", IteratorType::TrimHorizon, None, None)
        .expect("iterator");
    clock.advance(300_000);
    engine.get_records(&it, None).expect("still valid at exactly 5 minutes");
    clock.advance(1);
    let e = engine.get_records(&it, None).expect_err("expired");
    assert_eq!(kind(&e), "ExpiredIteratorException");
    assert!(
        e.to_string().starts_with("Iterator expired. The iterator was created at time Tue Nov 14"),
        "{e}"
    );
    let mut bad = it.clone();
    bad.replace_range(10..11, if &it[10..11] == "A" { "B" } else { "A" });
    let e = engine.get_records(&bad, None).expect_err("tampered");
    assert_eq!(
        (kind(&e), e.to_string().as_str()),
        ("InvalidArgumentException", "Invalid ShardIterator.")
    );
    let e = engine.get_records("garbage", None).expect_err("garbage");
    assert_eq!(e.to_string(), "Invalid ShardIterator.");
    let e = engine.get_records(&it, Some(0)).expect_err("limit");
    assert_eq!(kind(&e), "ValidationException");
}

#[test]
fn get_shard_iterator_checks_follow_the_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(2), None, &[]).expect("create");
    let (_, seq0) = put(&engine, "s", "a", b"x"); // shard 0
    let msg = |r: Result<String, Error>| {
        let e = r.expect_err("refused");
        format!("{}: {e}", kind(&e))
    };
    let th = IteratorType::TrimHorizon;
    assert_eq!(
        msg(engine.get_shard_iterator("s", "ABKLFD8", th, None, None)),
        "ResourceNotFoundException: Could not find shard ABKLFD8 in stream s under account 000000000000."
    );
    assert_eq!(
        msg(engine.get_shard_iterator("nope", "shardId-1", th, None, None)),
        "ResourceNotFoundException: Shard shardId-000000000001 in stream nope under account 000000000000 does not exist"
    );
    assert_eq!(
        msg(engine.get_shard_iterator("s", "7", th, None, None)),
        "ResourceNotFoundException: Shard shardId-000000000007 in stream s under account 000000000000 does not exist"
    );
    engine.get_shard_iterator("s", "shard-1", th, None, None).expect("lenient shard id");
    assert!(msg(engine.get_shard_iterator("s", "0", th, Some("1"), None))
        .ends_with("Request specified TRIM_HORIZON and also a StartingSequenceNumber."));
    assert!(msg(engine.get_shard_iterator("s", "0", IteratorType::AtSequenceNumber, None, None))
        .ends_with("Request specified AT_SEQUENCE_NUMBER and no StartingSequenceNumber."));
    assert!(msg(engine.get_shard_iterator("s", "0", IteratorType::AtSequenceNumber, Some("12345"), None))
        .contains("StartingSequenceNumber 12345 used in GetShardIterator on shard shardId-000000000000 in stream s under account 000000000000 is invalid."));
    assert_eq!(
        msg(engine.get_shard_iterator("s", "1", IteratorType::AtSequenceNumber, Some(&seq0.to_string()), None)),
        "InvalidArgumentException: Invalid StartingSequenceNumber. It encodes shardId-000000000000, while it was used in a call to a shard with shardId-000000000001"
    );
    assert!(msg(engine.get_shard_iterator(
        "s",
        "0",
        IteratorType::AtSequenceNumber,
        Some("01"),
        None
    ))
    .starts_with("ValidationException"));
    assert_eq!(
        msg(engine.get_shard_iterator("s", "0", IteratorType::AtTimestamp, None, None)),
        "InvalidArgumentException: Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter."
    );
    assert!(msg(engine.get_shard_iterator(
        "s",
        "0",
        IteratorType::AtTimestamp,
        None,
        Some(T0 + 1)
    ))
    .contains("cannot be greater than the currentTimestampInMillis"));
    // A number from an earlier incarnation of the stream.
    engine.delete_stream("s", false).expect("delete");
    engine.create_stream("s", Some(2), None, &[]).expect("re-create");
    assert!(msg(engine.get_shard_iterator(
        "s",
        "0",
        IteratorType::AtSequenceNumber,
        Some(&seq0.to_string()),
        None
    ))
    .ends_with("is invalid because it did not come from this stream."));
    assert!("BOGUS".parse::<IteratorType>().is_err());
}

#[test]
fn put_validation_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    let e = engine.put_record("missing", &PutRecordInput::new("k", b"")).expect_err("no stream");
    assert_eq!(e.to_string(), "Stream missing under account 000000000000 not found.");
    engine.create_stream("s", Some(2), None, &[]).expect("create");
    put(&engine, "s", "k", b""); // empty data is valid
    let big = vec![0u8; 1024 * 1024];
    let e = engine.put_record("s", &PutRecordInput::new("k", &big)).expect_err("key + 1 MiB");
    assert_eq!(kind(&e), "ValidationException");
    engine
        .put_record("s", &PutRecordInput::new("k", &big[1..]))
        .expect("exactly 1 MiB with the key");
    let mut record = PutRecordInput::new("k", b"x");
    record.explicit_hash_key = Some("340282366920938463463374607431768211456");
    let e = engine.put_record("s", &record).expect_err("2^128");
    assert_eq!(
        e.to_string(),
        "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was 340282366920938463463374607431768211456"
    );
    record.explicit_hash_key = Some("340282366920938463463374607431768211455");
    assert_eq!(engine.put_record("s", &record).expect("max key").shard_id, "shardId-000000000001");
    // SequenceNumberForOrdering.
    let (_, last) = put(&engine, "s", "a", b"1");
    let mut ordered = PutRecordInput::new("a", b"2");
    let last_text = last.to_string();
    ordered.sequence_number_for_ordering = Some(&last_text);
    let next = engine.put_record("s", &ordered).expect("ordered");
    assert!(next.sequence_number > last);
    ordered.sequence_number_for_ordering = Some("99");
    let e = engine.put_record("s", &ordered).expect_err("foreign number");
    assert_eq!(
        e.to_string(),
        "ExclusiveMinimumSequenceNumber 99 used in PutRecord on stream s under account 000000000000 is invalid."
    );
    // PutRecords: counts and total size.
    let e = engine.put_records("s", &[]).expect_err("empty");
    assert_eq!(kind(&e), "ValidationException");
    let many = vec![PutRecordInput::new("k", b"x"); 501];
    assert_eq!(kind(&engine.put_records("s", &many).expect_err("501")), "ValidationException");
    let chunk = vec![0u8; 1024 * 1024 - 1];
    let five = vec![PutRecordInput::new("k", &chunk); 5];
    engine.put_records("s", &five).expect("exactly 5 MiB");
    let mut six = five.clone();
    six.push(PutRecordInput::new("k", b"x"));
    assert_eq!(
        engine.put_records("s", &six).expect_err("over").to_string(),
        "Records size exceeds 5 MB limit"
    );
    // Invalid names.
    assert_eq!(
        kind(&engine.create_stream("bad name", Some(1), None, &[]).expect_err("name")),
        "ValidationException"
    );
    assert_eq!(
        engine.create_stream("s", Some(1), None, &[]).expect_err("dup").to_string(),
        "Stream s under account 000000000000 already exists."
    );
    assert_eq!(
        kind(&engine.create_stream("z", None, None, &[]).expect_err("no count")),
        "InvalidArgumentException"
    );
    assert_eq!(
        kind(&engine.create_stream("z", Some(0), None, &[]).expect_err("zero")),
        "ValidationException"
    );
}

#[test]
fn put_records_keeps_request_order_per_shard_and_reports_each_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let mut cfg = config(&clock);
    cfg.limits = LimitsConfig::default();
    let engine = Engine::open(dir.path(), cfg).expect("open");
    engine.create_stream("s", Some(3), None, &[]).expect("create");
    let keys = ["a", "b", "c", "d", "e", "f", "a", "b"];
    let data: Vec<Vec<u8>> = (0..keys.len()).map(|i| vec![i as u8]).collect();
    let input: Vec<PutRecordInput<'_>> =
        keys.iter().zip(&data).map(|(k, d)| PutRecordInput::new(k, d)).collect();
    let out = engine.put_records("s", &input).expect("put_records");
    assert_eq!(out.failed_record_count, 0);
    assert_eq!(out.records.len(), keys.len());
    let a0 = out.records[0].as_ref().expect("ok").sequence_number;
    let a1 = out.records[6].as_ref().expect("ok").sequence_number;
    assert!(a0 < a1, "same shard, request order");
    // Throttling: 1,000 records per second per shard; a 500-record call twice, then more.
    let one = vec![PutRecordInput::new("a", b"x"); 500];
    assert_eq!(engine.put_records("s", &one).expect("500").failed_record_count, 0);
    let out = engine.put_records("s", &one).expect("500 more");
    assert!(out.failed_record_count > 0, "the shard's 1,000 records/s are used up");
    let failed = out.records.iter().find_map(|r| r.as_ref().err()).expect("a failure");
    assert_eq!(failed.error_code, "ProvisionedThroughputExceededException");
    assert_eq!(
        failed.error_message,
        "Rate exceeded for shard shardId-000000000000 in stream s under account 000000000000."
    );
    let e = engine.put_record("s", &PutRecordInput::new("a", b"x")).expect_err("throttled");
    assert_eq!(kind(&e), "ProvisionedThroughputExceededException");
    // Other shards are not affected; time refills.
    engine.put_record("s", &PutRecordInput::new("e", b"x")).expect("shard 2 is free");
    clock.advance(1000);
    engine.put_record("s", &PutRecordInput::new("a", b"x")).expect("refilled");
    // Reads: 5 calls per second per shard.
    let it = engine
        .get_shard_iterator("s", "shardId-000000000002", IteratorType::Latest, None, None)
        .expect("iterator");
    for _ in 0..5 {
        engine.get_records(&it, None).expect("within 5/s");
    }
    assert_eq!(
        kind(&engine.get_records(&it, None).expect_err("6th")),
        "ProvisionedThroughputExceededException"
    );
}

#[test]
fn split_and_merge_close_parents_and_readers_follow_lineage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    let mut expected: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut write = |round: u8| {
        for k in &keys {
            put(&engine, "s", k, &[round]);
            expected.entry(k.clone()).or_default().push(round);
        }
    };
    write(0);
    let half = (u128::MAX / 2 + 1).to_string();
    engine.split_shard("s", "shardId-000000000000", &half).expect("split");
    write(1);
    engine.merge_shards("s", "shardId-000000000001", "shardId-000000000002").expect("merge");
    write(2);
    let d = engine.describe_stream("s", None, None).expect("describe");
    let ids: Vec<&str> = d.shards.iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003"
        ]
    );
    assert_eq!(d.shards[1].parent_shard_id.as_deref(), Some("shardId-000000000000"));
    assert_eq!(d.shards[3].parent_shard_id.as_deref(), Some("shardId-000000000001"));
    assert_eq!(d.shards[3].adjacent_parent_shard_id.as_deref(), Some("shardId-000000000002"));
    for (parent, child) in [(0, 1), (0, 2), (1, 3), (2, 3)] {
        let end = d.shards[parent].ending_sequence_number.expect("closed");
        assert!(end < d.shards[child].starting_sequence_number);
        assert!(end >= d.shards[parent].starting_sequence_number);
    }
    assert!(d.shards[3].ending_sequence_number.is_none());
    // Follow lineage: parents before children; each key's records in order.
    let mut got: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for shard in [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000002",
        "shardId-000000000003",
    ] {
        let (records, closed) = read_all(&engine, "s", shard);
        assert_eq!(closed, shard != "shardId-000000000003");
        for (k, data) in records {
            got.entry(k).or_default().extend(data);
        }
    }
    assert_eq!(got, expected);
    // The end of a closed shard names its children.
    let it = engine
        .get_shard_iterator("s", "shardId-000000000000", IteratorType::Latest, None, None)
        .expect("latest of closed");
    let page = engine.get_records(&it, None).expect("end");
    assert!(page.records.is_empty() && page.next_shard_iterator.is_none());
    let children = page.child_shards.expect("children");
    assert_eq!(children.len(), 2);
    assert_eq!(children[0].parent_shards, ["shardId-000000000000"]);
    // Errors.
    let e = engine.split_shard("s", "shardId-000000000000", &half).expect_err("closed");
    assert_eq!(kind(&e), "InvalidArgumentException");
    let e = engine.split_shard("s", "3", "1").expect_err("key too low");
    assert!(
        e.to_string()
            .starts_with("NewStartingHashKey 1 used in SplitShard() on shard shardId-000000000003"),
        "{e}"
    );
    let e = engine.merge_shards("s", "3", "0").expect_err("not adjacent");
    assert_eq!(kind(&e), "InvalidArgumentException");
    let e = engine.split_shard("s", "shardId-000000000009", &half).expect_err("missing");
    assert_eq!(
        e.to_string(),
        "Could not find shard shardId-000000000009 in stream s under account 000000000000."
    );
}

#[test]
fn update_shard_count_scales_uniformly_with_lineage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(3), None, &[]).expect("create");
    for i in 0..30 {
        put(&engine, "s", &format!("k{i}"), b"x");
    }
    let out = engine.update_shard_count("s", 5, "UNIFORM_SCALING").expect("scale up");
    assert_eq!((out.current_shard_count, out.target_shard_count), (3, 5));
    let open = engine
        .list_shards(&ListShardsInput {
            stream: Some("s"),
            shard_filter: Some(ShardFilter::AtLatest),
            ..ListShardsInput::default()
        })
        .expect("list");
    let mut ranges: Vec<_> = open.shards.iter().map(|s| s.hash_key_range).collect();
    ranges.sort_by_key(|r| r.start);
    assert_eq!(ranges, riffle_engine::routing::uniform_ranges(5));
    assert_eq!(
        kind(&engine.update_shard_count("s", 11, "UNIFORM_SCALING").expect_err("> 2x")),
        "InvalidArgumentException"
    );
    assert_eq!(
        kind(&engine.update_shard_count("s", 2, "UNIFORM_SCALING").expect_err("< half")),
        "InvalidArgumentException"
    );
    assert_eq!(
        kind(&engine.update_shard_count("s", 4, "OTHER").expect_err("type")),
        "ValidationException"
    );
    engine.update_shard_count("s", 3, "UNIFORM_SCALING").expect("scale down");
    // Every record is still reachable by following lineage.
    let all = engine
        .list_shards(&ListShardsInput { stream: Some("s"), ..Default::default() })
        .expect("all");
    let total: usize = all.shards.iter().map(|s| read_all(&engine, "s", &s.shard_id).0.len()).sum();
    assert_eq!(total, 30);
    for _ in 0..8 {
        let _ = engine.update_shard_count("s", 4, "UNIFORM_SCALING");
        let _ = engine.update_shard_count("s", 3, "UNIFORM_SCALING");
    }
    let e = engine.update_shard_count("s", 4, "UNIFORM_SCALING").expect_err("11th in a day");
    assert_eq!(kind(&e), "LimitExceededException");
}

#[test]
fn retention_hides_expired_records_deletes_segments_and_expires_closed_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    let payload = vec![7u8; 200_000];
    for _ in 0..40 {
        put(&engine, "s", "k", &payload); // 8 MB: several 2 MiB segments
    }
    clock.advance(10 * HOUR);
    let (_, late) = put(&engine, "s", "k", b"late");
    let shard = "shardId-000000000000";
    assert_eq!(read_all(&engine, "s", shard).0.len(), 41);
    clock.advance(15 * HOUR); // the first 40 are 25 h old
    let (records, _) = read_all(&engine, "s", shard);
    assert_eq!(
        records,
        vec![("k".to_string(), b"late".to_vec())],
        "expired records are never returned"
    );
    let report = engine.run_maintenance().expect("maintenance");
    assert!(report.segments_deleted >= 2, "{report:?}");
    assert_eq!(read_all(&engine, "s", shard).0.len(), 1);
    // Raising the retention does not bring anything back.
    engine.increase_stream_retention_period("s", 48).expect("increase");
    assert_eq!(read_all(&engine, "s", shard).0.len(), 1);
    // Decreasing hides at once; the late record is 15 h old.
    engine.decrease_stream_retention_period("s", 24).expect("decrease");
    let e = engine.decrease_stream_retention_period("s", 23).expect_err("too short");
    assert_eq!(e.to_string(), "Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short.");
    let e = engine.increase_stream_retention_period("s", 8761).expect_err("too long");
    assert_eq!(kind(&e), "InvalidArgumentException");
    let e = engine
        .increase_stream_retention_period("s", 12 + 12)
        .and(engine.decrease_stream_retention_period("s", 48));
    assert!(e
        .expect_err("longer via decrease")
        .to_string()
        .contains("Use IncreaseRetentionPeriod API."));
    // A quiet shard: its only segment expires too, and the position continues.
    clock.advance(25 * HOUR);
    engine.run_maintenance().expect("maintenance");
    assert!(read_all(&engine, "s", shard).0.is_empty());
    let (_, next) = put(&engine, "s", "k", b"after");
    assert!(next > late, "positions continue after every segment expired");
    // Closed shards vanish once all their data expired.
    let mid = (u128::MAX / 2).to_string();
    engine.split_shard("s", shard, &mid).expect("split");
    assert_eq!(engine.describe_stream("s", None, None).expect("d").shards.len(), 3);
    assert!(dir.path().join("streams/s.0/shardId-000000000000").exists());
    clock.advance(25 * HOUR);
    let report = engine.run_maintenance().expect("maintenance");
    assert_eq!(report.shards_expired, 1);
    let d = engine.describe_stream("s", None, None).expect("d");
    assert_eq!(d.shards.len(), 2);
    let e = engine
        .get_shard_iterator("s", shard, IteratorType::TrimHorizon, None, None)
        .expect_err("expired shard");
    assert_eq!(kind(&e), "ResourceNotFoundException");
    assert!(!dir.path().join("streams/s.0/shardId-000000000000").exists(), "its files are gone");
}

#[test]
fn everything_survives_a_reopen_including_iterators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (seq, it) = {
        let engine = open(dir.path(), &clock);
        engine
            .create_stream("s", Some(2), None, &[("team".into(), "core".into())])
            .expect("create");
        let (_, seq) = put(&engine, "s", "a", b"one");
        engine.split_shard("s", "0", &(u128::MAX / 4).to_string()).expect("split");
        put(&engine, "s", "a", b"two");
        engine.register_stream_consumer("s", "billing").expect("consumer");
        let it = engine
            .get_shard_iterator("s", "0", IteratorType::TrimHorizon, None, None)
            .expect("iterator");
        (seq, it)
    };
    let engine = open(dir.path(), &clock);
    let page = engine.get_records(&it, None).expect("iterator from before the restart");
    assert_eq!(page.records[0].sequence_number, seq);
    assert_eq!(&page.records[0].data[..], b"one");
    let d = engine.describe_stream("s", None, None).expect("d");
    assert_eq!(d.shards.len(), 4);
    assert!(d.shards[0].ending_sequence_number.is_some());
    assert_eq!(
        engine.list_tags_for_stream("s", None, None).expect("tags").tags,
        [("team".to_string(), "core".to_string())]
    );
    let consumers = engine.list_stream_consumers("s", None, None).expect("consumers");
    assert_eq!(consumers.consumers[0].consumer_name, "billing");
    let (_, after) = put(&engine, "s", "a", b"three");
    assert!(after > seq);
    // The data directory is locked while open.
    assert!(matches!(Engine::open(dir.path(), config(&clock)), Err(Error::Locked { .. })));
}

#[test]
fn stream_lifecycle_with_transition_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let mut cfg = config(&clock);
    cfg.transition_ms = 500;
    let engine = Engine::open(dir.path(), cfg).expect("open");
    engine.create_stream("s", Some(2), None, &[]).expect("create");
    let d = engine.describe_stream("s", None, None).expect("d");
    assert_eq!((d.stream_status, d.shards.len()), (StreamStatus::Creating, 0));
    let e = engine.put_record("s", &PutRecordInput::new("k", b"x")).expect_err("creating");
    assert_eq!(kind(&e), "ResourceNotFoundException");
    let e = engine.split_shard("s", "0", "12345").expect_err("creating");
    assert_eq!(
        e.to_string(),
        "Stream s under account 000000000000 not ACTIVE, instead in state CREATING"
    );
    clock.advance(500);
    assert_eq!(
        engine.describe_stream("s", None, None).expect("d").stream_status,
        StreamStatus::Active
    );
    engine.split_shard("s", "0", &(u128::MAX / 4).to_string()).expect("split");
    assert_eq!(
        engine.describe_stream_summary("s").expect("d").stream_status,
        StreamStatus::Updating
    );
    put(&engine, "s", "k", b"writes continue while UPDATING");
    clock.advance(500);
    engine.delete_stream("s", false).expect("delete");
    assert_eq!(
        engine.describe_stream("s", None, None).expect("d").stream_status,
        StreamStatus::Deleting
    );
    clock.advance(500);
    let e = engine.describe_stream("s", None, None).expect_err("gone");
    assert_eq!(e.to_string(), "Stream s under account 000000000000 not found.");
    assert!(engine.list_streams(None, None, None).expect("list").stream_names.is_empty());
    assert!(
        std::fs::read_dir(dir.path().join("streams")).expect("dir").next().is_none(),
        "data removed"
    );
}

#[test]
fn listing_pages_and_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    for name in ["c", "a", "b"] {
        engine.create_stream(name, Some(5), Some(StreamMode::Provisioned), &[]).expect("create");
    }
    let page = engine.list_streams(Some(2), None, None).expect("list");
    assert_eq!(
        (page.stream_names.as_slice(), page.has_more_streams),
        (&["a".to_string(), "b".to_string()][..], true)
    );
    let rest = engine.list_streams(None, None, page.next_token.as_deref()).expect("rest");
    assert_eq!(rest.stream_names, ["c"]);
    assert!(!rest.has_more_streams && rest.next_token.is_none());
    let first = engine
        .list_shards(&ListShardsInput {
            stream: Some("a"),
            max_results: Some(2),
            ..Default::default()
        })
        .expect("page 1");
    assert_eq!(first.shards.len(), 2);
    let second = engine
        .list_shards(&ListShardsInput {
            next_token: first.next_token.as_deref(),
            ..Default::default()
        })
        .expect("page 2");
    assert_eq!(second.shards[0].shard_id, "shardId-000000000002");
    let e = engine.list_shards(&ListShardsInput::default()).expect_err("neither");
    assert_eq!(e.to_string(), "Either NextToken or StreamName should be provided.");
    let e = engine
        .list_shards(&ListShardsInput {
            stream: Some("a"),
            next_token: Some("x"),
            ..Default::default()
        })
        .expect_err("both");
    assert_eq!(e.to_string(), "NextToken and StreamName cannot be provided together.");
    let e = engine
        .list_shards(&ListShardsInput { next_token: Some("x"), ..Default::default() })
        .expect_err("bad token");
    assert_eq!(kind(&e), "InvalidArgumentException");
    clock.advance(300_001);
    let e = engine
        .list_shards(&ListShardsInput {
            next_token: first.next_token.as_deref(),
            ..Default::default()
        })
        .expect_err("expired");
    assert_eq!(kind(&e), "ExpiredNextTokenException");
    let after = engine
        .list_shards(&ListShardsInput {
            stream: Some("a"),
            exclusive_start_shard_id: Some("shardId-000000000003"),
            ..Default::default()
        })
        .expect("after");
    assert_eq!(after.shards.len(), 1);
    // Filters over time.
    clock.advance(HOUR);
    engine.split_shard("a", "0", &(u128::MAX / 10).to_string()).expect("split");
    let t_split = T0 + 300_001 + HOUR;
    clock.advance(HOUR);
    let count = |filter: ShardFilter| {
        engine
            .list_shards(&ListShardsInput {
                stream: Some("a"),
                shard_filter: Some(filter),
                ..Default::default()
            })
            .expect("filtered")
            .shards
            .len()
    };
    assert_eq!(count(ShardFilter::FromTrimHorizon), 7);
    assert_eq!(count(ShardFilter::AtLatest), 6);
    assert_eq!(count(ShardFilter::AtTrimHorizon), 5, "open at the trim horizon: the original five");
    assert_eq!(count(ShardFilter::AtTimestamp(t_split - 1)), 5);
    assert_eq!(count(ShardFilter::AtTimestamp(t_split + 1)), 6);
    assert_eq!(count(ShardFilter::FromTimestamp(t_split + 1)), 6);
    assert_eq!(count(ShardFilter::AfterShardId("shardId-000000000004".into())), 2);
    let limits = engine.describe_limits().expect("limits");
    assert_eq!(limits.open_shard_count, 16);
}

#[test]
fn consumers_and_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    let arn = engine.stream_arn("s");
    let c = engine.register_stream_consumer(&arn, "billing").expect("register");
    assert_eq!(c.consumer_arn, format!("{arn}/consumer/billing:{}", T0 / 1000));
    assert_eq!(
        kind(&engine.register_stream_consumer(&arn, "billing").expect_err("dup")),
        "ResourceInUseException"
    );
    let described = engine
        .describe_stream_consumer(riffle_engine::ConsumerRef::Arn(&c.consumer_arn))
        .expect("describe");
    assert_eq!(described.consumer_status, riffle_engine::ConsumerStatus::Active);
    for i in 0..19 {
        engine.register_stream_consumer(&arn, &format!("c{i:02}")).expect("register");
    }
    assert_eq!(
        kind(&engine.register_stream_consumer(&arn, "one-too-many").expect_err("21st")),
        "LimitExceededException"
    );
    let page = engine.list_stream_consumers(&arn, Some(15), None).expect("list");
    assert_eq!(page.consumers.len(), 15);
    let rest = engine.list_stream_consumers(&arn, None, page.next_token.as_deref()).expect("rest");
    assert_eq!(rest.consumers.len(), 5);
    assert_eq!(
        kind(&engine.delete_stream("s", false).expect_err("has consumers")),
        "ResourceInUseException"
    );
    engine
        .deregister_stream_consumer(riffle_engine::ConsumerRef::Name {
            stream: "s",
            consumer_name: "billing",
        })
        .expect("deregister");
    let e = engine
        .describe_stream_consumer(riffle_engine::ConsumerRef::Arn(&c.consumer_arn))
        .expect_err("gone");
    assert_eq!(kind(&e), "ResourceNotFoundException");
    // Tags.
    let tags: Vec<(String, String)> = (0..10).map(|i| (format!("k{i}"), "v".to_string())).collect();
    engine.add_tags_to_stream("s", &tags).expect("10 tags");
    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("x{i}"), String::new())).collect();
    assert_eq!(
        kind(&engine.add_tags_to_stream("s", &eleven).expect_err("11 per call")),
        "InvalidArgumentException"
    );
    assert_eq!(
        kind(&engine.add_tags_to_stream("s", &[("a%b".into(), "v".into())]).expect_err("%")),
        "InvalidArgumentException"
    );
    let listed = engine.list_tags_for_stream("s", Some("k5"), Some(2)).expect("list tags");
    assert_eq!(listed.tags.len(), 2);
    assert!(listed.has_more_tags);
    engine.remove_tags_from_stream("s", &["k0".into(), "missing".into()]).expect("remove");
    assert_eq!(engine.list_tags_for_stream("s", None, None).expect("tags").tags.len(), 9);
    engine.delete_stream("s", true).expect("enforce consumer deletion");
}

#[test]
fn on_demand_streams_refuse_manual_resharding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("od", None, Some(StreamMode::OnDemand), &[]).expect("create");
    assert_eq!(engine.describe_stream_summary("od").expect("d").open_shard_count, 4);
    let e = engine.split_shard("od", "0", &(u128::MAX / 16).to_string()).expect_err("on demand");
    assert_eq!(kind(&e), "ValidationException");
    engine.update_stream_mode("od", StreamMode::Provisioned).expect("switch");
    clock.advance(1);
    engine.split_shard("od", "0", &(u128::MAX / 16).to_string()).expect("provisioned now");
}

/// Crash in the middle of every catalog change: the commit fails at each of its steps, the
/// engine refuses further work, and reopening shows the old or the new state, with shard
/// logs that agree with it.
#[test]
fn a_crash_at_any_catalog_step_leaves_the_old_or_the_new_state() {
    type Change = fn(&Engine) -> Result<(), Error>;
    let changes: [(&str, Change); 7] = [
        ("create", |e| e.create_stream("new", Some(2), None, &[])),
        ("delete", |e| e.delete_stream("s", false)),
        ("split", |e| e.split_shard("s", "0", &(u128::MAX / 8).to_string())),
        ("merge", |e| e.merge_shards("s", "0", "1")),
        ("scale", |e| e.update_shard_count("s", 4, "UNIFORM_SCALING").map(|_| ())),
        ("retention", |e| e.increase_stream_retention_period("s", 48)),
        ("consumer", |e| e.register_stream_consumer("s", "c").map(|_| ())),
    ];
    let steps =
        [CommitStep::WriteTemp, CommitStep::SyncTemp, CommitStep::Rename, CommitStep::SyncDir];
    for (what, change) in changes {
        for step in steps {
            let dir = tempfile::tempdir().expect("tempdir");
            let clock = ManualClock::new(T0);
            let engine = open(dir.path(), &clock);
            engine.create_stream("s", Some(2), None, &[]).expect("create");
            let mut acked = Vec::new();
            for i in 0..20u8 {
                acked.push((format!("k{i}"), put(&engine, "s", &format!("k{i}"), &[i]).1));
            }
            engine.inject_catalog_failure(Some(step));
            let result = change(&engine);
            assert!(result.is_err(), "{what} at {step:?} must fail");
            let e = engine.describe_stream("s", None, None).expect_err("stopped");
            assert!(matches!(e, Error::Poisoned { .. }), "{what} at {step:?}: {e}");
            drop(engine);
            let engine = open(dir.path(), &clock);
            let new_state = step == CommitStep::SyncDir; // the rename happened
            let described = engine.describe_stream("s", None, None);
            match (what, new_state) {
                ("delete", true) => {
                    assert_eq!(kind(&described.expect_err("deleted")), "ResourceNotFoundException");
                    continue;
                }
                ("create", _) => {
                    assert_eq!(
                        engine.describe_stream("new", None, None).is_ok(),
                        new_state,
                        "{what} {step:?}"
                    );
                }
                ("split", _) | ("merge", _) | ("scale", _) => {
                    let d = described.expect("describe");
                    let closed =
                        d.shards.iter().filter(|s| s.ending_sequence_number.is_some()).count();
                    assert_eq!(closed > 0, new_state, "{what} {step:?}");
                }
                ("retention", _) => {
                    assert_eq!(
                        described.expect("d").retention_period_hours,
                        if new_state { 48 } else { 24 }
                    );
                }
                ("consumer", _) => {
                    let n = engine
                        .list_stream_consumers("s", None, None)
                        .expect("list")
                        .consumers
                        .len();
                    assert_eq!(n, usize::from(new_state));
                }
                _ => {}
            }
            // Every acknowledged record is there with its sequence number, reading by lineage.
            let shards = engine
                .list_shards(&ListShardsInput { stream: Some("s"), ..Default::default() })
                .expect("list");
            let mut found = Vec::new();
            for shard in &shards.shards {
                let mut it = engine
                    .get_shard_iterator("s", &shard.shard_id, IteratorType::TrimHorizon, None, None)
                    .expect("iterator");
                loop {
                    let page = engine.get_records(&it, None).expect("get");
                    let empty = page.records.is_empty();
                    found.extend(
                        page.records
                            .iter()
                            .map(|r| (r.partition_key_str().to_string(), r.sequence_number)),
                    );
                    match page.next_shard_iterator {
                        Some(next) if !empty => it = next,
                        _ => break,
                    }
                }
            }
            found.sort();
            let mut want = acked.clone();
            want.sort();
            assert_eq!(found, want, "{what} at {step:?}");
            // And the stream takes writes (routing agrees with the logs).
            put(&engine, "s", "after", b"x");
        }
    }
}

/// Per-key order across chains of splits and merges, with writers running during the
/// resharding: reading every shard to its end, parents before children (index order
/// respects lineage), yields each key's records in the order they were acknowledged.
#[test]
fn per_key_order_survives_chains_of_splits_and_merges_under_concurrent_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(2), None, &[]).expect("create");
    // Progress is counted, not timed: the resharder waits for a number of writes before
    // each step, and the writers keep going until it has finished.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            let total = Arc::clone(&total);
            std::thread::spawn(move || {
                let mut counters = vec![0u32; 16];
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = n % counters.len();
                    let key = format!("w{w}-key{k}");
                    engine
                        .put_record("s", &PutRecordInput::new(&key, &counters[k].to_le_bytes()))
                        .expect("put during resharding");
                    counters[k] += 1;
                    n += 1;
                    total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                counters
            })
        })
        .collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for step in 0..16u64 {
        while total.load(std::sync::atomic::Ordering::Relaxed) < (step + 1) * 30 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let open = engine
            .list_shards(&ListShardsInput {
                stream: Some("s"),
                shard_filter: Some(ShardFilter::AtLatest),
                ..Default::default()
            })
            .expect("open shards");
        let mut open = open.shards;
        open.sort_by_key(|s| s.hash_key_range.start);
        if open.len() > 1 && next() % 2 == 0 {
            let i = (next() as usize) % (open.len() - 1);
            engine.merge_shards("s", &open[i].shard_id, &open[i + 1].shard_id).expect("merge");
        } else {
            let s = &open[(next() as usize) % open.len()];
            let (lo, hi) = (s.hash_key_range.start, s.hash_key_range.end);
            if hi - lo < 4 {
                continue;
            }
            let at = lo
                + 2
                + (u128::from(next()) * ((hi - lo - 2) / u128::from(u64::MAX)).max(1))
                    % (hi - lo - 2);
            engine.split_shard("s", &s.shard_id, &at.to_string()).expect("split");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: Vec<Vec<u32>> = writers.into_iter().map(|w| w.join().expect("writer")).collect();
    let written_total: u32 = written.iter().flatten().sum();
    assert!(written_total >= 16 * 30, "writers ran during the resharding");
    let shards = engine
        .list_shards(&ListShardsInput { stream: Some("s"), ..Default::default() })
        .expect("list");
    assert!(shards.shards.len() > 10, "the chain resharded");
    let mut seen: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for shard in &shards.shards {
        let mut it = engine
            .get_shard_iterator("s", &shard.shard_id, IteratorType::TrimHorizon, None, None)
            .expect("iterator");
        loop {
            let page = engine.get_records(&it, None).expect("get");
            let empty = page.records.is_empty();
            for r in &page.records {
                let value = u32::from_le_bytes(r.data[..4].try_into().expect("4 bytes"));
                seen.entry(r.partition_key_str().to_string()).or_default().push(value);
            }
            match page.next_shard_iterator {
                Some(n) if !empty => it = n,
                _ => break,
            }
        }
    }
    for (w, counters) in written.iter().enumerate() {
        for (k, &count) in counters.iter().enumerate() {
            let got = seen.remove(&format!("w{w}-key{k}")).unwrap_or_default();
            let want: Vec<u32> = (0..count).collect();
            assert_eq!(got, want, "key w{w}-key{k}");
        }
    }
    assert!(seen.is_empty());
}

#[test]
fn the_background_maintenance_thread_applies_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let mut cfg = config(&clock);
    cfg.maintenance_interval_ms = 20;
    let engine = Engine::open(dir.path(), cfg).expect("open");
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    let payload = vec![1u8; 500_000];
    for _ in 0..10 {
        put(&engine, "s", "k", &payload); // 5 MB: at least two sealed 2 MiB segments
    }
    let shard_dir = dir.path().join("streams/s.0/shardId-000000000000");
    let logs = || {
        std::fs::read_dir(&shard_dir)
            .expect("shard dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log")))
            .count()
    };
    assert!(logs() >= 3, "{} segments", logs());
    clock.advance(25 * HOUR);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logs() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(logs(), 1, "the thread deleted every expired segment but the newest");
    drop(engine); // stops the thread
}

/// `get_records_raw` hands out whole stored batches and a window; decoding the batches and
/// applying the window gives exactly what `get_records` returns, page after page, across
/// segments, limits and expired records.
#[test]
fn raw_reads_decode_to_exactly_the_records_of_get_records() {
    use riffle_engine::batch::{split_batches, RecordIter};
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let engine = open(dir.path(), &clock);
    engine.create_stream("s", Some(1), None, &[]).expect("create");
    let mut n = 0u32;
    for round in 0..6u64 {
        let batch: Vec<Vec<u8>> =
            (0..40).map(|i| vec![i as u8; 1 + ((i * 7919 + round as usize) % 90_000)]).collect();
        let input: Vec<PutRecordInput<'_>> =
            batch.iter().map(|d| PutRecordInput::new("k", d)).collect();
        engine.put_records("s", &input).expect("put");
        n += 40;
        clock.advance(5 * HOUR);
    }
    assert_eq!(n, 240);
    // Now 30 h after the first round: the rounds put at 0 h and 5 h have expired.
    for limit in [1u32, 7, 100, 10_000] {
        let mut it = engine
            .get_shard_iterator("s", "shardId-000000000000", IteratorType::TrimHorizon, None, None)
            .expect("iterator");
        let mut total = 0;
        loop {
            let decoded = engine.get_records(&it, Some(limit)).expect("get_records");
            let raw = engine.get_records_raw(&it, Some(limit)).expect("get_records_raw");
            let mut from_raw = Vec::new();
            for bytes in &raw.batches {
                for batch in split_batches(bytes) {
                    let (_, b) = batch.expect("a valid batch");
                    for r in RecordIter::new(b).expect("records") {
                        let r = r.expect("record");
                        if (raw.from_position..raw.to_position).contains(&r.position)
                            && r.timestamp_ms >= raw.min_timestamp_ms
                        {
                            from_raw.push((r.timestamp_ms, r.data.to_vec()));
                        }
                    }
                }
            }
            let want: Vec<(u64, Vec<u8>)> = decoded
                .records
                .iter()
                .map(|r| (r.approximate_arrival_ms, r.data.to_vec()))
                .collect();
            assert_eq!(from_raw, want, "limit {limit}");
            assert_eq!(raw.record_count, want.len());
            assert_eq!(raw.next_shard_iterator.is_some(), decoded.next_shard_iterator.is_some());
            total += want.len();
            match decoded.next_shard_iterator {
                Some(next) if !decoded.records.is_empty() => it = next,
                _ => break,
            }
        }
        assert_eq!(total, 160, "the last four rounds of 40 are within retention (limit {limit})");
    }
}
