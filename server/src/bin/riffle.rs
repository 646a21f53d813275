//! `riffle`: the command line for `riffled`. Commands and flags mirror `aws kinesis` where
//! it has an equivalent, and print the same JSON shapes (PascalCase keys, sequence numbers
//! and hash keys as decimal strings, `Data` in base64). Plus `riffle put` (one record per
//! stdin line, batched) and `riffle tail` (follows every shard through resharding).
//!
//! Differences from `aws kinesis`: `--data` is the record's text as given (not base64);
//! `--endpoint host:port` picks the server (default 127.0.0.1:4617).

use std::io::BufRead;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use riffle_server::client::{Client, ClientError};
use riffle_server::protocol::{
    Consumer, Entry, Filter, PutResult, Records, Request, Response, Shard, Summary,
};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "riffle", version, about = "Command line for riffled (mirrors `aws kinesis`)")]
struct Cli {
    /// Server address.
    #[arg(long, global = true, env = "RIFFLE_ENDPOINT", default_value = "127.0.0.1:4617")]
    endpoint: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates a stream.
    CreateStream {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        shard_count: Option<u32>,
        /// `PROVISIONED` (default) or `ON_DEMAND`.
        #[arg(long, default_value = "PROVISIONED")]
        stream_mode: String,
    },
    /// Deletes a stream and its data.
    DeleteStream {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        enforce_consumer_deletion: bool,
    },
    /// Describes a stream with its shards.
    DescribeStream {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        exclusive_start_shard_id: Option<String>,
    },
    /// Describes a stream without its shards.
    DescribeStreamSummary {
        #[arg(long)]
        stream_name: String,
    },
    /// Lists streams.
    ListStreams {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        exclusive_start_stream_name: Option<String>,
        #[arg(long)]
        next_token: Option<String>,
    },
    /// Lists shards.
    ListShards {
        #[arg(long)]
        stream_name: Option<String>,
        #[arg(long)]
        next_token: Option<String>,
        #[arg(long)]
        exclusive_start_shard_id: Option<String>,
        #[arg(long)]
        max_results: Option<u32>,
        /// `FROM_TRIM_HORIZON`, `AT_TRIM_HORIZON`, `AT_LATEST`, `AFTER_SHARD_ID=<id>`,
        /// `AT_TIMESTAMP=<ms>`, `FROM_TIMESTAMP=<ms>`.
        #[arg(long)]
        shard_filter: Option<String>,
    },
    /// Puts one record.
    PutRecord {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        partition_key: String,
        /// The record's data, as text.
        #[arg(long)]
        data: String,
        #[arg(long)]
        explicit_hash_key: Option<u128>,
        #[arg(long)]
        sequence_number_for_ordering: Option<u128>,
    },
    /// Gets a shard iterator.
    GetShardIterator {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        shard_id: String,
        /// TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP.
        #[arg(long)]
        shard_iterator_type: String,
        #[arg(long)]
        starting_sequence_number: Option<u128>,
        /// Milliseconds since the Unix epoch.
        #[arg(long)]
        timestamp: Option<u64>,
    },
    /// Gets records from a shard iterator.
    GetRecords {
        #[arg(long)]
        shard_iterator: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Splits a shard.
    SplitShard {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        shard_to_split: String,
        #[arg(long)]
        new_starting_hash_key: u128,
    },
    /// Merges two adjacent shards.
    MergeShards {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        shard_to_merge: String,
        #[arg(long)]
        adjacent_shard_to_merge: String,
    },
    /// Scales to a number of uniform shards.
    UpdateShardCount {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        target_shard_count: u32,
        #[arg(long, default_value = "UNIFORM_SCALING")]
        scaling_type: String,
    },
    /// Raises the retention period.
    IncreaseStreamRetentionPeriod {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        retention_period_hours: u32,
    },
    /// Lowers the retention period.
    DecreaseStreamRetentionPeriod {
        #[arg(long)]
        stream_name: String,
        #[arg(long)]
        retention_period_hours: u32,
    },
    /// Registers an enhanced fan-out consumer.
    RegisterStreamConsumer {
        /// Stream name or ARN.
        #[arg(long, alias = "stream-arn")]
        stream_name: String,
        #[arg(long)]
        consumer_name: String,
    },
    /// Deregisters a consumer.
    DeregisterStreamConsumer {
        #[arg(long, alias = "stream-arn")]
        stream_name: String,
        #[arg(long)]
        consumer_name: String,
    },
    /// Describes a consumer.
    DescribeStreamConsumer {
        #[arg(long, alias = "stream-arn")]
        stream_name: String,
        #[arg(long)]
        consumer_name: String,
    },
    /// Lists a stream's consumers.
    ListStreamConsumers {
        #[arg(long, alias = "stream-arn")]
        stream_name: String,
        #[arg(long)]
        max_results: Option<u32>,
        #[arg(long)]
        next_token: Option<String>,
    },
    /// Puts one record per line of standard input (PutRecords of up to `--batch`).
    Put {
        #[arg(long)]
        stream_name: String,
        /// Partition key of every record (default: the line number, spreading over shards).
        #[arg(long)]
        partition_key: Option<String>,
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Prints records as they arrive, from every shard, following resharding (parents
    /// before children). One JSON object per line.
    Tail {
        #[arg(long)]
        stream_name: String,
        /// `trim-horizon`, `latest` or `at-timestamp:<ms>`.
        #[arg(long, default_value = "latest")]
        from: String,
        /// Stop after this many records (default: never).
        #[arg(long)]
        max_records: Option<u64>,
        /// Milliseconds between polls of a shard with nothing new.
        #[arg(long, default_value_t = 200)]
        poll_ms: u64,
    },
}

fn status(code: u8) -> &'static str {
    ["CREATING", "ACTIVE", "UPDATING", "DELETING"]
        .get(usize::from(code))
        .copied()
        .unwrap_or("UNKNOWN")
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "StreamName": s.name, "StreamARN": s.arn, "StreamStatus": status(s.status),
        "StreamModeDetails": {"StreamMode": if s.mode == 1 { "ON_DEMAND" } else { "PROVISIONED" }},
        "RetentionPeriodHours": s.retention_hours,
        "StreamCreationTimestamp": s.created_ms as f64 / 1000.0,
        "EncryptionType": "NONE", "OpenShardCount": s.open_shard_count, "ConsumerCount": s.consumer_count,
    })
}

