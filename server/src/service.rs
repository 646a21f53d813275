//! The request dispatcher: one decoded request in, one encoded response frame out, against
//! an [`Engine`]. Independent of the transport, so the daemon's connection loop (io_uring or
//! std) and tests share it.
//!
//! Puts do not block: the records are handed to their shard logs and the reply completes
//! when they are durable (an `async` wait on the commit). Control-plane requests (create,
//! delete, reshard, retention, consumers) commit the catalog and so block the calling thread
//! for an `fdatasync`; the daemon runs them off its reactor threads. GetRecords replies
//! carry the stored batches as `Bytes` that borrow the segment maps, so the connection can
//! write them to the socket without copying.

use bytes::Bytes;
use riffle_engine::{
    ConsumerRef, ConsumerStatus, Engine, Error, IteratorType, ListShardsInput, PutRecordInput,
    ShardFilter, StreamMode, StreamStatus,
};

use crate::protocol::{
    encode_frame_header, Child, Consumer, Entry, Filter, PutResult, Records, Request, Response,
    Shard, Summary, FLAG_END, FLAG_ERROR,
};

/// An encoded response frame: `head` (frame header and body up to the batches), then the
/// batches, to be written in order (vectored, or one after another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Frame header and the body's leading part.
    pub head: Vec<u8>,
    /// Stored record batches that end the body (GetRecords); empty otherwise.
    pub batches: Vec<Bytes>,
}

impl Reply {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.batches.iter().map(Bytes::len).sum::<usize>()
    }

    /// True if the reply has no bytes (never, for a real reply).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole frame in one buffer (copies the batches; for tests and small replies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        for b in &self.batches {
            out.extend_from_slice(b);
        }
        out
    }

    /// A reply frame from its body's head and the batches that follow it.
    pub fn frame_parts(
        request_id: u64,
        opcode: u16,
        flags: u16,
        body: Vec<u8>,
        batches: Vec<Bytes>,
    ) -> Reply {
        Reply::frame(request_id, opcode, flags, body, batches)
    }

    fn frame(
        request_id: u64,
        opcode: u16,
        flags: u16,
        body: Vec<u8>,
        batches: Vec<Bytes>,
    ) -> Reply {
        let body_len = body.len() + batches.iter().map(Bytes::len).sum::<usize>();
        let mut head = Vec::with_capacity(16 + body.len());
        encode_frame_header(&mut head, request_id, opcode, flags, body_len);
        head.extend_from_slice(&body);
        Reply { head, batches }
    }

    /// An error reply.
    pub fn error(request_id: u64, opcode: u16, code: &str, message: &str) -> Reply {
        let body = Response::Error { code: code.into(), message: message.into() }.encode_body();
        Reply::frame(request_id, opcode, FLAG_ERROR | FLAG_END, body, Vec::new())
    }
}

/// Answers requests with an engine.
#[derive(Debug, Clone)]
pub struct Service {
    engine: Engine,
    subscriptions: std::sync::Arc<SubscriptionRegistry>,
}

/// Who is subscribed to what, across every connection and core, for SubscribeToShard's
/// rules: at most one call per second per consumer and shard, and a new subscription
/// within 5 s of a successful one is refused, while one after that takes over (the older
/// subscription ends with `ResourceInUseException`).
#[derive(Debug, Default)]
pub struct SubscriptionRegistry {
    entries: std::sync::Mutex<std::collections::HashMap<String, RegistryEntry>>,
}

#[derive(Debug)]
struct RegistryEntry {
    last_call: std::time::Instant,
    started: Option<std::time::Instant>,
    generation: u64,
    takeover: std::sync::Arc<Takeover>,
}

/// Set when a newer subscription takes over; the older one ends.
#[derive(Debug, Default)]
pub struct Takeover {
    /// Taken over.
    pub flag: std::sync::atomic::AtomicBool,
    /// Wakes the older subscription.
    pub notify: tokio::sync::Notify,
}

/// A subscription's claim on its consumer and shard; dropping it marks the subscription
/// ended.
#[derive(Debug)]
pub struct Claim {
    registry: std::sync::Arc<SubscriptionRegistry>,
    key: String,
    generation: u64,
    /// Fires when a newer subscription takes over.
    pub takeover: std::sync::Arc<Takeover>,
}

impl Claim {
    /// The subscription started successfully (the 5-second rule counts from now).
    pub fn started(&self) {
        self.registry.started(self, std::time::Instant::now());
    }

    /// True once a newer subscription took over.
    pub fn taken_over(&self) -> bool {
        self.takeover.flag.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let registry = std::sync::Arc::clone(&self.registry);
        registry.ended(self);
    }
}

