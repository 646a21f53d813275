//! End to end against a real `riffled` process on an ephemeral loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use riffle_engine::batch::{split_batches, RecordIter};
use riffle_server::client::{Client, ClientError};
use riffle_server::protocol::{
    encode_frame, op, ClientHello, Entry, Request, Response, ServerHello, FLAG_ERROR, HELLO_BAD,
};

struct Riffled {
    child: Child,
    addr: String,
}

impl Riffled {
    fn start(dir: &std::path::Path) -> Riffled {
        Self::start_with(dir, &[])
    }

    /// Starts it with `extra` flags after the usual ones.
    fn start_with(dir: &std::path::Path, extra: &[&str]) -> Riffled {
        let mut child = Command::new(env!("CARGO_BIN_EXE_riffled"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--kinesis-listen",
                "off",
                "--no-limits",
                "--log-level",
                "warn",
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start riffled");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .strip_prefix("riffled listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Riffled { child, addr }
    }

    fn client(&self) -> Client {
        Client::connect(&self.addr).expect("connect")
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Riffled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn put(client: &mut Client, stream: &str, key: &str, data: &[u8]) -> (String, u128) {
    match client
        .call(&Request::PutRecord {
            stream: stream.into(),
            partition_key: key.into(),
            explicit_hash_key: None,
            sequence_number_for_ordering: None,
            data: Bytes::copy_from_slice(data),
        })
        .expect("put")
    {
        Response::PutRecord { shard_id, sequence_number } => (shard_id, sequence_number),
        other => panic!("{other:?}"),
    }
}

/// Every record of a shard from TRIM_HORIZON: (sequence number, data).
fn read_shard(client: &mut Client, stream: &str, shard: &str) -> Vec<(u128, Vec<u8>)> {
    let Response::ShardIterator(mut it) = client
        .call(&Request::GetShardIterator {
            stream: stream.into(),
            shard_id: shard.into(),
            iterator_type: 0,
            starting_sequence_number: None,
            timestamp_ms: None,
        })
        .expect("iterator")
    else {
        panic!()
    };
    let mut out = Vec::new();
    loop {
        let Response::Records(page) = client
            .call(&Request::GetRecords { shard_iterator: it.clone(), limit: Some(1000) })
            .expect("get")
        else {
            panic!()
        };
        let before = out.len();
        for batch in split_batches(&page.batches) {
            let (_, bytes) = batch.expect("valid batch from the wire");
            for r in RecordIter::new(bytes).expect("records") {
                let r = r.expect("record");
                if (page.from_position..page.to_position).contains(&r.position)
                    && r.timestamp_ms >= page.min_timestamp_ms
                {
                    let seq = (u128::from(page.shard_index) << 96)
                        | (u128::from(page.stream_epoch) << 72)
                        | (1 << 64)
                        | u128::from(r.position + 1);
                    out.push((seq, r.data.to_vec()));
                }
            }
        }
        match page.next {
            Some(next) if out.len() > before => it = next,
            _ => return out,
        }
    }
}

#[test]
fn streams_pipelined_puts_reads_and_a_clean_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut c = server.client();
    assert_eq!(
        c.call(&Request::CreateStream {
            stream: "s".into(),
            shard_count: Some(2),
            on_demand: false
        })
        .expect("create"),
        Response::Empty
    );
    // 200 pipelined puts on one connection, then their replies.
    let ids: Vec<(u64, u32)> = (0..200u32)
        .map(|i| {
            let req = Request::PutRecord {
                stream: "s".into(),
                partition_key: format!("k{}", i % 10),
                explicit_hash_key: None,
                sequence_number_for_ordering: None,
                data: Bytes::from(i.to_le_bytes().to_vec()),
            };
            (c.send(&req).expect("send"), i)
        })
        .collect();
    let mut acked = Vec::new();
    for (id, i) in ids.iter().rev() {
        let Response::PutRecord { shard_id, sequence_number } = c.receive(*id).expect("reply")
        else {
            panic!()
        };
        acked.push((shard_id, sequence_number, *i));
    }
    // A batch, then split while another connection keeps producing.
    let entries: Vec<Entry> = (0..100u32)
        .map(|i| Entry {
            partition_key: format!("b{i}"),
            explicit_hash_key: None,
            data: Bytes::from(vec![7u8; 500]),
        })
        .collect();
    let Response::PutRecords { failed_record_count, .. } =
        c.call(&Request::PutRecords { stream: "s".into(), records: entries }).expect("put_records")
    else {
        panic!()
    };
    assert_eq!(failed_record_count, 0);
    let producer = {
        let addr = server.addr.clone();
        std::thread::spawn(move || {
            let mut p = Client::connect(&addr).expect("connect");
            (0..100).map(|i| put(&mut p, "s", &format!("late{i}"), b"x")).collect::<Vec<_>>()
        })
    };
    c.call(&Request::SplitShard {
        stream: "s".into(),
        shard_id: "0".into(),
        new_starting_hash_key: 1 << 120,
    })
    .expect("split");
    let late = producer.join().expect("producer");
    assert_eq!(late.len(), 100);
    // Every acknowledged record reads back with its sequence number.
    let mut all = Vec::new();
    for shard in 0..4 {
        all.extend(read_shard(&mut c, "s", &format!("shardId-{shard:012}")));
    }
    for (_, seq, i) in &acked {
        assert!(
            all.contains(&(*seq, i.to_le_bytes().to_vec())),
            "record {i} with its sequence number"
        );
    }
    assert_eq!(all.len(), 400);
    for (_, seq) in &late {
        assert!(all.iter().any(|(s, _)| s == seq));
    }
    // SIGTERM: exit 0; a restart serves the same data.
    assert!(server.terminate().success(), "clean exit on SIGTERM");
    let server = Riffled::start(dir.path());
    let mut c = server.client();
    let mut again = Vec::new();
    for shard in 0..4 {
        again.extend(read_shard(&mut c, "s", &format!("shardId-{shard:012}")));
    }
    assert_eq!(again, all);
}

#[test]
fn bad_input_gets_an_error_and_closes_only_that_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut healthy = server.client();
    healthy
        .call(&Request::CreateStream { stream: "s".into(), shard_count: Some(1), on_demand: false })
        .expect("create");

    // A bad hello: the server answers status 2 and closes.
    let mut raw = std::net::TcpStream::connect(&server.addr).expect("connect");
    raw.write_all(b"HTTP/1.1 GET / \r\n").expect("write");
    let mut answer = [0u8; 16];
    raw.read_exact(&mut answer).expect("server hello");
    assert_eq!(ServerHello::decode(&answer).expect("hello").status, HELLO_BAD);
    let mut rest = Vec::new();
    assert_eq!(raw.read_to_end(&mut rest).expect("closed"), 0);

    let expect_error_then_close = |bytes: &[u8], what: &str| {
        let mut c = server.client();
        c.send_raw(bytes).expect("send");
        let frame = c.next_frame().unwrap_or_else(|e| panic!("{what}: an error frame, got {e}"));
        assert!(frame.flags & FLAG_ERROR != 0, "{what}");
        match Response::decode(frame.opcode, frame.flags, &frame.body) {
            Ok(Response::Error { code, .. }) => {
                assert_eq!(code, "SerializationException", "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            matches!(c.next_frame(), Err(ClientError::Io(_))),
            "{what}: the connection is closed"
        );
    };
    // A frame claiming 4 GiB.
    expect_error_then_close(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], "oversized frame");
    // An unknown opcode.
    let mut f = Vec::new();
    encode_frame(&mut f, 1, 0x7fff, 0, &[]);
    expect_error_then_close(&f, "unknown opcode");
    // A body that does not decode (a string running past the end).
    let mut f = Vec::new();
    encode_frame(&mut f, 2, op::DESCRIBE_STREAM_SUMMARY, 0, &[200, 0, b'x']);
    expect_error_then_close(&f, "truncated body");
    // Unknown flag bits.
    let mut f = Vec::new();
    encode_frame(&mut f, 3, op::DESCRIBE_STREAM_SUMMARY, 0x100, &[1, 0, b's']);
    expect_error_then_close(&f, "unknown flags");

    // Engine errors are ordinary replies: the connection stays open.
    let mut c = server.client();
    match c.call(&Request::DescribeStreamSummary { stream: "nope".into() }) {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, "ResourceNotFoundException");
            assert_eq!(message, "Stream nope under account 000000000000 not found.");
        }
        other => panic!("{other:?}"),
    }
    c.call(&Request::DescribeStreamSummary { stream: "s".into() }).expect("still open");
    // The first connection was never disturbed.
    put(&mut healthy, "s", "k", b"still here");
    let _ = ClientHello::current();
}

/// kill -9 of `riffled` under load from several producers, restart, and every acknowledged
/// record is readable with its sequence number; several cycles on one data directory,
/// alternating who commits (`--commit cores`, the default, and `--commit threads`).
#[test]
fn acknowledged_records_survive_kill_9_of_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    println!("riffled kill9 seed {seed}");
    let mut acked: Vec<(u128, Vec<u8>)> = Vec::new();
    for cycle in 0..3u64 {
        let commit = if cycle == 1 { "threads" } else { "cores" };
        let server = Riffled::start_with(dir.path(), &["--commit", commit]);
        if cycle == 0 {
            server
                .client()
                .call(&Request::CreateStream {
                    stream: "k".into(),
                    shard_count: Some(3),
                    on_demand: false,
                })
                .expect("create");
        }
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let addr = server.addr.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let Ok(mut c) = Client::connect(&addr) else { return got };
                    for i in 0u64.. {
                        let data = format!("c{cycle}-p{p}-{i}").into_bytes();
                        let request = if i % 3 == 0 {
                            Request::PutRecords {
                                stream: "k".into(),
                                records: (0..10)
                                    .map(|j| Entry {
                                        partition_key: format!("{p}-{j}"),
                                        explicit_hash_key: None,
                                        data: Bytes::from([data.clone(), vec![j as u8]].concat()),
                                    })
                                    .collect(),
                            }
                        } else {
                            Request::PutRecord {
                                stream: "k".into(),
                                partition_key: format!("{p}"),
                                explicit_hash_key: None,
                                sequence_number_for_ordering: None,
                                data: Bytes::from(data.clone()),
                            }
                        };
                        match c.call(&request) {
                            Ok(Response::PutRecord { sequence_number, .. }) => {
                                got.push((sequence_number, data))
                            }
                            Ok(Response::PutRecords { results, .. }) => {
                                for (j, r) in results.into_iter().enumerate() {
                                    if let riffle_server::protocol::PutResult::Ok {
                                        sequence_number,
                                        ..
                                    } = r
                                    {
                                        got.push((
                                            sequence_number,
                                            [data.clone(), vec![j as u8]].concat(),
                                        ));
                                    }
                                }
                            }
                            _ => return got, // the server died
                        }
                    }
                    got
                })
            })
            .collect();
        let wait = 100 + (seed.rotate_left(cycle as u32 * 7) % 300);
        std::thread::sleep(std::time::Duration::from_millis(wait));
        drop(server); // SIGKILL
        for p in producers {
            acked.extend(p.join().expect("producer"));
        }
        let server = Riffled::start(dir.path());
        let mut c = server.client();
        let mut found = Vec::new();
        for shard in 0..3 {
            found.extend(read_shard(&mut c, "k", &format!("shardId-{shard:012}")));
        }
        found.sort();
        for record in &acked {
            assert!(
                found.binary_search(record).is_ok(),
                "cycle {cycle}: acknowledged {record:?} is missing"
            );
        }
        println!(
            "cycle {cycle} (--commit {commit}): killed after {wait} ms, {} acknowledged so far, \
             {} readable",
            acked.len(),
            found.len()
        );
    }
    assert!(!acked.is_empty());
}