fn shard_json(s: &Shard) -> Value {
    let mut v = json!({
        "ShardId": s.shard_id,
        "HashKeyRange": {"StartingHashKey": s.starting_hash_key.to_string(), "EndingHashKey": s.ending_hash_key.to_string()},
        "SequenceNumberRange": {"StartingSequenceNumber": s.starting_sequence_number.to_string()},
    });
    if let Some(p) = &s.parent {
        v["ParentShardId"] = json!(p);
    }
    if let Some(p) = &s.adjacent_parent {
        v["AdjacentParentShardId"] = json!(p);
    }
    if let Some(e) = s.ending_sequence_number {
        v["SequenceNumberRange"]["EndingSequenceNumber"] = json!(e.to_string());
    }
    v
}

fn consumer_json(c: &Consumer) -> Value {
    let status =
        ["CREATING", "ACTIVE", "DELETING"].get(usize::from(c.status)).copied().unwrap_or("UNKNOWN");
    json!({
        "ConsumerName": c.name, "ConsumerARN": c.arn,
        "ConsumerStatus": status,
        "ConsumerCreationTimestamp": c.created_ms as f64 / 1000.0,
    })
}

/// A decoded record: (sequence number, arrival ms, partition key, data).
type Decoded = (u128, u64, String, Vec<u8>);

/// The records of a GetRecords body (checked and windowed by the client library).
fn decode_records(page: &Records) -> Result<Vec<Decoded>, String> {
    Ok(riffle_server::client::decode_records(page)?
        .into_iter()
        .map(|r| {
            let key = String::from_utf8_lossy(&r.partition_key).into_owned();
            (r.sequence_number, r.approximate_arrival_ms, key, r.data.to_vec())
        })
        .collect())
}

fn record_json(seq: u128, ts: u64, key: &str, data: &[u8]) -> Value {
    json!({
        "SequenceNumber": seq.to_string(), "ApproximateArrivalTimestamp": ts as f64 / 1000.0,
        "Data": base64::engine::general_purpose::STANDARD.encode(data), "PartitionKey": key,
    })
}

fn iterator_type(text: &str) -> Result<u8, String> {
    Ok(match text {
        "TRIM_HORIZON" => 0,
        "LATEST" => 1,
        "AT_SEQUENCE_NUMBER" => 2,
        "AFTER_SEQUENCE_NUMBER" => 3,
        "AT_TIMESTAMP" => 4,
        _ => return Err(format!("unknown shard iterator type {text}")),
    })
}

