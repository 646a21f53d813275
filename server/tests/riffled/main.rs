//! End to end against a real `riffled` process on an ephemeral loopback port: the harness
//! that starts one ([`Riffled`]) and the data path (streams, puts, reads, bad input, kill -9).
//! Push subscriptions are in `push.rs`; the ways users start and drive the daemon (the
//! `riffle` CLI, the async client, the config file, the port check) in `front_ends.rs`.

#[path = "../binary/mod.rs"]
mod binary;
mod front_ends;
mod push;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use binary::read_shard;
use bytes::Bytes;
use riffle_engine::batch::split_batches;
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
