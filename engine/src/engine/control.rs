//! Control plane: streams, shards listing, resharding, retention, consumers, tags.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::types::*;
use super::{Engine, StreamState, StreamView};
use crate::catalog::{
    ConsumerMeta, ConsumerStatus, ShardMeta, StreamMeta, StreamMode, StreamStatus,
};
use crate::error::{Error, Result};
use crate::reshard::{self, Step};
use crate::routing::{parse_hash_key, uniform_ranges, HashKeyError, HashKeyRange};
use crate::sequence::{parse_shard_id, shard_id, SequenceNumber};
use crate::token::{decode_page, encode_page, TOKEN_LIFETIME_MS};
use crate::validate::{self, check_name, validation};

const DAY_MS: u64 = 24 * 3_600_000;
/// New on-demand streams start with this many shards.
const ON_DEMAND_SHARDS: u32 = 4;

/// What a ListShards NextToken carries.
#[derive(Debug, Serialize, Deserialize)]
struct ShardPage {
    stream: String,
    epoch: u32,
    /// Next page starts after this shard id.
    after: String,
    filter: Option<FilterToken>,
    issued_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum FilterToken {
    AtTrimHorizon,
    AtLatest,
    AtTimestamp(u64),
    FromTimestamp(u64),
}

/// What a ListStreams / ListStreamConsumers NextToken carries.
#[derive(Debug, Serialize, Deserialize)]
struct NamePage {
    /// Stream (consumers: the stream whose consumers are listed).
    scope: String,
    after: String,
    issued_ms: u64,
}

/// A page size: `value` checked against the model's `1..=10000`, then `default` if absent
/// and at most `cap` (larger values behave as `cap`, as in Kinesis).
fn page_size(value: Option<u32>, path: &str, default: u32, cap: u32) -> Result<usize> {
    if let Some(v) = value {
        int_range(v, path, 1, 10_000)?;
    }
    Ok(value.unwrap_or(default).min(cap) as usize)
}

fn int_range(value: u32, path: &str, min: u32, max: u32) -> Result<()> {
    if value < min {
        return Err(validation(
            &format!("'{value}'"),
            path,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(validation(
            &format!("'{value}'"),
            path,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

impl Engine {
    /// Looks up a stream by name or ARN (any status).
    pub(crate) fn stream(&self, stream: &str) -> Result<Arc<StreamState>> {
        let name = self.resolve(stream)?;
        self.stream_state(name).ok_or_else(|| self.msg().stream_not_found(name))
    }

    /// The stream's catalog entry, for a control-plane change under the control lock.
    fn meta_for_change<'c>(
        &self,
        control: &'c super::Control,
        stream: &str,
    ) -> Result<&'c StreamMeta> {
        let name = self.resolve(stream)?;
        control.catalog.streams.get(name).ok_or_else(|| self.msg().stream_not_found(name))
    }

    fn require_active(&self, meta: &StreamMeta) -> Result<()> {
        if meta.status != StreamStatus::Active {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        Ok(())
    }

    fn open_shards_total(control: &super::Control) -> u64 {
        control
            .catalog
            .streams
            .values()
            .map(|s| s.shards.iter().filter(|sh| sh.closed.is_none()).count() as u64)
            .sum()
    }

    fn check_shard_limit(&self, control: &super::Control, additional: u64) -> Result<()> {
        let open = Self::open_shards_total(control);
        let limit = u64::from(self.inner.config.shard_limit);
        if open + additional > limit {
            return Err(self.msg().shard_limit(open, limit, additional));
        }
        Ok(())
    }

    /// Publishes `meta` (already committed) as the stream's view, opening new shard logs.
    fn publish(&self, state: &StreamState, view: &mut StreamView, meta: &StreamMeta) -> Result<()> {
        let fresh = self.build_view(meta, &view.shards)?;
        debug_assert_eq!(state.epoch, meta.epoch);
        *view = fresh;
        Ok(())
    }

    /// Commits `catalog`; on success publishes the stream `name`'s new entry. Call with the
    /// stream's view write lock held when writers must switch atomically.
    fn commit_and_publish(
        &self,
        control: &mut super::Control,
        catalog: crate::catalog::Catalog,
        state: &StreamState,
        view: &mut StreamView,
    ) -> Result<()> {
        self.commit(control, catalog)?;
        let meta = control.catalog.streams.get(&state.name).cloned();
        match meta {
            Some(meta) => self.publish(state, view, &meta).inspect_err(|e| {
                // Committed but not opened: memory and disk disagree until a reopen.
                let reason: Arc<str> = format!("a shard log failed to open ({e}); reopen").into();
                *self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
            }),
            None => Ok(()),
        }
    }

    /// Commits `catalog` (a change to stream `name` only) and publishes the stream's new
    /// view, under the view's write lock.
    fn commit_stream(
        &self,
        control: &mut super::Control,
        catalog: crate::catalog::Catalog,
        name: &str,
    ) -> Result<()> {
        let state = self.stream_state(name).ok_or_else(|| self.msg().stream_not_found(name))?;
        let mut view = state.write();
        self.commit_and_publish(control, catalog, &state, &mut view)
    }

    /// `CreateStream`. `shard_count` is required for provisioned streams (the default
    /// mode); on-demand streams start with 4 shards unless it is given.
    pub fn create_stream(
        &self,
        name: &str,
        shard_count: Option<u32>,
        mode: Option<StreamMode>,
        tags: &[(String, String)],
    ) -> Result<()> {
        self.enter()?;
        check_name(name, "streamName")?;
        let mode = mode.unwrap_or(StreamMode::Provisioned);
        let count = match (shard_count, mode) {
            (Some(n), _) => n,
            (None, StreamMode::OnDemand) => ON_DEMAND_SHARDS,
            (None, StreamMode::Provisioned) => {
                return Err(Error::InvalidArgument(
                    "ShardCount is required for a stream in PROVISIONED mode.".into(),
                ))
            }
        };
        int_range(count, "shardCount", 1, i32::MAX as u32)?;
        if tags.len() > validate::TAGS_PER_CALL_MAX {
            return Err(Error::InvalidArgument(format!(
                "Failed to create stream {name} under account {} because a request can carry at \
                 most 10 tags.",
                self.inner.config.account_id
            )));
        }
        for (k, v) in tags {
            validate::check_tag(k, Some(v))?;
        }
        let now = self.now();
        let mut control = self.control();
        if control.catalog.streams.contains_key(name) {
            return Err(self.msg().stream_exists(name));
        }
        if count > validate::SHARDS_PER_STREAM_MAX {
            return Err(self.msg().shard_limit(
                Self::open_shards_total(&control),
                u64::from(validate::SHARDS_PER_STREAM_MAX),
                u64::from(count),
            ));
        }
        self.check_shard_limit(&control, u64::from(count))?;
        let creating =
            control.catalog.streams.values().filter(|s| s.status == StreamStatus::Creating).count();
        if creating >= 5 {
            return Err(Error::LimitExceeded(format!(
                "Account {} already has 5 streams in CREATING state; wait for them to become \
                 ACTIVE.",
                self.inner.config.account_id
            )));
        }
        if mode == StreamMode::OnDemand {
            let on_demand =
                control.catalog.streams.values().filter(|s| s.mode == StreamMode::OnDemand).count();
            if on_demand as u32 >= self.inner.config.on_demand_stream_limit {
                return Err(Error::LimitExceeded(format!(
                    "Account {} already has {on_demand} on-demand streams, the limit.",
                    self.inner.config.account_id
                )));
            }
        }
        let mut catalog = control.catalog.clone();
        let epoch = catalog.next_stream_epoch;
        catalog.next_stream_epoch += 1;
        let shards = uniform_ranges(count)
            .iter()
            .enumerate()
            .map(|(i, r)| ShardMeta {
                index: i as u32,
                parent: None,
                adjacent_parent: None,
                starting_hash_key: r.start,
                ending_hash_key: r.end,
                created_ms: now,
                closed: None,
            })
            .collect();
        let meta = StreamMeta {
            name: name.to_string(),
            epoch,
            created_ms: now,
            status: StreamStatus::Creating,
            status_due_ms: Some(now + self.inner.config.transition_ms),
            mode,
            retention_hours: validate::RETENTION_HOURS_DEFAULT,
            trim_floor_ms: 0,
            next_shard_index: count,
            shards,
            tags: tags.iter().cloned().collect(),
            consumers: Vec::new(),
            shard_count_updates_ms: Vec::new(),
            mode_switches_ms: Vec::new(),
        };
        catalog.streams.insert(name.to_string(), meta.clone());
        self.commit(&mut control, catalog)?;
        let state = self.build_stream(&meta, &BTreeMap::new()).inspect_err(|e| {
            let reason: Arc<str> = format!("a shard log failed to open ({e}); reopen").into();
            *self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        })?;
        self.inner
            .streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), Arc::new(state));
        Ok(())
    }

    /// `DeleteStream`: the stream shows DELETING, then vanishes with its data. Fails with
    /// `ResourceInUseException` if consumers are registered, unless
    /// `enforce_consumer_deletion`.
    pub fn delete_stream(&self, stream: &str, enforce_consumer_deletion: bool) -> Result<()> {
        self.enter()?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if meta.status == StreamStatus::Deleting {
            return Ok(());
        }
        if !meta.consumers.is_empty() && !enforce_consumer_deletion {
            return Err(Error::ResourceInUse(format!(
                "Stream {} under account {} has registered consumers; deregister them or set \
                 EnforceConsumerDeletion.",
                meta.name, self.inner.config.account_id
            )));
        }
        let name = meta.name.clone();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&name).expect("looked up above");
        entry.status = StreamStatus::Deleting;
        entry.status_due_ms = Some(self.now() + self.inner.config.transition_ms);
        let state = self.stream_state(&name).ok_or_else(|| self.msg().stream_not_found(&name))?;
        let mut view = state.write();
        self.commit_and_publish(&mut control, catalog, &state, &mut view)?;
        drop(view);
        drop(control);
        self.advance()
    }

    fn shard_out(&self, meta: &StreamMeta, shard: &ShardMeta) -> Shard {
        Shard {
            shard_id: shard_id(shard.index),
            parent_shard_id: shard.parent.map(shard_id),
            adjacent_parent_shard_id: shard.adjacent_parent.map(shard_id),
            hash_key_range: HashKeyRange {
                start: shard.starting_hash_key,
                end: shard.ending_hash_key,
            },
            starting_sequence_number: SequenceNumber::starting(shard.index, meta.epoch),
            ending_sequence_number: shard
                .closed
                .map(|_| SequenceNumber::ending(shard.index, meta.epoch)),
        }
    }

    /// `DescribeStream`: up to `limit` shards (default 100; more behaves as 100) after
    /// `exclusive_start_shard_id`. A CREATING stream has no shards yet.
    pub fn describe_stream(
        &self,
        stream: &str,
        limit: Option<u32>,
        exclusive_start_shard_id: Option<&str>,
    ) -> Result<StreamDescription> {
        self.enter()?;
        let limit = page_size(limit, "limit", 100, 100)?;
        let state = self.stream(stream)?;
        let view = state.read();
        let meta = &view.meta;
        let shards: Vec<&ShardMeta> = if meta.status == StreamStatus::Creating {
            Vec::new()
        } else {
            meta.shards
                .iter()
                .filter(|s| {
                    exclusive_start_shard_id.is_none_or(|after| shard_id(s.index).as_str() > after)
                })
                .collect()
        };
        Ok(StreamDescription {
            stream_name: meta.name.clone(),
            stream_arn: self.stream_arn(&meta.name),
            stream_status: meta.status,
            stream_mode: meta.mode,
            has_more_shards: shards.len() > limit,
            shards: shards.iter().take(limit).map(|s| self.shard_out(meta, s)).collect(),
            retention_period_hours: meta.retention_hours,
            stream_creation_ms: meta.created_ms,
        })
    }

    /// `DescribeStreamSummary`.
    pub fn describe_stream_summary(&self, stream: &str) -> Result<StreamSummary> {
        self.enter()?;
        let state = self.stream(stream)?;
        let view = state.read();
        let meta = &view.meta;
        Ok(StreamSummary {
            stream_name: meta.name.clone(),
            stream_arn: self.stream_arn(&meta.name),
            stream_status: meta.status,
            stream_mode: meta.mode,
            retention_period_hours: meta.retention_hours,
            stream_creation_ms: meta.created_ms,
            open_shard_count: if meta.status == StreamStatus::Creating {
                0
            } else {
                view.open.len()
            },
            consumer_count: meta.consumers.len(),
        })
    }

    /// `ListStreams`: names in byte order, every status, `limit` per page (default 100;
    /// more behaves as 100).
    pub fn list_streams(
        &self,
        limit: Option<u32>,
        exclusive_start_stream_name: Option<&str>,
        next_token: Option<&str>,
    ) -> Result<ListStreamsOutput> {
        self.enter()?;
        let limit = page_size(limit, "limit", 100, 100)?;
        let now = self.now();
        let after = match next_token {
            Some(token) => {
                let page: NamePage = decode_page(token, self.key())
                    .filter(|p: &NamePage| p.scope.is_empty())
                    .ok_or_else(|| Error::InvalidArgument("Invalid NextToken.".into()))?;
                self.check_page_age(page.issued_ms, now)?;
                Some(page.after)
            }
            None => exclusive_start_stream_name.map(str::to_string),
        };
        let streams = self.streams_snapshot();
        let rest: Vec<&Arc<StreamState>> = streams
            .iter()
            .filter(|(name, _)| after.as_deref().is_none_or(|a| name.as_str() > a))
            .map(|(_, s)| s)
            .collect();
        let page: Vec<&Arc<StreamState>> = rest.iter().take(limit).copied().collect();
        let has_more = rest.len() > limit;
        let summaries: Vec<StreamListEntry> = page
            .iter()
            .map(|s| {
                let view = s.read();
                StreamListEntry {
                    stream_name: s.name.clone(),
                    stream_arn: self.stream_arn(&s.name),
                    stream_status: view.meta.status,
                    stream_mode: view.meta.mode,
                    stream_creation_ms: view.meta.created_ms,
                }
            })
            .collect();
        let next_token = match (has_more, page.last()) {
            (true, Some(last)) => Some(encode_page(
                &NamePage { scope: String::new(), after: last.name.clone(), issued_ms: now },
                self.key(),
            )),
            _ => None,
        };
        Ok(ListStreamsOutput {
            stream_names: page.iter().map(|s| s.name.clone()).collect(),
            has_more_streams: has_more,
            next_token,
            stream_summaries: summaries,
        })
    }

    fn check_page_age(&self, issued_ms: u64, now: u64) -> Result<()> {
        if now.saturating_sub(issued_ms) > TOKEN_LIFETIME_MS {
            return Err(Error::ExpiredNextToken(format!(
                "The NextToken has expired: it was issued at {} and tokens are valid for 300 \
                 seconds.",
                crate::token::format_java_utc(issued_ms)
            )));
        }
        Ok(())
    }

    /// `ListShards`, with paging and every `ShardFilter` type.
    pub fn list_shards(&self, input: &ListShardsInput<'_>) -> Result<ListShardsOutput> {
        self.enter()?;
        let max = page_size(input.max_results, "maxResults", 1000, 1000)?;
        let now = self.now();
        let (state, after, filter) = match (input.stream, input.next_token) {
            (None, None) => {
                return Err(Error::InvalidArgument(
                    "Either NextToken or StreamName should be provided.".into(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(
                    "NextToken and StreamName cannot be provided together.".into(),
                ))
            }
            (None, Some(token)) => {
                if input.exclusive_start_shard_id.is_some()
                    || input.stream_creation_ms.is_some()
                    || input.shard_filter.is_some()
                {
                    return Err(Error::InvalidArgument(
                        "NextToken cannot be provided together with ExclusiveStartShardId, \
                         StreamCreationTimestamp or ShardFilter."
                            .into(),
                    ));
                }
                let page: ShardPage = decode_page(token, self.key())
                    .ok_or_else(|| Error::InvalidArgument("Invalid NextToken.".into()))?;
                self.check_page_age(page.issued_ms, now)?;
                let state = self
                    .stream_state(&page.stream)
                    .filter(|s| s.epoch == page.epoch)
                    .ok_or_else(|| self.msg().stream_not_found(&page.stream))?;
                let filter = page.filter.map(|f| match f {
                    FilterToken::AtTrimHorizon => ShardFilter::AtTrimHorizon,
                    FilterToken::AtLatest => ShardFilter::AtLatest,
                    FilterToken::AtTimestamp(t) => ShardFilter::AtTimestamp(t),
                    FilterToken::FromTimestamp(t) => ShardFilter::FromTimestamp(t),
                });
                (state, Some(page.after), filter)
            }
            (Some(stream), None) => {
                let state = self.stream(stream)?;
                if let Some(ts) = input.stream_creation_ms {
                    if state.read().meta.created_ms != ts {
                        return Err(self.msg().stream_not_found(&state.name));
                    }
                }
                let filter = input.shard_filter.clone();
                // Ids compare as strings (canonical ids sort by index); they need not exist.
                let after = match (&filter, input.exclusive_start_shard_id) {
                    (Some(ShardFilter::AfterShardId(id)), Some(start)) => {
                        Some(id.as_str().max(start).to_string())
                    }
                    (Some(ShardFilter::AfterShardId(id)), None) => Some(id.clone()),
                    (_, start) => start.map(str::to_string),
                };
                (state, after, filter)
            }
        };
        let view = state.read();
        let meta = &view.meta;
        if meta.status == StreamStatus::Creating {
            return Ok(ListShardsOutput { shards: Vec::new(), next_token: None });
        }
        // The trim horizon of a stream younger than its retention is its creation.
        let horizon = view.cutoff_ms(now).max(meta.created_ms);
        let keep = |s: &ShardMeta| -> bool {
            let closed_ms = s.closed.map(|c| c.closed_ms);
            match &filter {
                None | Some(ShardFilter::FromTrimHorizon) | Some(ShardFilter::AfterShardId(_)) => {
                    true
                }
                Some(ShardFilter::AtLatest) => closed_ms.is_none(),
                Some(ShardFilter::AtTrimHorizon) => {
                    s.created_ms <= horizon && closed_ms.is_none_or(|c| c >= horizon)
                }
                Some(ShardFilter::AtTimestamp(t)) => {
                    s.created_ms <= *t && closed_ms.is_none_or(|c| c >= *t)
                }
                Some(ShardFilter::FromTimestamp(t)) => {
                    let t = (*t).max(horizon);
                    closed_ms.is_none_or(|c| c >= t)
                }
            }
        };
        let matching: Vec<&ShardMeta> = meta
            .shards
            .iter()
            .filter(|s| after.as_deref().is_none_or(|a| shard_id(s.index).as_str() > a))
            .filter(|s| keep(s))
            .collect();
        let page: Vec<&ShardMeta> = matching.iter().take(max).copied().collect();
        let next_token = match (matching.len() > max, page.last()) {
            (true, Some(last)) => Some(encode_page(
                &ShardPage {
                    stream: meta.name.clone(),
                    epoch: meta.epoch,
                    after: shard_id(last.index),
                    filter: match &filter {
                        Some(ShardFilter::AtTrimHorizon) => Some(FilterToken::AtTrimHorizon),
                        Some(ShardFilter::AtLatest) => Some(FilterToken::AtLatest),
                        Some(ShardFilter::AtTimestamp(t)) => Some(FilterToken::AtTimestamp(*t)),
                        Some(ShardFilter::FromTimestamp(t)) => Some(FilterToken::FromTimestamp(*t)),
                        _ => None,
                    },
                    issued_ms: now,
                },
                self.key(),
            )),
            _ => None,
        };
        Ok(ListShardsOutput {
            shards: page.iter().map(|s| self.shard_out(meta, s)).collect(),
            next_token,
        })
    }

    /// `SplitShard`: closes the shard and opens two children, the lower one ending just
    /// below `new_starting_hash_key`. Writes go to the children when this returns.
    pub fn split_shard(
        &self,
        stream: &str,
        shard_to_split: &str,
        new_starting_hash_key: &str,
    ) -> Result<()> {
        self.enter()?;
        let key = match parse_hash_key(new_starting_hash_key) {
            Ok(k) => Some(k),
            Err(HashKeyError::OutOfRange) => None,
            Err(HashKeyError::Malformed) => {
                return Err(validation(
                    &format!("'{new_starting_hash_key}'"),
                    "newStartingHashKey",
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                ))
            }
        };
        let name = self.resolve(stream)?;
        let index = parse_shard_id(shard_to_split)
            .ok_or_else(|| self.msg().could_not_find_shard(shard_to_split, name))?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        self.require_active(meta)?;
        let id = shard_id(index);
        let shard = meta
            .shards
            .iter()
            .find(|s| s.index == index)
            .ok_or_else(|| self.msg().could_not_find_shard(&id, name))?;
        self.check_shard_limit(&control, 1)?;
        if shard.closed.is_some() {
            return Err(self.not_open(&id, name));
        }
        let (start, end) = (shard.starting_hash_key, shard.ending_hash_key);
        let valid = key.is_some_and(|k| start.checked_add(1).is_some_and(|s1| k > s1) && k < end);
        let Some(key) = key.filter(|_| valid) else {
            return Err(Error::InvalidArgument(format!(
                "NewStartingHashKey {new_starting_hash_key} used in SplitShard() on shard {id} in \
                 stream {name} under account {} is not both greater than one plus the shard's \
                 StartingHashKey {start} and less than the shard's EndingHashKey {end}.",
                self.inner.config.account_id
            )));
        };
        if meta.mode == StreamMode::OnDemand {
            return Err(on_demand_error());
        }
        let name = meta.name.clone();
        let state = self.stream_state(&name).ok_or_else(|| self.msg().stream_not_found(&name))?;
        let mut view = state.write();
        let end_position = seal(&view, index)?;
        let now = self.now();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&name).expect("looked up above");
        reshard::apply_split(entry, index, key, end_position, now);
        self.begin_update(entry, now);
        self.commit_and_publish(&mut control, catalog, &state, &mut view)
    }

    /// `MergeShards`: closes two adjacent shards (`adjacent_shard_to_merge` must start right
    /// after `shard_to_merge` ends) and opens their child.
    pub fn merge_shards(
        &self,
        stream: &str,
        shard_to_merge: &str,
        adjacent_shard_to_merge: &str,
    ) -> Result<()> {
        self.enter()?;
        let name = self.resolve(stream)?;
        let left = parse_shard_id(shard_to_merge)
            .ok_or_else(|| self.msg().could_not_find_shard(shard_to_merge, name))?;
        let right = parse_shard_id(adjacent_shard_to_merge)
            .ok_or_else(|| self.msg().could_not_find_shard(adjacent_shard_to_merge, name))?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        self.require_active(meta)?;
        let find = |i: u32| {
            meta.shards
                .iter()
                .find(|s| s.index == i)
                .ok_or_else(|| self.msg().could_not_find_shard(&shard_id(i), name))
        };
        let (a, b) = (find(left)?, find(right)?);
        for s in [a, b] {
            if s.closed.is_some() {
                return Err(self.not_open(&shard_id(s.index), name));
            }
        }
        if a.ending_hash_key.checked_add(1) != Some(b.starting_hash_key) {
            return Err(Error::InvalidArgument(format!(
                "Shards {} and {} in stream {name} under account {} are not an adjacent pair of \
                 shards eligible for merging",
                shard_id(left),
                shard_id(right),
                self.inner.config.account_id
            )));
        }
        if meta.mode == StreamMode::OnDemand {
            return Err(on_demand_error());
        }
        let name = meta.name.clone();
        let state = self.stream_state(&name).ok_or_else(|| self.msg().stream_not_found(&name))?;
        let mut view = state.write();
        let ends = (seal(&view, left)?, seal(&view, right)?);
        let now = self.now();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&name).expect("looked up above");
        reshard::apply_merge(entry, left, right, ends, now);
        self.begin_update(entry, now);
        self.commit_and_publish(&mut control, catalog, &state, &mut view)
    }

    /// `UpdateShardCount` with `UNIFORM_SCALING`: splits and merges (with correct lineage)
    /// until the open shards are `target` uniform ranges. Target within `[ceil(open/2),
    /// 2*open]`, at most 10 calls per rolling 24 hours.
    pub fn update_shard_count(
        &self,
        stream: &str,
        target: u32,
        scaling_type: &str,
    ) -> Result<UpdateShardCountOutput> {
        self.enter()?;
        int_range(target, "targetShardCount", 1, i32::MAX as u32)?;
        if scaling_type != "UNIFORM_SCALING" {
            return Err(validation(
                &format!("'{scaling_type}'"),
                "scalingType",
                "Member must satisfy enum value set: [UNIFORM_SCALING]",
            ));
        }
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        self.require_active(meta)?;
        if meta.mode == StreamMode::OnDemand {
            return Err(on_demand_error());
        }
        let now = self.now();
        let recent =
            meta.shard_count_updates_ms.iter().filter(|t| now.saturating_sub(**t) < DAY_MS).count();
        if recent >= 10 {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} has already been scaled 10 times in the last 24 \
                 hours.",
                meta.name, self.inner.config.account_id
            )));
        }
        let open: Vec<(u32, u128, u128)> = meta
            .shards
            .iter()
            .filter(|s| s.closed.is_none())
            .map(|s| (s.index, s.starting_hash_key, s.ending_hash_key))
            .collect();
        let current = open.len() as u32;
        if target > current.saturating_mul(2) || target < current.div_ceil(2) {
            return Err(Error::InvalidArgument(format!(
                "UpdateShardCount on stream {} under account {}: TargetShardCount {target} must \
                 be between half ({}) and double ({}) the current open shard count {current}.",
                meta.name,
                self.inner.config.account_id,
                current.div_ceil(2),
                current.saturating_mul(2)
            )));
        }
        if target > validate::SHARDS_PER_STREAM_MAX {
            return Err(self.msg().shard_limit(
                Self::open_shards_total(&control),
                u64::from(validate::SHARDS_PER_STREAM_MAX),
                u64::from(target - current),
            ));
        }
        self.check_shard_limit(&control, u64::from(target.saturating_sub(current)))?;
        let name = meta.name.clone();
        let steps = reshard::uniform_plan(&open, target, meta.next_shard_index);
        let state = self.stream_state(&name).ok_or_else(|| self.msg().stream_not_found(&name))?;
        let mut view = state.write();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&name).expect("looked up above");
        let existing: Vec<u32> = open.iter().map(|s| s.0).collect();
        let end_of = |view: &StreamView, i: u32| -> Result<u64> {
            if existing.contains(&i) {
                seal(view, i)
            } else {
                Ok(0)
            }
        };
        for step in &steps {
            match *step {
                Step::Split { shard, at } => {
                    let end = end_of(&view, shard)?;
                    reshard::apply_split(entry, shard, at, end, now);
                }
                Step::Merge { shard, adjacent } => {
                    let ends = (end_of(&view, shard)?, end_of(&view, adjacent)?);
                    reshard::apply_merge(entry, shard, adjacent, ends, now);
                }
            }
        }
        entry.shard_count_updates_ms.retain(|t| now.saturating_sub(*t) < DAY_MS);
        entry.shard_count_updates_ms.push(now);
        if !steps.is_empty() {
            self.begin_update(entry, now);
        }
        self.commit_and_publish(&mut control, catalog, &state, &mut view)?;
        Ok(UpdateShardCountOutput {
            stream_arn: self.stream_arn(&name),
            stream_name: name,
            current_shard_count: current,
            target_shard_count: target,
        })
    }

    fn begin_update(&self, meta: &mut StreamMeta, now: u64) {
        meta.status = StreamStatus::Updating;
        meta.status_due_ms = Some(now + self.inner.config.transition_ms);
    }

    fn not_open(&self, id: &str, stream: &str) -> Error {
        Error::InvalidArgument(format!(
            "Shard {id} in stream {stream} under account {} is not open",
            self.inner.config.account_id
        ))
    }

    /// `IncreaseStreamRetentionPeriod`. Records that had already expired stay expired.
    pub fn increase_stream_retention_period(&self, stream: &str, hours: u32) -> Result<()> {
        self.change_retention(stream, hours, true)
    }

    /// `DecreaseStreamRetentionPeriod`. Older records become unreadable at once; their
    /// segments are deleted by the next maintenance pass.
    pub fn decrease_stream_retention_period(&self, stream: &str, hours: u32) -> Result<()> {
        self.change_retention(stream, hours, false)
    }

    fn change_retention(&self, stream: &str, hours: u32, increase: bool) -> Result<()> {
        self.enter()?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if hours < validate::RETENTION_HOURS_MIN {
            return Err(Error::InvalidArgument(format!(
                "Minimum allowed retention period is 24 hours. Requested retention period \
                 ({hours} hours) is too short."
            )));
        }
        if hours > validate::RETENTION_HOURS_MAX {
            return Err(Error::InvalidArgument(format!(
                "Maximum allowed retention period is 8760 hours. Requested retention period \
                 ({hours} hours) is too long."
            )));
        }
        let current = meta.retention_hours;
        if increase && hours < current {
            return Err(Error::InvalidArgument(format!(
                "Requested retention period ({hours} hours) for stream {} can not be shorter than \
                 existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                meta.name
            )));
        }
        if !increase && hours > current {
            return Err(Error::InvalidArgument(format!(
                "Requested retention period ({hours} hours) for stream {} can not be longer than \
                 existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                meta.name
            )));
        }
        self.require_active(meta)?;
        let name = meta.name.clone();
        let now = self.now();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&name).expect("looked up above");
        if hours > current {
            // What had expired stays expired: the first readable instant under the old
            // retention becomes a floor.
            let first_readable = (now + 1).saturating_sub(u64::from(current) * 3_600_000);
            entry.trim_floor_ms = entry.trim_floor_ms.max(first_readable);
        }
        entry.retention_hours = hours;
        self.commit_stream(&mut control, catalog, &name)
    }

    /// `UpdateStreamMode`: at most two switches per rolling 24 hours.
    pub fn update_stream_mode(&self, stream: &str, mode: StreamMode) -> Result<()> {
        self.enter()?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        self.require_active(meta)?;
        let now = self.now();
        if meta.mode == mode {
            return Ok(());
        }
        if meta.mode_switches_ms.iter().filter(|t| now.saturating_sub(**t) < DAY_MS).count() >= 2 {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} has already switched capacity mode twice in the last \
                 24 hours.",
                meta.name, self.inner.config.account_id
            )));
        }
        let name = meta.name.clone();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&name).expect("looked up above");
        entry.mode = mode;
        entry.mode_switches_ms.retain(|t| now.saturating_sub(*t) < DAY_MS);
        entry.mode_switches_ms.push(now);
        self.begin_update(entry, now);
        self.commit_stream(&mut control, catalog, &name)
    }

    /// `DescribeLimits`.
    pub fn describe_limits(&self) -> Result<AccountLimits> {
        self.enter()?;
        let control = self.control();
        Ok(AccountLimits {
            shard_limit: self.inner.config.shard_limit,
            open_shard_count: Self::open_shards_total(&control) as u32,
            on_demand_stream_count: control
                .catalog
                .streams
                .values()
                .filter(|s| s.mode == StreamMode::OnDemand)
                .count() as u32,
            on_demand_stream_count_limit: self.inner.config.on_demand_stream_limit,
        })
    }

    // ---- consumers ----

    fn consumer_out(&self, stream: &str, c: &ConsumerMeta) -> Consumer {
        let stream_arn = self.stream_arn(stream);
        Consumer {
            consumer_name: c.name.clone(),
            consumer_arn: format!("{stream_arn}/consumer/{}:{}", c.name, c.created_ms / 1000),
            consumer_status: c.status,
            consumer_creation_ms: c.created_ms,
            stream_arn,
        }
    }

    /// Resolves a consumer reference to (stream name, consumer name, creation seconds if
    /// the reference is an ARN).
    fn consumer_ref<'a>(
        &self,
        consumer: ConsumerRef<'a>,
    ) -> Result<(&'a str, &'a str, Option<u64>)> {
        match consumer {
            ConsumerRef::Name { stream, consumer_name } => {
                check_name(consumer_name, "consumerName")?;
                Ok((self.resolve(stream)?, consumer_name, None))
            }
            ConsumerRef::Arn(arn) => {
                let invalid = || {
                    validation(
                        &format!("'{arn}'"),
                        "consumerARN",
                        "Member must satisfy regular expression pattern: \
                         ^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+",
                    )
                };
                let (stream_arn, rest) = arn.split_once("/consumer/").ok_or_else(invalid)?;
                let (name, secs) = rest.rsplit_once(':').ok_or_else(invalid)?;
                let secs: u64 = secs.parse().map_err(|_| invalid())?;
                check_name(name, "consumerName")?;
                Ok((self.resolve(stream_arn)?, name, Some(secs)))
            }
        }
    }

    /// `RegisterStreamConsumer`: the consumer is CREATING, then ACTIVE.
    pub fn register_stream_consumer(&self, stream: &str, consumer_name: &str) -> Result<Consumer> {
        self.enter()?;
        check_name(consumer_name, "consumerName")?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if matches!(meta.status, StreamStatus::Creating | StreamStatus::Deleting) {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        if meta.consumers.iter().any(|c| c.name == consumer_name) {
            return Err(Error::ResourceInUse(format!(
                "Consumer {consumer_name} under stream {} under account {} already exists.",
                meta.name, self.inner.config.account_id
            )));
        }
        if meta.consumers.len() >= validate::CONSUMERS_MAX {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} already has 20 registered consumers, the limit.",
                meta.name, self.inner.config.account_id
            )));
        }
        let creating =
            meta.consumers.iter().filter(|c| c.status == ConsumerStatus::Creating).count();
        if creating >= validate::CONSUMERS_CREATING_MAX {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} already has 5 consumers in CREATING state.",
                meta.name, self.inner.config.account_id
            )));
        }
        let name = meta.name.clone();
        let now = self.now();
        let consumer = ConsumerMeta {
            name: consumer_name.to_string(),
            created_ms: now,
            status: ConsumerStatus::Creating,
            status_due_ms: Some(now + self.inner.config.transition_ms),
        };
        let mut catalog = control.catalog.clone();
        catalog.streams.get_mut(&name).expect("looked up above").consumers.push(consumer.clone());
        self.commit_stream(&mut control, catalog, &name)?;
        Ok(self.consumer_out(&name, &consumer))
    }

    fn find_consumer<'m>(
        &self,
        meta: &'m StreamMeta,
        name: &str,
        created_secs: Option<u64>,
    ) -> Result<&'m ConsumerMeta> {
        meta.consumers
            .iter()
            .find(|c| c.name == name && created_secs.is_none_or(|s| s == c.created_ms / 1000))
            .ok_or_else(|| self.msg().consumer_not_found(name, &meta.name))
    }

    /// `DeregisterStreamConsumer`: the consumer is DELETING, then gone.
    pub fn deregister_stream_consumer(&self, consumer: ConsumerRef<'_>) -> Result<()> {
        self.enter()?;
        let (stream, name, secs) = self.consumer_ref(consumer)?;
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        let found = self.find_consumer(meta, name, secs)?.clone();
        if found.status == ConsumerStatus::Deleting {
            return Ok(());
        }
        let stream_name = meta.name.clone();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&stream_name).expect("looked up above");
        if let Some(c) = entry.consumers.iter_mut().find(|c| **c == found) {
            c.status = ConsumerStatus::Deleting;
            c.status_due_ms = Some(self.now() + self.inner.config.transition_ms);
        }
        let state = self
            .stream_state(&stream_name)
            .ok_or_else(|| self.msg().stream_not_found(&stream_name))?;
        let mut view = state.write();
        self.commit_and_publish(&mut control, catalog, &state, &mut view)?;
        drop(view);
        drop(control);
        self.advance()
    }

    /// `DescribeStreamConsumer`.
    pub fn describe_stream_consumer(&self, consumer: ConsumerRef<'_>) -> Result<Consumer> {
        self.enter()?;
        let (stream, name, secs) = self.consumer_ref(consumer)?;
        let state = self.stream(stream)?;
        let view = state.read();
        let found = self.find_consumer(&view.meta, name, secs)?;
        Ok(self.consumer_out(&view.meta.name, found))
    }

    /// `ListStreamConsumers`: by name, `max_results` per page (default 100; more behaves
    /// as 100).
    pub fn list_stream_consumers(
        &self,
        stream: &str,
        max_results: Option<u32>,
        next_token: Option<&str>,
    ) -> Result<ListConsumersOutput> {
        self.enter()?;
        let max = page_size(max_results, "maxResults", 100, 100)?;
        let state = self.stream(stream)?;
        let now = self.now();
        let after = match next_token {
            Some(token) => {
                let page: NamePage = decode_page(token, self.key())
                    .filter(|p: &NamePage| p.scope == state.name)
                    .ok_or_else(|| Error::InvalidArgument("Invalid NextToken.".into()))?;
                self.check_page_age(page.issued_ms, now)?;
                Some(page.after)
            }
            None => None,
        };
        let view = state.read();
        let mut consumers: Vec<&ConsumerMeta> = view
            .meta
            .consumers
            .iter()
            .filter(|c| after.as_deref().is_none_or(|a| c.name.as_str() > a))
            .collect();
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        let more = consumers.len() > max;
        consumers.truncate(max);
        let next_token = match (more, consumers.last()) {
            (true, Some(last)) => Some(encode_page(
                &NamePage { scope: state.name.clone(), after: last.name.clone(), issued_ms: now },
                self.key(),
            )),
            _ => None,
        };
        Ok(ListConsumersOutput {
            consumers: consumers.iter().map(|c| self.consumer_out(&state.name, c)).collect(),
            next_token,
        })
    }

    // ---- tags ----

    /// `AddTagsToStream`: at most 10 per call and 50 per stream; existing keys are
    /// overwritten.
    pub fn add_tags_to_stream(&self, stream: &str, tags: &[(String, String)]) -> Result<()> {
        self.enter()?;
        for (k, v) in tags {
            validate::check_tag(k, Some(v))?;
        }
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if meta.status == StreamStatus::Deleting {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        if tags.len() > validate::TAGS_PER_CALL_MAX {
            return Err(Error::InvalidArgument(format!(
                "Failed to add tags to stream {} under account {} because a request can carry \
                 at most 10 tags.",
                meta.name, self.inner.config.account_id
            )));
        }
        let mut merged = meta.tags.clone();
        merged.extend(tags.iter().cloned());
        if merged.len() > validate::TAGS_MAX {
            return Err(Error::InvalidArgument(format!(
                "Failed to add tags to stream {} under account {} because a given stream cannot \
                 have more than 10 tags associated with it.",
                meta.name, self.inner.config.account_id
            )));
        }
        self.set_tags(&mut control, stream, merged)
    }

    /// `RemoveTagsFromStream`: unknown keys are ignored.
    pub fn remove_tags_from_stream(&self, stream: &str, keys: &[String]) -> Result<()> {
        self.enter()?;
        if keys.is_empty() || keys.len() > validate::TAGS_MAX {
            return Err(validation(
                &format!("'[{}]'", keys.join(", ")),
                "tagKeys",
                if keys.is_empty() {
                    "Member must have length greater than or equal to 1"
                } else {
                    "Member must have length less than or equal to 50"
                },
            ));
        }
        for k in keys {
            validate::check_tag(k, None)?;
        }
        let mut control = self.control();
        let meta = self.meta_for_change(&control, stream)?;
        if meta.status == StreamStatus::Deleting {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        let mut tags = meta.tags.clone();
        for k in keys {
            tags.remove(k);
        }
        self.set_tags(&mut control, stream, tags)
    }

    fn set_tags(
        &self,
        control: &mut super::Control,
        stream: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        let name = self.meta_for_change(control, stream)?.name.clone();
        let mut catalog = control.catalog.clone();
        catalog.streams.get_mut(&name).expect("looked up above").tags = tags;
        self.commit_stream(control, catalog, &name)
    }

    /// `ListTagsForStream`: tags in key order after `exclusive_start_tag_key`, at most
    /// `limit` (1..50, default 50).
    pub fn list_tags_for_stream(
        &self,
        stream: &str,
        exclusive_start_tag_key: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ListTagsOutput> {
        self.enter()?;
        if let Some(limit) = limit {
            int_range(limit, "limit", 1, 50)?;
        }
        let limit = limit.unwrap_or(50) as usize;
        let state = self.stream(stream)?;
        let view = state.read();
        let rest: Vec<(String, String)> = view
            .meta
            .tags
            .iter()
            .filter(|(k, _)| exclusive_start_tag_key.is_none_or(|a| k.as_str() > a))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ListTagsOutput {
            has_more_tags: rest.len() > limit,
            tags: rest.into_iter().take(limit).collect(),
        })
    }

    // ---- maintenance ----

    /// One maintenance pass: completes due status transitions, deletes segments whose
    /// records all expired, and removes closed shards that expired entirely. A background
    /// thread runs it every [`EngineConfig::maintenance_interval_ms`](super::EngineConfig);
    /// call it directly when driving time with a manual clock.
    pub fn run_maintenance(&self) -> Result<MaintenanceReport> {
        let before = self.streams_snapshot().len();
        self.enter()?;
        self.advance()?;
        let mut report = MaintenanceReport {
            streams_deleted: before.saturating_sub(self.streams_snapshot().len()),
            ..MaintenanceReport::default()
        };
        let now = self.now();
        for state in self.streams_snapshot().values() {
            let (cutoff, shards, expired) = {
                let view = state.read();
                let cutoff = view.cutoff_ms(now);
                let expired: Vec<u32> = view
                    .meta
                    .shards
                    .iter()
                    .filter(|s| s.closed.is_some_and(|c| c.closed_ms < cutoff))
                    .map(|s| s.index)
                    .collect();
                (cutoff, view.shards.values().cloned().collect::<Vec<_>>(), expired)
            };
            for shard in &shards {
                if !expired.contains(&shard.index) {
                    report.segments_deleted += shard.log.expire_segments(cutoff)?;
                }
            }
            if !expired.is_empty() {
                report.shards_expired += self.expire_shards(state, &expired)?;
            }
        }
        Ok(report)
    }

    /// Removes closed, fully expired shards from the catalog, then deletes their logs.
    fn expire_shards(&self, state: &StreamState, expired: &[u32]) -> Result<usize> {
        let mut control = self.control();
        let Some(meta) = control.catalog.streams.get(&state.name) else { return Ok(0) };
        if meta.epoch != state.epoch {
            return Ok(0);
        }
        let meta = meta.clone();
        let mut catalog = control.catalog.clone();
        let entry = catalog.streams.get_mut(&state.name).expect("looked up above");
        entry.shards.retain(|s| !expired.contains(&s.index));
        let removed = meta.shards.len() - entry.shards.len();
        let mut view = state.write();
        self.commit_and_publish(&mut control, catalog, state, &mut view)?;
        drop(view);
        for index in expired {
            let dir = self.shard_dir(&meta, *index);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(dir, e)),
            }
        }
        Ok(removed)
    }
}

/// Seals the log of open shard `index` and returns its end position.
fn seal(view: &StreamView, index: u32) -> Result<u64> {
    let shard = view.shards.get(&index).ok_or(Error::Closed)?;
    shard.log.seal()?;
    Ok(shard.log.end_position())
}

fn on_demand_error() -> Error {
    Error::Validation(
        "This operation is not supported for a data stream with the on-demand capacity mode: \
         you tried to invoke this API for a data stream with the on-demand capacity mode."
            .into(),
    )
}
