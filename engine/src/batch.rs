//! The record batch: the unit of writing, reading, and (later) of the wire.
//!
//! A batch is self-describing and self-checking, so a client can decode the bytes exactly as
//! the server sends them from the segment file. All integers are **little-endian**.
//!
//! # Batch header (48 bytes)
//!
//! | offset | width | field               | meaning                                                    |
//! |-------:|------:|---------------------|------------------------------------------------------------|
//! | 0      | 4     | `magic`             | the bytes `RFB1` (0x52 0x46 0x42 0x31)                      |
//! | 4      | 4     | `crc`               | CRC-32 (IEEE, as `crc32fast`) of bytes `[8, batch_bytes)`  |
//! | 8      | 4     | `batch_bytes`       | whole batch length, header included; 48..=16 MiB           |
//! | 12     | 1     | `version`           | format version, `1`                                        |
//! | 13     | 1     | `attributes`        | reserved for compression; must be `0`                      |
//! | 14     | 2     | reserved            | must be `0`                                                |
//! | 16     | 8     | `base_position`     | position of the first record in the shard                  |
//! | 24     | 4     | `record_count`      | number of records, 1..=2^20                                |
//! | 28     | 4     | reserved            | must be `0`                                                |
//! | 32     | 8     | `first_timestamp_ms`| arrival time of the first record, ms since the Unix epoch  |
//! | 40     | 8     | `max_timestamp_ms`  | largest arrival time in the batch                          |
//!
//! The CRC covers everything after itself, the length included, so a damaged length is
//! caught as well as damaged records. Record `i` has position `base_position + i`.
//!
//! # Record (16-byte header, then variable parts)
//!
//! | offset | width | field                  | meaning                                          |
//! |-------:|------:|------------------------|--------------------------------------------------|
//! | 0      | 4     | `record_bytes`         | this record's length, header included            |
//! | 4      | 2     | `partition_key_bytes`  | UTF-8 length of the partition key, 0..=768       |
//! | 6      | 1     | `flags`                | bit 0: an explicit hash key follows; others `0`  |
//! | 7      | 1     | reserved               | must be `0`                                      |
//! | 8      | 8     | `timestamp_ms`         | arrival time, ms since the Unix epoch            |
//! | 16     | 16    | `explicit_hash_key`    | only if flag bit 0: the u128, **big-endian**     |
//! | ...    | pk    | `partition_key`        | the key's UTF-8 bytes                            |
//! | ...    | rest  | `data`                 | the payload: `record_bytes` minus everything else|
//!
//! The explicit hash key is big-endian because that is how Kinesis reads an MD5 digest as a
//! number; keeping the same order lets the key be compared as bytes.
//!
//! # Invariants
//! - A batch that passes [`validate`] has a correct CRC, a consistent record walk that ends
//!   exactly at `batch_bytes`, and `first_timestamp_ms <= max_timestamp_ms`.
//! - Nothing here trusts a length before checking it against the bytes at hand and the
//!   bounds in [`crate::constants`]; no input panics or allocates.

use crate::constants::{
    BATCH_BYTES_MAX, BATCH_RECORDS_MAX, PARTITION_KEY_BYTES_MAX, RECORD_DATA_BYTES_MAX,
};

/// The magic bytes that open every batch.
pub const BATCH_MAGIC: [u8; 4] = *b"RFB1";
/// The batch format version this build writes and reads.
pub const BATCH_VERSION: u8 = 1;

const MAGIC_OFFSET: usize = 0;
const CRC_OFFSET: usize = MAGIC_OFFSET + 4;
const LENGTH_OFFSET: usize = CRC_OFFSET + 4;
const VERSION_OFFSET: usize = LENGTH_OFFSET + 4;
const ATTRIBUTES_OFFSET: usize = VERSION_OFFSET + 1;
const RESERVED_A_OFFSET: usize = ATTRIBUTES_OFFSET + 1;
const BASE_POSITION_OFFSET: usize = RESERVED_A_OFFSET + 2;
const RECORD_COUNT_OFFSET: usize = BASE_POSITION_OFFSET + 8;
const RESERVED_B_OFFSET: usize = RECORD_COUNT_OFFSET + 4;
const FIRST_TIMESTAMP_OFFSET: usize = RESERVED_B_OFFSET + 4;
const MAX_TIMESTAMP_OFFSET: usize = FIRST_TIMESTAMP_OFFSET + 8;
/// Size of the batch header.
pub const BATCH_HEADER_BYTES: usize = MAX_TIMESTAMP_OFFSET + 8;
const _: () = assert!(BATCH_HEADER_BYTES == 48);

