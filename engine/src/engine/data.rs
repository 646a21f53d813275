//! Data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.

use std::sync::Arc;

use super::types::*;
use super::{Engine, ShardState, StreamState, StreamView};
use crate::batch::{split_batches, Record, RecordIter};
use crate::catalog::StreamStatus;
use crate::engine::types::ConsumerRef;
use crate::error::{Error, Result};
use crate::routing::{hash_key, parse_hash_key, HashKeyError, HashKeyRange};
use crate::sequence::{parse_shard_id, shard_id, SequenceNumber, Slot};
use crate::shard_log::AppendTicket;
use crate::token::{format_java_utc, IteratorToken, TOKEN_LIFETIME_MS};
use crate::validate::{self, check_record, validation};

/// Bytes asked of the log per read while filling a GetRecords response.
const READ_CHUNK_BYTES: usize = 1024 * 1024;

/// A parsed `ExplicitHashKey`: `Err` keeps the text of an out-of-range value for the
/// message, which is reported after the stream lookup, as Kinesis orders its checks.
type ExplicitKey<'a> = Option<std::result::Result<u128, &'a str>>;

/// `index`: the 1-based entry of a PutRecords call (for the error's member path).
fn parse_explicit(text: Option<&str>, index: Option<usize>) -> Result<ExplicitKey<'_>> {
    match text.map(parse_hash_key) {
        None => Ok(None),
        Some(Ok(k)) => Ok(Some(Ok(k))),
        Some(Err(HashKeyError::OutOfRange)) => Ok(Some(Err(text.unwrap_or("")))),
        Some(Err(HashKeyError::Malformed)) => Err(validation(
            &format!("'{}'", text.unwrap_or("")),
            &index.map_or("explicitHashKey".into(), |i| {
                format!("records.{i}.member.explicitHashKey")
            }),
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        )),
    }
}

fn explicit_in_range(key: ExplicitKey<'_>) -> Result<Option<u128>> {
    match key {
        None => Ok(None),
        Some(Ok(k)) => Ok(Some(k)),
        Some(Err(text)) => Err(Error::InvalidArgument(format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. \
             Specified value was {text}"
        ))),
    }
}

fn sequence_pattern_error(text: &str, path: &str) -> Error {
    validation(
        &format!("'{text}'"),
        path,
        "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
    )
}

impl Engine {
    /// The stream for a write: it must exist and be ACTIVE or UPDATING (a CREATING or
    /// DELETING stream is "not found" to writers, as in Kinesis).
    fn writable(&self, stream: &str) -> Result<Arc<StreamState>> {
        let state = self.stream(stream)?;
        let status = state.read().meta.status;
        if matches!(status, StreamStatus::Creating | StreamStatus::Deleting) {
            return Err(self.msg().stream_not_found(&state.name));
        }
        Ok(state)
    }

    /// `PutRecord`: stores one record durably (under the configured durability) and
    /// returns its shard and sequence number.
    pub fn put_record(&self, stream: &str, record: &PutRecordInput<'_>) -> Result<PutRecordOutput> {
        self.put_record_begin(stream, record)?.wait()
    }

    /// `PutRecord` without blocking: the record is routed, checked, numbered and handed to
    /// its shard log; the returned [`PendingPutRecord`] completes (`wait()` or `.await`)
    /// when it is durable. For async front ends and pipelined producers.
    pub fn put_record_begin(
        &self,
        stream: &str,
        record: &PutRecordInput<'_>,
    ) -> Result<PendingPutRecord> {
        self.enter()?;
        check_record(record.partition_key, record.data, None)?;
        let explicit = parse_explicit(record.explicit_hash_key, None)?;
        let ordering = match record.sequence_number_for_ordering {
            Some(text) => Some((
                text,
                SequenceNumber::parse(text)
                    .map_err(|_| sequence_pattern_error(text, "sequenceNumberForOrdering"))?,
            )),
            None => None,
        };
        let state = self.writable(stream)?;
        let explicit = explicit_in_range(explicit)?;
        let key = explicit.unwrap_or_else(|| hash_key(record.partition_key.as_bytes()));
        let view = state.read();
        let shard = view.route(key).ok_or(Error::Closed)?;
        if let Some((text, number)) = ordering {
            self.check_ordering(&state, shard, text, number)?;
        }
        let bytes = (record.data.len() + record.partition_key.len()) as u64;
        if !shard.limits.admit_write(bytes, self.now()) {
            return Err(self.msg().throttled(&shard.id, &state.name));
        }
        let ticket = shard.log.append(&[Record {
            partition_key: record.partition_key.as_bytes(),
            explicit_hash_key: explicit,
            data: record.data,
        }])?;
        let output = PutRecordOutput {
            shard_id: ShardId(shard.index),
            sequence_number: SequenceNumber::record(
                shard.index,
                state.epoch,
                ticket.first_position,
            ),
        };
        Ok(PendingPutRecord { output, ticket })
    }