/// The key of the rules: stream name (an ARN is reduced to it), consumer, canonical shard id.
pub fn subscription_key(stream: &str, consumer: &str, shard: &str) -> String {
    let stream = stream.rsplit_once(":stream/").map_or(stream, |(_, name)| name);
    let shard = riffle_engine::sequence::parse_shard_id(shard)
        .map_or_else(|| shard.to_string(), riffle_engine::sequence::shard_id);
    format!("{stream}/{consumer}/{shard}")
}

impl SubscriptionRegistry {
    /// Checks the rules for a call at `now` and, if it may proceed, records it.
    pub fn claim(
        self: &std::sync::Arc<Self>,
        key: String,
        now: std::time::Instant,
    ) -> Result<Claim, Error> {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let second = std::time::Duration::from_secs(1);
        let five = std::time::Duration::from_secs(5);
        let generation = entries.get(&key).map_or(1, |e| e.generation + 1);
        if let Some(e) = entries.get_mut(&key) {
            if now.duration_since(e.last_call) < second {
                e.last_call = now;
                return Err(Error::LimitExceeded(format!(
                    "Rate exceeded for consumer and shard {key}: at most one SubscribeToShard call per second."
                )));
            }
            e.last_call = now;
            if let Some(started) = e.started {
                if now.duration_since(started) < five {
                    return Err(Error::ResourceInUse(format!(
                        "Another subscription for {key} started less than 5 seconds ago."
                    )));
                }
                e.takeover.flag.store(true, std::sync::atomic::Ordering::Release);
                e.takeover.notify.notify_waiters();
            }
        }
        let takeover = std::sync::Arc::new(Takeover::default());
        entries.insert(
            key.clone(),
            RegistryEntry {
                last_call: now,
                started: None,
                generation,
                takeover: std::sync::Arc::clone(&takeover),
            },
        );
        Ok(Claim { registry: std::sync::Arc::clone(self), key, generation, takeover })
    }

    fn started(&self, claim: &Claim, now: std::time::Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = entries.get_mut(&claim.key).filter(|e| e.generation == claim.generation) {
            e.started = Some(now);
        }
    }

    fn ended(&self, claim: &Claim) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = entries.get_mut(&claim.key).filter(|e| e.generation == claim.generation) {
            e.started = None;
        }
    }
}

fn status_code(s: StreamStatus) -> u8 {
    match s {
        StreamStatus::Creating => 0,
        StreamStatus::Active => 1,
        StreamStatus::Updating => 2,
        StreamStatus::Deleting => 3,
    }
}

fn mode_code(m: StreamMode) -> u8 {
    match m {
        StreamMode::Provisioned => 0,
        StreamMode::OnDemand => 1,
    }
}

fn iterator_type(code: u8) -> IteratorType {
    match code {
        0 => IteratorType::TrimHorizon,
        1 => IteratorType::Latest,
        2 => IteratorType::AtSequenceNumber,
        3 => IteratorType::AfterSequenceNumber,
        _ => IteratorType::AtTimestamp, // the decoder admits 0..=4 only
    }
}

fn shard_out(s: riffle_engine::Shard) -> Shard {
    Shard {
        shard_id: s.shard_id,
        parent: s.parent_shard_id,
        adjacent_parent: s.adjacent_parent_shard_id,
        starting_hash_key: s.hash_key_range.start,
        ending_hash_key: s.hash_key_range.end,
        starting_sequence_number: s.starting_sequence_number.0,
        ending_sequence_number: s.ending_sequence_number.map(|n| n.0),
    }
}

fn consumer_out(c: riffle_engine::Consumer) -> Consumer {
    Consumer {
        name: c.consumer_name,
        arn: c.consumer_arn,
        status: match c.consumer_status {
            ConsumerStatus::Creating => 0,
            ConsumerStatus::Active => 1,
            ConsumerStatus::Deleting => 2,
        },
        created_ms: c.consumer_creation_ms,
    }
}

impl Service {
    /// A service over `engine`.
    pub fn new(engine: Engine) -> Self {
        Service { engine, subscriptions: std::sync::Arc::default() }
    }

