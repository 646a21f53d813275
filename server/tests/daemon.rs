//! The daemon embedded in-process, on each of its two network paths: the io_uring cores and
//! the epoll fallback that serves where the kernel refuses io_uring (a machine that allows
//! io_uring reaches the fallback only by asking for it, as here).

mod binary;

use binary::read_shard;
use bytes::Bytes;
use riffle_engine::{CommitConfig, Durability, Engine, EngineConfig, LimitsConfig};
use riffle_server::client::Client;
use riffle_server::daemon::{Daemon, DaemonConfig};
use riffle_server::protocol::{Request, Response};
use riffle_server::service::Service;

fn daemon(dir: &std::path::Path, io_uring: bool, commit_on_cores: bool) -> Daemon {
    let engine = Engine::open(
        dir,
        EngineConfig {
            commit: CommitConfig { durability: Durability::Sync, ..CommitConfig::default() },
            commit_groups: 2,
            limits: LimitsConfig::unlimited(),
            maintenance_interval_ms: 0,
            ..EngineConfig::default()
        },
    )
    .expect("engine");
    let config = DaemonConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        cores: 2,
        io_uring,
        commit_on_cores,
        ..DaemonConfig::default()
    };
    Daemon::start(config, Service::new(engine)).expect("daemon")
}

/// Puts from several connections (spread over both cores by SO_REUSEPORT), then reads every
/// shard back: each acknowledged record is there once, with the sequence number its put
/// returned.
fn puts_and_reads_back(daemon: &Daemon) {
    let addr = daemon.local_addr();
    let mut c = Client::connect(addr).expect("connect");
    c.call(&Request::CreateStream { stream: "d".into(), shard_count: Some(4), on_demand: false })
        .expect("create");
    let acked: Vec<(String, u128, Vec<u8>)> = std::thread::scope(|s| {
        let producers: Vec<_> = (0..6u32)
            .map(|p| {
                s.spawn(move || {
                    let mut c = Client::connect(addr).expect("connect");
                    (0..50u32)
                        .map(|i| {
                            let data = format!("{p}-{i}").into_bytes();
                            let reply = c
                                .call(&Request::PutRecord {
                                    stream: "d".into(),
                                    partition_key: format!("k{p}-{i}"),
                                    explicit_hash_key: None,
                                    sequence_number_for_ordering: None,
                                    data: Bytes::from(data.clone()),
                                })
                                .expect("put");
                            let Response::PutRecord { shard_id, sequence_number } = reply else {
                                panic!("{reply:?}")
                            };
                            (shard_id, sequence_number, data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        producers.into_iter().flat_map(|h| h.join().expect("producer")).collect()
    });
    let mut stored = Vec::new();
    for shard in 0..4 {
        let shard_id = format!("shardId-{shard:012}");
        for (sequence_number, data) in read_shard(&mut c, "d", &shard_id) {
            stored.push((shard_id.clone(), sequence_number, data));
        }
    }
    let mut acked = acked;
    acked.sort();
    stored.sort();
    assert_eq!(stored.len(), 300);
    assert_eq!(stored, acked);
}

#[test]
fn the_epoll_fallback_serves_puts_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = daemon(dir.path(), false, true);
    assert_eq!(daemon.backend(), "epoll");
    puts_and_reads_back(&daemon);
    daemon.shutdown();
}

#[test]
fn io_uring_cores_serve_puts_and_reads_with_either_committer() {
    for commit_on_cores in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon = daemon(dir.path(), true, commit_on_cores);
        if daemon.backend() != "io_uring" {
            // A kernel, seccomp profile or container that refuses io_uring: the daemon
            // served with epoll instead, which the other test covers.
            eprintln!("io_uring unavailable here: skipped");
            return daemon.shutdown();
        }
        puts_and_reads_back(&daemon);
        daemon.shutdown();
    }
}
