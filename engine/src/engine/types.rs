//! The request and response types of the [`Engine`](super::Engine) API, named after their
//! Kinesis counterparts. Times are milliseconds since the Unix epoch (Kinesis's JSON API
//! uses seconds with a fraction; front ends convert).

use bytes::Bytes;

use crate::catalog::{ConsumerStatus, StreamMode, StreamStatus};
use crate::error::Error;
use crate::routing::HashKeyRange;
use crate::sequence::SequenceNumber;

/// `ShardIteratorType` (and `StartingPosition.Type` of SubscribeToShard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IteratorType {
    /// The oldest record still within retention.
    TrimHorizon,
    /// Just after the newest record at the time the iterator is issued.
    Latest,
    /// At the record with the given sequence number.
    AtSequenceNumber,
    /// Just after the record with the given sequence number.
    AfterSequenceNumber,
    /// The first record that arrived at or after the given time.
    AtTimestamp,
}

impl IteratorType {
    /// The Kinesis spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IteratorType::TrimHorizon => "TRIM_HORIZON",
            IteratorType::Latest => "LATEST",
            IteratorType::AtSequenceNumber => "AT_SEQUENCE_NUMBER",
            IteratorType::AfterSequenceNumber => "AFTER_SEQUENCE_NUMBER",
            IteratorType::AtTimestamp => "AT_TIMESTAMP",
        }
    }
}

impl std::str::FromStr for IteratorType {
    type Err = Error;

    /// Parses the Kinesis spelling; anything else is the `ValidationException` Kinesis gives.
    fn from_str(text: &str) -> Result<Self, Error> {
        Ok(match text {
            "TRIM_HORIZON" => IteratorType::TrimHorizon,
            "LATEST" => IteratorType::Latest,
            "AT_SEQUENCE_NUMBER" => IteratorType::AtSequenceNumber,
            "AFTER_SEQUENCE_NUMBER" => IteratorType::AfterSequenceNumber,
            "AT_TIMESTAMP" => IteratorType::AtTimestamp,
            _ => {
                return Err(crate::validate::validation(
                    &format!("'{text}'"),
                    "shardIteratorType",
                    "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, \
                     AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]",
                ))
            }
        })
    }
}

/// One record of a PutRecord or PutRecords call.
#[derive(Debug, Clone, Copy)]
pub struct PutRecordInput<'a> {
    /// 1..256 UTF-16 code units; its MD5 routes the record unless `explicit_hash_key` is set.
    pub partition_key: &'a str,
    /// 0..1 MiB (with the partition key's UTF-8 bytes, at most 1 MiB).
    pub data: &'a [u8],
    /// Decimal `0 ..= 2^128-1`: routes the record instead of the key's hash.
    pub explicit_hash_key: Option<&'a str>,
    /// PutRecord only (ignored in PutRecords): the sequence number of the caller's previous
    /// record; the new record's number will be greater.
    pub sequence_number_for_ordering: Option<&'a str>,
}

impl<'a> PutRecordInput<'a> {
    /// A record with a partition key and data, routed by the key's hash.
    pub fn new(partition_key: &'a str, data: &'a [u8]) -> Self {
        PutRecordInput {
            partition_key,
            data,
            explicit_hash_key: None,
            sequence_number_for_ordering: None,
        }
    }
}

/// A shard's number within its stream; displays as Kinesis's `shardId-000000000042`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shardId-{:012}", self.0)
    }
}

impl PartialEq<&str> for ShardId {
    fn eq(&self, other: &&str) -> bool {
        crate::sequence::parse_shard_id(other) == Some(self.0) && other.len() == 20
    }
}

impl PartialEq<String> for ShardId {
    fn eq(&self, other: &String) -> bool {
        *self == other.as_str()
    }
}

/// Where an accepted record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecordOutput {
    /// The shard (`to_string()` gives its Kinesis id).
    pub shard_id: ShardId,
    /// The record's sequence number.
    pub sequence_number: SequenceNumber,
}

/// A record of a PutRecords call that was not stored; the others were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// `ProvisionedThroughputExceededException` or `InternalFailure`.
    pub error_code: &'static str,
    /// The message Kinesis gives with `error_code`.
    pub error_message: String,
}

/// PutRecords result: one entry per request record, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecordsOutput {
    /// How many entries of `records` are failures.
    pub failed_record_count: usize,
    /// One result per request record, in request order.
    pub records: Vec<Result<PutRecordOutput, RecordFailure>>,
}

