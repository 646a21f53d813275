//! The bodies of every request and response (PROTOCOL.md section 5), encoded and decoded
//! with the primitives of the parent module.

use bytes::Bytes;

use super::{encode_frame, Dec, Enc, ProtocolError, Result, FLAG_ERROR, FRAME_HEADER_BYTES};

/// Opcodes (section 5 of PROTOCOL.md).
pub mod op {
    #![allow(missing_docs)]
    pub const CREATE_STREAM: u16 = 0x0001;
    pub const DELETE_STREAM: u16 = 0x0002;
    pub const DESCRIBE_STREAM_SUMMARY: u16 = 0x0003;
    pub const LIST_STREAMS: u16 = 0x0004;
    pub const DESCRIBE_STREAM: u16 = 0x0005;
    pub const LIST_SHARDS: u16 = 0x0006;
    pub const PUT_RECORD: u16 = 0x0010;
    pub const PUT_RECORDS: u16 = 0x0011;
    pub const GET_SHARD_ITERATOR: u16 = 0x0020;
    pub const GET_RECORDS: u16 = 0x0021;
    pub const SPLIT_SHARD: u16 = 0x0030;
    pub const MERGE_SHARDS: u16 = 0x0031;
    pub const UPDATE_SHARD_COUNT: u16 = 0x0032;
    pub const INCREASE_RETENTION: u16 = 0x0033;
    pub const DECREASE_RETENTION: u16 = 0x0034;
    pub const REGISTER_CONSUMER: u16 = 0x0040;
    pub const DEREGISTER_CONSUMER: u16 = 0x0041;
    pub const DESCRIBE_CONSUMER: u16 = 0x0042;
    pub const LIST_CONSUMERS: u16 = 0x0043;
    pub const SUBSCRIBE_TO_SHARD: u16 = 0x0044;
    pub const CREDIT: u16 = 0x0045;
}

/// A ListShards filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// All shards not expired.
    FromTrimHorizon,
    /// Shards open at the trim horizon.
    AtTrimHorizon,
    /// Open shards.
    AtLatest,
    /// Shards after this id.
    AfterShardId(String),
    /// Shards open at this time (ms).
    AtTimestamp(u64),
    /// Shards closed at or after this time, and open ones.
    FromTimestamp(u64),
}

/// A record of a PutRecords request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Partition key.
    pub partition_key: String,
    /// Explicit hash key.
    pub explicit_hash_key: Option<u128>,
    /// Data.
    pub data: Bytes,
}

/// A request body, by opcode. Field meanings are the Kinesis ones (see PROTOCOL.md).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    CreateStream {
        stream: String,
        shard_count: Option<u32>,
        on_demand: bool,
    },
    DeleteStream {
        stream: String,
        enforce_consumer_deletion: bool,
    },
    DescribeStreamSummary {
        stream: String,
    },
    ListStreams {
        limit: Option<u32>,
        exclusive_start_stream_name: Option<String>,
        next_token: Option<String>,
    },
    DescribeStream {
        stream: String,
        limit: Option<u32>,
        exclusive_start_shard_id: Option<String>,
    },
    ListShards {
        stream: Option<String>,
        next_token: Option<String>,
        exclusive_start_shard_id: Option<String>,
        max_results: Option<u32>,
        filter: Option<Filter>,
    },
    PutRecord {
        stream: String,
        partition_key: String,
        explicit_hash_key: Option<u128>,
        sequence_number_for_ordering: Option<u128>,
        data: Bytes,
    },
    PutRecords {
        stream: String,
        records: Vec<Entry>,
    },
    GetShardIterator {
        stream: String,
        shard_id: String,
        iterator_type: u8,
        starting_sequence_number: Option<u128>,
        timestamp_ms: Option<u64>,
    },
    GetRecords {
        shard_iterator: String,
        limit: Option<u32>,
    },
    SplitShard {
        stream: String,
        shard_id: String,
        new_starting_hash_key: u128,
    },
    MergeShards {
        stream: String,
        shard_id: String,
        adjacent_shard_id: String,
    },
    UpdateShardCount {
        stream: String,
        target_shard_count: u32,
    },
    IncreaseRetention {
        stream: String,
        hours: u32,
    },
    DecreaseRetention {
        stream: String,
        hours: u32,
    },
    RegisterConsumer {
        stream: String,
        consumer_name: String,
    },
    DeregisterConsumer {
        stream: String,
        consumer_name: String,
    },
    DescribeConsumer {
        stream: String,
        consumer_name: String,
    },
    ListConsumers {
        stream: String,
        max_results: Option<u32>,
        next_token: Option<String>,
    },
    SubscribeToShard {
        stream: String,
        consumer_name: String,
        shard_id: String,
        iterator_type: u8,
        starting_sequence_number: Option<u128>,
        timestamp_ms: Option<u64>,
        credit_bytes: u32,
    },
    Credit {
        subscription_request_id: u64,
        bytes: u32,
    },
}

