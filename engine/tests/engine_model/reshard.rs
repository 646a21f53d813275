//! The model test's resharding operations: split, merge, refused reshards, and
//! UpdateShardCount, each adopted into the model from what the engine lists.

use super::*;

impl Harness<'_> {
    pub(super) fn op_split(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let m = &self.streams[&name];
        let candidates: Vec<(u32, u128, u128)> = m
            .open_sorted()
            .iter()
            .filter(|s| s.end - s.start >= 3)
            .map(|s| (s.index, s.start, s.end))
            .collect();
        if m.open_sorted().len() >= MAX_OPEN || candidates.is_empty() {
            return self.op_merge();
        }
        let (index, start, end) = *self.rng.pick(&candidates);
        // Valid keys: start + 1 < key < end (spec 5.1).
        let key = match self.rng.below(4) {
            0 => start + 2,
            1 => end - 1,
            2 => (start + (end - start) / 2).clamp(start + 2, end - 1),
            _ => self.rng.u128_in(start + 2, end - 1),
        };
        let spelled = self.spell(index);
        self.note(format!("split_shard({name}, {spelled}, {key})"));
        self.count("splits", 1);
        self.e()
            .split_shard(&name, &spelled, &key.to_string())
            .unwrap_or_else(|e| panic!("split_shard({name}, {spelled}, {key}): {e}"));
        let now = self.now();
        let m = self.streams.get_mut(&name).expect("model stream");
        m.shards.get_mut(&index).expect("parent").closed_ms = Some(now);
        let lower = m.next_index;
        m.shards.insert(lower, MShard::new(lower, (start, key - 1), (Some(index), None)));
        m.shards.insert(lower + 1, MShard::new(lower + 1, (key, end), (Some(index), None)));
        m.next_index += 2;
        self.check_listing(&name);
    }

    pub(super) fn adjacent_pairs(&self, name: &str) -> Vec<(u32, u32)> {
        let open = self.streams[name].open_sorted();
        open.windows(2).map(|w| (w[0].index, w[1].index)).collect()
    }

    pub(super) fn op_merge(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let pairs = self.adjacent_pairs(&name);
        if pairs.is_empty() {
            return self.op_put_record();
        }
        let (left, right) = *self.rng.pick(&pairs);
        let (a, b) = (self.spell(left), self.spell(right));
        self.note(format!("merge_shards({name}, {a}, {b})"));
        self.count("merges", 1);
        self.e()
            .merge_shards(&name, &a, &b)
            .unwrap_or_else(|e| panic!("merge_shards({name}, {a}, {b}): {e}"));
        let now = self.now();
        let m = self.streams.get_mut(&name).expect("model stream");
        let start = m.shards[&left].start;
        let end = m.shards[&right].end;
        m.shards.get_mut(&left).expect("left").closed_ms = Some(now);
        m.shards.get_mut(&right).expect("right").closed_ms = Some(now);
        let child = m.next_index;
        m.shards.insert(child, MShard::new(child, (start, end), (Some(left), Some(right))));
        m.next_index += 1;
        self.check_listing(&name);
    }

    /// Splits and merges that must be refused, and leave the stream as it was.
    pub(super) fn op_invalid_reshard(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let e = self.e();
        let m = &self.streams[&name];
        let open = m.open_sorted();
        let closed: Vec<u32> =
            m.shards.values().filter(|s| s.closed_ms.is_some()).map(|s| s.index).collect();
        let shard = open[self.rng.index(open.len())];
        let (index, start, end) = (shard.index, shard.start, shard.end);
        let pairs = self.adjacent_pairs(&name);
        match self.rng.below(6) {
            0 => {
                let key = *self.rng.pick(&[start, start.saturating_add(1), end]);
                self.note(format!(
                    "split_shard({name}, {}, {key}) [key out of bounds]",
                    sid(index)
                ));
                let result = e.split_shard(&name, &sid(index), &key.to_string());
                expect_err(result, &["InvalidArgument"], "split at an invalid key");
            }
            1 if !closed.is_empty() => {
                let c = *self.rng.pick(&closed);
                let (s, t) = (m.shards[&c].start, m.shards[&c].end);
                let key = s + (t - s) / 2;
                self.note(format!("split_shard({name}, {}, {key}) [closed shard]", sid(c)));
                let result = e.split_shard(&name, &sid(c), &key.to_string());
                expect_err(result, &["InvalidArgument"], "split of a closed shard");
            }
            2 if !pairs.is_empty() => {
                let (l, r) = *self.rng.pick(&pairs);
                self.note(format!("merge_shards({name}, {}, {}) [reversed]", sid(r), sid(l)));
                let result = e.merge_shards(&name, &sid(r), &sid(l));
                expect_err(result, &["InvalidArgument"], "merge in the wrong order");
            }
            3 if open.len() >= 3 => {
                let i = self.rng.index(open.len() - 2);
                let (l, r) = (open[i].index, open[i + 2].index);
                self.note(format!("merge_shards({name}, {}, {}) [not adjacent]", sid(l), sid(r)));
                let result = e.merge_shards(&name, &sid(l), &sid(r));
                expect_err(result, &["InvalidArgument"], "merge of non-adjacent shards");
            }
            4 if !closed.is_empty() => {
                let c = *self.rng.pick(&closed);
                self.note(format!("merge_shards({name}, {}, {}) [closed]", sid(c), sid(index)));
                let result = e.merge_shards(&name, &sid(c), &sid(index));
                expect_err(result, &["InvalidArgument"], "merge of a closed shard");
            }
            _ => {
                let missing = m.next_index + 3;
                self.note(format!("split_shard({name}, {}) [no such shard]", sid(missing)));
                let result = e.split_shard(&name, &sid(missing), "12345");
                expect_err(result, &["ResourceNotFound"], "split of a missing shard");
            }
        }
        self.check_listing(&name);
    }

    pub(super) fn op_update_shard_count(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let now = self.now();
        let m = &self.streams[&name];
        let current = m.open_sorted().len() as u32;
        let recent = m.scale_calls.iter().filter(|t| now - **t < DAY).count();
        let low = current.div_ceil(2);
        let high = (2 * current).min(MAX_OPEN as u32).max(low);
        let invalid = recent < 10 && self.rng.chance(10);
        let target = if invalid {
            *self.rng.pick(&[2 * current + 1, low.saturating_sub(1).max(1)])
        } else {
            self.rng.range(u64::from(low), u64::from(high)) as u32
        };
        self.note(format!("update_shard_count({name}, {current} -> {target})"));
        let result = self.e().update_shard_count(&name, target, "UNIFORM_SCALING");
        if recent >= 10 {
            return expect_err(result, &["LimitExceeded"], "11th scaling in 24 hours");
        }
        if target < low || target > 2 * current {
            return expect_err(result, &["InvalidArgument"], "target outside [n/2, 2n]");
        }
        let out = result.unwrap_or_else(|e| panic!("update_shard_count: {e}"));
        self.count("shard count updates", 1);
        assert_eq!((out.current_shard_count, out.target_shard_count), (current, target));
        self.streams.get_mut(&name).expect("model stream").scale_calls.push(now);
        let listing = self.listing(&name);
        self.adopt_update(&name, target, &listing);
        self.check_listing(&name);
    }

    /// UpdateShardCount may take any steps (spec 5.3): checks that the new shards are a valid
    /// sequence of splits and merges of the open shards, with sequential indexes, ending in
    /// `target` uniform ranges, then takes them into the model.
    pub(super) fn adopt_update(&mut self, name: &str, target: u32, listing: &[Shard]) {
        let now = self.now();
        let m = self.streams.get_mut(name).expect("model stream");
        let listed: BTreeMap<u32, &Shard> =
            listing.iter().map(|s| (index_of(&s.shard_id), s)).collect();
        for s in m.shards.values() {
            let l = listed.get(&s.index).unwrap_or_else(|| panic!("{} vanished", sid(s.index)));
            let range = (l.hash_key_range.start, l.hash_key_range.end);
            assert_eq!(range, (s.start, s.end), "{} changed its range", sid(s.index));
            if s.closed_ms.is_some() {
                assert!(l.ending_sequence_number.is_some(), "{} reopened", sid(s.index));
            }
        }
        let new: Vec<&Shard> =
            listing.iter().filter(|s| index_of(&s.shard_id) >= m.next_index).collect();
        for (k, s) in new.iter().enumerate() {
            assert_eq!(index_of(&s.shard_id), m.next_index + k as u32, "new shard ids in order");
        }
        let parent_of = |s: &Shard| {
            index_of(s.parent_shard_id.as_deref().unwrap_or_else(|| panic!("{s:?}: no parent")))
        };
        let mut open: BTreeMap<u32, (u128, u128)> =
            m.open_sorted().iter().map(|s| (s.index, (s.start, s.end))).collect();
        let mut k = 0;
        while k < new.len() {
            let s = new[k];
            let parent = parent_of(s);
            let range = (s.hash_key_range.start, s.hash_key_range.end);
            match s.adjacent_parent_shard_id.as_deref() {
                None => {
                    let upper =
                        new.get(k + 1).unwrap_or_else(|| panic!("{s:?}: a lone split child"));
                    assert!(upper.adjacent_parent_shard_id.is_none(), "{upper:?}: split child");
                    assert_eq!(parent_of(upper), parent, "split children share their parent");
                    let upper_range = (upper.hash_key_range.start, upper.hash_key_range.end);
                    let p =
                        open.remove(&parent).unwrap_or_else(|| panic!("split of closed {parent}"));
                    assert!(
                        range.0 == p.0 && range.1 < upper_range.0 && upper_range.1 == p.1,
                        "split children {range:?} {upper_range:?} of {p:?}"
                    );
                    assert_eq!(range.1 + 1, upper_range.0, "split children touch");
                    open.insert(index_of(&s.shard_id), range);
                    open.insert(index_of(&upper.shard_id), upper_range);
                    k += 2;
                }
                Some(adjacent) => {
                    let adjacent = index_of(adjacent);
                    let l =
                        open.remove(&parent).unwrap_or_else(|| panic!("merge of closed {parent}"));
                    let r = open.remove(&adjacent).unwrap_or_else(|| panic!("merge of {adjacent}"));
                    assert_eq!(l.1 + 1, r.0, "merged parents are adjacent");
                    assert_eq!(range, (l.0, r.1), "merge child covers its parents");
                    open.insert(index_of(&s.shard_id), range);
                    k += 1;
                }
            }
        }
        let listed_open: BTreeMap<u32, (u128, u128)> = listing
            .iter()
            .filter(|s| s.ending_sequence_number.is_none())
            .map(|s| (index_of(&s.shard_id), (s.hash_key_range.start, s.hash_key_range.end)))
            .collect();
        assert_eq!(open, listed_open, "open shards after the replayed steps");
        let mut ranges: Vec<(u128, u128)> = open.values().copied().collect();
        ranges.sort();
        assert_eq!(ranges, uniform(target), "UpdateShardCount({target}) ends uniform");
        for s in m.shards.values_mut() {
            if s.closed_ms.is_none() && !open.contains_key(&s.index) {
                s.closed_ms = Some(now);
            }
        }
        for s in &new {
            let index = index_of(&s.shard_id);
            let range = (s.hash_key_range.start, s.hash_key_range.end);
            let adjacent = s.adjacent_parent_shard_id.as_deref().map(index_of);
            let mut shard = MShard::new(index, range, (Some(parent_of(s)), adjacent));
            if !open.contains_key(&index) {
                shard.closed_ms = Some(now);
            }
            m.shards.insert(index, shard);
        }
        m.next_index += new.len() as u32;
    }
}
