//! Shard iterators and paging tokens: opaque, self-contained, tamper-evident strings.
//!
//! A token carries everything needed to use it (no server-side cursor table), and ends in
//! a 16-byte HMAC-MD5 under the key in the catalog, so a garbled, truncated or edited token
//! is recognised ("Invalid ShardIterator.") rather than misread. The key survives restarts,
//! so do tokens. MD5 is used because it is already the routing hash; the MAC guards
//! against accidents and casual edits, not against a determined attacker with unlimited
//! queries, which is not a threat an iterator needs to resist.
//!
//! # Shard iterator layout (before base64, little-endian)
//!
//! | offset | width | field                                   |
//! |-------:|------:|-----------------------------------------|
//! | 0      | 1     | version, `1`                            |
//! | 1      | 4     | stream epoch                            |
//! | 5      | 4     | shard index                             |
//! | 9      | 8     | position: the next record to read       |
//! | 17     | 8     | issue time, ms since the Unix epoch     |
//! | 25     | 1     | stream name length `n` (1..=128)        |
//! | 26     | n     | stream name                             |
//! | 26 + n | 16    | HMAC-MD5 of bytes `0 .. 26 + n`         |
//!
//! That is at most 170 bytes, 228 characters of base64: within Kinesis's 512.

use base64::Engine as _;
use md5::{Digest, Md5};

/// Iterators and paging tokens are valid this long after issue.
pub const TOKEN_LIFETIME_MS: u64 = 300_000;

const ITERATOR_VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const NAME_MAX: usize = 128;

/// The MAC key.
#[derive(Clone)]
pub(crate) struct TokenKey([u8; 16]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A fresh random key (from the OS).
    pub(crate) fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut key = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(TokenKey(key))
    }

    pub(crate) fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let mut key = [0u8; 16];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(TokenKey(key))
    }

    /// HMAC-MD5 (RFC 2104) of `message`.
    fn mac(&self, message: &[u8]) -> [u8; MAC_BYTES] {
        let mut inner_pad = [0x36u8; 64];
        let mut outer_pad = [0x5cu8; 64];
        for (i, k) in self.0.iter().enumerate() {
            inner_pad[i] ^= k;
            outer_pad[i] ^= k;
        }
        let inner = Md5::new().chain_update(inner_pad).chain_update(message).finalize();
        let outer = Md5::new().chain_update(outer_pad).chain_update(inner).finalize();
        outer.into()
    }

    /// `body` followed by its MAC, in base64.
    fn seal(&self, mut body: Vec<u8>) -> String {
        let mac = self.mac(&body);
        body.extend_from_slice(&mac);
        base64::engine::general_purpose::STANDARD.encode(body)
    }

    /// The body of a token made by [`TokenKey::seal`], if it decodes and its MAC matches.
    fn open(&self, token: &str, max_bytes: usize) -> Option<Vec<u8>> {
        if token.len() > max_bytes.div_ceil(3) * 4 {
            return None;
        }
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
        let body_len = bytes.len().checked_sub(MAC_BYTES)?;
        let mac = self.mac(&bytes[..body_len]);
        // Not constant-time: see the module docs for what the MAC is for.
        if mac[..] != bytes[body_len..] {
            return None;
        }
        bytes.truncate(body_len);
        Some(bytes)
    }
}

/// What a shard iterator says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IteratorToken {
    pub stream_name: String,
    pub stream_epoch: u32,
    pub shard_index: u32,
    pub position: u64,
    pub issued_ms: u64,
}

impl IteratorToken {
    pub(crate) fn encode(&self, key: &TokenKey) -> String {
        let name = self.stream_name.as_bytes();
        debug_assert!(!name.is_empty() && name.len() <= NAME_MAX);
        let mut body = Vec::with_capacity(26 + name.len() + MAC_BYTES);
        body.push(ITERATOR_VERSION);
        body.extend_from_slice(&self.stream_epoch.to_le_bytes());
        body.extend_from_slice(&self.shard_index.to_le_bytes());
        body.extend_from_slice(&self.position.to_le_bytes());
        body.extend_from_slice(&self.issued_ms.to_le_bytes());
        body.push(name.len() as u8);
        body.extend_from_slice(name);
        key.seal(body)
    }

