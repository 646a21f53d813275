//! The protocol's tests: every message round trips, PROTOCOL.md's example is exact, and no
//! input (split, truncated, lying about counts, arbitrary) panics.

use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn sample_requests() -> Vec<Request> {
    let s = || "orders".to_string();
    vec![
        Request::CreateStream { stream: s(), shard_count: Some(4), on_demand: false },
        Request::CreateStream { stream: s(), shard_count: None, on_demand: true },
        Request::DeleteStream { stream: s(), enforce_consumer_deletion: true },
        Request::DescribeStreamSummary { stream: s() },
        Request::ListStreams {
            limit: Some(10),
            exclusive_start_stream_name: Some("a".into()),
            next_token: None,
        },
        Request::DescribeStream {
            stream: s(),
            limit: None,
            exclusive_start_shard_id: Some("shardId-1".into()),
        },
        Request::ListShards {
            stream: Some(s()),
            next_token: None,
            exclusive_start_shard_id: None,
            max_results: Some(5),
            filter: Some(Filter::AtTimestamp(1_700_000_000_000)),
        },
        Request::ListShards {
            stream: None,
            next_token: Some("tok".into()),
            exclusive_start_shard_id: None,
            max_results: None,
            filter: Some(Filter::AfterShardId("shardId-000000000003".into())),
        },
        Request::PutRecord {
            stream: s(),
            partition_key: "clé".into(),
            explicit_hash_key: Some(u128::MAX),
            sequence_number_for_ordering: Some(12345),
            data: Bytes::from_static(b"hello"),
        },
        Request::PutRecords {
            stream: s(),
            records: vec![
                Entry { partition_key: "a".into(), explicit_hash_key: None, data: Bytes::new() },
                Entry {
                    partition_key: "b".into(),
                    explicit_hash_key: Some(7),
                    data: Bytes::from_static(&[0, 1, 2]),
                },
            ],
        },
        Request::GetShardIterator {
            stream: s(),
            shard_id: "shardId-000000000000".into(),
            iterator_type: 3,
            starting_sequence_number: Some(1 << 64),
            timestamp_ms: None,
        },
        Request::GetRecords { shard_iterator: "AAAA".into(), limit: Some(100) },
        Request::SplitShard { stream: s(), shard_id: "0".into(), new_starting_hash_key: 1 << 127 },
        Request::MergeShards { stream: s(), shard_id: "1".into(), adjacent_shard_id: "2".into() },
        Request::UpdateShardCount { stream: s(), target_shard_count: 8 },
        Request::IncreaseRetention { stream: s(), hours: 48 },
        Request::DecreaseRetention { stream: s(), hours: 24 },
        Request::RegisterConsumer { stream: s(), consumer_name: "billing".into() },
        Request::DeregisterConsumer { stream: s(), consumer_name: "billing".into() },
        Request::DescribeConsumer { stream: s(), consumer_name: "billing".into() },
        Request::ListConsumers { stream: s(), max_results: None, next_token: Some("t".into()) },
        Request::SubscribeToShard {
            stream: s(),
            consumer_name: "billing".into(),
            shard_id: "shardId-000000000001".into(),
            iterator_type: 4,
            starting_sequence_number: None,
            timestamp_ms: Some(42),
            credit_bytes: 1 << 20,
        },
        Request::Credit { subscription_request_id: 9, bytes: 65536 },
    ]
}

fn summary() -> Summary {
    Summary {
        name: "orders".into(),
        arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders".into(),
        status: 1,
        mode: 0,
        retention_hours: 24,
        created_ms: 1,
        open_shard_count: 2,
        consumer_count: 0,
    }
}

