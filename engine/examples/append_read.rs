//! The embedded "run Riffle" example: opens a shard log in a data directory (default
//! `./riffle-data/example-shard`), appends records from several producer threads under
//! `sync` durability, reads them back zero-copy, and prints what it did.
//!
//! ```text
//! cargo run --release -p riffle-engine --example append_read -- [DATA_DIR] [RECORDS]
//! ```
//!
//! Run it twice: the second run recovers the log and continues after the first run's
//! records.

use std::path::PathBuf;
use std::time::Instant;

use riffle_engine::batch::{split_batches, RecordIter};
use riffle_engine::{CommitConfig, CommitGroup, LogConfig, Record, ShardLog};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "riffle-data/example-shard".into()));
    let records: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let producers = 8u64;

    let opened = Instant::now();
    let group = CommitGroup::start(CommitConfig::default())?;
    let log = ShardLog::open(&dir, LogConfig::default(), &group)?;
    let start = log.end_position();
    println!(
        "opened {} in {:.1} ms: {} records already there, {} segment(s), I/O backend {}, durability {:?}",
        dir.display(),
        opened.elapsed().as_secs_f64() * 1e3,
        start,
        log.segment_count(),
        group.backend_name(),
        group.durability(),
    );

    let appending = Instant::now();
    std::thread::scope(|s| {
        for p in 0..producers {
            let log = log.clone();
            s.spawn(move || {
                for i in (p..records).step_by(producers as usize) {
                    let key = format!("user-{}", i % 97);
                    let data = format!("event {i} from producer {p}");
                    let record = Record {
                        partition_key: key.as_bytes(),
                        explicit_hash_key: None,
                        data: data.as_bytes(),
                    };
                    log.append_wait(&[record]).expect("append");
                }
            });
        }
    });
    let secs = appending.elapsed().as_secs_f64();
    println!(
        "appended {records} records from {producers} producers in {:.0} ms ({:.0} acknowledged records/s, each after fdatasync)",
        secs * 1e3,
        records as f64 / secs
    );

    let reading = Instant::now();
    let (mut position, mut seen, mut bytes) = (start, 0u64, 0usize);
    while let Some(read) = log.read(position, 1 << 20)? {
        bytes += read.bytes.len();
        for batch in split_batches(&read.bytes) {
            let (_, batch) = batch?;
            for record in RecordIter::new(batch)? {
                if record?.position >= position {
                    seen += 1;
                }
            }
        }
        position = read.next_position;
    }
    println!(
        "read back {seen} records ({bytes} bytes, zero-copy from the segment map) in {:.1} ms; positions {start}..{}",
        reading.elapsed().as_secs_f64() * 1e3,
        log.end_position()
    );
    assert_eq!(seen, records, "every appended record reads back");
    log.close()?;
    Ok(())
}