fn filter(text: &str) -> Result<Filter, String> {
    let (kind, arg) = text.split_once('=').map_or((text, None), |(k, a)| (k, Some(a)));
    let ms = || arg.and_then(|a| a.parse().ok()).ok_or(format!("{kind} needs =<milliseconds>"));
    Ok(match kind {
        "FROM_TRIM_HORIZON" => Filter::FromTrimHorizon,
        "AT_TRIM_HORIZON" => Filter::AtTrimHorizon,
        "AT_LATEST" => Filter::AtLatest,
        "AFTER_SHARD_ID" => {
            Filter::AfterShardId(arg.ok_or("AFTER_SHARD_ID needs =<shard id>")?.into())
        }
        "AT_TIMESTAMP" => Filter::AtTimestamp(ms()?),
        "FROM_TIMESTAMP" => Filter::FromTimestamp(ms()?),
        _ => return Err(format!("unknown shard filter {text}")),
    })
}

fn main() {
    let cli = Cli::parse();
    let result = Client::connect(&cli.endpoint)
        .map_err(|e| format!("connecting to {}: {e}", cli.endpoint))
        .and_then(|mut client| run(&mut client, cli.command));
    match result {
        Ok(Some(v)) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Ok(None) => {}
        Err(e) => {
            eprintln!("riffle: {e}");
            std::process::exit(if e.contains("Exception") { 254 } else { 1 });
        }
    }
}

fn call(client: &mut Client, request: Request) -> Result<Response, String> {
    client.call(&request).map_err(|e| match e {
        ClientError::Server { code, message } => format!("An error occurred ({code}): {message}"),
        other => other.to_string(),
    })
}

