//! Control plane: stream lifecycle, describe and list, ListShards, and the helpers every
//! catalog change shares (look up, check limits, commit and publish). Resharding lives in
//! `reshape`, consumers and tags in `consumers`, background work in `maintenance`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::types::*;
use super::{Engine, StreamState, StreamView};
use crate::catalog::{ShardMeta, StreamMeta, StreamMode, StreamStatus};
use crate::error::{Error, Result};
use crate::routing::{uniform_ranges, HashKeyRange};
use crate::sequence::{shard_id, SequenceNumber};
use crate::token::{decode_page, encode_page, TOKEN_LIFETIME_MS};
use crate::validate::{self, check_name, validation};

pub(super) const DAY_MS: u64 = 24 * 3_600_000;
/// New on-demand streams start with this many shards.
pub(super) const ON_DEMAND_SHARDS: u32 = 4;

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
pub(super) struct NamePage {
    /// Stream (consumers: the stream whose consumers are listed).
    pub(super) scope: String,
    pub(super) after: String,
    pub(super) issued_ms: u64,
}

/// A page size: `value` checked against the model's `1..=10000`, then `default` if absent
/// and at most `cap` (larger values behave as `cap`, as in Kinesis).
pub(super) fn page_size(value: Option<u32>, path: &str, default: u32, cap: u32) -> Result<usize> {
    if let Some(v) = value {
        int_range(v, path, 1, 10_000)?;
    }
    Ok(value.unwrap_or(default).min(cap) as usize)
}

pub(super) fn int_range(value: u32, path: &str, min: u32, max: u32) -> Result<()> {
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
    pub(super) fn meta_for_change<'c>(
        &self,
        control: &'c super::Control,
        stream: &str,
    ) -> Result<&'c StreamMeta> {
        let name = self.resolve(stream)?;
        control.catalog.streams.get(name).ok_or_else(|| self.msg().stream_not_found(name))
    }

    pub(super) fn require_active(&self, meta: &StreamMeta) -> Result<()> {
        if meta.status != StreamStatus::Active {
            return Err(self.msg().not_active(&meta.name, meta.status.as_str()));
        }
        Ok(())
    }

    pub(super) fn open_shards_total(control: &super::Control) -> u64 {
        control
            .catalog
            .streams
            .values()
            .map(|s| s.shards.iter().filter(|sh| sh.closed.is_none()).count() as u64)
            .sum()
    }

    pub(super) fn check_shard_limit(
        &self,
        control: &super::Control,
        additional: u64,
    ) -> Result<()> {
        let open = Self::open_shards_total(control);
        let limit = u64::from(self.inner.config.shard_limit);
        if open + additional > limit {
            return Err(self.msg().shard_limit(open, limit, additional));
        }
        Ok(())
    }

    /// Publishes `meta` (already committed) as the stream's view, opening new shard logs.
    pub(super) fn publish(
        &self,
        state: &StreamState,
        view: &mut StreamView,
        meta: &StreamMeta,
    ) -> Result<()> {
        let fresh = self.build_view(meta, &view.shards)?;
        debug_assert_eq!(state.epoch, meta.epoch);
        *view = fresh;
        Ok(())
    }

    /// Commits `catalog`; on success publishes the stream `name`'s new entry. Call with the
    /// stream's view write lock held when writers must switch atomically.
    pub(super) fn commit_and_publish(
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
    pub(super) fn commit_stream(
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

    pub(super) fn shard_out(&self, meta: &StreamMeta, shard: &ShardMeta) -> Shard {
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

    pub(super) fn check_page_age(&self, issued_ms: u64, now: u64) -> Result<()> {
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
}
