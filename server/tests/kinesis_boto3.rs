//! The Kinesis HTTP API against real boto3 (from PyPI): `tests/kinesis/boto3_conformance.py`
//! runs the operations a Kinesis user starts with, and the errors they expect, against a
//! real `riffled`. `scripts/test.sh` installs boto3 when it is missing.

mod support;

use std::process::Command;

use support::start;

#[test]
fn boto3_runs_the_conformance_script_against_riffled() {
    let has_boto3 =
        Command::new("python3").args(["-c", "import boto3"]).status().is_ok_and(|s| s.success());
    assert!(
        has_boto3,
        "python3 with boto3 is needed: python3 -m pip install boto3 (scripts/test.sh does it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), &["--no-limits"]);
    let endpoint = daemon.endpoint.clone();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kinesis/boto3_conformance.py");
    let out = Command::new("python3").arg(&script).arg(&endpoint).output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "boto3 conformance failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("boto3 conformance: ok"), "{stdout}");
}

/// One AWS CBOR 1.1 request over HTTP/1.1, as the Java SDK sends it; returns the status and
/// the decoded CBOR body.
fn cbor_call(addr: &str, operation: &str, body: &ciborium::Value) -> (u16, ciborium::Value) {
    use std::io::{Read, Write};
    let mut payload = Vec::new();
    ciborium::into_writer(body, &mut payload).expect("encode CBOR");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: Kinesis_20131202.{operation}\r\nContent-Type: application/x-amz-cbor-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(&payload).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let headers = String::from_utf8_lossy(&response[..split]).to_string();
    let status: u16 =
        headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    assert!(
        headers.to_ascii_lowercase().contains("content-type: application/x-amz-cbor-1.1"),
        "{headers}"
    );
    let body = &response[split + 4..];
    let value = if body.is_empty() {
        ciborium::Value::Null
    } else {
        ciborium::from_reader(body).expect("a CBOR reply")
    };
    (status, value)
}

fn get<'a>(v: &'a ciborium::Value, key: &str) -> &'a ciborium::Value {
    v.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v:?}"))
}

/// CBOR (the Java SDK's and the KCL's default): blobs as byte strings, timestamps as tag 1.
#[test]
fn the_kinesis_api_speaks_cbor() {
    use ciborium::Value as C;
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), &["--no-limits"]);
    let addr = daemon.endpoint.trim_start_matches("http://").to_string();
    let map = |pairs: Vec<(&str, C)>| {
        C::Map(pairs.into_iter().map(|(k, v)| (C::Text(k.into()), v)).collect())
    };
    let (status, _) = cbor_call(
        &addr,
        "CreateStream",
        &map(vec![("StreamName", C::Text("c".into())), ("ShardCount", C::Integer(1.into()))]),
    );
    assert_eq!(status, 200);
    let (status, put) = cbor_call(
        &addr,
        "PutRecord",
        &map(vec![
            ("StreamName", C::Text("c".into())),
            ("PartitionKey", C::Text("k".into())),
            ("Data", C::Bytes(vec![0, 159, 255])),
        ]),
    );
    assert_eq!(status, 200, "{put:?}");
    assert_eq!(get(&put, "ShardId").as_text(), Some("shardId-000000000000"));
    let (_, it) = cbor_call(
        &addr,
        "GetShardIterator",
        &map(vec![
            ("StreamName", C::Text("c".into())),
            ("ShardId", C::Text("shardId-000000000000".into())),
            ("ShardIteratorType", C::Text("TRIM_HORIZON".into())),
        ]),
    );
    let iterator = get(&it, "ShardIterator").clone();
    let (status, page) = cbor_call(&addr, "GetRecords", &map(vec![("ShardIterator", iterator)]));
    assert_eq!(status, 200);
    let records = get(&page, "Records").as_array().expect("records");
    assert_eq!(get(&records[0], "Data"), &C::Bytes(vec![0, 159, 255]), "blobs are byte strings");
    assert!(
        matches!(get(&records[0], "ApproximateArrivalTimestamp"), C::Tag(1, _)),
        "timestamps are tag 1"
    );
    let (status, err) = cbor_call(
        &addr,
        "DescribeStreamSummary",
        &map(vec![("StreamName", C::Text("none".into()))]),
    );
    assert_eq!(status, 400);
    assert_eq!(get(&err, "__type").as_text(), Some("ResourceNotFoundException"));
}

/// With `--credentials`, boto3 signed with the right key works; a wrong secret and an
/// unknown key get Kinesis's errors (an unsigned request: `sigv4`'s unit test).
#[test]
fn sigv4_signatures_are_verified_when_credentials_are_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), &["--credentials", "AKIDRIFFLE:s3cret"]);
    let addr = daemon.endpoint.trim_start_matches("http://").to_string();
    let script = format!(
        r#"
import boto3, botocore, sys
def client(key, secret):
    return boto3.client("kinesis", endpoint_url="http://{addr}", region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=botocore.config.Config(retries={{"max_attempts": 1}}))
def code(c):
    try:
        c.list_streams()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
print(code(client("AKIDRIFFLE", "s3cret")), code(client("AKIDRIFFLE", "wrong")), code(client("NOBODY", "s3cret")))
"#
    );
    let out = Command::new("python3").args(["-c", &script]).output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "ok InvalidSignatureException UnrecognizedClientException",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The AWS CLI (from PyPI; `scripts/test.sh` installs it) drives the same API.
#[test]
fn the_aws_cli_runs_its_conformance_script_against_riffled() {
    let has_cli =
        Command::new("python3").args(["-c", "import awscli"]).status().is_ok_and(|s| s.success());
    assert!(
        has_cli,
        "the AWS CLI is needed: python3 -m pip install awscli (scripts/test.sh does it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), &["--no-limits"]);
    let endpoint = daemon.endpoint.clone();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kinesis/aws_cli.sh");
    let out = Command::new("bash").arg(&script).arg(&endpoint).output().expect("run the script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("aws cli conformance: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
