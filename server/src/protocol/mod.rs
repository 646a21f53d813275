//! The binary protocol, version 1, as specified in `server/PROTOCOL.md` (the tests pin that
//! page's examples). Shared by the server and the client.
//!
//! This module owns the wire below the messages: the handshake, frames and the primitive
//! encodings; `messages` owns the body of every request and response.
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

mod messages;
pub use messages::*;

#[cfg(test)]
mod tests;
