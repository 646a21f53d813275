//! The model test's read operations: every iterator type followed by GetRecords loops that
//! check each page against the model (`drain`), iterators saved and used later, and
//! LATEST taken before a put.

use super::*;

impl Harness<'_> {
    pub(super) fn op_read(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let e = self.e();
        if self.rng.chance(5) {
            // A shard that does not exist (never created, or expired and removed).
            let m = &self.streams[&name];
            let mut gone: Vec<u32> = m.removed.iter().copied().collect();
            gone.push(m.next_index + self.rng.range(0, 3) as u32);
            let index = *self.rng.pick(&gone);
            self.note(format!("get_shard_iterator({name}, {}) [no such shard]", sid(index)));
            let result = e.get_shard_iterator(&name, &sid(index), IteratorType::Latest, None, None);
            return expect_err(result, &["ResourceNotFound"], "iterator of a missing shard");
        }
        let m = &self.streams[&name];
        let indexes: Vec<u32> = m.shards.keys().copied().collect();
        let index = *self.rng.pick(&indexes);
        let shard = m.shards[&index].clone();
        // Records of the other shards of the stream.
        let others: Vec<u128> = m
            .shards
            .values()
            .filter(|s| s.index != index)
            .flat_map(|s| s.records.iter().map(|r| r.seq))
            .collect();
        let now = self.now();
        let len = shard.records.len();
        let spelled = self.spell(index);
        let (ty, seq, ts, from): (IteratorType, Option<u128>, Option<u64>, usize) =
            match self.rng.below(6) {
                0 => (IteratorType::TrimHorizon, None, None, 0),
                1 => (IteratorType::Latest, None, None, len),
                2 | 3 => {
                    let after = self.rng.chance(50);
                    let ty = if after {
                        IteratorType::AfterSequenceNumber
                    } else {
                        IteratorType::AtSequenceNumber
                    };
                    let roll = self.rng.below(10);
                    if len > 0 && roll < 7 {
                        let i = self.rng.index(len);
                        (ty, Some(shard.records[i].seq), None, i + usize::from(after))
                    } else if roll < 9 || shard.ending_seq.is_none() {
                        // The starting number reads from the first record, AT or AFTER.
                        (ty, shard.starting_seq, None, 0)
                    } else {
                        (ty, shard.ending_seq, None, len)
                    }
                }
                4 => {
                    // A record of another shard of the stream: refused.
                    if others.is_empty() {
                        (IteratorType::TrimHorizon, None, None, 0)
                    } else {
                        let seq = *self.rng.pick(&others);
                        self.note(format!(
                            "get_shard_iterator({name}, {spelled}, AT_SEQUENCE_NUMBER {seq}) \
                             [number of another shard]"
                        ));
                        let result = e.get_shard_iterator(
                            &name,
                            &spelled,
                            IteratorType::AtSequenceNumber,
                            Some(&seq.to_string()),
                            None,
                        );
                        return expect_err(result, &["InvalidArgument"], "foreign sequence number");
                    }
                }
                _ => {
                    let mut candidates = vec![now, now.saturating_sub(self.rng.range(0, 3 * DAY))];
                    if len > 0 {
                        let r = shard.records[self.rng.index(len)].arrival;
                        candidates.extend([r, r - 1, (r + 1).min(now)]);
                    }
                    if self.rng.chance(5) {
                        candidates = vec![now + 1];
                    }
                    let ts = *self.rng.pick(&candidates);
                    let from = shard.records.iter().position(|r| r.arrival >= ts).unwrap_or(len);
                    (IteratorType::AtTimestamp, None, Some(ts), from)
                }
            };
        let seq_text = seq.map(|s| s.to_string());
        self.note(format!(
            "get_shard_iterator({name}, {spelled}, {}, seq={seq_text:?}, ts={ts:?})",
            ty.as_str()
        ));
        let result = e.get_shard_iterator(&name, &spelled, ty, seq_text.as_deref(), ts);
        if ts.is_some_and(|t| t > now) {
            return expect_err(result, &["InvalidArgument"], "AT_TIMESTAMP in the future");
        }
        let token = result.unwrap_or_else(|e| panic!("get_shard_iterator: {e}"));
        self.drain(token, &name, index, from, now);
    }

    /// Follows `token` with GetRecords (random limits) to the end and checks every page
    /// against the model: the readable records of the shard from model position `from` on.
    pub(super) fn drain(
        &mut self,
        token: String,
        name: &str,
        index: u32,
        from: usize,
        issued_ms: u64,
    ) {
        let e = self.e();
        let now = self.now();
        let m = &self.streams[name];
        let incarnation = m.incarnation;
        let shard = &m.shards[&index];
        let closed = shard.closed_ms.is_some();
        let expected: Vec<(usize, MRecord)> = shard
            .records
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, r)| !r.expired)
            .map(|(i, r)| (i, r.clone()))
            .collect();
        let children = if closed { Some(m.children(index)) } else { None };
        let retention = u64::from(m.retention_hours) * HOUR;
        let mut save = if self.rng.chance(15) {
            Some(SavedIterator {
                token: token.clone(),
                stream: name.to_string(),
                incarnation,
                shard: index,
                from,
                issued_ms,
            })
        } else {
            None
        };
        let mut got = 0usize;
        let mut position = from;
        let mut iterator = token;
        let mut empty_pages_at_end = 0;
        loop {
            let limit = match self.rng.below(10) {
                0 => None,
                1 => Some(10_000),
                _ => Some(self.rng.range(1, 8) as u32),
            };
            let page: GetRecordsOutput = e
                .get_records(&iterator, limit)
                .unwrap_or_else(|err| panic!("get_records({name}, {}): {err}", sid(index)));
            let n = page.records.len();
            let rest = &expected[got..];
            // What the page must hold: as many records as the limit and 10 MiB allow.
            let mut want = 0usize;
            let mut bytes = 0usize;
            for (_, r) in rest.iter().take(limit.unwrap_or(10_000) as usize) {
                let size = r.data.len() + r.key.len();
                if want > 0 && bytes + size > GET_RECORDS_BYTES_MAX {
                    break;
                }
                bytes += size;
                want += 1;
            }
            assert_eq!(
                n,
                want,
                "get_records({name}, {}, limit {limit:?}) from model position {position}: \
                 {n} records, expected {want} ({} readable remain)",
                sid(index),
                rest.len()
            );
            for (k, r) in page.records.iter().enumerate() {
                let (i, want) = &expected[got + k];
                let what = format!("{name} {} record at model position {i}", sid(index));
                assert_eq!(r.sequence_number.0, want.seq, "{what}: sequence number");
                assert_eq!(r.partition_key_str(), want.key, "{what}: partition key");
                assert!(r.data.as_ref() == want.data.as_slice(), "{what}: data differs");
                assert_eq!(r.approximate_arrival_ms, want.arrival, "{what}: arrival time");
                assert!(
                    now - r.approximate_arrival_ms < retention,
                    "{what}: returned though older than the retention period"
                );
            }
            if n > 0 {
                position = expected[got + n - 1].0 + 1;
            }
            self.count("records read and compared", n);
            self.count("get_records calls", 1);
            got += n;
            let done = got == expected.len();
            match page.next_shard_iterator {
                None => {
                    assert!(closed, "next_shard_iterator None on open shard {}", sid(index));
                    assert!(done, "next_shard_iterator None before the last record");
                    assert_eq!(n, 0, "the closing response holds no records");
                    let mut reported: Vec<(String, Vec<String>, u128, u128)> = page
                        .child_shards
                        .as_ref()
                        .unwrap_or_else(|| panic!("no child_shards at the end of {}", sid(index)))
                        .iter()
                        .map(|c| {
                            let range = (c.hash_key_range.start, c.hash_key_range.end);
                            (c.shard_id.clone(), c.parent_shards.clone(), range.0, range.1)
                        })
                        .collect();
                    reported.sort();
                    assert_eq!(Some(reported), children, "child shards of {}", sid(index));
                    break;
                }
                Some(next) => {
                    assert!(page.child_shards.is_none(), "child_shards before the end");
                    let behind = page.millis_behind_latest;
                    match page.records.last() {
                        Some(last) if !done => assert_eq!(
                            behind,
                            now - last.approximate_arrival_ms,
                            "millis_behind_latest with records remaining"
                        ),
                        _ => assert_eq!(behind, 0, "millis_behind_latest at the tip"),
                    }
                    if done && n == 0 {
                        if !closed {
                            break;
                        }
                        empty_pages_at_end += 1;
                        assert!(
                            empty_pages_at_end <= 1,
                            "closed shard {}: empty pages past the last record without the end",
                            sid(index)
                        );
                    }
                    if save.is_none() && self.rng.chance(5) {
                        save = Some(SavedIterator {
                            token: next.clone(),
                            stream: name.to_string(),
                            incarnation,
                            shard: index,
                            from: position,
                            issued_ms: now,
                        });
                    }
                    iterator = next;
                }
            }
        }
        if let Some(saved) = save {
            if self.saved.len() >= 6 {
                let at = self.rng.index(self.saved.len());
                self.saved.swap_remove(at);
            }
            self.saved.push(saved);
        }
    }

    /// LATEST on an open shard, then puts: the iterator returns exactly the new records of
    /// that shard.
    pub(super) fn op_latest_then_put(&mut self) {
        let Some(name) = self.pick_stream() else { return self.op_create() };
        let open: Vec<(u32, u128, u128)> =
            self.streams[&name].open_sorted().iter().map(|s| (s.index, s.start, s.end)).collect();
        let (index, start, end) = *self.rng.pick(&open);
        let now = self.now();
        self.note(format!("get_shard_iterator({name}, {}, LATEST)", sid(index)));
        let token = self
            .e()
            .get_shard_iterator(&name, &sid(index), IteratorType::Latest, None, None)
            .unwrap_or_else(|e| panic!("LATEST iterator: {e}"));
        let from = self.streams[&name].shards[&index].records.len();
        for _ in 0..self.rng.range(1, 4) {
            let key = *self.rng.pick(&KEYS);
            let data = self.data(false);
            let explicit =
                if self.rng.chance(50) { Some(self.rng.u128_in(start, end)) } else { None };
            self.put_one(&name, key, &data, explicit, None);
        }
        self.drain(token, &name, index, from, now);
    }

    pub(super) fn op_saved_iterator(&mut self) {
        if self.saved.is_empty() {
            return self.op_read();
        }
        let saved = self.saved[self.rng.index(self.saved.len())].clone();
        let now = self.now();
        self.note(format!(
            "get_records(saved iterator of {} {} from model position {}, issued {} ms ago)",
            saved.stream,
            sid(saved.shard),
            saved.from,
            now - saved.issued_ms
        ));
        let live = self.streams.get(&saved.stream).is_some_and(|m| {
            m.incarnation == saved.incarnation && m.shards.contains_key(&saved.shard)
        });
        let expired = now - saved.issued_ms > ITERATOR_LIFETIME_MS;
        if expired || !live {
            let kinds: &[&str] = match (expired, live) {
                (true, true) => &["ExpiredIterator"],
                (false, _) => &["ResourceNotFound"],
                // Both apply; the spec does not order the checks.
                (true, false) => &["ExpiredIterator", "ResourceNotFound"],
            };
            let result = self.e().get_records(&saved.token, None);
            self.count("stale saved iterators refused", 1);
            return expect_err(result, kinds, "stale saved iterator");
        }
        self.count("saved iterators reused", 1);
        self.drain(saved.token, &saved.stream, saved.shard, saved.from, saved.issued_ms);
    }
}
