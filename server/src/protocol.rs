//! The binary protocol, version 1: handshake, frames, and every message, as specified in
//! `server/PROTOCOL.md` (the tests below pin that page's examples). Shared by the server
//! and the client.
//!
//! Decoding never trusts a length: every length and count is checked against the bytes
//! left before anything is allocated, frames are bounded by `max_frame`, and any input
//! yields a value or a [`ProtocolError`], never a panic.

use bytes::{Buf, Bytes, BytesMut};

/// Magic of both hellos.
pub const MAGIC: [u8; 4] = *b"RFLP";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Size of either hello.
pub const HELLO_BYTES: usize = 16;
/// Frame header: length, request id, opcode, flags.
pub const FRAME_HEADER_BYTES: usize = 16;
/// Default (and largest allowed) frame size, length field included.
pub const MAX_FRAME_DEFAULT: u32 = 16 * 1024 * 1024;
/// Smallest `max_frame` a peer may announce.
pub const MAX_FRAME_MIN: u32 = 64 * 1024;

/// Flag: the body is an error.
pub const FLAG_ERROR: u16 = 1;
/// Flag: a subscription event.
pub const FLAG_EVENT: u16 = 2;
/// Flag: the last frame for this request id.
pub const FLAG_END: u16 = 4;
const FLAGS_KNOWN: u16 = FLAG_ERROR | FLAG_EVENT | FLAG_END;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The input ended inside a value.
    #[error("truncated: {0} needs more bytes than the frame has")]
    Truncated(&'static str),
    /// A value is not allowed (bad UTF-8, bad enum value, trailing bytes, ...).
    #[error("malformed: {0}")]
    Malformed(String),
    /// A frame longer than the agreed maximum.
    #[error("frame of {length} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Its length field plus 4.
        length: u64,
        /// The maximum.
        max: u32,
    },
    /// An opcode this version does not define.
    #[error("unknown opcode {0:#06x}")]
    UnknownOpcode(u16),
    /// Flag bits this version does not define.
    #[error("unknown flag bits {0:#06x}")]
    UnknownFlags(u16),
    /// A hello with the wrong magic or reserved bits.
    #[error("bad hello: {0}")]
    BadHello(&'static str),
}

type Result<T, E = ProtocolError> = std::result::Result<T, E>;

// ---- handshake ----

/// The client's first 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello {
    /// Lowest version the client speaks.
    pub min_version: u16,
    /// Highest version the client speaks.
    pub max_version: u16,
    /// Largest frame the client accepts.
    pub max_frame: u32,
}

impl ClientHello {
    /// The hello of a client speaking only this version.
    pub fn current() -> Self {
        ClientHello { min_version: VERSION, max_version: VERSION, max_frame: MAX_FRAME_DEFAULT }
    }

    /// Its bytes.
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0u8; HELLO_BYTES];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.min_version.to_le_bytes());
        out[6..8].copy_from_slice(&self.max_version.to_le_bytes());
        out[8..12].copy_from_slice(&self.max_frame.to_le_bytes());
        out
    }

    /// Parses a client hello.
    pub fn decode(bytes: &[u8; HELLO_BYTES]) -> Result<Self> {
        if bytes[0..4] != MAGIC {
            return Err(ProtocolError::BadHello("magic is not RFLP"));
        }
        if bytes[12..16] != [0; 4] {
            return Err(ProtocolError::BadHello("reserved bytes are not zero"));
        }
        let hello = ClientHello {
            min_version: u16::from_le_bytes([bytes[4], bytes[5]]),
            max_version: u16::from_le_bytes([bytes[6], bytes[7]]),
            max_frame: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        };
        if hello.max_frame < MAX_FRAME_MIN || hello.min_version > hello.max_version {
            return Err(ProtocolError::BadHello("max_frame below 65536 or versions reversed"));
        }
        Ok(hello)
    }
}

/// Server hello status: accepted.
pub const HELLO_OK: u16 = 0;
/// Server hello status: no common version.
pub const HELLO_NO_VERSION: u16 = 1;
/// Server hello status: the client hello was malformed.
pub const HELLO_BAD: u16 = 2;

/// The server's answer to a client hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    /// The version chosen, 0 if none.
    pub version: u16,
    /// [`HELLO_OK`], [`HELLO_NO_VERSION`] or [`HELLO_BAD`].
    pub status: u16,
    /// Largest frame the server accepts from this client.
    pub max_frame: u32,
    /// Most unanswered requests at once.
    pub max_in_flight: u16,
    /// Most open subscriptions at once.
    pub max_subscriptions: u16,
}

impl ServerHello {
    /// The server's answer to `client` given its own limits.
    pub fn answer(
        client: Result<ClientHello>,
        max_frame: u32,
        max_in_flight: u16,
        max_subscriptions: u16,
    ) -> Self {
        let (version, status) = match client {
            Err(_) => (0, HELLO_BAD),
            Ok(c) if c.min_version <= VERSION && VERSION <= c.max_version => (VERSION, HELLO_OK),
            Ok(_) => (0, HELLO_NO_VERSION),
        };
        ServerHello { version, status, max_frame, max_in_flight, max_subscriptions }
    }

    /// Its bytes.
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0u8; HELLO_BYTES];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&self.status.to_le_bytes());
        out[8..12].copy_from_slice(&self.max_frame.to_le_bytes());
        out[12..14].copy_from_slice(&self.max_in_flight.to_le_bytes());
        out[14..16].copy_from_slice(&self.max_subscriptions.to_le_bytes());
        out
    }

    /// Parses a server hello.
    pub fn decode(bytes: &[u8; HELLO_BYTES]) -> Result<Self> {
        if bytes[0..4] != MAGIC {
            return Err(ProtocolError::BadHello("magic is not RFLP"));
        }
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        Ok(ServerHello {
            version: u16_at(4),
            status: u16_at(6),
            max_frame: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            max_in_flight: u16_at(12),
            max_subscriptions: u16_at(14),
        })
    }
}

// ---- frames ----

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The client's request id.
    pub request_id: u64,
    /// The operation.
    pub opcode: u16,
    /// [`FLAG_ERROR`], [`FLAG_EVENT`], [`FLAG_END`].
    pub flags: u16,
    /// The body.
    pub body: Bytes,
}

/// Appends a frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, request_id: u64, opcode: u16, flags: u16, body: &[u8]) {
    encode_frame_header(out, request_id, opcode, flags, body.len());
    out.extend_from_slice(body);
}

