//! The child process of the engine kill -9 test: puts records into a stream under `sync`
//! durability from several producers while another thread splits and merges shards, and
//! reports every acknowledgement on stdout, until it is killed.
//!
//! Usage: `riffle-engine-crash-child <dir> <std|auto> <run> [<journal bytes>]`
//! (the journal's size; 0 or absent: the default).
//!
//! Opens the engine in `<dir>`, creates the stream `crash` (2 shards) if it is missing,
//! prints `READY`, then runs 3 producers and 1 resharder. A producer puts one record, waits
//! for the acknowledgement, then prints `ACK <sequence number> <shard> <key> <data>` (one
//! `write` per line). The resharder splits a random open shard in the middle, or merges a
//! random adjacent pair, every few milliseconds, keeping 2..=12 open shards. Any error ends
//! the process with status 2, which the test reports.

use std::io::Write;

use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, IoBackend, LimitsConfig, ListShardsInput,
    PutRecordInput, ShardFilter,
};
use riffle_tests::SplitMix64;

fn fail(what: &str) -> ! {
    eprintln!("riffle-engine-crash-child: {what}");
    std::process::exit(2);
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        fail(&format!("stdout: {e}"));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: riffle-engine-crash-child <dir> <std|auto> <run> [<journal bytes>]";
    let dir = args.get(1).unwrap_or_else(|| fail(usage));
    let backend: IoBackend =
        args.get(2).and_then(|a| a.parse().ok()).unwrap_or_else(|| fail(usage));
    let run: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or_else(|| fail(usage));
    let journal_bytes = match args.get(4) {
        Some(a) => a.parse().unwrap_or_else(|_| fail(usage)),
        None => 0,
    };
    let config = EngineConfig {
        journal_bytes: if journal_bytes == 0 {
            EngineConfig::default().journal_bytes
        } else {
            journal_bytes
        },
        commit: CommitConfig {
            durability: Durability::Sync,
            io_backend: backend,
            ..CommitConfig::default()
        },
        limits: LimitsConfig::unlimited(),
        log: riffle_engine::LogConfig { segment_bytes: 2 * 1024 * 1024, ..Default::default() },
        maintenance_interval_ms: 0,
        ..EngineConfig::default()
    };
    let engine = Engine::open(dir, config).unwrap_or_else(|e| fail(&format!("open: {e}")));
    if engine.describe_stream_summary("crash").is_err() {
        engine
            .create_stream("crash", Some(2), None, &[])
            .unwrap_or_else(|e| fail(&format!("create: {e}")));
    }
    emit("READY\n");
    let mut threads = Vec::new();
    for producer in 0..3u64 {
        let engine = engine.clone();
        threads.push(std::thread::spawn(move || {
            let mut seq = 0u64;
            loop {
                let key = format!("r{run}-p{producer}-k{}", seq % 8);
                let data =
                    format!("{run}:{producer}:{seq}:{}", "x".repeat((seq % 7 * 150) as usize));
                let out = engine
                    .put_record("crash", &PutRecordInput::new(&key, data.as_bytes()))
                    .unwrap_or_else(|e| fail(&format!("put: {e}")));
                emit(&format!("ACK {} {} {key} {data}\n", out.sequence_number, out.shard_id));
                seq += 1;
            }
        }));
    }
    let resharder = std::thread::spawn(move || {
        let mut rng = SplitMix64::new(run.wrapping_mul(0x9E37_79B9) ^ 0x5eed);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(2 + rng.below(8)));
            let open = engine
                .list_shards(&ListShardsInput {
                    stream: Some("crash"),
                    shard_filter: Some(ShardFilter::AtLatest),
                    ..Default::default()
                })
                .unwrap_or_else(|e| fail(&format!("list_shards: {e}")));
            let mut open = open.shards;
            open.sort_by_key(|s| s.hash_key_range.start);
            let merge = open.len() >= 12 || (open.len() > 2 && rng.below(2) == 0);
            let result = if merge {
                let i = rng.below(open.len() as u64 - 1) as usize;
                engine.merge_shards("crash", &open[i].shard_id, &open[i + 1].shard_id)
            } else {
                let s = &open[rng.below(open.len() as u64) as usize];
                let (lo, hi) = (s.hash_key_range.start, s.hash_key_range.end);
                engine.split_shard("crash", &s.shard_id, &(lo + (hi - lo) / 2).to_string())
            };
            result.unwrap_or_else(|e| fail(&format!("reshard: {e}")));
        }
    });
    threads.push(resharder);
    for t in threads {
        if t.join().is_err() {
            fail("a thread panicked");
        }
    }
}
