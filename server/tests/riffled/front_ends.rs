//! How users start and drive `riffled`: the `riffle` CLI, the async client library, a TOML
//! config file, and the refusal to share a port with another instance.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use riffle_server::protocol::{Request, Response};

use super::Riffled;

/// The `riffle` CLI against the daemon: aws-kinesis-shaped commands and JSON, `put` from
/// stdin, `tail` across a split (parents before children).
#[test]
fn the_riffle_cli_drives_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let riffle = |args: &[&str], stdin: Option<&str>| -> (bool, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_riffle"))
            .arg("--endpoint")
            .arg(&server.addr)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run riffle");
        if let Some(text) = stdin {
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("riffle output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    };
    assert!(riffle(&["create-stream", "--stream-name", "cli", "--shard-count", "2"], None).0);
    let (ok, out, _) = riffle(&["describe-stream-summary", "--stream-name", "cli"], None);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["StreamDescriptionSummary"]["OpenShardCount"], 2);
    assert_eq!(v["StreamDescriptionSummary"]["StreamStatus"], "ACTIVE");
    let (ok, out, _) = riffle(
        &["put-record", "--stream-name", "cli", "--partition-key", "k", "--data", "one"],
        None,
    );
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(v["SequenceNumber"].as_str().is_some_and(|s| s.parse::<u128>().is_ok()));
    let lines: String = (0..50).map(|i| format!("line {i}\n")).collect();
    let (ok, _, err) =
        riffle(&["put", "--stream-name", "cli", "--partition-key", "same"], Some(&lines));
    assert!(ok, "{err}");
    assert!(err.contains("put 50 records, 0 failed"));
    assert!(
        riffle(
            &[
                "split-shard",
                "--stream-name",
                "cli",
                "--shard-to-split",
                "shardId-000000000000",
                "--new-starting-hash-key",
                "1000"
            ],
            None
        )
        .0
    );
    let (ok, _, err) = riffle(
        &["put", "--stream-name", "cli", "--partition-key", "same"],
        Some("after 0\nafter 1\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = riffle(
        &["tail", "--stream-name", "cli", "--from", "trim-horizon", "--max-records", "53"],
        None,
    );
    assert!(ok, "{err}");
    let texts: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["Text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let same: Vec<&String> =
        texts.iter().filter(|t| t.starts_with("line") || t.starts_with("after")).collect();
    let want: Vec<String> =
        (0..50).map(|i| format!("line {i}")).chain(["after 0".into(), "after 1".into()]).collect();
    assert_eq!(
        same,
        want.iter().collect::<Vec<_>>(),
        "one key's records in order across the split"
    );
    let (ok, _, err) = riffle(&["describe-stream-summary", "--stream-name", "missing"], None);
    assert!(!ok);
    assert!(err.contains("An error occurred (ResourceNotFoundException): Stream missing under account 000000000000 not found."), "{err}");
}

/// The async client: 200 calls in flight at once on one connection, a subscription as a
/// stream with automatic credit, and retries through throttling (limits on).
#[test]
fn the_async_client_pipelines_subscribes_and_retries() {
    use riffle_server::client::{decode_records, AsyncClient, RetryPolicy};
    let dir = tempfile::tempdir().expect("tempdir");
    // Limits on: 1,000 records/s per shard.
    let mut child = Command::new(env!("CARGO_BIN_EXE_riffled"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kinesis-listen",
            "off",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start riffled");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("line");
    let addr = line.split_whitespace().nth(3).expect("address").to_string();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = AsyncClient::connect(&addr).await.expect("connect");
        client
            .call(&Request::CreateStream {
                stream: "a".into(),
                shard_count: Some(1),
                on_demand: false,
            })
            .await
            .expect("create");
        client
            .call(&Request::RegisterConsumer { stream: "a".into(), consumer_name: "c".into() })
            .await
            .expect("register");
        let mut sub = client
            .subscribe(&Request::SubscribeToShard {
                stream: "a".into(),
                consumer_name: "c".into(),
                shard_id: "0".into(),
                iterator_type: 0,
                starting_sequence_number: None,
                timestamp_ms: None,
                credit_bytes: 4096,
            })
            .await
            .expect("subscribe");
        // 1,500 single-record puts at once: more than the shard's 1,000 records/s, so some
        // are throttled and retried with backoff until they all succeed.
        let puts = (0..1500u32).map(|i| {
            let client = client.clone();
            async move {
                let request = Request::PutRecord {
                    stream: "a".into(),
                    partition_key: "k".into(),
                    explicit_hash_key: None,
                    sequence_number_for_ordering: None,
                    data: Bytes::from(i.to_le_bytes().to_vec()),
                };
                match client
                    .call_with_retry(
                        &request,
                        RetryPolicy { attempts: 100, ..RetryPolicy::default() },
                    )
                    .await
                {
                    Ok(Response::PutRecord { sequence_number, .. }) => sequence_number,
                    other => panic!("put {i}: {other:?}"),
                }
            }
        });
        let mut handles = Vec::new();
        for p in puts {
            handles.push(tokio::spawn(p));
        }
        let mut acked = Vec::new();
        for h in handles {
            acked.push(h.await.expect("put task"));
        }
        acked.sort();
        let mut seen = Vec::new();
        while seen.len() < acked.len() {
            let event = sub.next_event().await.expect("an event").expect("not an error");
            seen.extend(
                decode_records(&event).expect("records").into_iter().map(|r| r.sequence_number),
            );
        }
        assert_eq!(seen, acked, "the subscription delivered every acknowledged record, in order");
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// `--config FILE`: the keys of the flags; a flag beats the file; unknown keys are refused.
#[test]
fn riffled_reads_a_toml_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("riffled.toml");
    let data = dir.path().join("from-config");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\nlisten = \"127.0.0.1:0\"\nkinesis-listen = \"off\"\ncores = 1\ndurability = \"interval:5\"\nno-limits = true\n",
            data.display().to_string()
        ),
    )
    .expect("write config");
    let run = |extra: &[&str]| -> (String, Child) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_riffled"))
            .arg("--config")
            .arg(&config)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start riffled");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("line");
        (line, child)
    };
    let (line, mut child) = run(&[]);
    assert!(line.contains("(1 cores") && line.contains(&data.display().to_string()), "{line}");
    let _ = child.kill();
    let _ = child.wait();
    let (line, mut child) = run(&["--cores", "2"]);
    assert!(line.contains("(2 cores"), "a flag beats the file: {line}");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::write(&config, "bogus = 1\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_riffled"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key \"bogus\""));
}

/// A second `riffled` on an address a first one serves refuses to start, instead of joining
/// its SO_REUSEPORT group and taking part of its connections; both its Kinesis listener and
/// its binary one are checked.
#[test]
fn a_second_riffled_on_the_same_address_refuses_to_start() {
    let (first_dir, second_dir) =
        (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let first = Riffled::start(first_dir.path());
    let mut second = Command::new(env!("CARGO_BIN_EXE_riffled"))
        .args(["--listen", &first.addr, "--kinesis-listen", "off", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(second_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a second riffled");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second riffled is still running: it joined the first one's port");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    second.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    assert!(!status.success(), "the second riffled exited 0: {stderr}");
    assert!(stderr.contains(&format!("{} is already in use", first.addr)), "{stderr}");
    // The first one still serves.
    let mut client = first.client();
    client
        .call(&Request::ListStreams {
            limit: None,
            exclusive_start_stream_name: None,
            next_token: None,
        })
        .expect("first still serves");
}