fn enc_filter(e: &mut Enc, f: &Filter) {
    match f {
        Filter::FromTrimHorizon => e.u8(0),
        Filter::AtTrimHorizon => e.u8(1),
        Filter::AtLatest => e.u8(2),
        Filter::AfterShardId(id) => e.u8(3).str(id),
        Filter::AtTimestamp(t) => e.u8(4).u64(*t),
        Filter::FromTimestamp(t) => e.u8(5).u64(*t),
    };
}

fn dec_filter(d: &mut Dec<'_>) -> Result<Filter> {
    Ok(match d.u8("filter kind")? {
        0 => Filter::FromTrimHorizon,
        1 => Filter::AtTrimHorizon,
        2 => Filter::AtLatest,
        3 => Filter::AfterShardId(d.str("filter shard id")?),
        4 => Filter::AtTimestamp(d.u64("filter timestamp")?),
        5 => Filter::FromTimestamp(d.u64("filter timestamp")?),
        v => return Err(ProtocolError::Malformed(format!("filter kind {v}"))),
    })
}

fn dec_iterator_type(d: &mut Dec<'_>) -> Result<u8> {
    match d.u8("iterator type")? {
        v @ 0..=4 => Ok(v),
        v => Err(ProtocolError::Malformed(format!("iterator type {v}"))),
    }
}

impl Request {
    /// Its opcode.
    pub fn opcode(&self) -> u16 {
        match self {
            Request::CreateStream { .. } => op::CREATE_STREAM,
            Request::DeleteStream { .. } => op::DELETE_STREAM,
            Request::DescribeStreamSummary { .. } => op::DESCRIBE_STREAM_SUMMARY,
            Request::ListStreams { .. } => op::LIST_STREAMS,
            Request::DescribeStream { .. } => op::DESCRIBE_STREAM,
            Request::ListShards { .. } => op::LIST_SHARDS,
            Request::PutRecord { .. } => op::PUT_RECORD,
            Request::PutRecords { .. } => op::PUT_RECORDS,
            Request::GetShardIterator { .. } => op::GET_SHARD_ITERATOR,
            Request::GetRecords { .. } => op::GET_RECORDS,
            Request::SplitShard { .. } => op::SPLIT_SHARD,
            Request::MergeShards { .. } => op::MERGE_SHARDS,
            Request::UpdateShardCount { .. } => op::UPDATE_SHARD_COUNT,
            Request::IncreaseRetention { .. } => op::INCREASE_RETENTION,
            Request::DecreaseRetention { .. } => op::DECREASE_RETENTION,
            Request::RegisterConsumer { .. } => op::REGISTER_CONSUMER,
            Request::DeregisterConsumer { .. } => op::DEREGISTER_CONSUMER,
            Request::DescribeConsumer { .. } => op::DESCRIBE_CONSUMER,
            Request::ListConsumers { .. } => op::LIST_CONSUMERS,
            Request::SubscribeToShard { .. } => op::SUBSCRIBE_TO_SHARD,
            Request::Credit { .. } => op::CREDIT,
        }
    }