    /// `SequenceNumberForOrdering`: the new record's number must exceed `number`. Any new
    /// record of a shard exceeds every number of that shard so far and of every shard with
    /// a lower index (the shard index is the top of the number), which covers a key's own
    /// earlier records (same shard, or an ancestor after resharding). A number that is not
    /// one of this stream's, or that no record here can exceed, is refused.
    fn check_ordering(
        &self,
        state: &StreamState,
        shard: &ShardState,
        text: &str,
        number: Option<SequenceNumber>,
    ) -> Result<()> {
        let invalid = || {
            Error::InvalidArgument(format!(
                "ExclusiveMinimumSequenceNumber {text} used in PutRecord on stream {} under \
                 account {} is invalid.",
                state.name, self.inner.config.account_id
            ))
        };
        let parts = number.and_then(SequenceNumber::decode).ok_or_else(invalid)?;
        if parts.stream_epoch != state.epoch || parts.shard_index > shard.index {
            return Err(invalid());
        }
        if parts.shard_index == shard.index {
            let beyond = match parts.slot {
                Slot::Start => false,
                Slot::Record(p) => p >= shard.log.appended_position(),
                Slot::End => true,
            };
            if beyond {
                return Err(invalid());
            }
        }
        Ok(())
    }

    /// `PutRecords`: 1..500 records, at most 5 MiB together. Each record is routed and
    /// charged on its own: a throttled record fails alone (its entry carries the error) and
    /// the others are stored. Records for the same shard get increasing sequence numbers in
    /// request order.
    pub fn put_records(
        &self,
        stream: &str,
        records: &[PutRecordInput<'_>],
    ) -> Result<PutRecordsOutput> {
        Ok(self.put_records_begin(stream, records)?.wait())
    }

    /// `PutRecords` without blocking; the returned [`PendingPutRecords`] completes when
    /// every accepted record is durable. See [`Engine::put_record_begin`].
    pub fn put_records_begin(
        &self,
        stream: &str,
        records: &[PutRecordInput<'_>],
    ) -> Result<PendingPutRecords> {
        self.enter()?;
        if records.is_empty() || records.len() > validate::PUT_RECORDS_MAX {
            return Err(validation(
                &format!("'[{} records]'", records.len()),
                "records",
                if records.is_empty() {
                    "Member must have length greater than or equal to 1"
                } else {
                    "Member must have length less than or equal to 500"
                },
            ));
        }
        let mut total = 0usize;
        let mut explicit = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            check_record(r.partition_key, r.data, Some(i + 1))?;
            explicit.push(parse_explicit(r.explicit_hash_key, Some(i + 1))?);
            total += r.data.len() + r.partition_key.len();
        }
        if total > validate::PUT_RECORDS_BYTES_MAX {
            return Err(Error::InvalidArgument("Records size exceeds 5 MB limit".into()));
        }
        let state = self.writable(stream)?;
        let explicit = explicit.into_iter().map(explicit_in_range).collect::<Result<Vec<_>>>()?;
        let mut results: Vec<std::result::Result<PutRecordOutput, RecordFailure>> =
            Vec::with_capacity(records.len());
        // Per shard: the shard and the request indexes of its accepted records.
        let mut groups: Vec<(Arc<ShardState>, Vec<usize>)> = Vec::new();
        let mut tickets = Vec::new();
        let view = state.read();
        let now = self.now();
        for (i, r) in records.iter().enumerate() {
            let key = explicit[i].unwrap_or_else(|| hash_key(r.partition_key.as_bytes()));
            let shard = view.route(key).ok_or(Error::Closed)?;
            let bytes = (r.data.len() + r.partition_key.len()) as u64;
            if !shard.limits.admit_write(bytes, now) {
                results.push(Err(RecordFailure {
                    error_code: "ProvisionedThroughputExceededException",
                    error_message: self.msg().throttled_text(&shard.id, &state.name),
                }));
                continue;
            }
            results.push(Err(PLACEHOLDER)); // replaced once appended
            match groups.iter_mut().find(|(s, _)| Arc::ptr_eq(s, shard)) {
                Some((_, indexes)) => indexes.push(i),
                None => groups.push((Arc::clone(shard), vec![i])),
            }
        }
        let mut batch: Vec<Record<'_>> = Vec::with_capacity(records.len());
        // Every shard's append goes into the same commit cycle of its group.
        let mut hold = crate::group_commit::CommitHold::default();
        for (shard, _) in &groups {
            hold.add(shard.log.commit_queue());
        }
        for (shard, indexes) in groups {
            batch.clear();
            batch.extend(indexes.iter().map(|&i| Record {
                partition_key: records[i].partition_key.as_bytes(),
                explicit_hash_key: explicit[i],
                data: records[i].data,
            }));
            match shard.log.append(&batch) {
                Ok(ticket) => {
                    for (n, &i) in indexes.iter().enumerate() {
                        results[i] = Ok(PutRecordOutput {
                            shard_id: ShardId(shard.index),
                            sequence_number: SequenceNumber::record(
                                shard.index,
                                state.epoch,
                                ticket.first_position + n as u64,
                            ),
                        });
                    }
                    tickets.push((ticket, indexes));
                }
                Err(e) => {
                    tracing::error!(error = %e, shard = %shard.id, "PutRecords: an append failed");
                }
            }
        }
        Ok(PendingPutRecords { results, tickets })
    }

    /// `GetShardIterator`. `timestamp_ms` is used by `AT_TIMESTAMP` only;
    /// `starting_sequence_number` by the two sequence-number types only.
    pub fn get_shard_iterator(
        &self,
        stream: &str,
        shard: &str,
        iterator_type: IteratorType,
        starting_sequence_number: Option<&str>,
        timestamp_ms: Option<u64>,
    ) -> Result<String> {
        self.enter()?;
        if let Some(text) = starting_sequence_number {
            SequenceNumber::parse(text)
                .map_err(|_| sequence_pattern_error(text, "startingSequenceNumber"))?;
        }
        let name = self.resolve(stream)?;
        let index =
            parse_shard_id(shard).ok_or_else(|| self.msg().could_not_find_shard(shard, name))?;
        let id = shard_id(index);
        let state = self.stream_state(name).ok_or_else(|| self.msg().shard_not_found(&id, name))?;
        let view = state.read();
        let runtime = view
            .shards
            .get(&index)
            .filter(|_| view.meta.status != StreamStatus::Creating)
            .cloned()
            .ok_or_else(|| self.msg().shard_not_found(&id, name))?;
        let kind = iterator_type.as_str();
        let account = &self.inner.config.account_id;
        let wants_sequence = matches!(
            iterator_type,
            IteratorType::AtSequenceNumber | IteratorType::AfterSequenceNumber
        );
        match (wants_sequence, starting_sequence_number.is_some()) {
            (false, true) if iterator_type != IteratorType::AtTimestamp => {
                return Err(Error::InvalidArgument(format!(
                    "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and \
                     StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no \
                     StartingSequenceNumber. Request specified {kind} and also a \
                     StartingSequenceNumber."
                )))
            }
            (true, false) => {
                return Err(Error::InvalidArgument(format!(
                    "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and \
                     StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no \
                     StartingSequenceNumber. Request specified {kind} and no \
                     StartingSequenceNumber."
                )))
            }
            _ => {}
        }
        let now = self.now();
        let end = self.shard_end(&view, &runtime);
        let position = match iterator_type {
            IteratorType::TrimHorizon => runtime.log.start_position(),
            IteratorType::Latest => end,
            IteratorType::AtSequenceNumber | IteratorType::AfterSequenceNumber => {
                let text = starting_sequence_number.unwrap_or("");
                let invalid = || {
                    Error::InvalidArgument(format!(
                        "StartingSequenceNumber {text} used in GetShardIterator on shard {id} in \
                         stream {name} under account {account} is invalid."
                    ))
                };
                let parts = SequenceNumber::parse(text)
                    .ok()
                    .flatten()
                    .and_then(SequenceNumber::decode)
                    .ok_or_else(invalid)?;
                if parts.shard_index != index {
                    return Err(Error::InvalidArgument(format!(
                        "Invalid StartingSequenceNumber. It encodes {}, while it was used in a \
                         call to a shard with {id}",
                        shard_id(parts.shard_index)
                    )));
                }
                if parts.stream_epoch != state.epoch {
                    return Err(Error::InvalidArgument(format!(
                        "StartingSequenceNumber {text} used in GetShardIterator on shard {id} in \
                         stream {name} under account {account} is invalid because it did not \
                         come from this stream."
                    )));
                }
                let after = iterator_type == IteratorType::AfterSequenceNumber;
                match parts.slot {
                    Slot::Start => 0,
                    Slot::End if view.shard_meta(index).is_some_and(|m| m.closed.is_some()) => end,
                    Slot::End => return Err(invalid()),
                    Slot::Record(p) if p >= end => return Err(invalid()),
                    Slot::Record(p) => p + u64::from(after),
                }
            }
            IteratorType::AtTimestamp => {
                let Some(ts) = timestamp_ms else {
                    return Err(Error::InvalidArgument(
                        "Must specify timestampInMillis parameter for iterator of type \
                         AT_TIMESTAMP. Current request has no timestamp parameter."
                            .into(),
                    ));
                };
                if ts > now {
                    return Err(Error::InvalidArgument(format!(
                        "The timestampInMillis parameter cannot be greater than the \
                         currentTimestampInMillis. timestampInMillis: {ts}, \
                         currentTimestampInMillis: {now}"
                    )));
                }
                let ts = ts.max(view.cutoff_ms(now));
                runtime.log.position_at_timestamp(ts)?.unwrap_or(end).min(end)
            }
        };
        if !runtime.limits.admit_iterator(now) {
            return Err(self.msg().throttled(&id, name));
        }
        let token = IteratorToken {
            stream_name: state.name.clone(),
            stream_epoch: state.epoch,
            shard_index: index,
            position,
            issued_ms: now,
        };
        Ok(token.encode(self.key()))
    }

    /// One past the last readable position: a closed shard's recorded end, else the log's
    /// durable end.
    fn shard_end(&self, view: &StreamView, shard: &ShardState) -> u64 {
        match view.shard_meta(shard.index).and_then(|m| m.closed) {
            Some(closed) => closed.end_position,
            None => shard.log.end_position(),
        }
    }

    /// `GetRecords`: up to `limit` records (1..10,000, default 10,000) and 10 MiB of data
    /// from the iterator's position, never a record older than the retention period.
    pub fn get_records(
        &self,
        shard_iterator: &str,
        limit: Option<u32>,
    ) -> Result<GetRecordsOutput> {
        let (window, records) = self.read_decoded(shard_iterator, limit, true)?;
        Ok(GetRecordsOutput {
            records,
            next_shard_iterator: window.next_shard_iterator,
            millis_behind_latest: window.millis_behind_latest,
            child_shards: window.child_shards,
        })
    }

    /// `GetRecords` without decoding: the same records as [`Engine::get_records`] would
    /// return, as the whole stored batches that hold them (zero copy, straight from the
    /// segment mappings) plus the window a reader must apply to them. This is what a network
    /// front end sends; the client decodes the batches (`server/PROTOCOL.md`).
    pub fn get_records_raw(&self, shard_iterator: &str, limit: Option<u32>) -> Result<RawRecords> {
        let window = self.read_window(shard_iterator, limit, true, |_, _, _| {})?;
        Ok(window)
    }

    /// [`Engine::get_records_raw`] for an enhanced fan-out subscription: not counted against
    /// the shard's shared read limits (5 calls/s, 2 MiB/s), which Kinesis applies to
    /// GetRecords only; the front end paces each subscription at 2 MiB/s itself.
    pub fn read_for_subscription(
        &self,
        shard_iterator: &str,
        limit: Option<u32>,
    ) -> Result<RawRecords> {
        self.read_window(shard_iterator, limit, false, |_, _, _| {})
    }

    /// One page of a push subscription, decoded: the window (for the continuation sequence
    /// number) and its records, outside the shared read limits like
    /// [`Engine::read_for_subscription`].
    pub fn subscription_page(
        &self,
        shard_iterator: &str,
        limit: Option<u32>,
    ) -> Result<(RawRecords, Vec<StoredRecord>)> {
        self.read_decoded(shard_iterator, limit, false)
    }

    /// A read window with its records decoded (zero copy: keys and data are slices of the
    /// segment mappings); `shared_limits` as in [`Engine::read_window`].
    fn read_decoded(
        &self,
        shard_iterator: &str,
        limit: Option<u32>,
        shared_limits: bool,
    ) -> Result<(RawRecords, Vec<StoredRecord>)> {
        let mut records = Vec::new();
        let window = self.read_window(
            shard_iterator,
            limit,
            shared_limits,
            |bytes, record, sequence_number| {
                records.push(StoredRecord {
                    sequence_number,
                    approximate_arrival_ms: record.timestamp_ms,
                    partition_key: bytes.slice_ref(record.partition_key),
                    data: bytes.slice_ref(record.data),
                });
            },
        )?;
        Ok((window, records))
    }

    /// Starts an enhanced fan-out subscription (`SubscribeToShard`): checks that the
    /// consumer is registered on the stream and ACTIVE and that the shard exists, and returns
    /// an iterator at the starting position (the same rules as `get_shard_iterator`). The
    /// front end then alternates [`Engine::get_records_raw`] and [`Engine::wait_for_records`].
    pub fn subscribe_to_shard(
        &self,
        stream: &str,
        consumer_name: &str,
        shard: &str,
        iterator_type: IteratorType,
        starting_sequence_number: Option<&str>,
        timestamp_ms: Option<u64>,
    ) -> Result<String> {
        let consumer =
            self.describe_stream_consumer(ConsumerRef::Name { stream, consumer_name })?;
        if consumer.consumer_status != crate::catalog::ConsumerStatus::Active {
            return Err(Error::ResourceInUse(format!(
                "Consumer {} is not ACTIVE, instead in state {}",
                consumer.consumer_arn,
                consumer.consumer_status.as_str()
            )));
        }
        self.get_shard_iterator(
            stream,
            shard,
            iterator_type,
            starting_sequence_number,
            timestamp_ms,
        )
    }

    /// A future that completes when a record at the iterator's position is durable, or the
    /// shard stops taking writes (closed by a split or merge, or the engine closing): a push
    /// subscription at the tip waits on it instead of polling.
    pub fn wait_for_records(
        &self,
        shard_iterator: &str,
    ) -> Result<crate::shard_log::DurableBeyond> {
        let token = IteratorToken::decode(shard_iterator, self.key())
            .ok_or_else(|| Error::InvalidArgument("Invalid ShardIterator.".into()))?;
        let id = shard_id(token.shard_index);
        let gone = || self.msg().shard_not_found(&id, &token.stream_name);
        let state = self
            .stream_state(&token.stream_name)
            .filter(|s| s.epoch == token.stream_epoch)
            .ok_or_else(gone)?;
        let view = state.read();
        let shard = view.shards.get(&token.shard_index).ok_or_else(gone)?;
        Ok(shard.log.durable_beyond(token.position))
    }

    /// The walk behind both reads: validates the iterator, finds the records to return, and
    /// calls `each` for every one of them with the bytes it lives in.
    fn read_window(
        &self,
        shard_iterator: &str,
        limit: Option<u32>,
        shared_limits: bool,
        mut each: impl FnMut(&bytes::Bytes, &crate::batch::RecordView<'_>, SequenceNumber),
    ) -> Result<RawRecords> {
        self.enter()?;
        if let Some(limit) = limit {
            if !(1..=validate::GET_RECORDS_LIMIT_MAX).contains(&limit) {
                return Err(validation(
                    &format!("'{limit}'"),
                    "limit",
                    if limit == 0 {
                        "Member must have value greater than or equal to 1"
                    } else {
                        "Member must have value less than or equal to 10000"
                    },
                ));
            }
        }
        let limit = limit.unwrap_or(validate::GET_RECORDS_LIMIT_MAX) as usize;
        let token = IteratorToken::decode(shard_iterator, self.key())
            .ok_or_else(|| Error::InvalidArgument("Invalid ShardIterator.".into()))?;
        let now = self.now();
        if now.saturating_sub(token.issued_ms) > TOKEN_LIFETIME_MS {
            return Err(Error::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} \
                 which is further in the future than the tolerated delay of 300000 milliseconds.",
                format_java_utc(token.issued_ms),
                format_java_utc(now)
            )));
        }
        let id = shard_id(token.shard_index);
        let gone = || self.msg().shard_not_found(&id, &token.stream_name);
        let state = self
            .stream_state(&token.stream_name)
            .filter(|s| s.epoch == token.stream_epoch)
            .ok_or_else(gone)?;
        let view = state.read();
        let shard = view.shards.get(&token.shard_index).cloned().ok_or_else(gone)?;
        if shared_limits && !shard.limits.admit_read(now) {
            return Err(self.msg().throttled(&id, &state.name));
        }
        let closed_end =
            view.shard_meta(shard.index).and_then(|m| m.closed).map(|c| c.end_position);
        let cutoff = view.cutoff_ms(now);
        let children = closed_end.map(|_| children_of(&view, shard.index));
        drop(view);