fn sample_responses() -> Vec<(u16, u16, Response)> {
    let shard = Shard {
        shard_id: "shardId-000000000001".into(),
        parent: Some("shardId-000000000000".into()),
        adjacent_parent: None,
        starting_hash_key: 0,
        ending_hash_key: u128::MAX,
        starting_sequence_number: 5,
        ending_sequence_number: Some(9),
    };
    let consumer = Consumer { name: "c".into(), arn: "arn".into(), status: 1, created_ms: 3 };
    vec![
        (op::CREATE_STREAM, FLAG_END, Response::Empty),
        (
            op::DESCRIBE_STREAM_SUMMARY,
            FLAG_END | FLAG_ERROR,
            Response::Error { code: "X".into(), message: "y".into() },
        ),
        (op::DESCRIBE_STREAM_SUMMARY, FLAG_END, Response::Summary(summary())),
        (
            op::LIST_STREAMS,
            FLAG_END,
            Response::ListStreams { names: vec!["a".into()], has_more: true, next_token: None },
        ),
        (
            op::DESCRIBE_STREAM,
            FLAG_END,
            Response::DescribeStream {
                summary: summary(),
                shards: vec![shard.clone()],
                has_more_shards: false,
            },
        ),
        (
            op::LIST_SHARDS,
            FLAG_END,
            Response::ListShards { shards: vec![shard], next_token: Some("n".into()) },
        ),
        (
            op::PUT_RECORD,
            FLAG_END,
            Response::PutRecord { shard_id: "shardId-000000000000".into(), sequence_number: 77 },
        ),
        (
            op::PUT_RECORDS,
            FLAG_END,
            Response::PutRecords {
                failed_record_count: 1,
                results: vec![
                    PutResult::Ok { shard_id: "s".into(), sequence_number: 1 },
                    PutResult::Failed {
                        error_code: "ProvisionedThroughputExceededException".into(),
                        error_message: "Rate exceeded".into(),
                    },
                ],
            },
        ),
        (op::GET_SHARD_ITERATOR, FLAG_END, Response::ShardIterator("it".into())),
        (
            op::GET_RECORDS,
            FLAG_END,
            Response::Records(Records {
                shard_index: 3,
                stream_epoch: 1,
                from_position: 10,
                to_position: 20,
                min_timestamp_ms: 5,
                millis_behind_latest: 0,
                next: None,
                child_shards: vec![Child {
                    shard_id: "shardId-000000000004".into(),
                    parent_shards: vec!["shardId-000000000003".into()],
                    starting_hash_key: 0,
                    ending_hash_key: 9,
                }],
                batches: Bytes::from_static(b"RFB1..."),
            }),
        ),
        (
            op::UPDATE_SHARD_COUNT,
            FLAG_END,
            Response::UpdateShardCount { current_shard_count: 2, target_shard_count: 4 },
        ),
        (op::REGISTER_CONSUMER, FLAG_END, Response::Consumer(consumer.clone())),
        (
            op::LIST_CONSUMERS,
            FLAG_END,
            Response::ListConsumers { consumers: vec![consumer], next_token: None },
        ),
    ]
}

#[test]
fn every_request_round_trips_through_a_frame() {
    for request in sample_requests() {
        let bytes = request.encode_frame(42);
        let mut decoder = FrameDecoder::new(MAX_FRAME_DEFAULT);
        decoder.extend(&bytes);
        let frame = decoder.next_frame().expect("frame").expect("complete");
        assert_eq!((frame.request_id, frame.opcode, frame.flags), (42, request.opcode(), 0));
        assert_eq!(Request::decode(frame.opcode, &frame.body), Ok(request));
        assert_eq!(decoder.buffered(), 0);
    }
}

#[test]
fn every_response_round_trips() {
    for (opcode, flags, response) in sample_responses() {
        let body = Bytes::from(response.encode_body());
        assert_eq!(Response::decode(opcode, flags, &body), Ok(response));
    }
}

#[test]
fn the_protocol_md_example_is_exact() {
    let request = Request::DescribeStreamSummary { stream: "orders".into() };
    assert_eq!(
        hex(&request.encode_frame(7)),
        "14 00 00 00 07 00 00 00 00 00 00 00 03 00 00 00 06 00 6f 72 64 65 72 73"
    );
    let error = Response::Error {
        code: "ResourceNotFoundException".into(),
        message: "Stream orders under account 000000000000 not found.".into(),
    };
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        7,
        op::DESCRIBE_STREAM_SUMMARY,
        FLAG_ERROR | FLAG_END,
        &error.encode_body(),
    );
    assert_eq!(hex(&frame[..20]), "5c 00 00 00 07 00 00 00 00 00 00 00 03 00 05 00 19 00 52 65");
    assert_eq!(frame.len(), 4 + 92);
    assert_eq!(&frame[16 + 2 + 25..16 + 2 + 25 + 2], &[0x33, 0x00]);
}

#[test]
fn frames_split_at_any_byte_decode_the_same() {
    let mut stream = Vec::new();
    for (i, r) in sample_requests().iter().enumerate() {
        stream.extend(r.encode_frame(i as u64));
    }
    for cut in 0..stream.len() {
        let mut decoder = FrameDecoder::new(MAX_FRAME_DEFAULT);
        let mut frames = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            decoder.extend(part);
            while let Some(f) = decoder.next_frame().expect("valid stream") {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), sample_requests().len(), "cut at {cut}");
    }
}

