//! The child process of the kill -9 test: appends the deterministic workload of
//! `riffle_tests` under `sync` durability and reports every acknowledgement on stdout,
//! until it is killed.
//!
//! Usage: `riffle-crash-child <dir> <std|auto|uring> <run> <shards> <threads>`
//!
//! Opens `<shards>` logs (`<dir>/shard-<i>`) in one commit group, prints `READY` with their
//! recovered end positions, then runs `<threads>` producers. Each producer appends, waits
//! for the acknowledgement, and only then prints its `ACK` line (one `write` per line,
//! flushed) and makes its next append. Any error ends the process with status 2, which the
//! test reports (it expects death by SIGKILL and nothing else).

use std::io::Write;
use std::path::PathBuf;

use riffle_engine::{CommitConfig, CommitGroup, Durability, IoBackend, Record, ShardLog};
use riffle_tests::{append_plan, log_config, partition_key, record_data, shard_dir, Ack, RecordId};

fn fail(what: &str) -> ! {
    eprintln!("riffle-crash-child: {what}");
    std::process::exit(2);
}

/// Writes one whole line to stdout with a single `write` and flushes it.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
        fail(&format!("stdout: {e}"));
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        fail(&format!(
            "bad or missing <{name}>; usage: riffle-crash-child <dir> <std|auto|uring> <run> \
             <shards> <threads>"
        ))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let root: PathBuf = arg(&args, 1, "dir");
    let backend: IoBackend = arg(&args, 2, "backend");
    let run: u32 = arg(&args, 3, "run");
    let shards: usize = arg(&args, 4, "shards");
    let threads: u32 = arg(&args, 5, "threads");
    if shards == 0 || threads == 0 {
        fail("shards and threads must be at least 1");
    }

    let group = CommitGroup::start(CommitConfig {
        durability: Durability::Sync,
        io_backend: backend,
        ..CommitConfig::default()
    })
    .unwrap_or_else(|e| fail(&format!("commit group: {e}")));
    let logs: Vec<ShardLog> = (0..shards)
        .map(|s| {
            ShardLog::open(&shard_dir(&root, s), log_config(), &group)
                .unwrap_or_else(|e| fail(&format!("open shard {s}: {e}")))
        })
        .collect();
    let ends: Vec<String> = logs.iter().map(|l| l.end_position().to_string()).collect();
    emit(&format!("READY {}\n", ends.join(" ")));

    let producers: Vec<_> = (0..threads)
        .map(|thread| {
            let logs = logs.clone();
            std::thread::spawn(move || produce(&logs, run, thread))
        })
        .collect();
    for p in producers {
        // Producers never return; a panic ends the process visibly.
        if p.join().is_err() {
            fail("a producer panicked");
        }
    }
}

fn produce(logs: &[ShardLog], run: u32, thread: u32) {
    let key = partition_key(run, thread);
    let mut seq = 0u64;
    loop {
        let plan = append_plan(run, thread, seq, logs.len());
        let datas: Vec<Vec<u8>> = (seq..seq + plan.count)
            .map(|s| record_data(RecordId { run, thread, seq: s }))
            .collect();
        let records: Vec<Record<'_>> = datas
            .iter()
            .map(|d| Record { partition_key: key.as_bytes(), explicit_hash_key: None, data: d })
            .collect();
        let position = logs[plan.shard]
            .append_wait(&records)
            .unwrap_or_else(|e| fail(&format!("append to shard {}: {e}", plan.shard)));
        emit(&Ack { shard: plan.shard, position, count: plan.count, thread, seq }.line());
        seq += plan.count;
    }
}