        let end = closed_end.unwrap_or_else(|| shard.log.end_position());
        let from = token.position.max(shard.log.start_position());
        let mut out = RawRecords {
            shard_index: shard.index,
            stream_epoch: token.stream_epoch,
            from_position: from,
            to_position: from,
            min_timestamp_ms: cutoff,
            batches: Vec::new(),
            record_count: 0,
            data_bytes: 0,
            next_shard_iterator: None,
            millis_behind_latest: 0,
            child_shards: None,
        };
        if closed_end.is_some_and(|e| from >= e) {
            out.child_shards = children;
            return Ok(out);
        }
        let mut position = from;
        let mut last_timestamp = None;
        let mut first_read = true;
        'fill: while position < end && out.record_count < limit {
            let Some(read) = shard.log.read(position, READ_CHUNK_BYTES)? else { break };
            let start_of_read = position;
            for batch in split_batches(&read.bytes) {
                let (header, bytes) = batch.map_err(|e| corrupt(&shard, e))?;
                if header.end_position() <= position {
                    continue;
                }
                if header.max_timestamp_ms < cutoff {
                    if first_read {
                        // Expired data ahead: jump to the first live record at once.
                        position =
                            shard.log.position_at_timestamp(cutoff)?.unwrap_or(end).max(position);
                        first_read = false;
                        continue 'fill;
                    }
                    position = header.end_position();
                    continue;
                }
                let mut used = false;
                for record in RecordIter::new(bytes).map_err(|e| corrupt(&shard, e))? {
                    let record = record.map_err(|e| corrupt(&shard, e))?;
                    if record.position < position || record.position >= end {
                        continue;
                    }
                    if record.timestamp_ms < cutoff {
                        position = record.position + 1;
                        continue;
                    }
                    let size = record.data.len() + record.partition_key.len();
                    if out.record_count >= limit
                        || (out.record_count > 0
                            && out.data_bytes + size > validate::GET_RECORDS_BYTES_MAX)
                    {
                        if used {
                            out.batches.push(read.bytes.slice_ref(bytes));
                        }
                        break 'fill;
                    }
                    out.data_bytes += size;
                    out.record_count += 1;
                    used = true;
                    last_timestamp = Some(record.timestamp_ms);
                    let number =
                        SequenceNumber::record(shard.index, token.stream_epoch, record.position);
                    each(&read.bytes, &record, number);
                    position = record.position + 1;
                }
                if used {
                    out.batches.push(read.bytes.slice_ref(bytes));
                }
            }
            first_read = false;
            if position <= start_of_read && read.next_position <= start_of_read {
                break;
            }
            position = position.max(read.next_position.min(end)).max(start_of_read);
        }
        if shared_limits {
            shard.limits.charge_read(out.data_bytes as u64);
        }
        out.to_position = position;
        out.millis_behind_latest = match last_timestamp {
            Some(ts) if position < end => now.saturating_sub(ts),
            _ => 0,
        };
        let next = IteratorToken { position, issued_ms: now, ..token };
        out.next_shard_iterator = Some(next.encode(self.key()));
        Ok(out)
    }
}

