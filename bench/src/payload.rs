//! The bytes of a benchmark record, so that consumers can check every record and measure
//! end-to-end latency without a side channel.
//!
//! | offset | width | field                                                        |
//! |-------:|------:|--------------------------------------------------------------|
//! | 0      | 4     | producer id, little-endian                                   |
//! | 4      | 8     | sequence number within the producer, little-endian           |
//! | 12     | 8     | send time: ns since the run's start (the intended send time) |
//! | 20     | n-20  | filler: byte `i` is `(seq + i) mod 251`                      |
//!
//! Records are at least [`HEADER_BYTES`] long.

/// Fixed part of a record.
pub const HEADER_BYTES: usize = 20;

/// What a record says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which producer made it.
    pub producer: u32,
    /// Its number within that producer, from 0.
    pub seq: u64,
    /// Intended send time, ns since the run started.
    pub sent_ns: u64,
}

/// Largest record the filler pattern covers.
const RECORD_BYTES_MAX: usize = 1024 * 1024;

/// `0, 1, ..., 250, 0, 1, ...` long enough that any record's filler is one slice of it
/// (so writing is a copy and checking a comparison).
fn pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| (0..RECORD_BYTES_MAX + 251).map(|i| (i % 251) as u8).collect())
}

fn filler(seq: u64, len: usize) -> &'static [u8] {
    let start = (seq % 251) as usize;
    &pattern()[start..start + len]
}

/// Fills `out` (its length is the record size, [`HEADER_BYTES`]..=1 MiB) with the record.
pub fn write(out: &mut [u8], stamp: Stamp) {
    out[0..4].copy_from_slice(&stamp.producer.to_le_bytes());
    out[4..12].copy_from_slice(&stamp.seq.to_le_bytes());
    out[12..20].copy_from_slice(&stamp.sent_ns.to_le_bytes());
    let n = out.len() - HEADER_BYTES;
    out[HEADER_BYTES..].copy_from_slice(filler(stamp.seq, n));
}

/// Checks a record's bytes; `None` if it is not one this harness wrote.
pub fn check(bytes: &[u8]) -> Option<Stamp> {
    if bytes.len() < HEADER_BYTES || bytes.len() > RECORD_BYTES_MAX {
        return None;
    }
    let stamp = Stamp {
        producer: u32::from_le_bytes(bytes[0..4].try_into().ok()?),
        seq: u64::from_le_bytes(bytes[4..12].try_into().ok()?),
        sent_ns: u64::from_le_bytes(bytes[12..20].try_into().ok()?),
    };
    (bytes[HEADER_BYTES..] == *filler(stamp.seq, bytes.len() - HEADER_BYTES)).then_some(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_any_damage_is_caught() {
        let stamp = Stamp { producer: 7, seq: 123_456, sent_ns: 99 };
        for len in [HEADER_BYTES, 100, 1024] {
            let mut buf = vec![0u8; len];
            write(&mut buf, stamp);
            assert_eq!(check(&buf), Some(stamp));
            for i in HEADER_BYTES..len {
                buf[i] ^= 1;
                assert_eq!(check(&buf), None, "flip at {i}");
                buf[i] ^= 1;
            }
        }
        assert_eq!(check(&[0u8; 19]), None);
    }
}
