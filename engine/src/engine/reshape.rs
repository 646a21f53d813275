//! Resharding and stream settings: split, merge, UpdateShardCount, retention, capacity
//! mode and account limits. Each change seals the affected shard logs, commits the
//! catalog, then publishes the new view.

use super::control::*;
use super::types::*;
use super::{Engine, StreamView};
use crate::catalog::{StreamMeta, StreamMode, StreamStatus};
use crate::error::{Error, Result};
use crate::reshard::{self, Step};
use crate::routing::{parse_hash_key, HashKeyError};
use crate::sequence::{parse_shard_id, shard_id};
use crate::validate::{self, validation};

impl Engine {
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