/// Appends the 16-byte header of a frame whose body is `body_len` bytes (for bodies written
/// separately, such as record batches sent straight from a segment).
pub fn encode_frame_header(
    out: &mut Vec<u8>,
    request_id: u64,
    opcode: u16,
    flags: u16,
    body_len: usize,
) {
    let length = (FRAME_HEADER_BYTES - 4 + body_len) as u32;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&opcode.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
}

/// Splits a byte stream into frames, holding at most one partial frame.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame: u32,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame` bytes (length field included).
    pub fn new(max_frame: u32) -> Self {
        FrameDecoder { buf: BytesMut::new(), max_frame }
    }

    /// Adds received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held, not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` if more bytes are needed. An error means the stream
    /// is unusable (the connection must be closed).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let total = u64::from(length) + 4;
        if total > u64::from(self.max_frame) {
            return Err(ProtocolError::FrameTooLarge { length: total, max: self.max_frame });
        }
        if (length as usize) < FRAME_HEADER_BYTES - 4 {
            return Err(ProtocolError::Malformed(format!("frame length {length} below 12")));
        }
        if self.buf.len() < total as usize {
            self.buf.reserve(total as usize - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total as usize);
        frame.advance(4);
        let request_id = frame.get_u64_le();
        let opcode = frame.get_u16_le();
        let flags = frame.get_u16_le();
        if flags & !FLAGS_KNOWN != 0 {
            return Err(ProtocolError::UnknownFlags(flags));
        }
        Ok(Some(Frame { request_id, opcode, flags, body: frame.freeze() }))
    }
}

// ---- primitives ----

/// Appends protocol primitives.
#[derive(Debug, Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u128(&mut self, v: u128) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    /// Strings longer than 65,535 bytes are cut at a character boundary (no protocol string
    /// is allowed to be that long; the peer's validation then reports it).
    fn str(&mut self, v: &str) -> &mut Self {
        let mut end = v.len().min(u16::MAX as usize);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.0.extend_from_slice(&v.as_bytes()[..end]);
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    fn opt<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x);
                self
            }
        }
    }
    fn list<T>(&mut self, v: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.u32(v.len() as u32);
        for x in v {
            f(self, x);
        }
        self
    }
}

/// Reads protocol primitives from a body, checking every length first.
#[derive(Debug)]
pub struct Dec<'a> {
    body: &'a Bytes,
    at: usize,
}

impl<'a> Dec<'a> {
    /// A reader over `body`.
    pub fn new(body: &'a Bytes) -> Self {
        Dec { body, at: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or(ProtocolError::Truncated(what))?;
        let out = &self.body[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
    fn u128(&mut self, what: &'static str) -> Result<u128> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16, what)?);
        Ok(u128::from_le_bytes(a))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(ProtocolError::Malformed(format!("{what}: bool {v}"))),
        }
    }
    fn str(&mut self, what: &'static str) -> Result<String> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| ProtocolError::Malformed(format!("{what}: not UTF-8")))
    }
    /// A `bytes` value as a slice of the body (no copy).
    fn bytes(&mut self, what: &'static str) -> Result<Bytes> {
        let n = self.u32(what)? as usize;
        let start = self.at;
        self.take(n, what)?;
        Ok(self.body.slice(start..start + n))
    }
    fn opt<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => f(self).map(Some),
            v => Err(ProtocolError::Malformed(format!("{what}: option tag {v}"))),
        }
    }
    fn list<T>(
        &mut self,
        what: &'static str,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = self.u32(what)? as usize;
        // Every element takes at least one byte: a count beyond the bytes left is a lie,
        // caught before the allocation it would ask for.
        if n > self.body.len() - self.at {
            return Err(ProtocolError::Truncated(what));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }
    /// Fails if bytes are left.
    pub fn finish(&self) -> Result<()> {
        if self.at != self.body.len() {
            return Err(ProtocolError::Malformed(format!(
                "{} trailing bytes after the body",
                self.body.len() - self.at
            )));
        }
        Ok(())
    }
}

// ---- messages ----

/// Opcodes (section 5 of PROTOCOL.md).
pub mod op {
    #![allow(missing_docs)]
    pub const CREATE_STREAM: u16 = 0x0001;
    pub const DELETE_STREAM: u16 = 0x0002;
    pub const DESCRIBE_STREAM_SUMMARY: u16 = 0x0003;
    pub const LIST_STREAMS: u16 = 0x0004;
    pub const DESCRIBE_STREAM: u16 = 0x0005;
    pub const LIST_SHARDS: u16 = 0x0006;
    pub const PUT_RECORD: u16 = 0x0010;
    pub const PUT_RECORDS: u16 = 0x0011;
    pub const GET_SHARD_ITERATOR: u16 = 0x0020;
    pub const GET_RECORDS: u16 = 0x0021;
    pub const SPLIT_SHARD: u16 = 0x0030;
    pub const MERGE_SHARDS: u16 = 0x0031;
    pub const UPDATE_SHARD_COUNT: u16 = 0x0032;
    pub const INCREASE_RETENTION: u16 = 0x0033;
    pub const DECREASE_RETENTION: u16 = 0x0034;
    pub const REGISTER_CONSUMER: u16 = 0x0040;
    pub const DEREGISTER_CONSUMER: u16 = 0x0041;
    pub const DESCRIBE_CONSUMER: u16 = 0x0042;
    pub const LIST_CONSUMERS: u16 = 0x0043;
    pub const SUBSCRIBE_TO_SHARD: u16 = 0x0044;
    pub const CREDIT: u16 = 0x0045;
}

/// A ListShards filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// All shards not expired.
    FromTrimHorizon,
    /// Shards open at the trim horizon.
    AtTrimHorizon,
    /// Open shards.
    AtLatest,
    /// Shards after this id.
    AfterShardId(String),
    /// Shards open at this time (ms).
    AtTimestamp(u64),
    /// Shards closed at or after this time, and open ones.
    FromTimestamp(u64),
}

/// A record of a PutRecords request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Partition key.
    pub partition_key: String,
    /// Explicit hash key.
    pub explicit_hash_key: Option<u128>,
    /// Data.
    pub data: Bytes,
}

