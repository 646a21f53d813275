//! Every operation through the whole protocol path without a network: request encoded into
//! a frame, split into frames by the decoder, decoded, answered by the service against a
//! real engine, the reply framed, decoded by a client-side decoder.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use riffle_engine::batch::{split_batches, RecordIter};
use riffle_engine::{CommitConfig, Durability, Engine, EngineConfig, IoBackend, LimitsConfig};
use riffle_server::protocol::{
    Entry, Filter, FrameDecoder, PutResult, Request, Response, FLAG_END, FLAG_ERROR,
    MAX_FRAME_DEFAULT,
};
use riffle_server::service::Service;

/// Runs a future to completion on this thread (the service's futures are woken by the
/// engine's committing thread).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn service(dir: &std::path::Path) -> Service {
    let engine = Engine::open(
        dir,
        EngineConfig {
            commit: CommitConfig {
                durability: Durability::Sync,
                io_backend: IoBackend::Std,
                ..CommitConfig::default()
            },
            limits: LimitsConfig::unlimited(),
            maintenance_interval_ms: 0,
            ..EngineConfig::default()
        },
    )
    .expect("engine");
    Service::new(engine)
}

/// One request through frames both ways; returns the flags and the decoded response.
fn call(service: &Service, request: Request) -> (u16, Response) {
    let opcode = request.opcode();
    let mut server_side = FrameDecoder::new(MAX_FRAME_DEFAULT);
    server_side.extend(&request.encode_frame(99));
    let frame = server_side.next_frame().expect("valid").expect("whole frame");
    let decoded = Request::decode(frame.opcode, &frame.body).expect("request decodes");
    let reply = block_on(service.call(frame.request_id, decoded)).expect("a reply");
    let mut client_side = FrameDecoder::new(MAX_FRAME_DEFAULT);
    client_side.extend(&reply.to_vec());
    let frame = client_side.next_frame().expect("valid").expect("whole frame");
    assert_eq!((frame.request_id, frame.opcode), (99, opcode));
    assert!(frame.flags & FLAG_END != 0);
    let response =
        Response::decode(frame.opcode, frame.flags, &frame.body).expect("response decodes");
    (frame.flags, response)
}

fn ok(service: &Service, request: Request) -> Response {
    let (flags, response) = call(service, request);
    assert_eq!(flags & FLAG_ERROR, 0, "{response:?}");
    response
}