/// A GetRecords reply that carries more stored batches than one `writev` takes (1,024):
/// each acknowledged put of a quiet shard is a batch of its own, and one reply returns
/// 1,100 of them, zero copy, in several vectored writes.
#[test]
fn a_reply_of_more_batches_than_one_writev_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut c = server.client();
    c.call(&Request::CreateStream { stream: "b".into(), shard_count: Some(1), on_demand: false })
        .expect("create");
    for i in 0..1100u32 {
        put(&mut c, "b", "k", &i.to_be_bytes());
    }
    let Response::ShardIterator(it) = c
        .call(&Request::GetShardIterator {
            stream: "b".into(),
            shard_id: "shardId-000000000000".into(),
            iterator_type: 0,
            starting_sequence_number: None,
            timestamp_ms: None,
        })
        .expect("iterator")
    else {
        panic!("no iterator")
    };
    let Response::Records(page) = c
        .call(&Request::GetRecords { shard_iterator: it, limit: Some(10_000) })
        .expect("a reply of 1,100 batches")
    else {
        panic!("no records")
    };
    let batches = split_batches(&page.batches).count();
    assert!(batches > 1024, "only {batches} batches: the test needs more than one writev takes");
    assert_eq!(page.to_position - page.from_position, 1100);
}

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