/// A record as read. `partition_key` and `data` borrow the segment's memory map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's sequence number.
    pub sequence_number: SequenceNumber,
    /// `ApproximateArrivalTimestamp`, milliseconds.
    pub approximate_arrival_ms: u64,
    /// UTF-8 (checked when the record was put).
    pub partition_key: Bytes,
    /// The record's data blob.
    pub data: Bytes,
}

impl StoredRecord {
    /// The partition key as text.
    pub fn partition_key_str(&self) -> &str {
        std::str::from_utf8(&self.partition_key).unwrap_or("")
    }
}

/// A child of a shard, as GetRecords reports it at the end of a closed shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's shard id (`shardId-` + 12 digits).
    pub shard_id: String,
    /// Its parents' shard ids: one after a split, two after a merge.
    pub parent_shards: Vec<String>,
    /// The hash keys the child covers (both ends inclusive).
    pub hash_key_range: HashKeyRange,
}

/// GetRecords result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRecordsOutput {
    /// Records from the iterator's position on, in order; may be empty.
    pub records: Vec<StoredRecord>,
    /// `None` exactly when the shard is closed and the iterator was at its end.
    pub next_shard_iterator: Option<String>,
    /// Ms behind the shard's tip: 0 if caught up, else now minus the last record's arrival.
    pub millis_behind_latest: u64,
    /// Only in the response that reaches the end of a closed shard.
    pub child_shards: Option<Vec<ChildShard>>,
}

/// GetRecords as stored batches ([`Engine::get_records_raw`](super::Engine::get_records_raw)).
/// A reader delivers, from `batches` in order, the records with `from_position <= position
/// < to_position` and `timestamp_ms >= min_timestamp_ms`; those are exactly the records
/// `get_records` returns. Batches are whole and may hold records outside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecords {
    /// The shard's index (top 32 bits of its sequence numbers).
    pub shard_index: u32,
    /// The stream's incarnation (in every sequence number).
    pub stream_epoch: u32,
    /// First position to deliver.
    pub from_position: u64,
    /// One past the last position to deliver.
    pub to_position: u64,
    /// Records that arrived before this (ms since the Unix epoch) have expired.
    pub min_timestamp_ms: u64,
    /// Whole record batches as stored (see [`crate::batch`]), borrowing the segment maps.
    pub batches: Vec<Bytes>,
    /// Records in the window.
    pub record_count: usize,
    /// Their data and partition key bytes.
    pub data_bytes: usize,
    /// As in [`GetRecordsOutput`].
    pub next_shard_iterator: Option<String>,
    /// As in [`GetRecordsOutput`].
    pub millis_behind_latest: u64,
    /// As in [`GetRecordsOutput`].
    pub child_shards: Option<Vec<ChildShard>>,
}

/// A shard as DescribeStream and ListShards show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard id (`shardId-` + 12 digits).
    pub shard_id: String,
    /// The shard it was split from, or the first parent (`ShardToMerge`) of a merge.
    pub parent_shard_id: Option<String>,
    /// The second parent (`AdjacentShardToMerge`) if a merge created the shard.
    pub adjacent_parent_shard_id: Option<String>,
    /// The hash keys the shard covers (both ends inclusive).
    pub hash_key_range: HashKeyRange,
    /// The shard's starting sequence number, below every record's.
    pub starting_sequence_number: SequenceNumber,
    /// Present exactly when the shard is closed.
    pub ending_sequence_number: Option<SequenceNumber>,
}

/// DescribeStream result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDescription {
    /// The stream name.
    pub stream_name: String,
    /// The stream ARN (`arn:aws:kinesis:{region}:{account}:stream/{name}`).
    pub stream_arn: String,
    /// The stream's current status.
    pub stream_status: StreamStatus,
    /// The capacity mode.
    pub stream_mode: StreamMode,
    /// One page of shards in id order (empty while the stream is CREATING).
    pub shards: Vec<Shard>,
    /// True if more shards follow this page: ask again from the last returned shard id.
    pub has_more_shards: bool,
    /// Retention period in hours.
    pub retention_period_hours: u32,
    /// Creation time, ms since the Unix epoch.
    pub stream_creation_ms: u64,
}

/// DescribeStreamSummary result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream name.
    pub stream_name: String,
    /// The stream ARN.
    pub stream_arn: String,
    /// The stream's current status.
    pub stream_status: StreamStatus,
    /// The capacity mode.
    pub stream_mode: StreamMode,
    /// Retention period in hours.
    pub retention_period_hours: u32,
    /// Creation time, ms since the Unix epoch.
    pub stream_creation_ms: u64,
    /// Number of open shards (0 while the stream is CREATING).
    pub open_shard_count: usize,
    /// Number of registered enhanced fan-out consumers, in any status.
    pub consumer_count: usize,
}