fn error(service: &Service, request: Request) -> (String, String) {
    match call(service, request) {
        (flags, Response::Error { code, message }) if flags & FLAG_ERROR != 0 => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn streams_puts_and_reads_through_the_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = service(dir.path());
    let stream = || "orders".to_string();
    assert_eq!(
        ok(&s, Request::CreateStream { stream: stream(), shard_count: Some(3), on_demand: false }),
        Response::Empty
    );
    let Response::Summary(summary) = ok(&s, Request::DescribeStreamSummary { stream: stream() })
    else {
        panic!()
    };
    assert_eq!((summary.status, summary.open_shard_count), (1, 3));
    let (code, message) = error(&s, Request::DescribeStreamSummary { stream: "nope".into() });
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(message, "Stream nope under account 000000000000 not found.");

    let Response::PutRecord { shard_id, sequence_number } = ok(
        &s,
        Request::PutRecord {
            stream: stream(),
            partition_key: "a".into(),
            explicit_hash_key: None,
            sequence_number_for_ordering: None,
            data: Bytes::from_static(b"first"),
        },
    ) else {
        panic!()
    };
    assert_eq!(shard_id, "shardId-000000000000", "MD5 of \"a\" routes to shard 0 of 3");
    let records: Vec<Entry> = (0..50)
        .map(|i| Entry {
            partition_key: "a".into(),
            explicit_hash_key: None,
            data: Bytes::from(format!("r{i}")),
        })
        .chain([Entry {
            partition_key: "x".into(),
            explicit_hash_key: Some(u128::MAX),
            data: Bytes::new(),
        }])
        .collect();
    let Response::PutRecords { failed_record_count, results } =
        ok(&s, Request::PutRecords { stream: stream(), records })
    else {
        panic!()
    };
    assert_eq!(failed_record_count, 0);
    assert!(
        matches!(&results[50], PutResult::Ok { shard_id, .. } if shard_id == "shardId-000000000002")
    );

    // Read shard 0 back through GetRecords: the stored batches plus the window.
    let Response::ShardIterator(it) = ok(
        &s,
        Request::GetShardIterator {
            stream: stream(),
            shard_id: "0".into(),
            iterator_type: 2,
            starting_sequence_number: Some(sequence_number),
            timestamp_ms: None,
        },
    ) else {
        panic!()
    };
    let Response::Records(page) =
        ok(&s, Request::GetRecords { shard_iterator: it, limit: Some(20) })
    else {
        panic!()
    };
    let mut got = Vec::new();
    for batch in split_batches(&page.batches) {
        let (_, bytes) = batch.expect("a valid batch");
        for r in RecordIter::new(bytes).expect("records") {
            let r = r.expect("record");
            if (page.from_position..page.to_position).contains(&r.position)
                && r.timestamp_ms >= page.min_timestamp_ms
            {
                let number = (u128::from(page.shard_index) << 96)
                    | (u128::from(page.stream_epoch) << 72)
                    | (1u128 << 64)
                    | u128::from(r.position + 1);
                got.push((number, r.data.to_vec()));
            }
        }
    }
    assert_eq!(got.len(), 20, "the limit");
    assert_eq!(
        got[0],
        (sequence_number, b"first".to_vec()),
        "sequence numbers computed as PROTOCOL.md says"
    );
    assert_eq!(got[1].1, b"r0");
    assert!(page.next.is_some());

    // Listing and filters.
    let Response::ListShards { shards, next_token } = ok(
        &s,
        Request::ListShards {
            stream: Some(stream()),
            next_token: None,
            exclusive_start_shard_id: None,
            max_results: Some(2),
            filter: Some(Filter::AtLatest),
        },
    ) else {
        panic!()
    };
    assert_eq!(shards.len(), 2);
    assert!(next_token.is_some());
    let Response::ListStreams { names, .. } = ok(
        &s,
        Request::ListStreams { limit: None, exclusive_start_stream_name: None, next_token: None },
    ) else {
        panic!()
    };
    assert_eq!(names, ["orders"]);
}

#[test]
fn resharding_retention_and_consumers_through_the_protocol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = service(dir.path());
    let stream = || "s".to_string();
    ok(&s, Request::CreateStream { stream: stream(), shard_count: Some(2), on_demand: false });
    ok(
        &s,
        Request::SplitShard {
            stream: stream(),
            shard_id: "0".into(),
            new_starting_hash_key: 1 << 100,
        },
    );
    let (code, _) = error(
        &s,
        Request::SplitShard {
            stream: stream(),
            shard_id: "0".into(),
            new_starting_hash_key: 1 << 100,
        },
    );
    assert_eq!(code, "InvalidArgumentException", "a closed shard");
    ok(
        &s,
        Request::MergeShards {
            stream: stream(),
            shard_id: "2".into(),
            adjacent_shard_id: "3".into(),
        },
    );
    let Response::UpdateShardCount { current_shard_count, target_shard_count } =
        ok(&s, Request::UpdateShardCount { stream: stream(), target_shard_count: 4 })
    else {
        panic!()
    };
    assert_eq!((current_shard_count, target_shard_count), (2, 4));
    let Response::DescribeStream { shards, .. } = ok(
        &s,
        Request::DescribeStream { stream: stream(), limit: None, exclusive_start_shard_id: None },
    ) else {
        panic!()
    };
    assert!(shards[0].ending_sequence_number.is_some());
    assert!(shards.iter().filter(|sh| sh.ending_sequence_number.is_none()).count() == 4);
    ok(&s, Request::IncreaseRetention { stream: stream(), hours: 48 });
    let (code, message) = error(&s, Request::DecreaseRetention { stream: stream(), hours: 10 });
    assert_eq!(code, "InvalidArgumentException");
    assert!(message.starts_with("Minimum allowed retention period is 24 hours."));
    let Response::Consumer(c) =
        ok(&s, Request::RegisterConsumer { stream: stream(), consumer_name: "billing".into() })
    else {
        panic!()
    };
    assert!(c.arn.ends_with(&format!("/consumer/billing:{}", c.created_ms / 1000)));
    let Response::ListConsumers { consumers, .. } =
        ok(&s, Request::ListConsumers { stream: stream(), max_results: None, next_token: None })
    else {
        panic!()
    };
    assert_eq!(consumers.len(), 1);
    ok(&s, Request::DeregisterConsumer { stream: stream(), consumer_name: "billing".into() });
    let (code, _) =
        error(&s, Request::DescribeConsumer { stream: stream(), consumer_name: "billing".into() });
    assert_eq!(code, "ResourceNotFoundException");
    let (code, _) = error(
        &s,
        Request::SubscribeToShard {
            stream: stream(),
            consumer_name: "billing".into(),
            shard_id: "0".into(),
            iterator_type: 0,
            starting_sequence_number: None,
            timestamp_ms: None,
            credit_bytes: 1 << 20,
        },
    );
    assert_eq!(code, "InvalidArgumentException", "not available yet, said plainly");
    assert!(block_on(s.call(1, Request::Credit { subscription_request_id: 1, bytes: 1 })).is_none());
    ok(&s, Request::DeleteStream { stream: stream(), enforce_consumer_deletion: false });
    let (code, _) = error(&s, Request::DescribeStreamSummary { stream: stream() });
    assert_eq!(code, "ResourceNotFoundException");
}