/// A request body, by opcode. Field meanings are the Kinesis ones (see PROTOCOL.md).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    CreateStream {
        stream: String,
        shard_count: Option<u32>,
        on_demand: bool,
    },
    DeleteStream {
        stream: String,
        enforce_consumer_deletion: bool,
    },
    DescribeStreamSummary {
        stream: String,
    },
    ListStreams {
        limit: Option<u32>,
        exclusive_start_stream_name: Option<String>,
        next_token: Option<String>,
    },
    DescribeStream {
        stream: String,
        limit: Option<u32>,
        exclusive_start_shard_id: Option<String>,
    },
    ListShards {
        stream: Option<String>,
        next_token: Option<String>,
        exclusive_start_shard_id: Option<String>,
        max_results: Option<u32>,
        filter: Option<Filter>,
    },
    PutRecord {
        stream: String,
        partition_key: String,
        explicit_hash_key: Option<u128>,
        sequence_number_for_ordering: Option<u128>,
        data: Bytes,
    },
    PutRecords {
        stream: String,
        records: Vec<Entry>,
    },
    GetShardIterator {
        stream: String,
        shard_id: String,
        iterator_type: u8,
        starting_sequence_number: Option<u128>,
        timestamp_ms: Option<u64>,
    },
    GetRecords {
        shard_iterator: String,
        limit: Option<u32>,
    },
    SplitShard {
        stream: String,
        shard_id: String,
        new_starting_hash_key: u128,
    },
    MergeShards {
        stream: String,
        shard_id: String,
        adjacent_shard_id: String,
    },
    UpdateShardCount {
        stream: String,
        target_shard_count: u32,
    },
    IncreaseRetention {
        stream: String,
        hours: u32,
    },
    DecreaseRetention {
        stream: String,
        hours: u32,
    },
    RegisterConsumer {
        stream: String,
        consumer_name: String,
    },
    DeregisterConsumer {
        stream: String,
        consumer_name: String,
    },
    DescribeConsumer {
        stream: String,
        consumer_name: String,
    },
    ListConsumers {
        stream: String,
        max_results: Option<u32>,
        next_token: Option<String>,
    },
    SubscribeToShard {
        stream: String,
        consumer_name: String,
        shard_id: String,
        iterator_type: u8,
        starting_sequence_number: Option<u128>,
        timestamp_ms: Option<u64>,
        credit_bytes: u32,
    },
    Credit {
        subscription_request_id: u64,
        bytes: u32,
    },
}

fn enc_filter(e: &mut Enc, f: &Filter) {
    match f {
        Filter::FromTrimHorizon => e.u8(0),
        Filter::AtTrimHorizon => e.u8(1),
        Filter::AtLatest => e.u8(2),
        Filter::AfterShardId(id) => e.u8(3).str(id),
        Filter::AtTimestamp(t) => e.u8(4).u64(*t),
        Filter::FromTimestamp(t) => e.u8(5).u64(*t),
    };
}

fn dec_filter(d: &mut Dec<'_>) -> Result<Filter> {
    Ok(match d.u8("filter kind")? {
        0 => Filter::FromTrimHorizon,
        1 => Filter::AtTrimHorizon,
        2 => Filter::AtLatest,
        3 => Filter::AfterShardId(d.str("filter shard id")?),
        4 => Filter::AtTimestamp(d.u64("filter timestamp")?),
        5 => Filter::FromTimestamp(d.u64("filter timestamp")?),
        v => return Err(ProtocolError::Malformed(format!("filter kind {v}"))),
    })
}

fn dec_iterator_type(d: &mut Dec<'_>) -> Result<u8> {
    match d.u8("iterator type")? {
        v @ 0..=4 => Ok(v),
        v => Err(ProtocolError::Malformed(format!("iterator type {v}"))),
    }
}

impl Request {
    /// Its opcode.
    pub fn opcode(&self) -> u16 {
        match self {
            Request::CreateStream { .. } => op::CREATE_STREAM,
            Request::DeleteStream { .. } => op::DELETE_STREAM,
            Request::DescribeStreamSummary { .. } => op::DESCRIBE_STREAM_SUMMARY,
            Request::ListStreams { .. } => op::LIST_STREAMS,
            Request::DescribeStream { .. } => op::DESCRIBE_STREAM,
            Request::ListShards { .. } => op::LIST_SHARDS,
            Request::PutRecord { .. } => op::PUT_RECORD,
            Request::PutRecords { .. } => op::PUT_RECORDS,
            Request::GetShardIterator { .. } => op::GET_SHARD_ITERATOR,
            Request::GetRecords { .. } => op::GET_RECORDS,
            Request::SplitShard { .. } => op::SPLIT_SHARD,
            Request::MergeShards { .. } => op::MERGE_SHARDS,
            Request::UpdateShardCount { .. } => op::UPDATE_SHARD_COUNT,
            Request::IncreaseRetention { .. } => op::INCREASE_RETENTION,
            Request::DecreaseRetention { .. } => op::DECREASE_RETENTION,
            Request::RegisterConsumer { .. } => op::REGISTER_CONSUMER,
            Request::DeregisterConsumer { .. } => op::DEREGISTER_CONSUMER,
            Request::DescribeConsumer { .. } => op::DESCRIBE_CONSUMER,
            Request::ListConsumers { .. } => op::LIST_CONSUMERS,
            Request::SubscribeToShard { .. } => op::SUBSCRIBE_TO_SHARD,
            Request::Credit { .. } => op::CREDIT,
        }
    }

