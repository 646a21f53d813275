//! PutRecords in JSON without a `serde_json::Value` tree: the hot path of the Kinesis API.
//!
//! The general path parses a body into a `Value` (a map and two strings allocated per
//! record), decodes each record's base64 into its own vector, and builds the reply as
//! another tree. For 500 × 1 KiB that was about a third of the server's CPU in allocation
//! alone (perf, `riffle-bench --target kinesis`). Here the body is read into borrowed
//! strings, all records' data are decoded into one buffer, and the reply is written as
//! text.
//!
//! Only well-formed requests take this path. Anything it does not accept as it is (a member
//! missing or of the wrong type, invalid base64) returns `None`, and the caller runs the
//! general path, which produces the model's exact validation errors. So the two paths
//! cannot disagree on an error, only on speed.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use riffle_engine::{Engine, PutRecordInput};
use serde::Deserialize;

use super::fields::stream_of;
use super::Fault;

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "Records")]
    records: Vec<Entry<'a>>,
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

/// Runs a JSON PutRecords `body` and returns the JSON reply, or `None` if the body is not
/// one this path takes (the caller then runs the general path on it).
pub(super) fn put_records(engine: &Engine, body: &[u8]) -> Option<Result<Vec<u8>, Fault>> {
    let request: Body<'_> = serde_json::from_slice(body).ok()?;
    // Every record's data, decoded into one buffer; `ends[i]` is where record i's ends.
    let base64 = &base64::engine::general_purpose::STANDARD;
    let estimate: usize =
        request.records.iter().map(|r| base64::decoded_len_estimate(r.data.len())).sum();
    let mut data = vec![0u8; estimate];
    let mut ends = Vec::with_capacity(request.records.len());
    let mut at = 0;
    for record in &request.records {
        at += base64.decode_slice(record.data.as_bytes(), &mut data[at..]).ok()?;
        ends.push(at);
    }
    let stream = match stream_of(request.stream_arn.as_deref(), request.stream_name.as_deref()) {
        Ok(stream) => stream,
        Err(f) => return Some(Err(f)),
    };
    let mut start = 0;
    let input: Vec<PutRecordInput<'_>> = request
        .records
        .iter()
        .zip(&ends)
        .map(|(record, &end)| {
            let input = PutRecordInput {
                partition_key: &record.partition_key,
                data: &data[start..end],
                explicit_hash_key: record.explicit_hash_key.as_deref(),
                sequence_number_for_ordering: None,
            };
            start = end;
            input
        })
        .collect();
    let out = match engine.put_records(&stream, &input) {
        Ok(out) => out,
        Err(e) => return Some(Err(Fault::from(e))),
    };
    let mut reply = String::with_capacity(32 + out.records.len() * 100);
    let _ = write!(reply, "{{\"FailedRecordCount\":{},\"Records\":[", out.failed_record_count);
    for (i, record) in out.records.iter().enumerate() {
        if i > 0 {
            reply.push(',');
        }
        match record {
            // Shard ids and sequence numbers are ASCII letters, digits and '-': no escaping.
            Ok(ok) => {
                let _ = write!(
                    reply,
                    "{{\"SequenceNumber\":\"{}\",\"ShardId\":\"{}\"}}",
                    ok.sequence_number, ok.shard_id
                );
            }
            Err(failed) => {
                let code = serde_json::to_string(&failed.error_code).unwrap_or_default();
                let message = serde_json::to_string(&failed.error_message).unwrap_or_default();
                let _ = write!(reply, "{{\"ErrorCode\":{code},\"ErrorMessage\":{message}}}");
            }
        }
    }
    reply.push_str("]}");
    Some(Ok(reply.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine =
            Engine::open(dir.path(), riffle_engine::EngineConfig::default()).expect("open");
        engine.create_stream("s", Some(2), None, &[]).expect("create");
        (dir, engine)
    }

    /// The fast path and the general one store the same records and give the same reply
    /// shape; what the fast path does not take is left to the general one.
    #[test]
    fn matches_the_general_path_and_declines_what_it_does_not_take() {
        let (_dir, engine) = engine();
        let body = br#"{"StreamName":"s","Records":[{"Data":"aGVsbG8=","PartitionKey":"a"},{"Data":"","PartitionKey":"b","ExplicitHashKey":"0"},{"Data":"d29ybGQ\/","PartitionKey":"a"}]}"#;
        let fast = put_records(&engine, body).expect("taken").expect("stored");
        let fast: serde_json::Value = serde_json::from_slice(&fast).expect("valid JSON");
        let general = super::super::ops::dispatch(
            &engine,
            "PutRecords",
            &serde_json::from_slice(body).expect("json"),
        )
        .expect("stored")
        .expect("a reply");
        assert_eq!(fast["FailedRecordCount"], 0);
        let shards = |v: &serde_json::Value| -> Vec<String> {
            v["Records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| r["ShardId"].to_string())
                .collect()
        };
        assert_eq!(shards(&fast), shards(&general));
        let it = engine
            .get_shard_iterator(
                "s",
                "shardId-000000000000",
                riffle_engine::IteratorType::TrimHorizon,
                None,
                None,
            )
            .expect("iterator");
        let page = engine.get_records(&it, None).expect("read");
        let data: Vec<&[u8]> = page.records.iter().map(|r| &r.data[..]).collect();
        // Each path stored "hello", "" and "world?" ("\/" is an escaped '/').
        assert_eq!(data, [&b"hello"[..], b"", b"world?", b"hello", b"", b"world?"]);

        for declined in [
            &br#"{"StreamName":"s","Records":[{"Data":"not base64!","PartitionKey":"a"}]}"#[..],
            br#"{"StreamName":"s","Records":[{"PartitionKey":"a"}]}"#,
            br#"{"StreamName":"s","Records":[{"Data":5,"PartitionKey":"a"}]}"#,
            br#"{"StreamName":"s"}"#,
            b"[]",
        ] {
            assert!(
                put_records(&engine, declined).is_none(),
                "{}",
                String::from_utf8_lossy(declined)
            );
        }
        // Errors of the call itself come back as the general path's faults.
        for failing in [
            &br#"{"StreamName":"nope","Records":[{"Data":"","PartitionKey":"a"}]}"#[..],
            br#"{"StreamName":"s","Records":[]}"#,
            br#"{"Records":[{"Data":"","PartitionKey":"a"}]}"#,
            br#"{"StreamName":"s","Records":[{"Data":"","PartitionKey":""}]}"#,
        ] {
            let fast = put_records(&engine, failing).expect("taken").expect_err("fails");
            let general = super::super::ops::dispatch(
                &engine,
                "PutRecords",
                &serde_json::from_slice(failing).expect("json"),
            )
            .expect_err("fails");
            assert_eq!((&fast.code, &fast.message), (&general.code, &general.message));
        }
    }
}