const RECORD_BYTES_OFFSET: usize = 0;
const RECORD_KEY_BYTES_OFFSET: usize = RECORD_BYTES_OFFSET + 4;
const RECORD_FLAGS_OFFSET: usize = RECORD_KEY_BYTES_OFFSET + 2;
const RECORD_RESERVED_OFFSET: usize = RECORD_FLAGS_OFFSET + 1;
const RECORD_TIMESTAMP_OFFSET: usize = RECORD_RESERVED_OFFSET + 1;
/// Size of the fixed part of a record.
pub const RECORD_HEADER_BYTES: usize = RECORD_TIMESTAMP_OFFSET + 8;
const _: () = assert!(RECORD_HEADER_BYTES == 16);
const EXPLICIT_HASH_KEY_BYTES: usize = 16;
const FLAG_EXPLICIT_HASH_KEY: u8 = 1;

/// A record to append. The partition key is stored as given (UTF-8 by contract; the stream
/// layer validates it); the explicit hash key, if any, only influences routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The partition key's UTF-8 bytes, at most [`PARTITION_KEY_BYTES_MAX`].
    pub partition_key: &'a [u8],
    /// The hash key that routes the record instead of the partition key's MD5, if any.
    pub explicit_hash_key: Option<u128>,
    /// The payload, at most [`RECORD_DATA_BYTES_MAX`] bytes.
    pub data: &'a [u8],
}

impl Record<'_> {
    /// Encoded size of this record inside a batch.
    pub fn encoded_bytes(&self) -> usize {
        RECORD_HEADER_BYTES
            + if self.explicit_hash_key.is_some() { EXPLICIT_HASH_KEY_BYTES } else { 0 }
            + self.partition_key.len()
            + self.data.len()
    }

    /// Checks the sizes the format can hold. Kinesis-level limits (1 MiB records, 256-unit
    /// keys) are the stream layer's business; these are the format's hard bounds.
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.partition_key.len() > PARTITION_KEY_BYTES_MAX {
            return Err(format!(
                "partition key of {} bytes exceeds the maximum of {PARTITION_KEY_BYTES_MAX}",
                self.partition_key.len()
            ));
        }
        if self.data.len() > RECORD_DATA_BYTES_MAX {
            return Err(format!(
                "record data of {} bytes exceeds the maximum of {RECORD_DATA_BYTES_MAX}",
                self.data.len()
            ));
        }
        Ok(())
    }
}

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// CRC-32 of bytes `[8, batch_bytes)` of the batch.
    pub crc: u32,
    /// Length of the whole batch in bytes, header included.
    pub batch_bytes: u32,
    /// Position of the batch's first record in its shard.
    pub base_position: u64,
    /// Number of records in the batch (at least 1).
    pub record_count: u32,
    /// Arrival time of the first record, ms since the Unix epoch.
    pub first_timestamp_ms: u64,
    /// Latest arrival time of any record in the batch, ms since the Unix epoch.
    pub max_timestamp_ms: u64,
}

impl BatchHeader {
    /// Position one past the last record.
    pub fn end_position(&self) -> u64 {
        self.base_position + u64::from(self.record_count)
    }
}

/// Why bytes failed to decode as a batch; `at` is the byte offset within the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Byte offset within the batch where the problem was found.
    pub at: usize,
    /// What is wrong, in words.
    pub reason: String,
}

impl FormatError {
    fn new(at: usize, reason: impl Into<String>) -> Self {
        FormatError { at, reason: reason.into() }
    }
}