    /// Its body.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            Request::CreateStream { stream, shard_count, on_demand } => {
                e.str(stream).opt(shard_count, |e, v| {
                    e.u32(*v);
                });
                e.u8(u8::from(*on_demand));
            }
            Request::DeleteStream { stream, enforce_consumer_deletion } => {
                e.str(stream).bool(*enforce_consumer_deletion);
            }
            Request::DescribeStreamSummary { stream } => {
                e.str(stream);
            }
            Request::ListStreams { limit, exclusive_start_stream_name, next_token } => {
                e.opt(limit, |e, v| {
                    e.u32(*v);
                })
                .opt(exclusive_start_stream_name, |e, v| {
                    e.str(v);
                })
                .opt(next_token, |e, v| {
                    e.str(v);
                });
            }
            Request::DescribeStream { stream, limit, exclusive_start_shard_id } => {
                e.str(stream)
                    .opt(limit, |e, v| {
                        e.u32(*v);
                    })
                    .opt(exclusive_start_shard_id, |e, v| {
                        e.str(v);
                    });
            }
            Request::ListShards {
                stream,
                next_token,
                exclusive_start_shard_id,
                max_results,
                filter,
            } => {
                e.opt(stream, |e, v| {
                    e.str(v);
                })
                .opt(next_token, |e, v| {
                    e.str(v);
                })
                .opt(exclusive_start_shard_id, |e, v| {
                    e.str(v);
                })
                .opt(max_results, |e, v| {
                    e.u32(*v);
                })
                .opt(filter, enc_filter);
            }
            Request::PutRecord {
                stream,
                partition_key,
                explicit_hash_key,
                sequence_number_for_ordering,
                data,
            } => {
                e.str(stream)
                    .str(partition_key)
                    .opt(explicit_hash_key, |e, v| {
                        e.u128(*v);
                    })
                    .opt(sequence_number_for_ordering, |e, v| {
                        e.u128(*v);
                    })
                    .bytes(data);
            }
            Request::PutRecords { stream, records } => {
                e.str(stream).list(records, |e, r| {
                    e.str(&r.partition_key)
                        .opt(&r.explicit_hash_key, |e, v| {
                            e.u128(*v);
                        })
                        .bytes(&r.data);
                });
            }
            Request::GetShardIterator {
                stream,
                shard_id,
                iterator_type,
                starting_sequence_number,
                timestamp_ms,
            } => {
                e.str(stream)
                    .str(shard_id)
                    .u8(*iterator_type)
                    .opt(starting_sequence_number, |e, v| {
                        e.u128(*v);
                    })
                    .opt(timestamp_ms, |e, v| {
                        e.u64(*v);
                    });
            }
            Request::GetRecords { shard_iterator, limit } => {
                e.str(shard_iterator).opt(limit, |e, v| {
                    e.u32(*v);
                });
            }
            Request::SplitShard { stream, shard_id, new_starting_hash_key } => {
                e.str(stream).str(shard_id).u128(*new_starting_hash_key);
            }
            Request::MergeShards { stream, shard_id, adjacent_shard_id } => {
                e.str(stream).str(shard_id).str(adjacent_shard_id);
            }
            Request::UpdateShardCount { stream, target_shard_count } => {
                e.str(stream).u32(*target_shard_count);
            }
            Request::IncreaseRetention { stream, hours }
            | Request::DecreaseRetention { stream, hours } => {
                e.str(stream).u32(*hours);
            }
            Request::RegisterConsumer { stream, consumer_name }
            | Request::DeregisterConsumer { stream, consumer_name }
            | Request::DescribeConsumer { stream, consumer_name } => {
                e.str(stream).str(consumer_name);
            }
            Request::ListConsumers { stream, max_results, next_token } => {
                e.str(stream)
                    .opt(max_results, |e, v| {
                        e.u32(*v);
                    })
                    .opt(next_token, |e, v| {
                        e.str(v);
                    });
            }
            Request::SubscribeToShard {
                stream,
                consumer_name,
                shard_id,
                iterator_type,
                starting_sequence_number,
                timestamp_ms,
                credit_bytes,
            } => {
                e.str(stream)
                    .str(consumer_name)
                    .str(shard_id)
                    .u8(*iterator_type)
                    .opt(starting_sequence_number, |e, v| {
                        e.u128(*v);
                    })
                    .opt(timestamp_ms, |e, v| {
                        e.u64(*v);
                    })
                    .u32(*credit_bytes);
            }
            Request::Credit { subscription_request_id, bytes } => {
                e.u64(*subscription_request_id).u32(*bytes);
            }
        }
        e.0
    }

    /// A whole request frame.
    pub fn encode_frame(&self, request_id: u64) -> Vec<u8> {
        let body = self.encode_body();
        let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
        encode_frame(&mut out, request_id, self.opcode(), 0, &body);
        out
    }

    /// Decodes the body of a request with `opcode`.
    pub fn decode(opcode: u16, body: &Bytes) -> Result<Request> {
        let mut d = Dec::new(body);
        let r = match opcode {
            op::CREATE_STREAM => Request::CreateStream {
                stream: d.str("stream")?,
                shard_count: d.opt("shard_count", |d| d.u32("shard_count"))?,
                on_demand: match d.u8("mode")? {
                    0 => false,
                    1 => true,
                    v => return Err(ProtocolError::Malformed(format!("stream mode {v}"))),
                },
            },
            op::DELETE_STREAM => Request::DeleteStream {
                stream: d.str("stream")?,
                enforce_consumer_deletion: d.bool("enforce_consumer_deletion")?,
            },
            op::DESCRIBE_STREAM_SUMMARY => {
                Request::DescribeStreamSummary { stream: d.str("stream")? }
            }
            op::LIST_STREAMS => Request::ListStreams {
                limit: d.opt("limit", |d| d.u32("limit"))?,
                exclusive_start_stream_name: d
                    .opt("exclusive_start", |d| d.str("exclusive_start"))?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::DESCRIBE_STREAM => Request::DescribeStream {
                stream: d.str("stream")?,
                limit: d.opt("limit", |d| d.u32("limit"))?,
                exclusive_start_shard_id: d
                    .opt("exclusive_start_shard_id", |d| d.str("exclusive_start_shard_id"))?,
            },
            op::LIST_SHARDS => Request::ListShards {
                stream: d.opt("stream", |d| d.str("stream"))?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
                exclusive_start_shard_id: d
                    .opt("exclusive_start_shard_id", |d| d.str("exclusive_start_shard_id"))?,
                max_results: d.opt("max_results", |d| d.u32("max_results"))?,
                filter: d.opt("filter", dec_filter)?,
            },
            op::PUT_RECORD => Request::PutRecord {
                stream: d.str("stream")?,
                partition_key: d.str("partition_key")?,
                explicit_hash_key: d.opt("explicit_hash_key", |d| d.u128("explicit_hash_key"))?,
                sequence_number_for_ordering: d.opt("ordering", |d| d.u128("ordering"))?,
                data: d.bytes("data")?,
            },
            op::PUT_RECORDS => Request::PutRecords {
                stream: d.str("stream")?,
                records: d.list("records", |d| {
                    Ok(Entry {
                        partition_key: d.str("partition_key")?,
                        explicit_hash_key: d
                            .opt("explicit_hash_key", |d| d.u128("explicit_hash_key"))?,
                        data: d.bytes("data")?,
                    })
                })?,
            },
            op::GET_SHARD_ITERATOR => Request::GetShardIterator {
                stream: d.str("stream")?,
                shard_id: d.str("shard_id")?,
                iterator_type: dec_iterator_type(&mut d)?,
                starting_sequence_number: d
                    .opt("starting_sequence_number", |d| d.u128("starting_sequence_number"))?,
                timestamp_ms: d.opt("timestamp", |d| d.u64("timestamp"))?,
            },
            op::GET_RECORDS => Request::GetRecords {
                shard_iterator: d.str("shard_iterator")?,
                limit: d.opt("limit", |d| d.u32("limit"))?,
            },
            op::SPLIT_SHARD => Request::SplitShard {
                stream: d.str("stream")?,
                shard_id: d.str("shard_id")?,
                new_starting_hash_key: d.u128("new_starting_hash_key")?,
            },
            op::MERGE_SHARDS => Request::MergeShards {
                stream: d.str("stream")?,
                shard_id: d.str("shard_id")?,
                adjacent_shard_id: d.str("adjacent_shard_id")?,
            },
            op::UPDATE_SHARD_COUNT => Request::UpdateShardCount {
                stream: d.str("stream")?,
                target_shard_count: d.u32("target_shard_count")?,
            },
            op::INCREASE_RETENTION => {
                Request::IncreaseRetention { stream: d.str("stream")?, hours: d.u32("hours")? }
            }
            op::DECREASE_RETENTION => {
                Request::DecreaseRetention { stream: d.str("stream")?, hours: d.u32("hours")? }
            }
            op::REGISTER_CONSUMER => Request::RegisterConsumer {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
            },
            op::DEREGISTER_CONSUMER => Request::DeregisterConsumer {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
            },
            op::DESCRIBE_CONSUMER => Request::DescribeConsumer {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
            },
            op::LIST_CONSUMERS => Request::ListConsumers {
                stream: d.str("stream")?,
                max_results: d.opt("max_results", |d| d.u32("max_results"))?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::SUBSCRIBE_TO_SHARD => Request::SubscribeToShard {
                stream: d.str("stream")?,
                consumer_name: d.str("consumer_name")?,
                shard_id: d.str("shard_id")?,
                iterator_type: dec_iterator_type(&mut d)?,
                starting_sequence_number: d
                    .opt("starting_sequence_number", |d| d.u128("starting_sequence_number"))?,
                timestamp_ms: d.opt("timestamp", |d| d.u64("timestamp"))?,
                credit_bytes: d.u32("credit_bytes")?,
            },
            op::CREDIT => Request::Credit {
                subscription_request_id: d.u64("subscription_request_id")?,
                bytes: d.u32("bytes")?,
            },
            other => return Err(ProtocolError::UnknownOpcode(other)),
        };
        d.finish()?;
        Ok(r)
    }
}

/// DescribeStreamSummary's body (also the head of DescribeStream's).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub name: String,
    pub arn: String,
    /// 0 CREATING, 1 ACTIVE, 2 UPDATING, 3 DELETING.
    pub status: u8,
    /// 0 provisioned, 1 on-demand.
    pub mode: u8,
    pub retention_hours: u32,
    pub created_ms: u64,
    pub open_shard_count: u32,
    pub consumer_count: u32,
}

