//! Static bounds. Every size read from disk (and later from the network) is checked against
//! one of these before anything is allocated, and configuration is validated against them.

/// Largest data blob of one record. Kinesis allows streams a maximum record size of up to
/// 10,240 KiB (`MaxRecordSizeInKiB`), so the format must carry that much.
pub const RECORD_DATA_BYTES_MAX: usize = 10 * 1024 * 1024;

/// Largest partition key in UTF-8 bytes. Kinesis bounds the key at 256 UTF-16 code units; one
/// unit encodes to at most 3 UTF-8 bytes (a surrogate pair, two units, to 4).
pub const PARTITION_KEY_BYTES_MAX: usize = 256 * 3;

/// Largest record count in one batch. A batch is sealed long before this in practice; the
/// bound keeps a hostile header from claiming billions of records.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;

/// Largest encoded batch, header included: one maximal record plus room to spare. Batches
/// are closed at the configured target size (1 MiB by default) unless one record is larger.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Smallest and largest segment size. File offsets inside a segment are stored as u32 in the
/// offset index, so a segment must stay below 4 GiB; 1 GiB leaves headroom and is Kafka's
/// default. The minimum keeps at least one maximal batch in a segment.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
/// Largest segment size in bytes (1 GiB), see [`SEGMENT_BYTES_MIN`].
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Default segment size, as in the issue: 128 MiB, preallocated.
pub const SEGMENT_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// Default distance in log bytes between two sparse index entries (Kafka's
/// `index.interval.bytes`): a lookup scans at most this many bytes of batch headers.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;

/// Default size at which the open batch is closed and a new one started.
pub const BATCH_BYTES_TARGET_DEFAULT: usize = 1024 * 1024;

/// Default age at which the active segment rolls even when it is not full (so that quiet
/// shards' data can expire by whole segments): one hour.
pub const SEGMENT_AGE_MS_DEFAULT: u64 = 60 * 60 * 1000;

/// Largest number of bytes one `read` returns (Kinesis caps GetRecords at 10 MiB).
pub const READ_BYTES_MAX: usize = 10 * 1024 * 1024 + BATCH_BYTES_MAX;

const _: () = assert!(RECORD_DATA_BYTES_MAX + PARTITION_KEY_BYTES_MAX + 1024 <= BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX as u64 <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