/// A record read back: (sequence number, data).
type Stored = (u128, Vec<u8>);

/// Reads a subscription's events until `want` records arrived (or the end of the shard),
/// granting credit back after each event, sleeping `pause` per event (a slow consumer).
fn consume_subscription(
    c: &mut Client,
    id: u64,
    want: usize,
    pause: std::time::Duration,
) -> (Vec<Stored>, Option<Vec<String>>) {
    let mut got = Vec::new();
    loop {
        let frame = c.next_frame().expect("event");
        assert_eq!(frame.request_id, id);
        let response =
            Response::decode(frame.opcode, frame.flags, &frame.body).expect("event decodes");
        let Response::Records(page) = response else { panic!("{response:?}") };
        for batch in split_batches(&page.batches) {
            let (_, bytes) = batch.expect("valid batch");
            for r in RecordIter::new(bytes).expect("records") {
                let r = r.expect("record");
                if (page.from_position..page.to_position).contains(&r.position)
                    && r.timestamp_ms >= page.min_timestamp_ms
                {
                    let seq = (u128::from(page.shard_index) << 96)
                        | (u128::from(page.stream_epoch) << 72)
                        | (1 << 64)
                        | u128::from(r.position + 1);
                    got.push((seq, r.data.to_vec()));
                }
            }
        }
        if frame.flags & riffle_server::protocol::FLAG_END != 0 {
            let children = (!page.child_shards.is_empty())
                .then(|| page.child_shards.iter().map(|c| c.shard_id.clone()).collect());
            return (got, children);
        }
        std::thread::sleep(pause);
        c.send(&Request::Credit {
            subscription_request_id: id,
            bytes: page.batches.len().max(1) as u32,
        })
        .expect("credit");
        if got.len() >= want {
            return (got, None);
        }
    }
}