    /// Its body.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            Request::CreateStream { stream, shard_count, on_demand } => {
                e.str(stream).opt(shard_count, |e, v| {
                    e.u32(*v);
                });
                e.u8(u8::from(*on_demand));
            }
            Request::DeleteStream { stream, enforce_consumer_deletion } => {
                e.str(stream).bool(*enforce_consumer_deletion);
            }
            Request::DescribeStreamSummary { stream } => {
                e.str(stream);
            }
            Request::ListStreams { limit, exclusive_start_stream_name, next_token } => {
                e.opt(limit, |e, v| {
                    e.u32(*v);
                })
                .opt(exclusive_start_stream_name, |e, v| {
                    e.str(v);
                })
                .opt(next_token, |e, v| {
                    e.str(v);
                });
            }
            Request::DescribeStream { stream, limit, exclusive_start_shard_id } => {
                e.str(stream)
                    .opt(limit, |e, v| {
                        e.u32(*v);
                    })
                    .opt(exclusive_start_shard_id, |e, v| {
                        e.str(v);
                    });
            }
            Request::ListShards {
                stream,
                next_token,
                exclusive_start_shard_id,
                max_results,
                filter,
            } => {
                e.opt(stream, |e, v| {
                    e.str(v);
                })
                .opt(next_token, |e, v| {
                    e.str(v);
                })
                .opt(exclusive_start_shard_id, |e, v| {
                    e.str(v);
                })
                .opt(max_results, |e, v| {
                    e.u32(*v);
                })
                .opt(filter, enc_filter);
            }
            Request::PutRecord {
                stream,
                partition_key,
                explicit_hash_key,
                sequence_number_for_ordering,
                data,
            } => {
                e.str(stream)
                    .str(partition_key)
                    .opt(explicit_hash_key, |e, v| {
                        e.u128(*v);
                    })
                    .opt(sequence_number_for_ordering, |e, v| {
                        e.u128(*v);
                    })
                    .bytes(data);
            }
            Request::PutRecords { stream, records } => {
                e.str(stream).list(records, |e, r| {
                    e.str(&r.partition_key)
                        .opt(&r.explicit_hash_key, |e, v| {
                            e.u128(*v);
                        })
                        .bytes(&r.data);
                });
            }
            Request::GetShardIterator {
                stream,
                shard_id,
                iterator_type,
                starting_sequence_number,
                timestamp_ms,
            } => {
                e.str(stream)
                    .str(shard_id)
                    .u8(*iterator_type)
                    .opt(starting_sequence_number, |e, v| {
                        e.u128(*v);
                    })
                    .opt(timestamp_ms, |e, v| {
                        e.u64(*v);
                    });
            }
            Request::GetRecords { shard_iterator, limit } => {
                e.str(shard_iterator).opt(limit, |e, v| {
                    e.u32(*v);
                });
            }
            Request::SplitShard { stream, shard_id, new_starting_hash_key } => {
                e.str(stream).str(shard_id).u128(*new_starting_hash_key);
            }
            Request::MergeShards { stream, shard_id, adjacent_shard_id } => {
                e.str(stream).str(shard_id).str(adjacent_shard_id);
            }
            Request::UpdateShardCount { stream, target_shard_count } => {
                e.str(stream).u32(*target_shard_count);
            }
            Request::IncreaseRetention { stream, hours }
            | Request::DecreaseRetention { stream, hours } => {
                e.str(stream).u32(*hours);
            }
            Request::RegisterConsumer { stream, consumer_name }
            | Request::DeregisterConsumer { stream, consumer_name }
            | Request::DescribeConsumer { stream, consumer_name } => {
                e.str(stream).str(consumer_name);
            }
            Request::ListConsumers { stream, max_results, next_token } => {
                e.str(stream)
                    .opt(max_results, |e, v| {
                        e.u32(*v);
                    })
                    .opt(next_token, |e, v| {
                        e.str(v);
                    });
            }
            Request::SubscribeToShard {
                stream,
                consumer_name,
                shard_id,
                iterator_type,
                starting_sequence_number,
                timestamp_ms,
                credit_bytes,
            } => {
                e.str(stream)
                    .str(consumer_name)
                    .str(shard_id)
                    .u8(*iterator_type)
                    .opt(starting_sequence_number, |e, v| {
                        e.u128(*v);
                    })
                    .opt(timestamp_ms, |e, v| {
                        e.u64(*v);
                    })
                    .u32(*credit_bytes);
            }
            Request::Credit { subscription_request_id, bytes } => {
                e.u64(*subscription_request_id).u32(*bytes);
            }
        }
        e.0
    }

    /// A whole request frame.
    pub fn encode_frame(&self, request_id: u64) -> Vec<u8> {
        let body = self.encode_body();
        let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
        encode_frame(&mut out, request_id, self.opcode(), 0, &body);
        out
    }

    /// Decodes the body of a request with `opcode`.
    pub fn decode(opcode: u16, body: &Bytes) -> Result<Request> {
        let mut d = Dec::new(body);
        let r = match opcode {
            op::CREATE_STREAM => Request::CreateStream {
                stream: d.str("stream")?,
                shard_count: d.opt("shard_count", |d| d.u32("shard_count"))?,
                on_demand: match d.u8("mode")? {
                    0 => false,
                    1 => true,
                    v => return Err(ProtocolError::Malformed(format!("stream mode {v}"))),
                },
            },
            op::DELETE_STREAM => Request::DeleteStream {
                stream: d.str("stream")?,
                enforce_consumer_deletion: d.bool("enforce_consumer_deletion")?,
            },
            op::DESCRIBE_STREAM_SUMMARY => {
                Request::DescribeStreamSummary { stream: d.str("stream")? }
            }
            op::LIST_STREAMS => Request::ListStreams {
                limit: d.opt("limit", |d| d.u32("limit"))?,
                exclusive_start_stream_name: d
                    .opt("exclusive_start", |d| d.str("exclusive_start"))?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::DESCRIBE_STREAM => Request::DescribeStream {
                stream: d.str("stream")?,
                limit: d.opt("limit", |d| d.u32("limit"))?,
                exclusive_start_shard_id: d
                    .opt("exclusive_start_shard_id", |d| d.str("exclusive_start_shard_id"))?,
            },
            op::LIST_SHARDS => Request::ListShards {
                stream: d.opt("stream", |d| d.str("stream"))?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
                exclusive_start_shard_id: d
                    .opt("exclusive_start_shard_id", |d| d.str("exclusive_start_shard_id"))?,
                max_results: d.opt("max_results", |d| d.u32("max_results"))?,
                filter: d.opt("filter", dec_filter)?,
            },
            op::PUT_RECORD => Request::PutRecord {
                stream: d.str("stream")?,
                partition_key: d.str("partition_key")?,
                explicit_hash_key: d.opt("explicit_hash_key", |d| d.u128("explicit_hash_key"))?,
                sequence_number_for_ordering: d.opt("ordering", |d| d.u128("ordering"))?,
                data: d.bytes("data")?,
            },
            op::PUT_RECORDS => Request::PutRecords {
                stream: d.str("stream")?,
                records: d.list("records", |d| {
                    Ok(Entry {
                        partition_key: d.str("partition_key")?,
                        explicit_hash_key: d
                            .opt("explicit_hash_key", |d| d.u128("explicit_hash_key"))?,
                        data: d.bytes("data")?,
                    })
                })?,
            },
            op::GET_SHARD_ITERATOR => Request::GetShardIterator {
                stream: d.str("stream")?,
                shard_id: d.str("shard_id")?,
                iterator_type: dec_iterator_type(&mut d)?,
                starting_sequence_number: d
                    .opt("starting_sequence_number", |d| d.u128("starting_sequence_number"))?,
                timestamp_ms: d.opt("timestamp", |d| d.u64("timestamp"))?,
            },
            op::GET_RECORDS => Request::GetRecords {
                shard_iterator: d.str("shard_iterator")?,
                limit: d.opt("limit", |d| d.u32("limit"))?,
            },
            op::SPLIT_SHARD => Request::SplitShard {
                stream: d.str("stream")?,
                shard_id: d.str("shard_id")?,
                new_starting_hash_key: d.u128("new_starting_hash_key")?,
            },
            op::MERGE_SHARDS => Request::MergeShards {
                stream: d.str("stream")?,
                shard_id: d.str("shard_id")?,
                adjacent_shard_id: d.str("adjacent_shard_id")?,
            },
            op::UPDATE_SHARD_COUNT => Request::UpdateShardCount {
                stream: d.str("stream")?,
                target_shard_count: d.u32("target_shard_count")?,
            },
            op::INCREASE_RETENTION => {
                Request::IncreaseRetention { stream: d.str("stream")?, hours: d.u32("hours")? }
            }
            op::DECREASE_RETENTION => {
                Request::DecreaseRetention { stream: d.str("stream")?, hours: d.u32("hours")? }
            }
            op::REGISTER_CONSUMER => Request::RegisterConsumer {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
            },
            op::DEREGISTER_CONSUMER => Request::DeregisterConsumer {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
            },
            op::DESCRIBE_CONSUMER => Request::DescribeConsumer {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
            },
            op::LIST_CONSUMERS => Request::ListConsumers {
                stream: d.str("stream")?,
                max_results: d.opt("max_results", |d| d.u32("max_results"))?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::SUBSCRIBE_TO_SHARD => Request::SubscribeToShard {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
                shard_id: d.str("shard_id")?,
                iterator_type: dec_iterator_type(&mut d)?,
                starting_sequence_number: d
                    .opt("starting_sequence_number", |d| d.u128("starting_sequence_number"))?,
                timestamp_ms: d.opt("timestamp", |d| d.u64("timestamp"))?,
                credit_bytes: d.u32("credit_bytes")?,
            },
            op::CREDIT => Request::Credit {
                subscription_request_id: d.u64("subscription_request_id")?,
                bytes: d.u32("bytes")?,
            },
            other => return Err(ProtocolError::UnknownOpcode(other)),
        };
        d.finish()?;
        Ok(r)
    }
}

/// DescribeStreamSummary's body (also the head of DescribeStream's).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub name: String,
    pub arn: String,
    /// 0 CREATING, 1 ACTIVE, 2 UPDATING, 3 DELETING.
    pub status: u8,
    /// 0 provisioned, 1 on-demand.
    pub mode: u8,
    pub retention_hours: u32,
    pub created_ms: u64,
    pub open_shard_count: u32,
    pub consumer_count: u32,
}

