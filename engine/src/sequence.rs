//! Sequence numbers: the public u128 of a record, shown as a decimal string.
//!
//! # Layout (most significant bits first)
//!
//! | bits    | width | field          | meaning                                                 |
//! |---------|------:|----------------|---------------------------------------------------------|
//! | 127..96 | 32    | `shard_index`  | the shard's index in its stream (allocated in creation order, never reused) |
//! | 95..72  | 24    | `stream_epoch` | distinguishes incarnations of a stream name             |
//! | 71..64  | 8     | `version`      | layout version, `1`                                     |
//! | 63..0   | 64    | `slot`         | `0`: the shard's starting number; `position + 1`: a record; `u64::MAX`: the closed shard's ending number |
//!
//! # Why this satisfies the Kinesis rules
//! - Strictly increasing within a shard: the slot grows with the position.
//! - Unique in a stream: the shard index is part of the number.
//! - Children above parents: a child's index is allocated after its parents', and the index
//!   is the most significant field.
//! - Decodable in O(1) to (shard, position): AT/AFTER_SEQUENCE_NUMBER are index lookups, and
//!   a number from another shard or another incarnation of the stream is detected.
//! - The starting number (slot 0) is below every record and is a valid AFTER anchor; the
//!   ending number (slot `u64::MAX`) is at least every record's and below every child's,
//!   and is defined even for a shard that holds no record.
//! - At most 39 decimal digits, which Kinesis clients accept.

/// A sequence number as the public u128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber(pub u128);

const VERSION: u128 = 1;
const EPOCH_MAX: u32 = (1 << 24) - 1;

/// What a sequence number denotes inside its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The shard's `StartingSequenceNumber`, before every record.
    Start,
    /// The record at this position.
    Record(u64),
    /// The closed shard's `EndingSequenceNumber`, after every record.
    End,
}

/// A decoded sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceParts {
    /// The shard's index in its stream.
    pub shard_index: u32,
    /// The stream incarnation (24 bits).
    pub stream_epoch: u32,
    /// What the number denotes in the shard.
    pub slot: Slot,
}

impl SequenceNumber {
    fn encode(shard_index: u32, stream_epoch: u32, slot: u64) -> Self {
        assert!(stream_epoch <= EPOCH_MAX, "stream epoch {stream_epoch} exceeds 24 bits");
        SequenceNumber(
            (u128::from(shard_index) << 96)
                | (u128::from(stream_epoch) << 72)
                | (VERSION << 64)
                | u128::from(slot),
        )
    }

    /// The number of the record at `position` (positions below `u64::MAX - 2`).
    pub fn record(shard_index: u32, stream_epoch: u32, position: u64) -> Self {
        assert!(position < u64::MAX - 2, "position {position} out of range");
        Self::encode(shard_index, stream_epoch, position + 1)
    }

    /// The shard's starting sequence number.
    pub fn starting(shard_index: u32, stream_epoch: u32) -> Self {
        Self::encode(shard_index, stream_epoch, 0)
    }

    /// The closed shard's ending sequence number.
    pub fn ending(shard_index: u32, stream_epoch: u32) -> Self {
        Self::encode(shard_index, stream_epoch, u64::MAX)
    }

    /// Decodes a number; `None` if it is not one this layout produces.
    pub fn decode(self) -> Option<SequenceParts> {
        if (self.0 >> 64) & 0xFF != VERSION {
            return None;
        }
        let slot = match self.0 as u64 {
            0 => Slot::Start,
            u64::MAX => Slot::End,
            s if s == u64::MAX - 1 => return None,
            s => Slot::Record(s - 1),
        };
        Some(SequenceParts {
            shard_index: (self.0 >> 96) as u32,
            stream_epoch: ((self.0 >> 72) as u32) & EPOCH_MAX,
            slot,
        })
    }

    /// Parses the decimal form (`0|[1-9][0-9]{0,128}`). Well-formed numbers too large for
    /// a u128 are `Ok(None)`: valid syntax, but no number of ours.
    pub fn parse(text: &str) -> Result<Option<Self>, MalformedSequenceNumber> {
        let well_formed = !text.is_empty()
            && text.len() <= 129
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if !well_formed {
            return Err(MalformedSequenceNumber);
        }
        Ok(text.parse::<u128>().ok().map(SequenceNumber))
    }
}

/// A sequence number string that does not match `0|[1-9][0-9]{0,128}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedSequenceNumber;

impl std::fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The canonical shard id: `shardId-` and the index in 12 digits.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Kinesis's lenient shard id parsing: the text between the first `-` and the next one
/// (or the whole string without a `-`), all decimal digits, at most 2147483647.
pub fn parse_shard_id(text: &str) -> Option<u32> {
    let digits = match text.split_once('-') {
        Some((_, rest)) => rest.split('-').next().unwrap_or(""),
        None => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|v| *v <= i32::MAX as u64).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_through_decimal_and_decode() {
        for (shard, epoch, position) in
            [(0, 0, 0), (3, 17, 41), (u32::MAX, EPOCH_MAX, u64::MAX - 3)]
        {
            let n = SequenceNumber::record(shard, epoch, position);
            let text = n.to_string();
            assert!(text.len() <= 39);
            assert_eq!(SequenceNumber::parse(&text), Ok(Some(n)));
            assert_eq!(
                n.decode(),
                Some(SequenceParts {
                    shard_index: shard,
                    stream_epoch: epoch,
                    slot: Slot::Record(position)
                })
            );
        }
    }

    #[test]
    fn ordering_follows_the_kinesis_rules() {
        let (parent, child, epoch) = (4, 9, 2);
        let start = SequenceNumber::starting(parent, epoch);
        let first = SequenceNumber::record(parent, epoch, 0);
        let later = SequenceNumber::record(parent, epoch, 1_000_000);
        let end = SequenceNumber::ending(parent, epoch);
        let child_start = SequenceNumber::starting(child, epoch);
        assert!(start < first && first < later && later < end && end < child_start);
        assert!(child_start < SequenceNumber::record(child, epoch, 0));
        assert_eq!(end.decode().map(|p| p.slot), Some(Slot::End));
        assert_eq!(start.decode().map(|p| p.slot), Some(Slot::Start));
    }

    #[test]
    fn foreign_numbers_are_detected() {
        assert_eq!(SequenceNumber(0).decode(), None);
        assert_eq!(SequenceNumber(12345).decode(), None);
        assert_eq!(
            SequenceNumber::parse("49546986683135544286507457936321625675700192471156785154"),
            Ok(None)
        );
        for bad in ["", "01", "-5", "1.5", "abc"] {
            assert_eq!(SequenceNumber::parse(bad), Err(MalformedSequenceNumber), "{bad:?}");
        }
    }

    #[test]
    fn shard_ids_parse_leniently_as_kinesis_does() {
        assert_eq!(shard_id(1), "shardId-000000000001");
        for ok in ["shardId-1", "shard-1", "1", "anything-0001", "-1", "shardId-000000000001"] {
            assert_eq!(parse_shard_id(ok), Some(1), "{ok}");
        }
        for bad in ["ABKLFD8", "2.14E4", "2147483648", "shardId-002147483648", "shardId-", ""] {
            assert_eq!(parse_shard_id(bad), None, "{bad}");
        }
        assert_eq!(parse_shard_id("shardId-2147483647"), Some(i32::MAX as u32));
    }
}