/// A shard as listed.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub shard_id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
    pub starting_sequence_number: u128,
    pub ending_sequence_number: Option<u128>,
}

/// A child shard reported at the end of a closed shard.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
}

/// A consumer.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub arn: String,
    /// 0 CREATING, 1 ACTIVE, 2 DELETING.
    pub status: u8,
    pub created_ms: u64,
}

/// One result of a PutRecords response.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    Ok { shard_id: String, sequence_number: u128 },
    Failed { error_code: String, error_message: String },
}

/// GetRecords' body and a subscription event's: record batches as stored, and what to
/// deliver of them (PROTOCOL.md section 5, "Reads").
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    pub shard_index: u32,
    pub stream_epoch: u32,
    pub from_position: u64,
    pub to_position: u64,
    pub min_timestamp_ms: u64,
    pub millis_behind_latest: u64,
    pub next: Option<String>,
    pub child_shards: Vec<Child>,
    pub batches: Bytes,
}

impl Records {
    /// The body without the batch bytes, ending with their `u32` length: the server writes
    /// this, then the batches straight from the segment.
    pub fn encode_head(&self) -> Vec<u8> {
        self.encode_head_for(self.batches.len())
    }

    /// [`Records::encode_head`] for batches held elsewhere, `batches_len` bytes in all (the
    /// `batches` field is ignored).
    pub fn encode_head_for(&self, batches_len: usize) -> Vec<u8> {
        let mut e = Enc::default();
        e.u32(self.shard_index)
            .u32(self.stream_epoch)
            .u64(self.from_position)
            .u64(self.to_position)
            .u64(self.min_timestamp_ms)
            .u64(self.millis_behind_latest)
            .opt(&self.next, |e, v| {
                e.str(v);
            })
            .list(&self.child_shards, |e, c| {
                e.str(&c.shard_id)
                    .list(&c.parent_shards, |e, p| {
                        e.str(p);
                    })
                    .u128(c.starting_hash_key)
                    .u128(c.ending_hash_key);
            })
            .u32(batches_len as u32);
        e.0
    }

    fn decode(d: &mut Dec<'_>) -> Result<Records> {
        Ok(Records {
            shard_index: d.u32("shard_index")?,
            stream_epoch: d.u32("stream_epoch")?,
            from_position: d.u64("from_position")?,
            to_position: d.u64("to_position")?,
            min_timestamp_ms: d.u64("min_timestamp")?,
            millis_behind_latest: d.u64("millis_behind_latest")?,
            next: d.opt("next", |d| d.str("next"))?,
            child_shards: d.list("child_shards", |d| {
                Ok(Child {
                    shard_id: d.str("child shard_id")?,
                    parent_shards: d.list("parent_shards", |d| d.str("parent"))?,
                    starting_hash_key: d.u128("starting_hash_key")?,
                    ending_hash_key: d.u128("ending_hash_key")?,
                })
            })?,
            batches: d.bytes("batches")?,
        })
    }
}

/// A response body, by opcode.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An error (`FLAG_ERROR`): the Kinesis exception name and message.
    Error {
        code: String,
        message: String,
    },
    /// Operations without output.
    Empty,
    Summary(Summary),
    ListStreams {
        names: Vec<String>,
        has_more: bool,
        next_token: Option<String>,
    },
    DescribeStream {
        summary: Summary,
        shards: Vec<Shard>,
        has_more_shards: bool,
    },
    ListShards {
        shards: Vec<Shard>,
        next_token: Option<String>,
    },
    PutRecord {
        shard_id: String,
        sequence_number: u128,
    },
    PutRecords {
        failed_record_count: u32,
        results: Vec<PutResult>,
    },
    ShardIterator(String),
    Records(Records),
    UpdateShardCount {
        current_shard_count: u32,
        target_shard_count: u32,
    },
    Consumer(Consumer),
    ListConsumers {
        consumers: Vec<Consumer>,
        next_token: Option<String>,
    },
}

fn enc_summary(e: &mut Enc, s: &Summary) {
    e.str(&s.name)
        .str(&s.arn)
        .u8(s.status)
        .u8(s.mode)
        .u32(s.retention_hours)
        .u64(s.created_ms)
        .u32(s.open_shard_count)
        .u32(s.consumer_count);
}