fn corrupt(shard: &ShardState, e: crate::batch::FormatError) -> Error {
    Error::corrupt(
        shard.log.dir(),
        0,
        format!("a batch read back from shard {} failed validation: {e}", shard.id),
    )
}

/// An accepted record's entry until its append succeeds (no allocation).
const PLACEHOLDER: RecordFailure =
    RecordFailure { error_code: "InternalFailure", error_message: String::new() };

fn internal_failure() -> RecordFailure {
    RecordFailure {
        error_code: "InternalFailure",
        error_message: "Internal Service Failure".into(),
    }
}

/// A PutRecord whose record is in its shard log, not yet known to be durable.
#[must_use = "the record is acknowledged only when this completes"]
#[derive(Debug)]
pub struct PendingPutRecord {
    output: PutRecordOutput,
    ticket: AppendTicket,
}

impl PendingPutRecord {
    /// Blocks until the record is durable.
    pub fn wait(self) -> Result<PutRecordOutput> {
        self.ticket.wait()?;
        Ok(self.output)
    }

    /// Completes when the record is durable.
    pub async fn finish(self) -> Result<PutRecordOutput> {
        self.ticket.into_future().await?;
        Ok(self.output)
    }
}

/// A PutRecords whose records are in their shard logs, not yet known to be durable.
#[must_use = "the records are acknowledged only when this completes"]
#[derive(Debug)]
pub struct PendingPutRecords {
    results: Vec<std::result::Result<PutRecordOutput, RecordFailure>>,
    /// One append per shard, with the request indexes it carries.
    tickets: Vec<(AppendTicket, Vec<usize>)>,
}

