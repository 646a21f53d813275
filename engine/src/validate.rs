//! The request rules the engine owns, and the Kinesis error messages it answers with
//! (spec §1.1, §1.6, §9). Messages follow the spec word for word where it knows them;
//! where it does not, the text is Riffle's own and says what to change.

use crate::error::Error;
use crate::routing::partition_key_units;

/// Longest stream, consumer or shard name.
pub const NAME_MAX: usize = 128;
/// Partition key length bounds, in UTF-16 code units.
pub const PARTITION_KEY_UNITS_MAX: usize = 256;
/// Largest data blob, and largest record (data + partition key bytes).
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Most records in one PutRecords call.
pub const PUT_RECORDS_MAX: usize = 500;
/// Largest PutRecords request (data + partition keys).
pub const PUT_RECORDS_BYTES_MAX: usize = 5 * 1024 * 1024;
/// GetRecords `Limit` bounds and default.
pub const GET_RECORDS_LIMIT_MAX: u32 = 10_000;
/// Most bytes of data one GetRecords call returns (at least one record is always returned).
pub const GET_RECORDS_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Shortest retention period, hours.
pub const RETENTION_HOURS_MIN: u32 = 24;
/// Longest retention period, hours (365 days).
pub const RETENTION_HOURS_MAX: u32 = 8760;
/// Retention period of a new stream, hours.
pub const RETENTION_HOURS_DEFAULT: u32 = 24;
/// Most shards in one stream.
pub const SHARDS_PER_STREAM_MAX: u32 = 10_000;
/// Most enhanced fan-out consumers per stream.
pub const CONSUMERS_MAX: usize = 20;
/// Most consumers of one stream in CREATING at once.
pub const CONSUMERS_CREATING_MAX: usize = 5;
/// Most tags on one stream.
pub const TAGS_MAX: usize = 50;
/// Most tags one AddTagsToStream or CreateStream call may set.
pub const TAGS_PER_CALL_MAX: usize = 10;

/// `1 validation error detected: Value '{v}' at '{path}' failed to satisfy constraint: {c}`.
pub(crate) fn validation(value: &str, path: &str, constraint: &str) -> Error {
    Error::Validation(format!(
        "1 validation error detected: Value {value} at '{path}' failed to satisfy constraint: {constraint}"
    ))
}

fn quoted(v: &str) -> String {
    format!("'{v}'")
}

