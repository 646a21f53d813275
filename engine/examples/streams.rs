//! The embedded "run Riffle" example: a Kinesis-like stream in a data directory (default
//! `./riffle-data`), with default settings (durability `sync`, Kinesis limits off so the
//! example is not throttled).
//!
//! ```text
//! cargo run --release -p riffle-engine --example streams -- [DATA_DIR] [RECORDS]
//! ```
//!
//! It creates the stream `demo` with 2 shards (if it is not there yet), puts records from
//! 8 producer threads with `PutRecords`, splits a shard, puts more, then reads every shard
//! from TRIM_HORIZON, parents before children, checks each key's records came back in
//! order, and prints what it did. Run it again: the engine reopens, recovers, and the
//! stream has grown.

use std::collections::BTreeMap;
use std::time::Instant;

use riffle_engine::{
    Engine, EngineConfig, IteratorType, LimitsConfig, ListShardsInput, PutRecordInput, ShardFilter,
};

const KEYS: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "riffle-data".into());
    let records: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20_000);

    let opened = Instant::now();
    let config = EngineConfig { limits: LimitsConfig::unlimited(), ..EngineConfig::default() };
    let engine = Engine::open(&dir, config)?;
    println!(
        "opened {dir} in {:.1} ms (I/O backend {}, durability {:?})",
        opened.elapsed().as_secs_f64() * 1e3,
        engine.backend_name(),
        engine.config().commit.durability
    );
    if engine.describe_stream_summary("demo").is_err() {
        engine.create_stream("demo", Some(2), None, &[])?;
        println!("created stream demo with 2 shards");
    }

    // Records carry "<run>:<n>": the run (this process's start time) and a per-run number.
    let run =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let put = |label: &str, from: usize, count: usize| -> Result<(), Box<dyn std::error::Error>> {
        let started = Instant::now();
        std::thread::scope(|s| {
            for p in 0..8 {
                let engine = &engine;
                s.spawn(move || {
                    let mine: Vec<usize> = (from + p..from + count).step_by(8).collect();
                    for chunk in mine.chunks(100) {
                        let payloads: Vec<(String, Vec<u8>)> = chunk
                            .iter()
                            .map(|i| {
                                (format!("key-{}", i % KEYS), format!("{run}:{i}").into_bytes())
                            })
                            .collect();
                        let batch: Vec<PutRecordInput<'_>> =
                            payloads.iter().map(|(k, d)| PutRecordInput::new(k, d)).collect();
                        let out = engine.put_records("demo", &batch).expect("put_records");
                        assert_eq!(out.failed_record_count, 0);
                    }
                });
            }
        });
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label}: put {count} records in {:.0} ms ({:.0} records/s)",
            secs * 1e3,
            count as f64 / secs
        );
        Ok(())
    };
    put("before the split", 0, records / 2)?;

    let open = engine.list_shards(&ListShardsInput {
        stream: Some("demo"),
        shard_filter: Some(ShardFilter::AtLatest),
        ..ListShardsInput::default()
    })?;
    let widest = open
        .shards
        .iter()
        .max_by_key(|s| s.hash_key_range.end - s.hash_key_range.start)
        .expect("an open shard");
    let middle =
        widest.hash_key_range.start + (widest.hash_key_range.end - widest.hash_key_range.start) / 2;
    engine.split_shard("demo", &widest.shard_id, &middle.to_string())?;
    println!("split {} at hash key {middle}", widest.shard_id);
    put("after the split", records / 2, records - records / 2)?;

    // Read everything back, parents before children (shard ids grow along the lineage).
    let started = Instant::now();
    let shards = engine
        .list_shards(&ListShardsInput { stream: Some("demo"), ..ListShardsInput::default() })?;
    let mut per_key: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut total = 0usize;
    for shard in &shards.shards {
        let mut iterator = engine.get_shard_iterator(
            "demo",
            &shard.shard_id,
            IteratorType::TrimHorizon,
            None,
            None,
        )?;
        let mut count = 0;
        loop {
            let page = engine.get_records(&iterator, None)?;
            count += page.records.len();
            for r in &page.records {
                let text = std::str::from_utf8(&r.data)?;
                let (run, n) = text.split_once(':').ok_or("unexpected record")?;
                per_key
                    .entry(r.partition_key_str().to_string())
                    .or_default()
                    .push((run.parse()?, n.parse()?));
            }
            match page.next_shard_iterator {
                Some(next) if !page.records.is_empty() => iterator = next,
                _ => break,
            }
        }
        total += count;
        let state = if shard.ending_sequence_number.is_some() { "closed" } else { "open" };
        println!("  {} ({state}): {count} records", shard.shard_id);
    }
    // One producer thread writes each key, so its records must come back in put order.
    let in_order = per_key.values().all(|v| v.windows(2).all(|w| w[0] < w[1]));
    println!(
        "read {total} records from {} shards in {:.0} ms; {} keys, each key's records in put order: {in_order}",
        shards.shards.len(),
        started.elapsed().as_secs_f64() * 1e3,
        per_key.len(),
    );
    if !in_order {
        return Err("per-key order violated".into());
    }
    engine.close()?;
    Ok(())
}