fn run(client: &mut Client, command: Cmd) -> Result<Option<Value>, String> {
    let out = match command {
        Cmd::CreateStream { stream_name, shard_count, stream_mode } => {
            call(
                client,
                Request::CreateStream {
                    stream: stream_name,
                    shard_count,
                    on_demand: stream_mode == "ON_DEMAND",
                },
            )?;
            None
        }
        Cmd::DeleteStream { stream_name, enforce_consumer_deletion } => {
            call(client, Request::DeleteStream { stream: stream_name, enforce_consumer_deletion })?;
            None
        }
        Cmd::DescribeStream { stream_name, limit, exclusive_start_shard_id } => {
            match call(
                client,
                Request::DescribeStream { stream: stream_name, limit, exclusive_start_shard_id },
            )? {
                Response::DescribeStream { summary, shards, has_more_shards } => {
                    let mut d = summary_json(&summary);
                    d["Shards"] = Value::Array(shards.iter().map(shard_json).collect());
                    d["HasMoreShards"] = json!(has_more_shards);
                    Some(json!({"StreamDescription": d}))
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::DescribeStreamSummary { stream_name } => {
            match call(client, Request::DescribeStreamSummary { stream: stream_name })? {
                Response::Summary(s) => Some(json!({"StreamDescriptionSummary": summary_json(&s)})),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::ListStreams { limit, exclusive_start_stream_name, next_token } => {
            match call(
                client,
                Request::ListStreams { limit, exclusive_start_stream_name, next_token },
            )? {
                Response::ListStreams { names, has_more, next_token } => {
                    let mut v = json!({"StreamNames": names, "HasMoreStreams": has_more});
                    if let Some(t) = next_token {
                        v["NextToken"] = json!(t);
                    }
                    Some(v)
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::ListShards {
            stream_name,
            next_token,
            exclusive_start_shard_id,
            max_results,
            shard_filter,
        } => {
            let filter = shard_filter.as_deref().map(filter).transpose()?;
            match call(
                client,
                Request::ListShards {
                    stream: stream_name,
                    next_token,
                    exclusive_start_shard_id,
                    max_results,
                    filter,
                },
            )? {
                Response::ListShards { shards, next_token } => {
                    let mut v =
                        json!({"Shards": shards.iter().map(shard_json).collect::<Vec<_>>()});
                    if let Some(t) = next_token {
                        v["NextToken"] = json!(t);
                    }
                    Some(v)
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::PutRecord {
            stream_name,
            partition_key,
            data,
            explicit_hash_key,
            sequence_number_for_ordering,
        } => {
            match call(
                client,
                Request::PutRecord {
                    stream: stream_name,
                    partition_key,
                    explicit_hash_key,
                    sequence_number_for_ordering,
                    data: Bytes::from(data.into_bytes()),
                },
            )? {
                Response::PutRecord { shard_id, sequence_number } => Some(
                    json!({"ShardId": shard_id, "SequenceNumber": sequence_number.to_string()}),
                ),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::GetShardIterator {
            stream_name,
            shard_id,
            shard_iterator_type,
            starting_sequence_number,
            timestamp,
        } => {
            let iterator_type = iterator_type(&shard_iterator_type)?;
            match call(
                client,
                Request::GetShardIterator {
                    stream: stream_name,
                    shard_id,
                    iterator_type,
                    starting_sequence_number,
                    timestamp_ms: timestamp,
                },
            )? {
                Response::ShardIterator(it) => Some(json!({"ShardIterator": it})),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::GetRecords { shard_iterator, limit } => {
            match call(client, Request::GetRecords { shard_iterator, limit })? {
                Response::Records(page) => {
                    let records: Vec<Value> = decode_records(&page)?
                        .iter()
                        .map(|(s, t, k, d)| record_json(*s, *t, k, d))
                        .collect();
                    let mut v = json!({"Records": records, "MillisBehindLatest": page.millis_behind_latest});
                    if let Some(next) = &page.next {
                        v["NextShardIterator"] = json!(next);
                    }
                    if !page.child_shards.is_empty() {
                        v["ChildShards"] = Value::Array(
                        page.child_shards
                            .iter()
                            .map(|c| {
                                json!({"ShardId": c.shard_id, "ParentShards": c.parent_shards,
                                    "HashKeyRange": {"StartingHashKey": c.starting_hash_key.to_string(),
                                                      "EndingHashKey": c.ending_hash_key.to_string()}})
                            })
                            .collect(),
                    );
                    }
                    Some(v)
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::SplitShard { stream_name, shard_to_split, new_starting_hash_key } => {
            call(
                client,
                Request::SplitShard {
                    stream: stream_name,
                    shard_id: shard_to_split,
                    new_starting_hash_key,
                },
            )?;
            None
        }
        Cmd::MergeShards { stream_name, shard_to_merge, adjacent_shard_to_merge } => {
            call(
                client,
                Request::MergeShards {
                    stream: stream_name,
                    shard_id: shard_to_merge,
                    adjacent_shard_id: adjacent_shard_to_merge,
                },
            )?;
            None
        }
        Cmd::UpdateShardCount { stream_name, target_shard_count, scaling_type } => {
            if scaling_type != "UNIFORM_SCALING" {
                return Err("only UNIFORM_SCALING exists".into());
            }
            match call(
                client,
                Request::UpdateShardCount { stream: stream_name.clone(), target_shard_count },
            )? {
                Response::UpdateShardCount { current_shard_count, target_shard_count } => {
                    Some(json!({
                        "StreamName": stream_name, "CurrentShardCount": current_shard_count, "TargetShardCount": target_shard_count,
                    }))
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::IncreaseStreamRetentionPeriod { stream_name, retention_period_hours } => {
            call(
                client,
                Request::IncreaseRetention { stream: stream_name, hours: retention_period_hours },
            )?;
            None
        }
        Cmd::DecreaseStreamRetentionPeriod { stream_name, retention_period_hours } => {
            call(
                client,
                Request::DecreaseRetention { stream: stream_name, hours: retention_period_hours },
            )?;
            None
        }
        Cmd::RegisterStreamConsumer { stream_name, consumer_name } => {
            match call(client, Request::RegisterConsumer { stream: stream_name, consumer_name })? {
                Response::Consumer(c) => Some(json!({"Consumer": consumer_json(&c)})),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::DeregisterStreamConsumer { stream_name, consumer_name } => {
            call(client, Request::DeregisterConsumer { stream: stream_name, consumer_name })?;
            None
        }
        Cmd::DescribeStreamConsumer { stream_name, consumer_name } => {
            match call(client, Request::DescribeConsumer { stream: stream_name, consumer_name })? {
                Response::Consumer(c) => Some(json!({"ConsumerDescription": consumer_json(&c)})),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::ListStreamConsumers { stream_name, max_results, next_token } => {
            match call(
                client,
                Request::ListConsumers { stream: stream_name, max_results, next_token },
            )? {
                Response::ListConsumers { consumers, next_token } => {
                    let mut v = json!({"Consumers": consumers.iter().map(consumer_json).collect::<Vec<_>>()});
                    if let Some(t) = next_token {
                        v["NextToken"] = json!(t);
                    }
                    Some(v)
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        Cmd::Put { stream_name, partition_key, batch } => {
            put_lines(client, &stream_name, partition_key.as_deref(), batch.clamp(1, 500))?;
            None
        }
        Cmd::Tail { stream_name, from, max_records, poll_ms } => {
            tail(client, &stream_name, &from, max_records, Duration::from_millis(poll_ms))?;
            None
        }
    };
    Ok(out)
}

fn put_lines(
    client: &mut Client,
    stream: &str,
    key: Option<&str>,
    batch: usize,
) -> Result<(), String> {
    let (mut put, mut failed) = (0u64, 0u64);
    let mut pending: Vec<Entry> = Vec::with_capacity(batch);
    let mut flush = |pending: &mut Vec<Entry>| -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        match call(
            client,
            Request::PutRecords { stream: stream.into(), records: std::mem::take(pending) },
        )? {
            Response::PutRecords { results, .. } => {
                for r in results {
                    match r {
                        PutResult::Ok { .. } => put += 1,
                        PutResult::Failed { error_code, error_message } => {
                            failed += 1;
                            eprintln!("riffle: a record failed ({error_code}): {error_message}");
                        }
                    }
                }
                Ok(())
            }
            other => Err(format!("unexpected reply {other:?}")),
        }
    };
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let partition_key = key.map_or_else(|| n.to_string(), str::to_string);
        pending.push(Entry {
            partition_key,
            explicit_hash_key: None,
            data: Bytes::from(line.into_bytes()),
        });
        if pending.len() == batch {
            flush(&mut pending)?;
        }
    }
    flush(&mut pending)?;
    eprintln!("riffle: put {put} records, {failed} failed");
    if failed > 0 {
        return Err(format!("{failed} records failed"));
    }
    Ok(())
}

/// Follows every shard: open shards from `from`, shards created later from their start, a
/// child only after its parents reached their end (per-key order across resharding).
fn tail(
    client: &mut Client,
    stream: &str,
    from: &str,
    max_records: Option<u64>,
    poll: Duration,
) -> Result<(), String> {
    use std::collections::{BTreeMap, BTreeSet};
    let (first_type, first_ts) = match from {
        "trim-horizon" => (0u8, None),
        "latest" => (1, None),
        other => match other.strip_prefix("at-timestamp:").and_then(|t| t.parse().ok()) {
            Some(ms) => (4, Some(ms)),
            None => {
                return Err(format!("--from {other}: trim-horizon, latest or at-timestamp:<ms>"))
            }
        },
    };
    let mut iterators: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut known: BTreeMap<String, Shard> = BTreeMap::new();
    let mut printed = 0u64;
    let mut first_round = true;
    loop {
        // Discover shards (paged).
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => Request::ListShards {
                    stream: None,
                    next_token: Some(t.clone()),
                    exclusive_start_shard_id: None,
                    max_results: None,
                    filter: None,
                },
                None => Request::ListShards {
                    stream: Some(stream.into()),
                    next_token: None,
                    exclusive_start_shard_id: None,
                    max_results: None,
                    filter: None,
                },
            };
            match call(client, request)? {
                Response::ListShards { shards, next_token } => {
                    for s in shards {
                        known.entry(s.shard_id.clone()).or_insert(s);
                    }
                    match next_token {
                        Some(t) => token = Some(t),
                        None => break,
                    }
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        for (id, shard) in &known {
            if iterators.contains_key(id) || finished.contains(id) {
                continue;
            }
            let parents_done = shard
                .parent
                .iter()
                .chain(shard.adjacent_parent.iter())
                .all(|p| finished.contains(p) || !known.contains_key(p) || first_round);
            if !parents_done {
                continue;
            }
            // Shards open when tail starts begin at `from`; later ones at their start.
            let (t, ts) = if first_round { (first_type, first_ts) } else { (0, None) };
            if first_round && shard.ending_sequence_number.is_some() && first_type == 1 {
                finished.insert(id.clone());
                continue;
            }
            match call(
                client,
                Request::GetShardIterator {
                    stream: stream.into(),
                    shard_id: id.clone(),
                    iterator_type: t,
                    starting_sequence_number: None,
                    timestamp_ms: ts,
                },
            )? {
                Response::ShardIterator(it) => {
                    iterators.insert(id.clone(), it);
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        first_round = false;
        let mut any = false;
        let ids: Vec<String> = iterators.keys().cloned().collect();
        for id in ids {
            let it = iterators[&id].clone();
            match call(client, Request::GetRecords { shard_iterator: it, limit: Some(10_000) })? {
                Response::Records(page) => {
                    for (seq, ts, key, data) in decode_records(&page)? {
                        let mut v = record_json(seq, ts, &key, &data);
                        v["ShardId"] = json!(id);
                        v["Text"] = json!(String::from_utf8_lossy(&data));
                        println!("{v}");
                        any = true;
                        printed += 1;
                        if max_records.is_some_and(|m| printed >= m) {
                            return Ok(());
                        }
                    }
                    match page.next {
                        Some(next) => {
                            iterators.insert(id, next);
                        }
                        None => {
                            iterators.remove(&id);
                            finished.insert(id);
                        }
                    }
                }
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
        if !any {
            std::thread::sleep(poll);
        }
    }
}