impl std::error::Error for FormatError {}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at batch byte {})", self.reason, self.at)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes and bounds-checks a batch header from the start of `bytes` without touching the
/// records or the CRC. Used to walk a segment quickly; [`validate`] checks the rest.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, FormatError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return Err(FormatError::new(
            0,
            format!("{} bytes is too short for a batch header", bytes.len()),
        ));
    }
    if bytes[MAGIC_OFFSET..MAGIC_OFFSET + 4] != BATCH_MAGIC {
        return Err(FormatError::new(MAGIC_OFFSET, "bad batch magic"));
    }
    if bytes[VERSION_OFFSET] != BATCH_VERSION {
        return Err(FormatError::new(
            VERSION_OFFSET,
            format!("unsupported batch version {}", bytes[VERSION_OFFSET]),
        ));
    }
    let header = BatchHeader {
        crc: u32_at(bytes, CRC_OFFSET),
        batch_bytes: u32_at(bytes, LENGTH_OFFSET),
        base_position: u64_at(bytes, BASE_POSITION_OFFSET),
        record_count: u32_at(bytes, RECORD_COUNT_OFFSET),
        first_timestamp_ms: u64_at(bytes, FIRST_TIMESTAMP_OFFSET),
        max_timestamp_ms: u64_at(bytes, MAX_TIMESTAMP_OFFSET),
    };
    let length = header.batch_bytes as usize;
    if !(BATCH_HEADER_BYTES..=BATCH_BYTES_MAX).contains(&length) {
        return Err(FormatError::new(
            LENGTH_OFFSET,
            format!("batch length {length} out of bounds"),
        ));
    }
    let count = header.record_count as usize;
    if count == 0 || count > BATCH_RECORDS_MAX {
        return Err(FormatError::new(
            RECORD_COUNT_OFFSET,
            format!("record count {count} out of bounds"),
        ));
    }
    if count.saturating_mul(RECORD_HEADER_BYTES) > length - BATCH_HEADER_BYTES {
        return Err(FormatError::new(
            RECORD_COUNT_OFFSET,
            format!("{count} records cannot fit in a batch of {length} bytes"),
        ));
    }
    if header.base_position.checked_add(u64::from(header.record_count)).is_none() {
        return Err(FormatError::new(BASE_POSITION_OFFSET, "base position overflows"));
    }
    if header.first_timestamp_ms > header.max_timestamp_ms {
        return Err(FormatError::new(
            FIRST_TIMESTAMP_OFFSET,
            "first timestamp after max timestamp",
        ));
    }
    Ok(header)
}

/// The checksum of a whole batch as stored at offset 4.
fn checksum(batch: &[u8]) -> u32 {
    crc32fast::hash(&batch[LENGTH_OFFSET..])
}

/// Fully validates the batch at the start of `bytes`: header, CRC, and a walk over every
/// record. Returns the header; the batch occupies `bytes[..header.batch_bytes]`.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, FormatError> {
    let header = parse_header(bytes)?;
    let length = header.batch_bytes as usize;
    if bytes.len() < length {
        return Err(FormatError::new(
            LENGTH_OFFSET,
            format!("batch of {length} bytes is cut off after {} bytes", bytes.len()),
        ));
    }
    let batch = &bytes[..length];
    let actual = checksum(batch);
    if actual != header.crc {
        return Err(FormatError::new(
            CRC_OFFSET,
            format!("checksum mismatch: stored {:#010x}, computed {actual:#010x}", header.crc),
        ));
    }
    if batch[ATTRIBUTES_OFFSET] != 0
        || u16_at(batch, RESERVED_A_OFFSET) != 0
        || u32_at(batch, RESERVED_B_OFFSET) != 0
    {
        return Err(FormatError::new(ATTRIBUTES_OFFSET, "reserved header bits are set"));
    }
    let mut records = RecordIter { batch, header, at: BATCH_HEADER_BYTES, index: 0 };
    for item in &mut records {
        let record = item?;
        if record.timestamp_ms > header.max_timestamp_ms {
            return Err(FormatError::new(0, "record timestamp after the batch's max timestamp"));
        }
    }
    if records.at != length {
        return Err(FormatError::new(records.at, "records end before the batch does"));
    }
    Ok(header)
}