fn dec_summary(d: &mut Dec<'_>) -> Result<Summary> {
    Ok(Summary {
        name: d.str("name")?,
        arn: d.str("arn")?,
        status: d.u8("status")?,
        mode: d.u8("mode")?,
        retention_hours: d.u32("retention_hours")?,
        created_ms: d.u64("created")?,
        open_shard_count: d.u32("open_shard_count")?,
        consumer_count: d.u32("consumer_count")?,
    })
}

fn enc_shard(e: &mut Enc, s: &Shard) {
    e.str(&s.shard_id)
        .opt(&s.parent, |e, v| {
            e.str(v);
        })
        .opt(&s.adjacent_parent, |e, v| {
            e.str(v);
        })
        .u128(s.starting_hash_key)
        .u128(s.ending_hash_key)
        .u128(s.starting_sequence_number)
        .opt(&s.ending_sequence_number, |e, v| {
            e.u128(*v);
        });
}

fn dec_shard(d: &mut Dec<'_>) -> Result<Shard> {
    Ok(Shard {
        shard_id: d.str("shard_id")?,
        parent: d.opt("parent", |d| d.str("parent"))?,
        adjacent_parent: d.opt("adjacent_parent", |d| d.str("adjacent_parent"))?,
        starting_hash_key: d.u128("starting_hash_key")?,
        ending_hash_key: d.u128("ending_hash_key")?,
        starting_sequence_number: d.u128("starting_sequence_number")?,
        ending_sequence_number: d
            .opt("ending_sequence_number", |d| d.u128("ending_sequence_number"))?,
    })
}

fn enc_consumer(e: &mut Enc, c: &Consumer) {
    e.str(&c.name).str(&c.arn).u8(c.status).u64(c.created_ms);
}

fn dec_consumer(d: &mut Dec<'_>) -> Result<Consumer> {
    Ok(Consumer {
        name: d.str("consumer name")?,
        arn: d.str("consumer arn")?,
        status: d.u8("consumer status")?,
        created_ms: d.u64("consumer created")?,
    })
}

