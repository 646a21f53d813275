//! What must agree after every operation: stream names, each stream's listing (open shards
//! tiling the key space, lineage, sequential ids) and every shard's records from
//! TRIM_HORIZON.

use super::*;

impl Harness<'_> {
    /// Every shard of the stream, through DescribeStream's pages.
    pub(super) fn listing(&mut self, name: &str) -> Vec<Shard> {
        let e = self.e();
        let mut shards: Vec<Shard> = Vec::new();
        loop {
            let limit = if self.rng.chance(30) { self.rng.range(1, 3) } else { 100 } as u32;
            let after = shards.last().map(|s| s.shard_id.clone());
            let page = e
                .describe_stream(name, Some(limit), after.as_deref())
                .unwrap_or_else(|e| panic!("describe_stream({name}): {e}"));
            assert_eq!(page.stream_status, StreamStatus::Active, "{name} status");
            assert_eq!(
                page.retention_period_hours, self.streams[name].retention_hours,
                "{name} retention"
            );
            assert!(page.shards.len() <= limit as usize, "describe_stream page size");
            let more = page.has_more_shards;
            shards.extend(page.shards);
            if !more {
                return shards;
            }
        }
    }

    pub(super) fn check_stream_names(&mut self) {
        let names = self.e().list_streams(None, None, None).expect("list_streams").stream_names;
        let want: Vec<String> = self.streams.keys().cloned().collect();
        assert_eq!(names, want, "list_streams");
    }

    pub(super) fn check_all(&mut self) {
        self.check_stream_names();
        let names: Vec<String> = self.streams.keys().cloned().collect();
        for name in names {
            self.check_listing(&name);
        }
    }

    /// DescribeStream and ListShards agree with each other and with the model.
    pub(super) fn check_listing(&mut self, name: &str) {
        let e = self.e();
        let described = self.listing(name);
        // ListShards, paged through NextToken.
        let max = self.rng.range(1, 5) as u32;
        let mut page = e
            .list_shards(&ListShardsInput {
                stream: Some(name),
                max_results: Some(max),
                ..ListShardsInput::default()
            })
            .unwrap_or_else(|e| panic!("list_shards({name}): {e}"));
        let mut listed = std::mem::take(&mut page.shards);
        while let Some(token) = page.next_token.take() {
            page = e
                .list_shards(&ListShardsInput {
                    next_token: Some(&token),
                    max_results: Some(max),
                    ..ListShardsInput::default()
                })
                .unwrap_or_else(|e| panic!("list_shards({name}) next page: {e}"));
            listed.append(&mut page.shards);
        }
        assert_eq!(listed, described, "list_shards vs describe_stream of {name}");
        let at_latest = e
            .list_shards(&ListShardsInput {
                stream: Some(name),
                shard_filter: Some(ShardFilter::AtLatest),
                ..ListShardsInput::default()
            })
            .unwrap_or_else(|e| panic!("list_shards({name}, AT_LATEST): {e}"))
            .shards;
        let open_described: Vec<Shard> =
            described.iter().filter(|s| s.ending_sequence_number.is_none()).cloned().collect();
        assert_eq!(at_latest, open_described, "AT_LATEST lists the open shards of {name}");
        let summary = e.describe_stream_summary(name).expect("describe_stream_summary");
        assert_eq!(summary.open_shard_count, open_described.len(), "open shard count");

        let m = self.streams.get_mut(name).expect("model stream");
        let ids: Vec<String> = described.iter().map(|s| s.shard_id.clone()).collect();
        let want: Vec<String> = m.shards.keys().map(|i| sid(*i)).collect();
        assert_eq!(ids, want, "shards of {name}");
        for s in &described {
            let index = index_of(&s.shard_id);
            assert!(index < m.next_index, "{} beyond the allocated indexes", s.shard_id);
            let ms = m.shards.get_mut(&index).expect("listed shard in the model");
            let what = format!("{name} {}", s.shard_id);
            assert_eq!(
                (s.hash_key_range.start, s.hash_key_range.end),
                (ms.start, ms.end),
                "{what}"
            );
            assert_eq!(s.parent_shard_id, ms.parent.map(sid), "{what}: parent");
            assert_eq!(s.adjacent_parent_shard_id, ms.adjacent.map(sid), "{what}: adjacent parent");
            assert_eq!(
                s.ending_sequence_number.is_some(),
                ms.closed_ms.is_some(),
                "{what}: EndingSequenceNumber present exactly when closed"
            );
            let start = s.starting_sequence_number.0;
            assert_eq!(*ms.starting_seq.get_or_insert(start), start, "{what}: starting number");
            if let Some(end) = s.ending_sequence_number {
                assert_eq!(*ms.ending_seq.get_or_insert(end.0), end.0, "{what}: ending number");
                assert!(end.0 >= start, "{what}: ending below starting number");
            }
            for r in &ms.records {
                assert!(r.seq > start, "{what}: record {} not above the start {start}", r.seq);
                if let Some(end) = s.ending_sequence_number {
                    assert!(r.seq <= end.0, "{what}: record {} above the end {}", r.seq, end.0);
                }
            }
        }
        // Open shards tile [0, 2^128 - 1].
        let mut open: Vec<(u128, u128)> =
            open_described.iter().map(|s| (s.hash_key_range.start, s.hash_key_range.end)).collect();
        open.sort();
        assert_eq!(open.first().map(|r| r.0), Some(0), "{name}: open shards start at 0");
        assert_eq!(open.last().map(|r| r.1), Some(u128::MAX), "{name}: open shards reach the end");
        for w in open.windows(2) {
            assert!(w[0].0 <= w[0].1, "{name}: empty range {w:?}");
            assert_eq!(w[0].1.checked_add(1), Some(w[1].0), "{name}: gap or overlap {w:?}");
        }
        // Children above parents.
        for child in m.shards.values() {
            for p in child.parent.into_iter().chain(child.adjacent) {
                assert!(p < child.index, "{name}: parent {p} of {} allocated later", child.index);
                let Some(parent) = m.shards.get(&p) else { continue };
                let (Some(end), Some(start)) = (parent.ending_seq, child.starting_seq) else {
                    panic!("{name}: parent {p} of {} is not closed", child.index)
                };
                assert!(
                    start > end,
                    "{name}: child {} starts at {start} <= parent end {end}",
                    child.index
                );
            }
        }
    }

    /// Reads every shard of every stream from TRIM_HORIZON.
    pub(super) fn verify_all(&mut self) {
        let shards: Vec<(String, u32)> = self
            .streams
            .iter()
            .flat_map(|(n, m)| m.shards.keys().map(move |i| (n.clone(), *i)))
            .collect();
        for (name, index) in shards {
            let now = self.now();
            self.note(format!("verify {name} {} from TRIM_HORIZON", sid(index)));
            let token = self
                .e()
                .get_shard_iterator(&name, &sid(index), IteratorType::TrimHorizon, None, None)
                .unwrap_or_else(|e| panic!("TRIM_HORIZON iterator of {name} {}: {e}", sid(index)));
            self.drain(token, &name, index, 0, now);
        }
    }
}