/// A record decoded from a batch, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's position in its shard (`base_position` plus its index in the batch).
    pub position: u64,
    /// Arrival time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The partition key's UTF-8 bytes.
    pub partition_key: &'a [u8],
    /// The explicit hash key the record was put with, if any.
    pub explicit_hash_key: Option<u128>,
    /// The payload.
    pub data: &'a [u8],
}

/// Iterates the records of one batch. Yields an error (and then stops) on malformed input.
pub struct RecordIter<'a> {
    batch: &'a [u8],
    header: BatchHeader,
    at: usize,
    index: u32,
}

impl<'a> RecordIter<'a> {
    /// Iterates the records of a batch that [`validate`] accepted. Decoding is still fully
    /// bounds-checked, so unvalidated input yields errors, not panics.
    pub fn new(batch: &'a [u8]) -> Result<Self, FormatError> {
        let header = parse_header(batch)?;
        let length = (header.batch_bytes as usize).min(batch.len());
        Ok(RecordIter { batch: &batch[..length], header, at: BATCH_HEADER_BYTES, index: 0 })
    }

    fn decode_next(&mut self) -> Result<RecordView<'a>, FormatError> {
        let rest = &self.batch[self.at..];
        if rest.len() < RECORD_HEADER_BYTES {
            return Err(FormatError::new(self.at, "record header cut off"));
        }
        let record_bytes = u32_at(rest, RECORD_BYTES_OFFSET) as usize;
        if record_bytes < RECORD_HEADER_BYTES || record_bytes > rest.len() {
            return Err(FormatError::new(
                self.at,
                format!("record length {record_bytes} out of bounds"),
            ));
        }
        let key_bytes = usize::from(u16_at(rest, RECORD_KEY_BYTES_OFFSET));
        let flags = rest[RECORD_FLAGS_OFFSET];
        if flags & !FLAG_EXPLICIT_HASH_KEY != 0 || rest[RECORD_RESERVED_OFFSET] != 0 {
            return Err(FormatError::new(self.at + RECORD_FLAGS_OFFSET, "unknown record flags"));
        }
        if key_bytes > PARTITION_KEY_BYTES_MAX {
            return Err(FormatError::new(
                self.at,
                format!("partition key length {key_bytes} out of bounds"),
            ));
        }
        let timestamp_ms = u64_at(rest, RECORD_TIMESTAMP_OFFSET);
        let mut cursor = RECORD_HEADER_BYTES;
        let explicit_hash_key = if flags & FLAG_EXPLICIT_HASH_KEY != 0 {
            if record_bytes < cursor + EXPLICIT_HASH_KEY_BYTES {
                return Err(FormatError::new(self.at, "explicit hash key cut off"));
            }
            let mut k = [0; 16];
            k.copy_from_slice(&rest[cursor..cursor + EXPLICIT_HASH_KEY_BYTES]);
            cursor += EXPLICIT_HASH_KEY_BYTES;
            Some(u128::from_be_bytes(k))
        } else {
            None
        };
        if record_bytes < cursor + key_bytes {
            return Err(FormatError::new(self.at, "partition key cut off"));
        }
        let partition_key = &rest[cursor..cursor + key_bytes];
        let data = &rest[cursor + key_bytes..record_bytes];
        if data.len() > RECORD_DATA_BYTES_MAX {
            return Err(FormatError::new(self.at, "record data too long"));
        }
        let position = self.header.base_position + u64::from(self.index);
        self.at += record_bytes;
        self.index += 1;
        Ok(RecordView { position, timestamp_ms, partition_key, explicit_hash_key, data })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.header.record_count {
            return None;
        }
        match self.decode_next() {
            Ok(record) => Some(Ok(record)),
            Err(e) => {
                self.index = self.header.record_count; // stop after the first error
                Some(Err(e))
            }
        }
    }
}

