//! Resharding as pure changes to a [`StreamMeta`]: split, merge, and the plan of splits and
//! merges that `UpdateShardCount` performs. The engine seals the parents' logs before it
//! applies a change and commits the result to the catalog in one step, so a crash leaves
//! the old lineage or the new one.
//!
//! New shards take the stream's next indexes in order, as Kinesis does: a split's lower
//! half gets the first new index, its upper half the second; a merge's child the next one.

use crate::catalog::{ClosedShard, ShardMeta, StreamMeta};
use crate::routing::uniform_ranges;

/// One resharding step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Split `shard` so that the upper child starts at `at`.
    Split { shard: u32, at: u128 },
    /// Merge `shard` with `adjacent`, whose range starts right after `shard`'s.
    Merge { shard: u32, adjacent: u32 },
}

fn shard_mut(meta: &mut StreamMeta, index: u32) -> &mut ShardMeta {
    let at = meta.shards.binary_search_by_key(&index, |s| s.index).expect("shard in the stream");
    &mut meta.shards[at]
}

fn new_shard(
    meta: &mut StreamMeta,
    start: u128,
    end: u128,
    parents: (u32, Option<u32>),
    now: u64,
) -> u32 {
    let index = meta.next_shard_index;
    meta.next_shard_index += 1;
    meta.shards.push(ShardMeta {
        index,
        parent: Some(parents.0),
        adjacent_parent: parents.1,
        starting_hash_key: start,
        ending_hash_key: end,
        created_ms: now,
        closed: None,
    });
    index
}

/// Closes `shard` (whose log holds `end_position` records) and creates its two children.
/// Returns their indexes (lower range first).
pub(crate) fn apply_split(
    meta: &mut StreamMeta,
    shard: u32,
    at: u128,
    end_position: u64,
    now: u64,
) -> (u32, u32) {
    let parent = shard_mut(meta, shard);
    debug_assert!(
        parent.closed.is_none() && at > parent.starting_hash_key && at <= parent.ending_hash_key
    );
    parent.closed = Some(ClosedShard { closed_ms: now, end_position });
    let (start, end) = (parent.starting_hash_key, parent.ending_hash_key);
    let lower = new_shard(meta, start, at - 1, (shard, None), now);
    let upper = new_shard(meta, at, end, (shard, None), now);
    (lower, upper)
}

/// Closes `shard` and `adjacent` and creates their child. Returns its index.
pub(crate) fn apply_merge(
    meta: &mut StreamMeta,
    shard: u32,
    adjacent: u32,
    ends: (u64, u64),
    now: u64,
) -> u32 {
    let left = shard_mut(meta, shard);
    left.closed = Some(ClosedShard { closed_ms: now, end_position: ends.0 });
    let (start, left_end) = (left.starting_hash_key, left.ending_hash_key);
    let right = shard_mut(meta, adjacent);
    debug_assert_eq!(left_end.checked_add(1), Some(right.starting_hash_key));
    right.closed = Some(ClosedShard { closed_ms: now, end_position: ends.1 });
    let end = right.ending_hash_key;
    new_shard(meta, start, end, (shard, Some(adjacent)), now)
}