/// A shard as listed.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub shard_id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
    pub starting_sequence_number: u128,
    pub ending_sequence_number: Option<u128>,
}

/// A child shard reported at the end of a closed shard.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
}

/// A consumer.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub arn: String,
    /// 0 CREATING, 1 ACTIVE, 2 DELETING.
    pub status: u8,
    pub created_ms: u64,
}

/// One result of a PutRecords response.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    Ok { shard_id: String, sequence_number: u128 },
    Failed { error_code: String, error_message: String },
}

/// GetRecords' body and a subscription event's: record batches as stored, and what to
/// deliver of them (PROTOCOL.md section 5, "Reads").
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    pub shard_index: u32,
    pub stream_epoch: u32,
    pub from_position: u64,
    pub to_position: u64,
    pub min_timestamp_ms: u64,
    pub millis_behind_latest: u64,
    pub next: Option<String>,
    pub child_shards: Vec<Child>,
    pub batches: Bytes,
}

impl Records {
    /// The body without the batch bytes, ending with their `u32` length: the server writes
    /// this, then the batches straight from the segment.
    pub fn encode_head(&self) -> Vec<u8> {
        self.encode_head_for(self.batches.len())
    }

    /// [`Records::encode_head`] for batches held elsewhere, `batches_len` bytes in all (the
    /// `batches` field is ignored).
    pub fn encode_head_for(&self, batches_len: usize) -> Vec<u8> {
        let mut e = Enc::default();
        e.u32(self.shard_index)
            .u32(self.stream_epoch)
            .u64(self.from_position)
            .u64(self.to_position)
            .u64(self.min_timestamp_ms)
            .u64(self.millis_behind_latest)
            .opt(&self.next, |e, v| {
                e.str(v);
            })
            .list(&self.child_shards, |e, c| {
                e.str(&c.shard_id)
                    .list(&c.parent_shards, |e, p| {
                        e.str(p);
                    })
                    .u128(c.starting_hash_key)
                    .u128(c.ending_hash_key);
            })
            .u32(batches_len as u32);
        e.0
    }