#[test]
fn oversized_and_undersized_frames_and_bad_flags_are_errors() {
    let mut d = FrameDecoder::new(MAX_FRAME_MIN);
    d.extend(&(MAX_FRAME_MIN).to_le_bytes());
    assert!(matches!(d.next_frame(), Err(ProtocolError::FrameTooLarge { .. })));
    let mut d = FrameDecoder::new(MAX_FRAME_DEFAULT);
    d.extend(&u32::MAX.to_le_bytes());
    assert!(matches!(d.next_frame(), Err(ProtocolError::FrameTooLarge { .. })), "no 4 GiB buffer");
    let mut d = FrameDecoder::new(MAX_FRAME_DEFAULT);
    d.extend(&[3, 0, 0, 0, 1, 2, 3]);
    assert!(matches!(d.next_frame(), Err(ProtocolError::Malformed(_))));
    let mut frame = Vec::new();
    encode_frame(&mut frame, 1, op::CREDIT, 0x80, &[]);
    let mut d = FrameDecoder::new(MAX_FRAME_DEFAULT);
    d.extend(&frame);
    assert_eq!(d.next_frame(), Err(ProtocolError::UnknownFlags(0x80)));
    assert_eq!(Request::decode(0x7777, &Bytes::new()), Err(ProtocolError::UnknownOpcode(0x7777)));
}

#[test]
fn truncated_lying_or_trailing_bodies_are_errors_never_panics() {
    for request in sample_requests() {
        let body = Bytes::from(request.encode_body());
        for cut in 0..body.len() {
            assert!(
                Request::decode(request.opcode(), &body.slice(..cut)).is_err(),
                "{request:?} cut {cut}"
            );
        }
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(matches!(
            Request::decode(request.opcode(), &Bytes::from(longer)),
            Err(ProtocolError::Malformed(_))
        ));
    }
    // A list claiming 4 billion elements in a tiny body: refused before allocating.
    let mut body = Enc::default();
    body.str("s").u32(u32::MAX);
    assert_eq!(
        Request::decode(op::PUT_RECORDS, &Bytes::from(body.0)),
        Err(ProtocolError::Truncated("records"))
    );
    // Bad UTF-8, bad bool, bad option tag.
    assert!(Request::decode(op::DESCRIBE_STREAM_SUMMARY, &Bytes::from_static(&[2, 0, 0xff, 0xfe]))
        .is_err());
    assert!(Request::decode(op::DELETE_STREAM, &Bytes::from_static(&[1, 0, b's', 2])).is_err());
    assert!(Request::decode(op::GET_RECORDS, &Bytes::from_static(&[1, 0, b'i', 9])).is_err());
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic stream of pseudo-random bodies for every opcode and both sides.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 64) as usize;
        let body: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
        let body = Bytes::from(body);
        let opcode = (x >> 40) as u16 % 0x50;
        let _ = Request::decode(opcode, &body);
        let _ = Response::decode(opcode, (x >> 20) as u16 & 7, &body);
        let mut d = FrameDecoder::new(MAX_FRAME_MIN);
        d.extend(&body);
        while let Ok(Some(_)) = d.next_frame() {}
    }
}

#[test]
fn hellos_negotiate_the_version() {
    let hello = ClientHello::current();
    let parsed = ClientHello::decode(&hello.encode());
    assert_eq!(parsed, Ok(hello));
    let answer = ServerHello::answer(parsed, MAX_FRAME_DEFAULT, 1024, 64);
    assert_eq!((answer.version, answer.status), (VERSION, HELLO_OK));
    assert_eq!(ServerHello::decode(&answer.encode()), Ok(answer));
    let future = ClientHello { min_version: 2, max_version: 3, max_frame: MAX_FRAME_DEFAULT };
    let answer =
        ServerHello::answer(ClientHello::decode(&future.encode()), MAX_FRAME_DEFAULT, 1, 1);
    assert_eq!(answer.status, HELLO_NO_VERSION);
    let mut bad = hello.encode();
    bad[0] = b'X';
    assert!(ClientHello::decode(&bad).is_err());
    let answer = ServerHello::answer(ClientHello::decode(&bad), MAX_FRAME_DEFAULT, 1, 1);
    assert_eq!(answer.status, HELLO_BAD);
}