/// Splits a run of concatenated batches (as returned by a read) into validated batches.
/// This is what a client does with the bytes of a read or push response.
pub fn split_batches(
    mut bytes: &[u8],
) -> impl Iterator<Item = Result<(BatchHeader, &[u8]), FormatError>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || bytes.is_empty() {
            return None;
        }
        match validate(bytes) {
            Ok(header) => {
                let (batch, rest) = bytes.split_at(header.batch_bytes as usize);
                bytes = rest;
                Some(Ok((header, batch)))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// Appends batches to a byte buffer. One builder is reused across commit cycles.
///
/// Records are encoded straight into the output buffer; [`BatchBuilder::finish`] fills the
/// header (count, timestamps, length, CRC) in place. The caller decides when a batch is full.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    out: EncodedBatches,
    open: Option<OpenBatch>,
}

/// Finished batches: their bytes back to back, and each one's start offset and header.
#[derive(Debug, Default)]
pub struct EncodedBatches {
    /// The finished batches' bytes, back to back.
    pub bytes: Vec<u8>,
    /// Each batch's start offset in `bytes` and its header, in order.
    pub batches: Vec<(usize, BatchHeader)>,
}

impl EncodedBatches {
    /// Empties both vectors, keeping their allocations.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.batches.clear();
    }
}

#[derive(Debug, Clone, Copy)]
struct OpenBatch {
    start: usize,
    base_position: u64,
    record_count: u32,
    first_timestamp_ms: u64,
    max_timestamp_ms: u64,
}