/// One entry of ListStreams' `StreamSummaries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamListEntry {
    /// The stream name.
    pub stream_name: String,
    /// The stream ARN.
    pub stream_arn: String,
    /// The stream's current status.
    pub stream_status: StreamStatus,
    /// The capacity mode.
    pub stream_mode: StreamMode,
    /// Creation time, ms since the Unix epoch.
    pub stream_creation_ms: u64,
}

/// ListStreams result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStreamsOutput {
    /// This page's stream names, in byte order.
    pub stream_names: Vec<String>,
    /// True if more streams follow this page.
    pub has_more_streams: bool,
    /// Token for the next page, present when more streams follow (valid 300 s).
    pub next_token: Option<String>,
    /// One entry per name of `stream_names`, in the same order.
    pub stream_summaries: Vec<StreamListEntry>,
}

/// `ShardFilter` of ListShards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFilter {
    /// All shards that have not expired (the default).
    FromTrimHorizon,
    /// Shards that were open at the trim horizon.
    AtTrimHorizon,
    /// Open shards only.
    AtLatest,
    /// Shards whose id sorts after this one.
    AfterShardId(String),
    /// Shards open at this time.
    AtTimestamp(u64),
    /// Shards closed at or after this time, and open shards.
    FromTimestamp(u64),
}

/// ListShards request. Give exactly one of `stream` and `next_token`.
#[derive(Debug, Clone, Default)]
pub struct ListShardsInput<'a> {
    /// Stream name or ARN.
    pub stream: Option<&'a str>,
    /// Token from a previous page; excludes every other member.
    pub next_token: Option<&'a str>,
    /// List only shards whose id sorts after this one (it need not exist).
    pub exclusive_start_shard_id: Option<&'a str>,
    /// 1..10,000; more than 1,000 behaves as 1,000 (the default).
    pub max_results: Option<u32>,
    /// If set, the stream's creation time (ms since the Unix epoch) must equal it.
    pub stream_creation_ms: Option<u64>,
    /// Which shards to list; `None` lists every shard that has not expired.
    pub shard_filter: Option<ShardFilter>,
}

/// ListShards result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListShardsOutput {
    /// This page's shards, in id order.
    pub shards: Vec<Shard>,
    /// Token for the next page, present when more shards follow (valid 300 s).
    pub next_token: Option<String>,
}

/// An enhanced fan-out consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Consumer name, unique within its stream.
    pub consumer_name: String,
    /// Consumer ARN: `{stream ARN}/consumer/{name}:{creation time in seconds}`.
    pub consumer_arn: String,
    /// The consumer's current status.
    pub consumer_status: ConsumerStatus,
    /// Registration time, ms since the Unix epoch.
    pub consumer_creation_ms: u64,
    /// ARN of the stream the consumer reads.
    pub stream_arn: String,
}

/// How a consumer is named: by its ARN, or by stream and name.
#[derive(Debug, Clone, Copy)]
pub enum ConsumerRef<'a> {
    /// By consumer ARN.
    Arn(&'a str),
    /// By stream and consumer name.
    Name {
        /// The stream's name or ARN.
        stream: &'a str,
        /// The consumer's name.
        consumer_name: &'a str,
    },
}

/// ListStreamConsumers result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListConsumersOutput {
    /// This page's consumers, in name order.
    pub consumers: Vec<Consumer>,
    /// Token for the next page, present when more consumers follow.
    pub next_token: Option<String>,
}

/// UpdateShardCount result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateShardCountOutput {
    /// The stream name.
    pub stream_name: String,
    /// The stream ARN.
    pub stream_arn: String,
    /// Open shards before the update.
    pub current_shard_count: u32,
    /// Open shards once the update completes.
    pub target_shard_count: u32,
}

/// DescribeLimits result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLimits {
    /// Most open shards the account may have, across all streams.
    pub shard_limit: u32,
    /// Open shards across all streams.
    pub open_shard_count: u32,
    /// Streams in on-demand mode.
    pub on_demand_stream_count: u32,
    /// Most on-demand streams the account may have.
    pub on_demand_stream_count_limit: u32,
}

/// ListTagsForStream result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTagsOutput {
    /// This page's tags as (key, value), in key order.
    pub tags: Vec<(String, String)>,
    /// True if more tags follow this page.
    pub has_more_tags: bool,
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Segment files deleted because every record in them expired.
    pub segments_deleted: usize,
    /// Closed shards removed because every record in them expired.
    pub shards_expired: usize,
    /// Streams whose deletion completed.
    pub streams_deleted: usize,
}
