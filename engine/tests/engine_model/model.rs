//! The model: what Kinesis Data Streams promises, as plain data (records per shard, shard
//! metadata and lineage per stream, saved iterators), kept by the harness in `main.rs` beside
//! the engine and compared with it after every operation.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct MRecord {
    pub(super) key: String,
    pub(super) data: Vec<u8>,
    pub(super) seq: u128,
    pub(super) arrival: u64,
    /// Sticky: once a record has been older than the retention period it stays unreadable,
    /// even if the retention period grows later (spec 6).
    pub(super) expired: bool,
}

#[derive(Debug, Clone)]
pub(super) struct MShard {
    pub(super) index: u32,
    pub(super) parent: Option<u32>,
    pub(super) adjacent: Option<u32>,
    pub(super) start: u128,
    pub(super) end: u128,
    pub(super) closed_ms: Option<u64>,
    /// Sticky, like [`MRecord::expired`], for the close time: a closed shard whose close is
    /// older than the retention period holds only expired records and is removed by the next
    /// maintenance pass.
    pub(super) close_expired: bool,
    /// Record `i` is at position `i` of the shard.
    pub(super) records: Vec<MRecord>,
    /// Learnt from the first listing that shows the shard, then must never change.
    pub(super) starting_seq: Option<u128>,
    pub(super) ending_seq: Option<u128>,
}

impl MShard {
    pub(super) fn new(
        index: u32,
        range: (u128, u128),
        parents: (Option<u32>, Option<u32>),
    ) -> Self {
        MShard {
            index,
            parent: parents.0,
            adjacent: parents.1,
            start: range.0,
            end: range.1,
            closed_ms: None,
            close_expired: false,
            records: Vec::new(),
            starting_seq: None,
            ending_seq: None,
        }
    }
}

#[derive(Debug)]
pub(super) struct MStream {
    /// Tells incarnations of one name apart (for saved iterators).
    pub(super) incarnation: u64,
    /// Every shard not yet removed by maintenance, by index.
    pub(super) shards: BTreeMap<u32, MShard>,
    /// Indexes of closed shards that expired and were removed.
    pub(super) removed: BTreeSet<u32>,
    pub(super) next_index: u32,
    pub(super) retention_hours: u32,
    /// Times of UpdateShardCount calls (at most 10 per rolling 24 hours).
    pub(super) scale_calls: Vec<u64>,
    /// Every sequence number handed out in this stream (they are unique in a stream).
    pub(super) seqs: BTreeSet<u128>,
    /// Last sequence number of each partition key routed by its hash (not an explicit key).
    pub(super) last_seq_by_key: BTreeMap<String, u128>,
}

impl MStream {
    pub(super) fn open_sorted(&self) -> Vec<&MShard> {
        let mut open: Vec<&MShard> =
            self.shards.values().filter(|s| s.closed_ms.is_none()).collect();
        open.sort_by_key(|s| s.start);
        open
    }

    /// The open shard whose range holds `hash`.
    pub(super) fn route(&self, hash: u128) -> u32 {
        let hits: Vec<u32> = self
            .shards
            .values()
            .filter(|s| s.closed_ms.is_none() && s.start <= hash && hash <= s.end)
            .map(|s| s.index)
            .collect();
        assert_eq!(hits.len(), 1, "model: hash {hash} is in {hits:?} open shards");
        hits[0]
    }

    /// Children of `index` as GetRecords reports them: (id, parents, start, end), by id.
    pub(super) fn children(&self, index: u32) -> Vec<(String, Vec<String>, u128, u128)> {
        self.shards
            .values()
            .filter(|s| s.parent == Some(index) || s.adjacent == Some(index))
            .map(|s| {
                let parents = s.parent.into_iter().chain(s.adjacent).map(sid).collect();
                (sid(s.index), parents, s.start, s.end)
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub(super) struct SavedIterator {
    pub(super) token: String,
    pub(super) stream: String,
    pub(super) incarnation: u64,
    pub(super) shard: u32,
    /// Model position the iterator points at.
    pub(super) from: usize,
    pub(super) issued_ms: u64,
}