    fn decode(d: &mut Dec<'_>) -> Result<Records> {
        Ok(Records {
            shard_index: d.u32("shard_index")?,
            stream_epoch: d.u32("stream_epoch")?,
            from_position: d.u64("from_position")?,
            to_position: d.u64("to_position")?,
            min_timestamp_ms: d.u64("min_timestamp")?,
            millis_behind_latest: d.u64("millis_behind_latest")?,
            next: d.opt("next", |d| d.str("next"))?,
            child_shards: d.list("child_shards", |d| {
                Ok(Child {
                    shard_id: d.str("child shard_id")?,
                    parent_shards: d.list("parent_shards", |d| d.str("parent"))?,
                    starting_hash_key: d.u128("starting_hash_key")?,
                    ending_hash_key: d.u128("ending_hash_key")?,
                })
            })?,
            batches: d.bytes("batches")?,
        })
    }
}

/// A response body, by opcode.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An error (`FLAG_ERROR`): the Kinesis exception name and message.
    Error {
        code: String,
        message: String,
    },
    /// Operations without output.
    Empty,
    Summary(Summary),
    ListStreams {
        names: Vec<String>,
        has_more: bool,
        next_token: Option<String>,
    },
    DescribeStream {
        summary: Summary,
        shards: Vec<Shard>,
        has_more_shards: bool,
    },
    ListShards {
        shards: Vec<Shard>,
        next_token: Option<String>,
    },
    PutRecord {
        shard_id: String,
        sequence_number: u128,
    },
    PutRecords {
        failed_record_count: u32,
        results: Vec<PutResult>,
    },
    ShardIterator(String),
    Records(Records),
    UpdateShardCount {
        current_shard_count: u32,
        target_shard_count: u32,
    },
    Consumer(Consumer),
    ListConsumers {
        consumers: Vec<Consumer>,
        next_token: Option<String>,
    },
}