    /// The subscription registry shared by all connections (and the Kinesis API).
    pub fn subscriptions(&self) -> &std::sync::Arc<SubscriptionRegistry> {
        &self.subscriptions
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// True for requests that commit the catalog (and so block for an `fdatasync`).
    pub fn is_control(request: &Request) -> bool {
        matches!(
            request,
            Request::CreateStream { .. }
                | Request::DeleteStream { .. }
                | Request::SplitShard { .. }
                | Request::MergeShards { .. }
                | Request::UpdateShardCount { .. }
                | Request::IncreaseRetention { .. }
                | Request::DecreaseRetention { .. }
                | Request::RegisterConsumer { .. }
                | Request::DeregisterConsumer { .. }
        )
    }

    /// Answers one request. `None` for requests without a reply (`Credit`).
    pub async fn call(&self, request_id: u64, request: Request) -> Option<Reply> {
        let opcode = request.opcode();
        if matches!(request, Request::Credit { .. }) {
            return None;
        }
        let reply = match self.dispatch(request).await {
            Ok((Response::Records(records), batches)) => {
                let total = batches.iter().map(Bytes::len).sum();
                Reply::frame(request_id, opcode, FLAG_END, records.encode_head_for(total), batches)
            }
            Ok((response, batches)) => {
                Reply::frame(request_id, opcode, FLAG_END, response.encode_body(), batches)
            }
            Err(e) => Reply::error(request_id, opcode, e.kinesis_name(), &e.to_string()),
        };
        Some(reply)
    }

    fn summary(&self, stream: &str) -> Result<Summary, Error> {
        let s = self.engine.describe_stream_summary(stream)?;
        Ok(Summary {
            name: s.stream_name,
            arn: s.stream_arn,
            status: status_code(s.stream_status),
            mode: mode_code(s.stream_mode),
            retention_hours: s.retention_period_hours,
            created_ms: s.stream_creation_ms,
            open_shard_count: s.open_shard_count as u32,
            consumer_count: s.consumer_count as u32,
        })
    }

    async fn dispatch(&self, request: Request) -> Result<(Response, Vec<Bytes>), Error> {
        let e = &self.engine;
        let plain = |r: Response| Ok((r, Vec::new()));
        match request {
            Request::CreateStream { stream, shard_count, on_demand } => {
                let mode = if on_demand { StreamMode::OnDemand } else { StreamMode::Provisioned };
                e.create_stream(&stream, shard_count, Some(mode), &[])?;
                plain(Response::Empty)
            }
            Request::DeleteStream { stream, enforce_consumer_deletion } => {
                e.delete_stream(&stream, enforce_consumer_deletion)?;
                plain(Response::Empty)
            }
            Request::DescribeStreamSummary { stream } => {
                plain(Response::Summary(self.summary(&stream)?))
            }
            Request::ListStreams { limit, exclusive_start_stream_name, next_token } => {
                let out = e.list_streams(
                    limit,
                    exclusive_start_stream_name.as_deref(),
                    next_token.as_deref(),
                )?;
                plain(Response::ListStreams {
                    names: out.stream_names,
                    has_more: out.has_more_streams,
                    next_token: out.next_token,
                })
            }
            Request::DescribeStream { stream, limit, exclusive_start_shard_id } => {
                let summary = self.summary(&stream)?;
                let d = e.describe_stream(&stream, limit, exclusive_start_shard_id.as_deref())?;
                plain(Response::DescribeStream {
                    summary,
                    shards: d.shards.into_iter().map(shard_out).collect(),
                    has_more_shards: d.has_more_shards,
                })
            }
            Request::ListShards {
                stream,
                next_token,
                exclusive_start_shard_id,
                max_results,
                filter,
            } => {
                let filter = filter.map(|f| match f {
                    Filter::FromTrimHorizon => ShardFilter::FromTrimHorizon,
                    Filter::AtTrimHorizon => ShardFilter::AtTrimHorizon,
                    Filter::AtLatest => ShardFilter::AtLatest,
                    Filter::AfterShardId(id) => ShardFilter::AfterShardId(id),
                    Filter::AtTimestamp(t) => ShardFilter::AtTimestamp(t),
                    Filter::FromTimestamp(t) => ShardFilter::FromTimestamp(t),
                });
                let out = e.list_shards(&ListShardsInput {
                    stream: stream.as_deref(),
                    next_token: next_token.as_deref(),
                    exclusive_start_shard_id: exclusive_start_shard_id.as_deref(),
                    max_results,
                    stream_creation_ms: None,
                    shard_filter: filter,
                })?;
                plain(Response::ListShards {
                    shards: out.shards.into_iter().map(shard_out).collect(),
                    next_token: out.next_token,
                })
            }
            Request::PutRecord {
                stream,
                partition_key,
                explicit_hash_key,
                sequence_number_for_ordering,
                data,
            } => {
                let explicit = explicit_hash_key.map(|k| k.to_string());
                let ordering = sequence_number_for_ordering.map(|n| n.to_string());
                let input = PutRecordInput {
                    partition_key: &partition_key,
                    data: &data,
                    explicit_hash_key: explicit.as_deref(),
                    sequence_number_for_ordering: ordering.as_deref(),
                };
                let out = e.put_record_begin(&stream, &input)?.finish().await?;
                plain(Response::PutRecord {
                    shard_id: out.shard_id.to_string(),
                    sequence_number: out.sequence_number.0,
                })
            }
            Request::PutRecords { stream, records } => {
                let keys: Vec<Option<String>> =
                    records.iter().map(|r| r.explicit_hash_key.map(|k| k.to_string())).collect();
                let input: Vec<PutRecordInput<'_>> = records
                    .iter()
                    .zip(&keys)
                    .map(|(r, k): (&Entry, _)| PutRecordInput {
                        partition_key: &r.partition_key,
                        data: &r.data,
                        explicit_hash_key: k.as_deref(),
                        sequence_number_for_ordering: None,
                    })
                    .collect();
                let out = e.put_records_begin(&stream, &input)?.finish().await;
                plain(Response::PutRecords {
                    failed_record_count: out.failed_record_count as u32,
                    results: out
                        .records
                        .into_iter()
                        .map(|r| match r {
                            Ok(ok) => PutResult::Ok {
                                shard_id: ok.shard_id.to_string(),
                                sequence_number: ok.sequence_number.0,
                            },
                            Err(f) => PutResult::Failed {
                                error_code: f.error_code.to_string(),
                                error_message: f.error_message,
                            },
                        })
                        .collect(),
                })
            }
            Request::GetShardIterator {
                stream,
                shard_id,
                iterator_type: t,
                starting_sequence_number,
                timestamp_ms,
            } => {
                let seq = starting_sequence_number.map(|n| n.to_string());
                let it = e.get_shard_iterator(
                    &stream,
                    &shard_id,
                    iterator_type(t),
                    seq.as_deref(),
                    timestamp_ms,
                )?;
                plain(Response::ShardIterator(it))
            }
            Request::GetRecords { shard_iterator, limit } => {
                let raw = e.get_records_raw(&shard_iterator, limit)?;
                let records = Records {
                    shard_index: raw.shard_index,
                    stream_epoch: raw.stream_epoch,
                    from_position: raw.from_position,
                    to_position: raw.to_position,
                    min_timestamp_ms: raw.min_timestamp_ms,
                    millis_behind_latest: raw.millis_behind_latest,
                    next: raw.next_shard_iterator,
                    child_shards: raw
                        .child_shards
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| Child {
                            shard_id: c.shard_id,
                            parent_shards: c.parent_shards,
                            starting_hash_key: c.hash_key_range.start,
                            ending_hash_key: c.hash_key_range.end,
                        })
                        .collect(),
                    // The batches travel beside the body (zero copy): see `call`.
                    batches: Bytes::new(),
                };
                Ok((Response::Records(records), raw.batches))
            }
            Request::SplitShard { stream, shard_id, new_starting_hash_key } => {
                e.split_shard(&stream, &shard_id, &new_starting_hash_key.to_string())?;
                plain(Response::Empty)
            }
            Request::MergeShards { stream, shard_id, adjacent_shard_id } => {
                e.merge_shards(&stream, &shard_id, &adjacent_shard_id)?;
                plain(Response::Empty)
            }
            Request::UpdateShardCount { stream, target_shard_count } => {
                let out = e.update_shard_count(&stream, target_shard_count, "UNIFORM_SCALING")?;
                plain(Response::UpdateShardCount {
                    current_shard_count: out.current_shard_count,
                    target_shard_count: out.target_shard_count,
                })
            }
            Request::IncreaseRetention { stream, hours } => {
                e.increase_stream_retention_period(&stream, hours)?;
                plain(Response::Empty)
            }
            Request::DecreaseRetention { stream, hours } => {
                e.decrease_stream_retention_period(&stream, hours)?;
                plain(Response::Empty)
            }
            Request::RegisterConsumer { stream, consumer_name } => plain(Response::Consumer(
                consumer_out(e.register_stream_consumer(&stream, &consumer_name)?),
            )),
            Request::DeregisterConsumer { stream, consumer_name } => {
                e.deregister_stream_consumer(ConsumerRef::Name {
                    stream: &stream,
                    consumer_name: &consumer_name,
                })?;
                plain(Response::Empty)
            }
            Request::DescribeConsumer { stream, consumer_name } => {
                plain(Response::Consumer(consumer_out(e.describe_stream_consumer(
                    ConsumerRef::Name { stream: &stream, consumer_name: &consumer_name },
                )?)))
            }
            Request::ListConsumers { stream, max_results, next_token } => {
                let out = e.list_stream_consumers(&stream, max_results, next_token.as_deref())?;
                plain(Response::ListConsumers {
                    consumers: out.consumers.into_iter().map(consumer_out).collect(),
                    next_token: out.next_token,
                })
            }
            Request::SubscribeToShard { .. } => Err(Error::InvalidArgument(
                "SubscribeToShard is not available in this build of riffled yet (push fan-out is \
                 in progress); poll with GetRecords."
                    .into(),
            )),
            Request::Credit { .. } => plain(Response::Empty),
        }
    }
}
