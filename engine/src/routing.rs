//! Hash keys and routing: a record's 128-bit hash key is the MD5 digest of its partition
//! key read as a big-endian u128, or its explicit hash key; it goes to the one open shard
//! whose inclusive range contains it. Open shards tile `0..=u128::MAX` exactly.

use md5::{Digest, Md5};

/// The hash key of a partition key: MD5 of its UTF-8 bytes as a big-endian u128.
///
/// Keys shorter than 56 bytes (almost all) fit MD5's single final block: it is built here
/// and compressed once, without the streaming digest's buffering. Routing every record
/// costs one MD5, which is the largest part of the engine's per-record work.
pub fn hash_key(partition_key: &[u8]) -> u128 {
    const INITIAL: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let n = partition_key.len();
    if n >= 56 {
        return u128::from_be_bytes(Md5::digest(partition_key).into());
    }
    let mut block = [0u8; 64];
    block[..n].copy_from_slice(partition_key);
    block[n] = 0x80;
    block[56..].copy_from_slice(&((n as u64) * 8).to_le_bytes());
    let mut state = INITIAL;
    md5::block_api::compress(&mut state, &[block]);
    let mut digest = [0u8; 16];
    for (chunk, word) in digest.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    u128::from_be_bytes(digest)
}

/// An inclusive range of hash keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashKeyRange {
    /// Lowest hash key of the range (inclusive).
    pub start: u128,
    /// Highest hash key of the range (inclusive).
    pub end: u128,
}

impl HashKeyRange {
    /// The whole key space.
    pub const ALL: HashKeyRange = HashKeyRange { start: 0, end: u128::MAX };

    /// True if `start <= key <= end`.
    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }
}

/// The ranges Kinesis gives a new stream of `shards` shards: width `floor(2^128 / n)`,
/// the last range ending at `2^128 - 1`. `shards` must be at least 1.
pub fn uniform_ranges(shards: u32) -> Vec<HashKeyRange> {
    assert!(shards >= 1, "a stream has at least one shard");
    let n = u128::from(shards);
    if n == 1 {
        return vec![HashKeyRange::ALL];
    }
    // floor(2^128 / n) without overflowing: 2^128 = (MAX / n) * n + (MAX % n) + 1.
    let width = u128::MAX / n + u128::from(u128::MAX % n + 1 == n);
    (0..n)
        .map(|i| HashKeyRange {
            start: i * width,
            end: if i + 1 == n { u128::MAX } else { (i + 1) * width - 1 },
        })
        .collect()
}

/// Parses a decimal hash key (`0|[1-9][0-9]{0,38}`) in `0..=2^128-1`.
pub fn parse_hash_key(text: &str) -> Result<u128, HashKeyError> {
    let well_formed = !text.is_empty()
        && text.len() <= 39
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !well_formed {
        return Err(HashKeyError::Malformed);
    }
    text.parse::<u128>().map_err(|_| HashKeyError::OutOfRange)
}

/// Why a hash key string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKeyError {
    /// Not a decimal number in the allowed pattern.
    Malformed,
    /// Matches the pattern but is `>= 2^128`.
    OutOfRange,
}

/// Length of a partition key as Kinesis counts it: UTF-16 code units.
pub fn partition_key_units(key: &str) -> usize {
    if key.is_ascii() {
        return key.len();
    }
    key.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_block_path_matches_the_streaming_digest_at_every_length() {
        for n in 0..=130usize {
            let key: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let streaming = u128::from_be_bytes(Md5::digest(&key).into());
            assert_eq!(hash_key(&key), streaming, "length {n}");
        }
    }

    #[test]
    fn md5_hash_keys_match_the_reference_values() {
        assert_eq!(hash_key(b"a"), 16955237001963240173058271559858726497);
        assert_eq!(hash_key(b"b"), 195289424170611159128911017612795795343);
        assert_eq!(hash_key(b"c"), 99079589977253916124855502156832923443);
        assert_eq!(hash_key(b"d"), 173422077530204247440288476180261147053);
        assert_eq!(hash_key(b"e"), 299611584147932843547128611849858313266);
        assert_eq!(hash_key(b"f"), 190917122200326810055233066464581373159);
    }

    #[test]
    fn three_uniform_shards_match_kinesis() {
        let r = uniform_ranges(3);
        assert_eq!(r[0], HashKeyRange { start: 0, end: 113427455640312821154458202477256070484 });
        assert_eq!(
            r[1],
            HashKeyRange {
                start: 113427455640312821154458202477256070485,
                end: 226854911280625642308916404954512140969
            }
        );
        assert_eq!(
            r[2],
            HashKeyRange { start: 226854911280625642308916404954512140970, end: u128::MAX }
        );
        let shard_of = |k: &[u8]| r.iter().position(|x| x.contains(hash_key(k)));
        assert_eq!(
            [b"a", b"b", b"e", b"f", b"c", b"d"].map(|k| shard_of(k)),
            [0, 1, 2, 1, 0, 1].map(Some)
        );
    }

    #[test]
    fn uniform_ranges_tile_the_key_space() {
        for n in [1u32, 2, 3, 4, 7, 16, 1000, 10_000] {
            let r = uniform_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].start, 0);
            assert_eq!(r.last().map(|x| x.end), Some(u128::MAX));
            assert!(r.windows(2).all(|w| w[0].end + 1 == w[1].start && w[0].start <= w[0].end));
        }
        // Powers of two split exactly.
        assert_eq!(uniform_ranges(2)[1].start, 1u128 << 127);
    }

    #[test]
    fn hash_key_strings_follow_the_pattern_and_range() {
        assert_eq!(parse_hash_key("0"), Ok(0));
        assert_eq!(parse_hash_key("340282366920938463463374607431768211455"), Ok(u128::MAX));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            Err(HashKeyError::OutOfRange)
        );
        for bad in ["", "01", "-1", "1.0", "1e3", " 1", "1234567890123456789012345678901234567890"]
        {
            assert_eq!(parse_hash_key(bad), Err(HashKeyError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn partition_keys_are_counted_in_utf16_units() {
        assert_eq!(partition_key_units(&"é".repeat(256)), 256);
        assert_eq!(partition_key_units(&"😀".repeat(129)), 258);
    }
}