impl BatchBuilder {
    /// A builder with `capacity` bytes reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        BatchBuilder {
            out: EncodedBatches { bytes: Vec::with_capacity(capacity), batches: Vec::new() },
            open: None,
        }
    }

    /// Bytes encoded so far, the open batch included (its header not yet final).
    pub fn len(&self) -> usize {
        self.out.bytes.len()
    }

    /// True if nothing has been encoded since the last `take`.
    pub fn is_empty(&self) -> bool {
        self.out.bytes.is_empty()
    }

    /// True if a batch is open.
    pub fn has_open_batch(&self) -> bool {
        self.open.is_some()
    }

    /// Bytes in the open batch, or 0 if none is open.
    pub fn open_batch_bytes(&self) -> usize {
        self.open.map_or(0, |b| self.out.bytes.len() - b.start)
    }

    /// Starts a new batch whose first record will have `base_position`. Finishes the open
    /// batch first, if any.
    pub fn begin(&mut self, base_position: u64) {
        self.finish();
        let start = self.out.bytes.len();
        self.out.bytes.resize(start + BATCH_HEADER_BYTES, 0);
        self.open = Some(OpenBatch {
            start,
            base_position,
            record_count: 0,
            first_timestamp_ms: 0,
            max_timestamp_ms: 0,
        });
    }

    /// Appends a record to the open batch (beginning one is the caller's job) and returns
    /// its position. The caller has checked `record.check_bounds()`.
    pub fn push(&mut self, record: &Record<'_>, timestamp_ms: u64) -> u64 {
        let open = self.open.as_mut().expect("push without an open batch");
        assert!((open.record_count as usize) < BATCH_RECORDS_MAX);
        debug_assert!(record.check_bounds().is_ok());
        let record_bytes = record.encoded_bytes();
        let flags = if record.explicit_hash_key.is_some() { FLAG_EXPLICIT_HASH_KEY } else { 0 };
        let key_bytes = u16::try_from(record.partition_key.len()).expect("key length was checked");
        self.out.bytes.reserve(record_bytes);
        self.out.bytes.extend_from_slice(&(record_bytes as u32).to_le_bytes());
        self.out.bytes.extend_from_slice(&key_bytes.to_le_bytes());
        self.out.bytes.push(flags);
        self.out.bytes.push(0);
        self.out.bytes.extend_from_slice(&timestamp_ms.to_le_bytes());
        if let Some(k) = record.explicit_hash_key {
            self.out.bytes.extend_from_slice(&k.to_be_bytes());
        }
        self.out.bytes.extend_from_slice(record.partition_key);
        self.out.bytes.extend_from_slice(record.data);
        if open.record_count == 0 {
            open.first_timestamp_ms = timestamp_ms;
        }
        open.max_timestamp_ms = open.max_timestamp_ms.max(timestamp_ms);
        let position = open.base_position + u64::from(open.record_count);
        open.record_count += 1;
        position
    }

    /// Closes the open batch: writes its header and CRC. Returns its header, or `None` if no
    /// batch was open. An open batch with no records is dropped.
    pub fn finish(&mut self) -> Option<BatchHeader> {
        let open = self.open.take()?;
        if open.record_count == 0 {
            self.out.bytes.truncate(open.start);
            return None;
        }
        let batch_bytes = self.out.bytes.len() - open.start;
        assert!(batch_bytes <= BATCH_BYTES_MAX, "batch of {batch_bytes} bytes exceeds the bound");
        let b = &mut self.out.bytes[open.start..];
        b[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(&BATCH_MAGIC);
        b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&(batch_bytes as u32).to_le_bytes());
        b[VERSION_OFFSET] = BATCH_VERSION;
        b[ATTRIBUTES_OFFSET] = 0;
        b[RESERVED_A_OFFSET..RESERVED_A_OFFSET + 2].fill(0);
        b[BASE_POSITION_OFFSET..BASE_POSITION_OFFSET + 8]
            .copy_from_slice(&open.base_position.to_le_bytes());
        b[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4]
            .copy_from_slice(&open.record_count.to_le_bytes());
        b[RESERVED_B_OFFSET..RESERVED_B_OFFSET + 4].fill(0);
        b[FIRST_TIMESTAMP_OFFSET..FIRST_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&open.first_timestamp_ms.to_le_bytes());
        b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&open.max_timestamp_ms.to_le_bytes());
        let crc = checksum(b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        let header = BatchHeader {
            crc,
            batch_bytes: batch_bytes as u32,
            base_position: open.base_position,
            record_count: open.record_count,
            first_timestamp_ms: open.first_timestamp_ms,
            max_timestamp_ms: open.max_timestamp_ms,
        };
        self.out.batches.push((open.start, header));
        Some(header)
    }

    /// Finishes the open batch and hands out the encoded bytes, leaving the builder empty
    /// with `spare` (a previously taken buffer, cleared) as its new storage.
    pub fn take(&mut self, mut spare: EncodedBatches) -> EncodedBatches {
        self.finish();
        spare.clear();
        std::mem::replace(&mut self.out, spare)
    }
}