/// Stream and consumer names: 1..128 of `[a-zA-Z0-9_.-]`.
pub(crate) fn check_name(name: &str, path: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::Validation(format!(
            "2 validation errors detected: Value '' at '{path}' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at \
             '{path}' failed to satisfy constraint: Member must have length greater than or \
             equal to 1"
        )));
    }
    if name.len() > NAME_MAX {
        return Err(validation(
            &quoted(name),
            path,
            "Member must have length less than or equal to 128",
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-') {
        return Err(validation(
            &quoted(name),
            path,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

/// Partition key 1..256 UTF-16 code units, and data at most 1 MiB. `index` is the 1-based
/// entry of a PutRecords call.
pub(crate) fn check_record(
    partition_key: &str,
    data: &[u8],
    index: Option<usize>,
) -> Result<(), Error> {
    let prefix = || index.map_or(String::new(), |i| format!("records.{i}.member."));
    let units = partition_key_units(partition_key);
    if units == 0 {
        return Err(validation(
            "''",
            &format!("{}partitionKey", prefix()),
            "Member must have length greater than or equal to 1",
        ));
    }
    if units > PARTITION_KEY_UNITS_MAX {
        return Err(validation(
            &quoted(partition_key),
            &format!("{}partitionKey", prefix()),
            "Member must have length less than or equal to 256",
        ));
    }
    if data.len() > RECORD_BYTES_MAX || data.len() + partition_key.len() > RECORD_BYTES_MAX {
        let n = data.len();
        return Err(validation(
            &format!("'java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]'"),
            &format!("{}data", prefix()),
            "Member must have length less than or equal to 1048576",
        ));
    }
    Ok(())
}

/// Tag keys and values: Unicode letters, digits, white space and `_ . / = + - @` (and `%`
/// in keys and values per the developer guide; Kinesis's AddTags rejects `%`, and so does
/// Riffle). Keys 1..128 and not starting with `aws:`, values 0..256.
pub(crate) fn check_tag(key: &str, value: Option<&str>) -> Result<(), Error> {
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_./=+-@".contains(c);
    let key_len = key.encode_utf16().count();
    if key_len == 0 || key_len > 128 {
        return Err(Error::Validation(format!(
            "1 validation error detected: Value '{key}' at 'tags' failed to satisfy constraint: \
             Map keys must satisfy constraint: [Member must have length less than or equal to \
             128, Member must have length greater than or equal to 1]"
        )));
    }
    if value.is_some_and(|v| v.encode_utf16().count() > 256) {
        return Err(Error::Validation(format!(
            "1 validation error detected: Value for key '{key}' at 'tags' failed to satisfy \
             constraint: Map value must satisfy constraint: [Member must have length less than \
             or equal to 256, Member must have length greater than or equal to 0]"
        )));
    }
    if key.starts_with("aws:") {
        return Err(Error::InvalidArgument(format!(
            "Tag key {key} starts with the reserved prefix aws:."
        )));
    }
    if !key.chars().all(allowed) || !value.unwrap_or("").chars().all(allowed) {
        return Err(Error::InvalidArgument(
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, \
             white space, _ . / = + - % @."
                .into(),
        ));
    }
    Ok(())
}

/// The messages of spec §9.2, built in one place.
pub(crate) struct Messages<'a> {
    pub account: &'a str,
    pub region: &'a str,
}

impl Messages<'_> {
    pub(crate) fn stream_not_found(&self, name: &str) -> Error {
        Error::ResourceNotFound(format!("Stream {name} under account {} not found.", self.account))
    }

    pub(crate) fn shard_not_found(&self, shard_id: &str, stream: &str) -> Error {
        Error::ResourceNotFound(format!(
            "Shard {shard_id} in stream {stream} under account {} does not exist",
            self.account
        ))
    }

    pub(crate) fn could_not_find_shard(&self, shard_id: &str, stream: &str) -> Error {
        Error::ResourceNotFound(format!(
            "Could not find shard {shard_id} in stream {stream} under account {}.",
            self.account
        ))
    }

    pub(crate) fn stream_exists(&self, name: &str) -> Error {
        Error::ResourceInUse(format!(
            "Stream {name} under account {} already exists.",
            self.account
        ))
    }

    pub(crate) fn not_active(&self, name: &str, status: &str) -> Error {
        Error::ResourceInUse(format!(
            "Stream {name} under account {} not ACTIVE, instead in state {status}",
            self.account
        ))
    }

    pub(crate) fn shard_limit(&self, open: u64, limit: u64, additional: u64) -> Error {
        Error::LimitExceeded(format!(
            "This request would exceed the shard limit for the account {} in {}. Current shard \
             count for the account: {open}. Limit: {limit}. Number of additional shards that \
             would have resulted from this request: {additional}. Refer to the AWS Service \
             Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) \
             for current limits and how to request higher limits.",
            self.account, self.region
        ))
    }

    pub(crate) fn throttled(&self, shard_id: &str, stream: &str) -> Error {
        Error::ProvisionedThroughputExceeded(self.throttled_text(shard_id, stream))
    }

    pub(crate) fn throttled_text(&self, shard_id: &str, stream: &str) -> String {
        format!(
            "Rate exceeded for shard {shard_id} in stream {stream} under account {}.",
            self.account
        )
    }

    pub(crate) fn consumer_not_found(&self, consumer: &str, stream: &str) -> Error {
        Error::ResourceNotFound(format!(
            "Consumer {consumer} under stream {stream} under account {} not found.",
            self.account
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern_and_length() {
        assert!(check_name("orders_v2.eu-1", "streamName").is_ok());
        assert!(check_name(&"a".repeat(128), "streamName").is_ok());
        let long = check_name(&"a".repeat(129), "streamName").expect_err("refused");
        assert!(long.to_string().contains("Member must have length less than or equal to 128"));
        let bad = check_name("a b", "streamName").expect_err("refused");
        assert_eq!(
            bad.to_string(),
            "1 validation error detected: Value 'a b' at 'streamName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        );
        let empty = check_name("", "streamName").expect_err("refused");
        assert!(empty.to_string().starts_with("2 validation errors detected"));
        assert_eq!(empty.kinesis_name(), "ValidationException");
    }

    #[test]
    fn partition_keys_count_utf16_units_and_records_count_key_bytes() {
        assert!(check_record(&"é".repeat(256), b"", None).is_ok());
        assert!(check_record(&"😀".repeat(128), b"", None).is_ok());
        assert!(check_record(&"😀".repeat(129), b"", None).is_err());
        assert!(check_record("", b"x", None).is_err());
        let data = vec![0u8; RECORD_BYTES_MAX - 1];
        assert!(check_record("k", &data, None).is_ok(), "exactly 1 MiB with the key");
        let e = check_record("kk", &data, Some(3)).expect_err("refused");
        assert!(e.to_string().contains("'records.3.member.data'"), "{e}");
        let data = vec![0u8; RECORD_BYTES_MAX + 1];
        assert!(check_record("k", &data, None)
            .expect_err("refused")
            .to_string()
            .contains("java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]"));
    }

    #[test]
    fn tags_reject_reserved_prefixes_and_odd_characters() {
        assert!(check_tag("team name_1/x=y+z-@", Some("pay ments")).is_ok());
        assert!(check_tag("aws:cost", Some("x")).is_err());
        assert!(check_tag("a%b", Some("x")).is_err());
        assert!(check_tag("k", Some("v!")).is_err());
        assert!(check_tag("", None).is_err());
        assert!(check_tag(&"k".repeat(129), None).is_err());
        assert!(check_tag("k", Some(&"v".repeat(257))).is_err());
    }
}