impl Response {
    /// Its body.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            Response::Error { code, message } => {
                e.str(code).str(message);
            }
            Response::Empty => {}
            Response::Summary(s) => enc_summary(&mut e, s),
            Response::ListStreams { names, has_more, next_token } => {
                e.list(names, |e, n| {
                    e.str(n);
                })
                .bool(*has_more)
                .opt(next_token, |e, v| {
                    e.str(v);
                });
            }
            Response::DescribeStream { summary, shards, has_more_shards } => {
                enc_summary(&mut e, summary);
                e.list(shards, enc_shard).bool(*has_more_shards);
            }
            Response::ListShards { shards, next_token } => {
                e.list(shards, enc_shard).opt(next_token, |e, v| {
                    e.str(v);
                });
            }
            Response::PutRecord { shard_id, sequence_number } => {
                e.str(shard_id).u128(*sequence_number);
            }
            Response::PutRecords { failed_record_count, results } => {
                e.u32(*failed_record_count).list(results, |e, r| match r {
                    PutResult::Ok { shard_id, sequence_number } => {
                        e.bool(true).str(shard_id).u128(*sequence_number);
                    }
                    PutResult::Failed { error_code, error_message } => {
                        e.bool(false).str(error_code).str(error_message);
                    }
                });
            }
            Response::ShardIterator(it) => {
                e.str(it);
            }
            Response::Records(r) => {
                e.0 = r.encode_head();
                e.0.extend_from_slice(&r.batches);
            }
            Response::UpdateShardCount { current_shard_count, target_shard_count } => {
                e.u32(*current_shard_count).u32(*target_shard_count);
            }
            Response::Consumer(c) => enc_consumer(&mut e, c),
            Response::ListConsumers { consumers, next_token } => {
                e.list(consumers, enc_consumer).opt(next_token, |e, v| {
                    e.str(v);
                });
            }
        }
        e.0
    }

    /// Decodes a response frame's body, given the request's opcode and the frame's flags.
    pub fn decode(opcode: u16, flags: u16, body: &Bytes) -> Result<Response> {
        let mut d = Dec::new(body);
        if flags & FLAG_ERROR != 0 {
            let r =
                Response::Error { code: d.str("error code")?, message: d.str("error message")? };
            d.finish()?;
            return Ok(r);
        }
        let r = match opcode {
            op::CREATE_STREAM
            | op::DELETE_STREAM
            | op::SPLIT_SHARD
            | op::MERGE_SHARDS
            | op::INCREASE_RETENTION
            | op::DECREASE_RETENTION
            | op::DEREGISTER_CONSUMER => Response::Empty,
            op::DESCRIBE_STREAM_SUMMARY => Response::Summary(dec_summary(&mut d)?),
            op::LIST_STREAMS => Response::ListStreams {
                names: d.list("names", |d| d.str("name"))?,
                has_more: d.bool("has_more")?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::DESCRIBE_STREAM => Response::DescribeStream {
                summary: dec_summary(&mut d)?,
                shards: d.list("shards", dec_shard)?,
                has_more_shards: d.bool("has_more_shards")?,
            },
            op::LIST_SHARDS => Response::ListShards {
                shards: d.list("shards", dec_shard)?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            op::PUT_RECORD => Response::PutRecord {
                shard_id: d.str("shard_id")?,
                sequence_number: d.u128("sequence_number")?,
            },
            op::PUT_RECORDS => Response::PutRecords {
                failed_record_count: d.u32("failed_record_count")?,
                results: d.list("results", |d| {
                    Ok(if d.bool("ok")? {
                        PutResult::Ok {
                            shard_id: d.str("shard_id")?,
                            sequence_number: d.u128("sequence_number")?,
                        }
                    } else {
                        PutResult::Failed {
                            error_code: d.str("error_code")?,
                            error_message: d.str("error_message")?,
                        }
                    })
                })?,
            },
            op::GET_SHARD_ITERATOR => Response::ShardIterator(d.str("shard_iterator")?),
            op::GET_RECORDS | op::SUBSCRIBE_TO_SHARD => Response::Records(Records::decode(&mut d)?),
            op::UPDATE_SHARD_COUNT => Response::UpdateShardCount {
                current_shard_count: d.u32("current_shard_count")?,
                target_shard_count: d.u32("target_shard_count")?,
            },
            op::REGISTER_CONSUMER | op::DESCRIBE_CONSUMER => {
                Response::Consumer(dec_consumer(&mut d)?)
            }
            op::LIST_CONSUMERS => Response::ListConsumers {
                consumers: d.list("consumers", dec_consumer)?,
                next_token: d.opt("next_token", |d| d.str("next_token"))?,
            },
            other => return Err(ProtocolError::UnknownOpcode(other)),
        };
        d.finish()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
    }

    fn sample_requests() -> Vec<Request> {
        let s = || "orders".to_string();
        vec![
            Request::CreateStream { stream: s(), shard_count: Some(4), on_demand: false },
            Request::CreateStream { stream: s(), shard_count: None, on_demand: true },
            Request::DeleteStream { stream: s(), enforce_consumer_deletion: true },
            Request::DescribeStreamSummary { stream: s() },
            Request::ListStreams {
                limit: Some(10),
                exclusive_start_stream_name: Some("a".into()),
                next_token: None,
            },
            Request::DescribeStream {
                stream: s(),
                limit: None,
                exclusive_start_shard_id: Some("shardId-1".into()),
            },
            Request::ListShards {
                stream: Some(s()),
                next_token: None,
                exclusive_start_shard_id: None,
                max_results: Some(5),
                filter: Some(Filter::AtTimestamp(1_700_000_000_000)),
            },
            Request::ListShards {
                stream: None,
                next_token: Some("tok".into()),
                exclusive_start_shard_id: None,
                max_results: None,
                filter: Some(Filter::AfterShardId("shardId-000000000003".into())),
            },
            Request::PutRecord {
                stream: s(),
                partition_key: "clé".into(),
                explicit_hash_key: Some(u128::MAX),
                sequence_number_for_ordering: Some(12345),
                data: Bytes::from_static(b"hello"),
            },
            Request::PutRecords {
                stream: s(),
                records: vec![
                    Entry {
                        partition_key: "a".into(),
                        explicit_hash_key: None,
                        data: Bytes::new(),
                    },
                    Entry {
                        partition_key: "b".into(),
                        explicit_hash_key: Some(7),
                        data: Bytes::from_static(&[0, 1, 2]),
                    },
                ],
            },
            Request::GetShardIterator {
                stream: s(),
                shard_id: "shardId-000000000000".into(),
                iterator_type: 3,
                starting_sequence_number: Some(1 << 64),
                timestamp_ms: None,
            },
            Request::GetRecords { shard_iterator: "AAAA".into(), limit: Some(100) },
            Request::SplitShard {
                stream: s(),
                shard_id: "0".into(),
                new_starting_hash_key: 1 << 127,
            },
            Request::MergeShards {
                stream: s(),
                shard_id: "1".into(),
                adjacent_shard_id: "2".into(),
            },
            Request::UpdateShardCount { stream: s(), target_shard_count: 8 },
            Request::IncreaseRetention { stream: s(), hours: 48 },
            Request::DecreaseRetention { stream: s(), hours: 24 },
            Request::RegisterConsumer { stream: s(), consumer_name: "billing".into() },
            Request::DeregisterConsumer { stream: s(), consumer_name: "billing".into() },
            Request::DescribeConsumer { stream: s(), consumer_name: "billing".into() },
            Request::ListConsumers { stream: s(), max_results: None, next_token: Some("t".into()) },
            Request::SubscribeToShard {
                stream: s(),
                consumer_name: "billing".into(),
                shard_id: "shardId-000000000001".into(),
                iterator_type: 4,
                starting_sequence_number: None,
                timestamp_ms: Some(42),
                credit_bytes: 1 << 20,
            },
            Request::Credit { subscription_request_id: 9, bytes: 65536 },
        ]
    }

    fn summary() -> Summary {
        Summary {
            name: "orders".into(),
            arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders".into(),
            status: 1,
            mode: 0,
            retention_hours: 24,
            created_ms: 1,
            open_shard_count: 2,
            consumer_count: 0,
        }
    }

    fn sample_responses() -> Vec<(u16, u16, Response)> {
        let shard = Shard {
            shard_id: "shardId-000000000001".into(),
            parent: Some("shardId-000000000000".into()),
            adjacent_parent: None,
            starting_hash_key: 0,
            ending_hash_key: u128::MAX,
            starting_sequence_number: 5,
            ending_sequence_number: Some(9),
        };
        let consumer = Consumer { name: "c".into(), arn: "arn".into(), status: 1, created_ms: 3 };
        vec![
            (op::CREATE_STREAM, FLAG_END, Response::Empty),
            (
                op::DESCRIBE_STREAM_SUMMARY,
                FLAG_END | FLAG_ERROR,
                Response::Error { code: "X".into(), message: "y".into() },
            ),
            (op::DESCRIBE_STREAM_SUMMARY, FLAG_END, Response::Summary(summary())),
            (
                op::LIST_STREAMS,
                FLAG_END,
                Response::ListStreams { names: vec!["a".into()], has_more: true, next_token: None },
            ),
            (
                op::DESCRIBE_STREAM,
                FLAG_END,
                Response::DescribeStream {
                    summary: summary(),
                    shards: vec![shard.clone()],
                    has_more_shards: false,
                },
            ),
            (
                op::LIST_SHARDS,
                FLAG_END,
                Response::ListShards { shards: vec![shard], next_token: Some("n".into()) },
            ),
            (
                op::PUT_RECORD,
                FLAG_END,
                Response::PutRecord {
                    shard_id: "shardId-000000000000".into(),
                    sequence_number: 77,
                },
            ),
            (
                op::PUT_RECORDS,
                FLAG_END,
                Response::PutRecords {
                    failed_record_count: 1,
                    results: vec![
                        PutResult::Ok { shard_id: "s".into(), sequence_number: 1 },
                        PutResult::Failed {
                            error_code: "ProvisionedThroughputExceededException".into(),
                            error_message: "Rate exceeded".into(),
                        },
                    ],
                },
            ),
            (op::GET_SHARD_ITERATOR, FLAG_END, Response::ShardIterator("it".into())),
            (
                op::GET_RECORDS,
                FLAG_END,
                Response::Records(Records {
                    shard_index: 3,
                    stream_epoch: 1,
                    from_position: 10,
                    to_position: 20,
                    min_timestamp_ms: 5,
                    millis_behind_latest: 0,
                    next: None,
                    child_shards: vec![Child {
                        shard_id: "shardId-000000000004".into(),
                        parent_shards: vec!["shardId-000000000003".into()],
                        starting_hash_key: 0,
                        ending_hash_key: 9,
                    }],
                    batches: Bytes::from_static(b"RFB1..."),
                }),
            ),
            (
                op::UPDATE_SHARD_COUNT,
                FLAG_END,
                Response::UpdateShardCount { current_shard_count: 2, target_shard_count: 4 },
            ),
            (op::REGISTER_CONSUMER, FLAG_END, Response::Consumer(consumer.clone())),
            (
                op::LIST_CONSUMERS,
                FLAG_END,
                Response::ListConsumers { consumers: vec![consumer], next_token: None },
            ),
        ]
    }

    #[test]
    fn every_request_round_trips_through_a_frame() {
        for request in sample_requests() {
            let bytes = request.encode_frame(42);
            let mut decoder = FrameDecoder::new(MAX_FRAME_DEFAULT);
            decoder.extend(&bytes);
            let frame = decoder.next_frame().expect("frame").expect("complete");
            assert_eq!((frame.request_id, frame.opcode, frame.flags), (42, request.opcode(), 0));
            assert_eq!(Request::decode(frame.opcode, &frame.body), Ok(request));
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn every_response_round_trips() {
        for (opcode, flags, response) in sample_responses() {
            let body = Bytes::from(response.encode_body());
            assert_eq!(Response::decode(opcode, flags, &body), Ok(response));
        }
    }

    #[test]
    fn the_protocol_md_example_is_exact() {
        let request = Request::DescribeStreamSummary { stream: "orders".into() };
        assert_eq!(
            hex(&request.encode_frame(7)),
            "14 00 00 00 07 00 00 00 00 00 00 00 03 00 00 00 06 00 6f 72 64 65 72 73"
        );
        let error = Response::Error {
            code: "ResourceNotFoundException".into(),
            message: "Stream orders under account 000000000000 not found.".into(),
        };
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            7,
            op::DESCRIBE_STREAM_SUMMARY,
            FLAG_ERROR | FLAG_END,
            &error.encode_body(),
        );
        assert_eq!(
            hex(&frame[..20]),
            "5c 00 00 00 07 00 00 00 00 00 00 00 03 00 05 00 19 00 52 65"
        );
        assert_eq!(frame.len(), 4 + 92);
        assert_eq!(&frame[16 + 2 + 25..16 + 2 + 25 + 2], &[0x33, 0x00]);
    }

    #[test]
    fn frames_split_at_any_byte_decode_the_same() {
        let mut stream = Vec::new();
        for (i, r) in sample_requests().iter().enumerate() {
            stream.extend(r.encode_frame(i as u64));
        }
        for cut in 0..stream.len() {
            let mut decoder = FrameDecoder::new(MAX_FRAME_DEFAULT);
            let mut frames = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                decoder.extend(part);
                while let Some(f) = decoder.next_frame().expect("valid stream") {
                    frames.push(f);
                }
            }
            assert_eq!(frames.len(), sample_requests().len(), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_and_undersized_frames_and_bad_flags_are_errors() {
        let mut d = FrameDecoder::new(MAX_FRAME_MIN);
        d.extend(&(MAX_FRAME_MIN).to_le_bytes());
        assert!(matches!(d.next_frame(), Err(ProtocolError::FrameTooLarge { .. })));
        let mut d = FrameDecoder::new(MAX_FRAME_DEFAULT);
        d.extend(&u32::MAX.to_le_bytes());
        assert!(
            matches!(d.next_frame(), Err(ProtocolError::FrameTooLarge { .. })),
            "no 4 GiB buffer"
        );
        let mut d = FrameDecoder::new(MAX_FRAME_DEFAULT);
        d.extend(&[3, 0, 0, 0, 1, 2, 3]);
        assert!(matches!(d.next_frame(), Err(ProtocolError::Malformed(_))));
        let mut frame = Vec::new();
        encode_frame(&mut frame, 1, op::CREDIT, 0x80, &[]);
        let mut d = FrameDecoder::new(MAX_FRAME_DEFAULT);
        d.extend(&frame);
        assert_eq!(d.next_frame(), Err(ProtocolError::UnknownFlags(0x80)));
        assert_eq!(
            Request::decode(0x7777, &Bytes::new()),
            Err(ProtocolError::UnknownOpcode(0x7777))
        );
    }

    #[test]
    fn truncated_lying_or_trailing_bodies_are_errors_never_panics() {
        for request in sample_requests() {
            let body = Bytes::from(request.encode_body());
            for cut in 0..body.len() {
                assert!(
                    Request::decode(request.opcode(), &body.slice(..cut)).is_err(),
                    "{request:?} cut {cut}"
                );
            }
            let mut longer = body.to_vec();
            longer.push(0);
            assert!(matches!(
                Request::decode(request.opcode(), &Bytes::from(longer)),
                Err(ProtocolError::Malformed(_))
            ));
        }
        // A list claiming 4 billion elements in a tiny body: refused before allocating.
        let mut body = Enc::default();
        body.str("s").u32(u32::MAX);
        assert_eq!(
            Request::decode(op::PUT_RECORDS, &Bytes::from(body.0)),
            Err(ProtocolError::Truncated("records"))
        );
        // Bad UTF-8, bad bool, bad option tag.
        assert!(Request::decode(
            op::DESCRIBE_STREAM_SUMMARY,
            &Bytes::from_static(&[2, 0, 0xff, 0xfe])
        )
        .is_err());
        assert!(Request::decode(op::DELETE_STREAM, &Bytes::from_static(&[1, 0, b's', 2])).is_err());
        assert!(Request::decode(op::GET_RECORDS, &Bytes::from_static(&[1, 0, b'i', 9])).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic stream of pseudo-random bodies for every opcode and both sides.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let body: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            let body = Bytes::from(body);
            let opcode = (x >> 40) as u16 % 0x50;
            let _ = Request::decode(opcode, &body);
            let _ = Response::decode(opcode, (x >> 20) as u16 & 7, &body);
            let mut d = FrameDecoder::new(MAX_FRAME_MIN);
            d.extend(&body);
            while let Ok(Some(_)) = d.next_frame() {}
        }
    }

    #[test]
    fn hellos_negotiate_the_version() {
        let hello = ClientHello::current();
        let parsed = ClientHello::decode(&hello.encode());
        assert_eq!(parsed, Ok(hello));
        let answer = ServerHello::answer(parsed, MAX_FRAME_DEFAULT, 1024, 64);
        assert_eq!((answer.version, answer.status), (VERSION, HELLO_OK));
        assert_eq!(ServerHello::decode(&answer.encode()), Ok(answer));
        let future = ClientHello { min_version: 2, max_version: 3, max_frame: MAX_FRAME_DEFAULT };
        let answer =
            ServerHello::answer(ClientHello::decode(&future.encode()), MAX_FRAME_DEFAULT, 1, 1);
        assert_eq!(answer.status, HELLO_NO_VERSION);
        let mut bad = hello.encode();
        bad[0] = b'X';
        assert!(ClientHello::decode(&bad).is_err());
        let answer = ServerHello::answer(ClientHello::decode(&bad), MAX_FRAME_DEFAULT, 1, 1);
        assert_eq!(answer.status, HELLO_BAD);
    }
}