fn enc_summary(e: &mut Enc, s: &Summary) {
    e.str(&s.name)
        .str(&s.arn)
        .u8(s.status)
        .u8(s.mode)
        .u32(s.retention_hours)
        .u64(s.created_ms)
        .u32(s.open_shard_count)
        .u32(s.consumer_count);
}

fn dec_summary(d: &mut Dec<'_>) -> Result<Summary> {
    Ok(Summary {
        name: d.str("name")?,
        arn: d.str("arn")?,
        status: d.u8("status")?,
        mode: d.u8("mode")?,
        retention_hours: d.u32("retention_hours")?,
        created_ms: d.u64("created")?,
        open_shard_count: d.u32("open_shard_count")?,
        consumer_count: d.u32("consumer_count")?,
    })
}

fn enc_shard(e: &mut Enc, s: &Shard) {
    e.str(&s.shard_id)
        .opt(&s.parent, |e, v| {
            e.str(v);
        })
        .opt(&s.adjacent_parent, |e, v| {
            e.str(v);
        })
        .u128(s.starting_hash_key)
        .u128(s.ending_hash_key)
        .u128(s.starting_sequence_number)
        .opt(&s.ending_sequence_number, |e, v| {
            e.u128(*v);
        });
}

fn dec_shard(d: &mut Dec<'_>) -> Result<Shard> {
    Ok(Shard {
        shard_id: d.str("shard_id")?,
        parent: d.opt("parent", |d| d.str("parent"))?,
        adjacent_parent: d.opt("adjacent_parent", |d| d.str("adjacent_parent"))?,
        starting_hash_key: d.u128("starting_hash_key")?,
        ending_hash_key: d.u128("ending_hash_key")?,
        starting_sequence_number: d.u128("starting_sequence_number")?,
        ending_sequence_number: d
            .opt("ending_sequence_number", |d| d.u128("ending_sequence_number"))?,
    })
}

fn enc_consumer(e: &mut Enc, c: &Consumer) {
    e.str(&c.name).str(&c.arn).u8(c.status).u64(c.created_ms);
}

fn dec_consumer(d: &mut Dec<'_>) -> Result<Consumer> {
    Ok(Consumer {
        name: d.str("consumer name")?,
        arn: d.str("consumer arn")?,
        status: d.u8("consumer status")?,
        created_ms: d.u64("consumer created")?,
    })
}