impl PendingPutRecords {
    /// Blocks until every accepted record is durable. A record whose commit failed is
    /// reported as `InternalFailure`.
    pub fn wait(mut self) -> PutRecordsOutput {
        for (ticket, indexes) in std::mem::take(&mut self.tickets) {
            if let Err(e) = ticket.wait() {
                self.fail(&indexes, &e);
            }
        }
        self.output()
    }

    /// Completes when every accepted record is durable.
    pub async fn finish(mut self) -> PutRecordsOutput {
        for (ticket, indexes) in std::mem::take(&mut self.tickets) {
            if let Err(e) = ticket.into_future().await {
                self.fail(&indexes, &e);
            }
        }
        self.output()
    }

    fn fail(&mut self, indexes: &[usize], error: &Error) {
        tracing::error!(%error, "PutRecords: a commit failed");
        for &i in indexes {
            self.results[i] = Err(internal_failure());
        }
    }

    fn output(mut self) -> PutRecordsOutput {
        for r in &mut self.results {
            if matches!(r, Err(f) if f.error_message.is_empty()) {
                *r = Err(internal_failure());
            }
        }
        PutRecordsOutput {
            failed_record_count: self.results.iter().filter(|r| r.is_err()).count(),
            records: self.results,
        }
    }
}

/// The children of shard `index`, as GetRecords reports them at a closed shard's end.
fn children_of(view: &StreamView, index: u32) -> Vec<ChildShard> {
    view.meta
        .shards
        .iter()
        .filter(|s| s.parent == Some(index) || s.adjacent_parent == Some(index))
        .map(|s| ChildShard {
            shard_id: shard_id(s.index),
            parent_shards: s.parent.into_iter().chain(s.adjacent_parent).map(shard_id).collect(),
            hash_key_range: HashKeyRange { start: s.starting_hash_key, end: s.ending_hash_key },
        })
        .collect()
}