fn subscribe(c: &mut Client, consumer: &str, shard: &str, credit: u32) -> u64 {
    c.send(&Request::SubscribeToShard {
        stream: "f".into(),
        consumer_name: consumer.into(),
        shard_id: shard.into(),
        iterator_type: 0,
        starting_sequence_number: None,
        timestamp_ms: None,
        credit_bytes: credit,
    })
    .expect("subscribe")
}

/// Push fan-out to 8 consumers, one of them slow, while a producer writes: every consumer
/// gets every record once, in order, as stored.
#[test]
fn push_fan_out_to_eight_consumers_with_one_slow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut admin = server.client();
    admin
        .call(&Request::CreateStream { stream: "f".into(), shard_count: Some(1), on_demand: false })
        .expect("create");
    for i in 0..8 {
        admin
            .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: format!("c{i}") })
            .expect("register");
    }
    admin
        .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: "end".into() })
        .expect("register");
    const N: usize = 600;
    let consumers: Vec<_> = (0..8)
        .map(|i| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr).expect("connect");
                let id = subscribe(&mut c, &format!("c{i}"), "shardId-000000000000", 16 * 1024);
                let pause = std::time::Duration::from_millis(if i == 0 { 15 } else { 0 });
                consume_subscription(&mut c, id, N, pause).0
            })
        })
        .collect();
    let mut sent = Vec::new();
    for i in 0..N {
        let data = format!("{i:06}-{}", "x".repeat(1000)).into_bytes();
        let (_, seq) = put(&mut admin, "f", "k", &data);
        sent.push((seq, data));
    }
    for (i, c) in consumers.into_iter().enumerate() {
        let got = c.join().expect("consumer");
        assert_eq!(got.len(), N, "consumer {i}");
        assert_eq!(got, sent, "consumer {i} got every record once, in order");
    }
    // The end of a closed shard ends the subscription and names the children.
    let mut c = server.client();
    let id = subscribe(&mut c, "end", "shardId-000000000000", 64 * 1024 * 1024);
    std::thread::sleep(std::time::Duration::from_millis(50));
    admin
        .call(&Request::SplitShard {
            stream: "f".into(),
            shard_id: "0".into(),
            new_starting_hash_key: 1 << 127,
        })
        .expect("split");
    let (got, children) = consume_subscription(&mut c, id, usize::MAX, std::time::Duration::ZERO);
    assert_eq!(got.len(), N);
    assert_eq!(
        children,
        Some(vec!["shardId-000000000001".to_string(), "shardId-000000000002".to_string()])
    );
    // An unknown consumer is an ordinary error.
    let id = subscribe(&mut c, "nobody", "shardId-000000000001", 1024);
    assert!(
        matches!(c.receive(id), Err(ClientError::Server { code, .. }) if code == "ResourceNotFoundException")
    );
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

