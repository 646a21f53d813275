//! Writes the seed corpora of the protocol fuzz targets (`fuzz/corpus/protocol_*`):
//! valid frames of every kind, a pipelined session, and a few malformed ones.
//!
//! `cargo run -p riffle-server --example make_protocol_seeds`

use bytes::Bytes;
use riffle_server::protocol::{encode_frame, op, Entry, Filter, Request, FLAG_END, FLAG_ERROR};

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let s = || "seed".to_string();
    let requests = vec![
        Request::CreateStream { stream: s(), shard_count: Some(2), on_demand: false },
        Request::DescribeStreamSummary { stream: s() },
        Request::ListStreams {
            limit: Some(5),
            exclusive_start_stream_name: None,
            next_token: None,
        },
        Request::ListShards {
            stream: Some(s()),
            next_token: None,
            exclusive_start_shard_id: None,
            max_results: None,
            filter: Some(Filter::AtLatest),
        },
        Request::PutRecord {
            stream: s(),
            partition_key: "k".into(),
            explicit_hash_key: Some(7),
            sequence_number_for_ordering: None,
            data: Bytes::from_static(b"data"),
        },
        Request::PutRecords {
            stream: s(),
            records: vec![Entry {
                partition_key: "a".into(),
                explicit_hash_key: None,
                data: Bytes::from_static(b"x"),
            }],
        },
        Request::GetShardIterator {
            stream: s(),
            shard_id: "0".into(),
            iterator_type: 0,
            starting_sequence_number: None,
            timestamp_ms: None,
        },
        Request::GetRecords { shard_iterator: "AAAA".into(), limit: Some(10) },
        Request::SplitShard { stream: s(), shard_id: "0".into(), new_starting_hash_key: 1 << 100 },
        Request::RegisterConsumer { stream: s(), consumer_name: "c".into() },
        Request::SubscribeToShard {
            stream: s(),
            consumer_name: "c".into(),
            shard_id: "0".into(),
            iterator_type: 1,
            starting_sequence_number: None,
            timestamp_ms: None,
            credit_bytes: 4096,
        },
        Request::Credit { subscription_request_id: 11, bytes: 100 },
    ];
    for target in ["protocol_decode", "protocol_connection"] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, r) in requests.iter().enumerate() {
            // A frame's first byte (its length's low byte) is even for most seeds; the
            // connection target then prepends a valid hello.
            std::fs::write(dir.join(format!("request-{i:02}")), r.encode_frame(i as u64 + 1))?;
        }
        let session: Vec<u8> =
            requests.iter().enumerate().flat_map(|(i, r)| r.encode_frame(100 + i as u64)).collect();
        std::fs::write(dir.join("session"), &session)?;
        let mut error = Vec::new();
        encode_frame(
            &mut error,
            7,
            op::DESCRIBE_STREAM_SUMMARY,
            FLAG_ERROR | FLAG_END,
            &[1, 0, b'X', 1, 0, b'y'],
        );
        std::fs::write(dir.join("error-frame"), &error)?;
        std::fs::write(dir.join("oversized"), [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0])?;
        std::fs::write(
            dir.join("hello"),
            riffle_server::protocol::ClientHello::current().encode(),
        )?;
    }
    println!("wrote seeds under {}", root.display());
    Ok(())
}