/// The splits and merges that turn the open shards (`(index, start, end)`, any order) into
/// `target` shards with uniform ranges (as CreateStream makes them). A shard whose range is
/// already one of the targets is left alone. Step indexes refer to shards that exist when
/// the step runs: `first_new` is the index the first new shard will get.
pub(crate) fn uniform_plan(open: &[(u32, u128, u128)], target: u32, first_new: u32) -> Vec<Step> {
    let ranges = uniform_ranges(target);
    let mut open: Vec<(u32, u128, u128)> = open.to_vec();
    open.sort_by_key(|s| s.1);
    let mut next = first_new;
    let mut steps = Vec::new();
    // 1. Split every shard at each target boundary strictly inside it.
    let mut pieces: Vec<(u32, u128, u128)> = Vec::new();
    for &(index, start, end) in &open {
        let mut current = (index, start, end);
        for r in &ranges[1..] {
            let b = r.start;
            if b > current.1 && b <= current.2 {
                steps.push(Step::Split { shard: current.0, at: b });
                let lower = (next, current.1, b - 1);
                let upper = (next + 1, b, current.2);
                next += 2;
                pieces.push(lower);
                current = upper;
            }
        }
        pieces.push(current);
    }
    // 2. Merge, left to right, the pieces inside each target range.
    let mut i = 0;
    for r in &ranges {
        let mut acc: Option<(u32, u128, u128)> = None;
        while i < pieces.len() && pieces[i].2 <= r.end {
            let piece = pieces[i];
            acc = Some(match acc {
                None => piece,
                Some(left) => {
                    steps.push(Step::Merge { shard: left.0, adjacent: piece.0 });
                    let child = (next, left.1, piece.2);
                    next += 1;
                    child
                }
            });
            i += 1;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{StreamMode, StreamStatus};
    use std::collections::BTreeMap;

    fn stream(shards: u32) -> StreamMeta {
        StreamMeta {
            name: "s".into(),
            epoch: 1,
            created_ms: 0,
            status: StreamStatus::Active,
            status_due_ms: None,
            mode: StreamMode::Provisioned,
            retention_hours: 24,
            trim_floor_ms: 0,
            next_shard_index: shards,
            shards: uniform_ranges(shards)
                .iter()
                .enumerate()
                .map(|(i, r)| ShardMeta {
                    index: i as u32,
                    parent: None,
                    adjacent_parent: None,
                    starting_hash_key: r.start,
                    ending_hash_key: r.end,
                    created_ms: 0,
                    closed: None,
                })
                .collect(),
            tags: BTreeMap::new(),
            consumers: vec![],
            shard_count_updates_ms: vec![],
            mode_switches_ms: vec![],
        }
    }

    fn open(meta: &StreamMeta) -> Vec<(u32, u128, u128)> {
        meta.shards
            .iter()
            .filter(|s| s.closed.is_none())
            .map(|s| (s.index, s.starting_hash_key, s.ending_hash_key))
            .collect()
    }

    fn run(meta: &mut StreamMeta, steps: &[Step]) {
        for step in steps {
            match *step {
                Step::Split { shard, at } => {
                    apply_split(meta, shard, at, 0, 1);
                }
                Step::Merge { shard, adjacent } => {
                    apply_merge(meta, shard, adjacent, (0, 0), 1);
                }
            }
        }
    }

    #[test]
    fn split_and_merge_allocate_indexes_like_kinesis() {
        let mut meta = stream(3);
        let (lo, hi) = apply_split(&mut meta, 0, 1000, 5, 9);
        assert_eq!((lo, hi), (3, 4));
        assert_eq!(meta.shards[0].closed, Some(ClosedShard { closed_ms: 9, end_position: 5 }));
        assert_eq!(meta.shards[3].ending_hash_key, 999);
        assert_eq!(meta.shards[4].starting_hash_key, 1000);
        let child = apply_merge(&mut meta, 3, 4, (0, 0), 10);
        assert_eq!(child, 5);
        assert_eq!(meta.shards[5].parent, Some(3));
        assert_eq!(meta.shards[5].adjacent_parent, Some(4));
        let parent_end = meta.shards[0].ending_hash_key;
        assert_eq!(
            (meta.shards[5].starting_hash_key, meta.shards[5].ending_hash_key),
            (0, parent_end),
            "the child covers both parents"
        );
    }

    #[test]
    fn uniform_plans_reach_uniform_ranges_with_valid_steps() {
        for from in 1..=9u32 {
            for to in (from.div_ceil(2))..=(2 * from) {
                let mut meta = stream(from);
                let steps = uniform_plan(&open(&meta), to, meta.next_shard_index);
                run(&mut meta, &steps);
                let mut got: Vec<(u128, u128)> = open(&meta).iter().map(|s| (s.1, s.2)).collect();
                got.sort();
                let want: Vec<(u128, u128)> =
                    uniform_ranges(to).iter().map(|r| (r.start, r.end)).collect();
                assert_eq!(got, want, "{from} -> {to}");
                if from == to {
                    assert!(steps.is_empty());
                }
            }
        }
    }

    #[test]
    fn uniform_plans_work_from_irregular_shards() {
        let mut meta = stream(2);
        apply_split(&mut meta, 0, 12345, 0, 1);
        let steps = uniform_plan(&open(&meta), 3, meta.next_shard_index);
        run(&mut meta, &steps);
        let got: Vec<(u128, u128)> = open(&meta).iter().map(|s| (s.1, s.2)).collect();
        let mut got = got;
        got.sort();
        let want: Vec<(u128, u128)> = uniform_ranges(3).iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, want);
    }
}