/// SIGTERM with a subscription open: the subscriber is told why (`ServiceUnavailable`),
/// in-flight requests are answered, and riffled exits 0.
#[test]
fn shutdown_ends_subscriptions_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut admin = server.client();
    admin
        .call(&Request::CreateStream { stream: "f".into(), shard_count: Some(1), on_demand: false })
        .expect("create");
    admin
        .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: "c".into() })
        .expect("register");
    let mut c = server.client();
    let id = subscribe(&mut c, "c", "shardId-000000000000", 1 << 20);
    let first = c.next_frame().expect("a first event (heartbeat)");
    assert_eq!(first.request_id, id);
    assert!(server.terminate().success(), "exit 0");
    loop {
        let frame = c.next_frame().expect("frames until the reason");
        if frame.flags & FLAG_ERROR != 0 {
            match Response::decode(frame.opcode, frame.flags, &frame.body) {
                Ok(Response::Error { code, .. }) => assert_eq!(code, "ServiceUnavailable"),
                other => panic!("{other:?}"),
            }
            break;
        }
    }
}

/// SubscribeToShard's rules across connections: one call per second per consumer and shard
/// (`LimitExceededException`), no second subscription within 5 s of a successful one
/// (`ResourceInUseException`), and after that the newer one takes over (the older ends with
/// `ResourceInUseException`).
#[test]
fn subscribe_to_shard_rate_and_takeover_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut admin = server.client();
    admin
        .call(&Request::CreateStream { stream: "f".into(), shard_count: Some(1), on_demand: false })
        .expect("create");
    admin
        .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: "c".into() })
        .expect("register");
    let mut first = server.client();
    let first_id = subscribe(&mut first, "c", "0", 1 << 20);
    assert_eq!(first.next_frame().expect("an event").request_id, first_id);
    let mut second = server.client();
    let id = subscribe(&mut second, "c", "shardId-000000000000", 1 << 20);
    assert!(
        matches!(second.receive(id), Err(ClientError::Server { code, .. }) if code == "LimitExceededException")
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let id = subscribe(&mut second, "c", "0", 1 << 20);
    assert!(
        matches!(second.receive(id), Err(ClientError::Server { code, .. }) if code == "ResourceInUseException")
    );
    std::thread::sleep(std::time::Duration::from_millis(4000));
    let id = subscribe(&mut second, "c", "0", 1 << 20);
    assert_eq!(second.next_frame().expect("the newer subscription runs").request_id, id);
    loop {
        let frame = first.next_frame().expect("the older subscription's frames");
        if frame.flags & FLAG_ERROR != 0 {
            match Response::decode(frame.opcode, frame.flags, &frame.body) {
                Ok(Response::Error { code, .. }) => assert_eq!(code, "ResourceInUseException"),
                other => panic!("{other:?}"),
            }
            break;
        }
    }
}