    /// `None` for anything that is not an intact iterator made with `key`.
    pub(crate) fn decode(token: &str, key: &TokenKey) -> Option<Self> {
        let body = key.open(token, 26 + NAME_MAX + MAC_BYTES)?;
        let (&version, rest) = body.split_first()?;
        if version != ITERATOR_VERSION || rest.len() < 25 {
            return None;
        }
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?))
        };
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?))
        };
        let name_len = usize::from(rest[24]);
        let name = rest.get(25..25 + name_len)?;
        if name_len == 0 || rest.len() != 25 + name_len {
            return None;
        }
        Some(IteratorToken {
            stream_epoch: u32_at(0)?,
            shard_index: u32_at(4)?,
            position: u64_at(8)?,
            issued_ms: u64_at(16)?,
            stream_name: String::from_utf8(name.to_vec()).ok()?,
        })
    }
}

/// A sealed paging token around any serde value (ListShards, ListStreams,
/// ListStreamConsumers). JSON inside; bounded to 4 KiB.
pub(crate) fn encode_page<T: serde::Serialize>(value: &T, key: &TokenKey) -> String {
    key.seal(serde_json::to_vec(value).unwrap_or_default())
}

/// Opens a paging token; `None` when it is not one of ours.
pub(crate) fn decode_page<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &TokenKey,
) -> Option<T> {
    let body = key.open(token, 4096)?;
    serde_json::from_slice(&body).ok()
}

/// Formats a time the way Kinesis's Java service prints it in `ExpiredIteratorException`:
/// `Thu Jan 22 01:22:02 UTC 2015`.
pub fn format_java_utc(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> IteratorToken {
        IteratorToken {
            stream_name: "orders.eu-1".into(),
            stream_epoch: 7,
            shard_index: 3,
            position: 123_456_789,
            issued_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn iterators_round_trip_and_fit_kinesis_bounds() {
        let key = TokenKey::random().expect("urandom");
        let text = token().encode(&key);
        assert_eq!(IteratorToken::decode(&text, &key), Some(token()));
        let long = IteratorToken { stream_name: "x".repeat(128), ..token() };
        let text = long.encode(&key);
        assert!(text.len() <= 512, "{}", text.len());
        assert_eq!(IteratorToken::decode(&text, &key), Some(long));
    }

    #[test]
    fn any_edit_or_other_key_is_rejected() {
        let key = TokenKey::random().expect("urandom");
        let text = token().encode(&key);
        let bytes = base64::engine::general_purpose::STANDARD.decode(&text).expect("b64");
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut edited = bytes.clone();
                edited[i] ^= 1 << bit;
                let edited = base64::engine::general_purpose::STANDARD.encode(edited);
                assert_eq!(IteratorToken::decode(&edited, &key), None, "byte {i} bit {bit}");
            }
        }
        for cut in 0..text.len() {
            assert_eq!(IteratorToken::decode(&text[..cut], &key), None);
        }
        let other = TokenKey::random().expect("urandom");
        assert_eq!(IteratorToken::decode(&text, &other), None);
        for garbage in ["", "AAAA", "not base64!", &"A".repeat(10_000)] {
            assert_eq!(IteratorToken::decode(garbage, &key), None);
        }
    }

    #[test]
    fn key_hex_round_trips() {
        let key = TokenKey::random().expect("urandom");
        let again = TokenKey::from_hex(&key.to_hex()).expect("hex");
        assert_eq!(key.0, again.0);
        assert!(TokenKey::from_hex("zz").is_none());
    }

    #[test]
    fn hmac_md5_matches_rfc_2202() {
        // RFC 2202 test case 2 uses a 4-byte key; ours is 16 bytes, so use case 1:
        // key = 0x0b * 16, data = "Hi There".
        let key = TokenKey([0x0b; 16]);
        let mac = key.mac(b"Hi There");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "9294727a3638bb1c13f48ef8158bfc9d");
    }

    #[test]
    fn java_dates_match_the_kinesis_message_format() {
        assert_eq!(format_java_utc(1_421_889_722_000), "Thu Jan 22 01:22:02 UTC 2015");
        assert_eq!(format_java_utc(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(format_java_utc(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }
}