impl Response {
    /// Its body.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            Response::Error { code, message } => {
                e.str(code).str(message);
            }
            Response::Empty => {}
            Response::Summary(s) => enc_summary(&mut e, s),
            Response::ListStreams { names, has_more, next_token } => {
                e.list(names, |e, n| {
                    e.str(n);
                })
                .bool(*has_more)
                .opt(next_token, |e, v| {
                    e.str(v);
                });
            }
            Response::DescribeStream { summary, shards, has_more_shards } => {
                enc_summary(&mut e, summary);
                e.list(shards, enc_shard).bool(*has_more_shards);
            }
            Response::ListShards { shards, next_token } => {
                e.list(shards, enc_shard).opt(next_token, |e, v| {
                    e.str(v);
                });
            }
            Response::PutRecord { shard_id, sequence_number } => {
                e.str(shard_id).u128(*sequence_number);
            }
            Response::PutRecords { failed_record_count, results } => {
                e.u32(*failed_record_count).list(results, |e, r| match r {
                    PutResult::Ok { shard_id, sequence_number } => {
                        e.bool(true).str(shard_id).u128(*sequence_number);
                    }
                    PutResult::Failed { error_code, error_message } => {
                        e.bool(false).str(error_code).str(error_message);
                    }
                });
            }
            Response::ShardIterator(it) => {
                e.str(it);
            }
            Response::Records(r) => {
                e.0 = r.encode_head();
                e.0.extend_from_slice(&r.batches);
            }
            Response::UpdateShardCount { current_shard_count, target_shard_count } => {
                e.u32(*current_shard_count).u32(*target_shard_count);
            }
            Response::Consumer(c) => enc_consumer(&mut e, c),
            Response::ListConsumers { consumers, next_token } => {
                e.list(consumers, enc_consumer).opt(next_token, |e, v| {
                    e.str(v);
                });
            }
        }
        e.0
    }

    /// Decodes a response frame's body, given the request's opcode and the frame's flags.
    pub fn decode(opcode: u16, flags: u16, body: &Bytes) -> Result<Response> {
        let mut d = Dec::new(body);
        if flags & FLAG_ERROR != 0 {
            let r =
                Response::Error { code: d.str("error code")?, message: d.str("error message")? };
            d.finish()?;
            return Ok(r);
        }
        let r = match opcode {
            op::CREATE_STREAM
            | op::DELETE_STREAM
            | op::SPLIT_SHARD
            | op::MERGE_SHARDS
            | op::INCREASE_RETENTION
            | op::DECREASE_RETENTION
            | op::DEREGISTER_CONSUMER => Response::Empty,
            op::DESCRIBE_STREAM_SUMMARY => Response::Summary(dec_summary(&mut d)?),
            op::LIST_STREAMS => Response::ListStreams {
                names: d.list("names", |d| d.str("name"))?,
                has_more: d.bool("has_more")?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::DESCRIBE_STREAM => Response::DescribeStream {
                summary: dec_summary(&mut d)?,
                shards: d.list("shards", dec_shard)?,
                has_more_shards: d.bool("has_more_shards")?,
            },
            op::LIST_SHARDS => Response::ListShards {
                shards: d.list("shards", dec_shard)?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::PUT_RECORD => Response::PutRecord {
                shard_id: d.str("shard_id")?,
                sequence_number: d.u128("sequence_number")?,
            },
            op::PUT_RECORDS => Response::PutRecords {
                failed_record_count: d.u32("failed_record_count")?,
                results: d.list("results", |d| {
                    Ok(if d.bool("ok")? {
                        PutResult::Ok {
                            shard_id: d.str("shard_id")?,
                            sequence_number: d.u128("sequence_number")?,
                        }
                    } else {
                        PutResult::Failed {
                            error_code: d.str("error_code")?,
                            error_message: d.str("error_message")?,
                        }
                    })
                })?,
            },
            op::GET_SHARD_ITERATOR => Response::ShardIterator(d.str("shard_iterator")?),
            op::GET_RECORDS | op::SUBSCRIBE_TO_SHARD => Response::Records(Records::decode(&mut d)?),
            op::UPDATE_SHARD_COUNT => Response::UpdateShardCount {
                current_shard_count: d.u32("current_shard_count")?,
                target_shard_count: d.u32("target_shard_count")?,
            },
            op::REGISTER_CONSUMER | op::DESCRIBE_CONSUMER => {
                Response::Consumer(dec_consumer(&mut d)?)
            }
            op::LIST_CONSUMERS => Response::ListConsumers {
                consumers: d.list("consumers", dec_consumer)?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            other => return Err(ProtocolError::UnknownOpcode(other)),
        };
        d.finish()?;
        Ok(r)
    }
}