/// Encodes `records` as one batch (test and tool helper).
pub fn encode_batch(base_position: u64, records: &[Record<'_>], timestamp_ms: u64) -> Vec<u8> {
    let mut builder = BatchBuilder::default();
    builder.begin(base_position);
    for r in records {
        builder.push(r, timestamp_ms);
    }
    builder.finish();
    builder.take(EncodedBatches::default()).bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let records = [
            Record { partition_key: b"alpha", explicit_hash_key: None, data: b"hello" },
            Record { partition_key: b"beta", explicit_hash_key: Some(u128::MAX - 7), data: b"" },
            Record { partition_key: b"", explicit_hash_key: None, data: &[0xAB; 300] },
        ];
        encode_batch(41, &records, 1_700_000_000_123)
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let bytes = sample();
        let header = validate(&bytes).expect("valid");
        assert_eq!(header.base_position, 41);
        assert_eq!(header.record_count, 3);
        assert_eq!(header.batch_bytes as usize, bytes.len());
        let records: Vec<_> =
            RecordIter::new(&bytes).expect("header").map(|r| r.expect("record")).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].position, 41);
        assert_eq!(records[0].partition_key, b"alpha");
        assert_eq!(records[0].data, b"hello");
        assert_eq!(records[1].explicit_hash_key, Some(u128::MAX - 7));
        assert_eq!(records[1].data, b"");
        assert_eq!(records[2].position, 43);
        assert_eq!(records[2].data, &[0xAB; 300][..]);
        assert!(records.iter().all(|r| r.timestamp_ms == 1_700_000_000_123));
    }

    /// SplitMix64: a seeded generator for the property tests.
    fn next(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn random_batches_round_trip_exactly() {
        let base_seed = std::env::var("RIFFLE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED_u64);
        for case in 0..300u64 {
            let mut seed = base_seed ^ case.wrapping_mul(0xA24B_AED4_963E_E407);
            let count = 1 + next(&mut seed) % 40;
            type Owned = (Vec<u8>, Option<u128>, Vec<u8>, u64);
            let owned: Vec<Owned> = (0..count)
                .map(|_| {
                    let key_len = (next(&mut seed) % 300) as usize;
                    let data_len = (next(&mut seed) % 2000) as usize;
                    let key = (0..key_len).map(|_| next(&mut seed) as u8).collect();
                    let hash = next(&mut seed)
                        .is_multiple_of(3)
                        .then(|| (u128::from(next(&mut seed)) << 64) | u128::from(next(&mut seed)));
                    let data = (0..data_len).map(|_| next(&mut seed) as u8).collect();
                    (key, hash, data, next(&mut seed) % (1 << 45))
                })
                .collect();
            let base = next(&mut seed) % (1 << 50);
            let mut builder = BatchBuilder::default();
            builder.begin(base);
            for (key, hash, data, ts) in &owned {
                builder.push(&Record { partition_key: key, explicit_hash_key: *hash, data }, *ts);
            }
            builder.finish();
            let bytes = builder.take(EncodedBatches::default()).bytes;
            let header =
                validate(&bytes).unwrap_or_else(|e| panic!("seed {base_seed} case {case}: {e}"));
            assert_eq!(header.record_count as u64, count);
            assert_eq!(header.first_timestamp_ms, owned[0].3);
            assert_eq!(header.max_timestamp_ms, owned.iter().map(|r| r.3).max().unwrap_or(0));
            for (i, (r, (key, hash, data, ts))) in
                RecordIter::new(&bytes).expect("header").zip(&owned).enumerate()
            {
                let r = r.expect("record");
                assert_eq!(r.position, base + i as u64);
                assert_eq!(
                    (r.partition_key, r.explicit_hash_key, r.data, r.timestamp_ms),
                    (&key[..], *hash, &data[..], *ts)
                );
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = sample();
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    validate(&damaged).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(validate(&bytes[..cut]).is_err(), "cut at {cut} went unnoticed");
        }
    }

    #[test]
    fn split_batches_walks_concatenated_batches() {
        let mut run = sample();
        let second = encode_batch(
            44,
            &[Record { partition_key: b"k", explicit_hash_key: None, data: b"x" }],
            5,
        );
        run.extend_from_slice(&second);
        let headers: Vec<_> =
            split_batches(&run).map(|b| b.expect("valid").0.base_position).collect();
        assert_eq!(headers, vec![41, 44]);
    }

    #[test]
    fn hostile_headers_are_rejected_without_allocation() {
        let mut bytes = sample();
        bytes[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_header(&bytes).is_err());
        let mut bytes = sample();
        bytes[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_header(&bytes).is_err());
        assert!(parse_header(&[]).is_err());
    }

    #[test]
    fn builder_reuses_its_buffers() {
        let mut builder = BatchBuilder::with_capacity(1024);
        builder.begin(0);
        builder.push(&Record { partition_key: b"a", explicit_hash_key: None, data: b"1" }, 1);
        let first = builder.take(EncodedBatches::default());
        assert!(validate(&first.bytes).is_ok());
        assert_eq!(first.batches.len(), 1);
        assert!(builder.is_empty());
        builder.begin(1);
        builder.push(&Record { partition_key: b"a", explicit_hash_key: None, data: b"2" }, 2);
        let second = builder.take(first);
        assert_eq!(validate(&second.bytes).expect("valid").base_position, 1);
        assert_eq!(second.batches[0].0, 0);
    }
}
