//! Clients of the binary protocol.
//!
//! - [`AsyncClient`] (tokio): many requests in flight on one connection, subscriptions as
//!   event streams with automatic credit, retries with exponential backoff and jitter on
//!   throttling ([`AsyncClient::call_with_retry`]).
//! - [`Client`]: blocking, with pipelining by hand (send many, then collect replies by
//!   request id); the `riffle` CLI uses it.
//! - [`decode_records`]: the records of a GetRecords reply or event, zero copy.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use crate::protocol::{
    ClientHello, Frame, FrameDecoder, ProtocolError, Request, Response, ServerHello, HELLO_BYTES,
    HELLO_OK, MAX_FRAME_DEFAULT,
};

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that do not decode.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server refused the handshake.
    #[error("handshake refused with status {0}")]
    Refused(u16),
    /// The server answered with an error.
    #[error("{code}: {message}")]
    Server {
        /// Kinesis exception name.
        code: String,
        /// Its message.
        message: String,
    },
}

/// A connection to `riffled`.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
    next_id: u64,
    hello: ServerHello,
    /// Frames received for other request ids while waiting for one.
    parked: HashMap<u64, Frame>,
}

impl Client {
    /// Connects and performs the handshake.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.write_all(&ClientHello::current().encode())?;
        let mut answer = [0u8; HELLO_BYTES];
        stream.read_exact(&mut answer)?;
        let hello = ServerHello::decode(&answer)?;
        if hello.status != HELLO_OK {
            return Err(ClientError::Refused(hello.status));
        }
        Ok(Client {
            stream,
            decoder: FrameDecoder::new(MAX_FRAME_DEFAULT),
            next_id: 1,
            hello,
            parked: HashMap::new(),
        })
    }

    /// The server's limits, from its hello.
    pub fn server_hello(&self) -> ServerHello {
        self.hello
    }

    /// Sends a request; returns its id (collect the reply with [`Client::receive`]).
    pub fn send(&mut self, request: &Request) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.stream.write_all(&request.encode_frame(id))?;
        Ok(id)
    }

    /// Writes raw bytes (for tests of malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// The next frame from the server, whatever its id.
    pub fn next_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(frame);
            }
            let mut buf = [0u8; 64 * 1024];
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            self.decoder.extend(&buf[..n]);
        }
    }

    /// Waits for the reply to request `id`; a server error becomes [`ClientError::Server`].
    pub fn receive(&mut self, id: u64) -> Result<Response, ClientError> {
        let frame = match self.parked.remove(&id) {
            Some(f) => f,
            None => loop {
                let f = self.next_frame()?;
                if f.request_id == id {
                    break f;
                }
                self.parked.insert(f.request_id, f);
            },
        };
        match Response::decode(frame.opcode, frame.flags, &frame.body)? {
            Response::Error { code, message } => Err(ClientError::Server { code, message }),
            r => Ok(r),
        }
    }

    /// Sends a request and waits for its reply.
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        let id = self.send(request)?;
        self.receive(id)
    }
}

/// One record decoded from a GetRecords reply or a subscription event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// Its sequence number.
    pub sequence_number: u128,
    /// Arrival time, ms since the Unix epoch.
    pub approximate_arrival_ms: u64,
    /// Partition key bytes (UTF-8), a slice of the received frame.
    pub partition_key: bytes::Bytes,
    /// Data, a slice of the received frame.
    pub data: bytes::Bytes,
}

/// Decodes the records a [`Records`](crate::protocol::Records) body delivers: checks every
/// batch's CRC, keeps the records inside the window, computes their sequence numbers. The
/// keys and data are slices of the frame (no copy).
pub fn decode_records(page: &crate::protocol::Records) -> Result<Vec<ClientRecord>, String> {
    use riffle_engine::batch::{split_batches, RecordIter};
    let mut out = Vec::new();
    for batch in split_batches(&page.batches) {
        let (_, bytes) = batch.map_err(|e| format!("a batch failed its check: {e}"))?;
        for r in RecordIter::new(bytes).map_err(|e| e.to_string())? {
            let r = r.map_err(|e| e.to_string())?;
            if (page.from_position..page.to_position).contains(&r.position)
                && r.timestamp_ms >= page.min_timestamp_ms
            {
                out.push(ClientRecord {
                    sequence_number: (u128::from(page.shard_index) << 96)
                        | (u128::from(page.stream_epoch) << 72)
                        | (1 << 64)
                        | u128::from(r.position + 1),
                    approximate_arrival_ms: r.timestamp_ms,
                    partition_key: page.batches.slice_ref(r.partition_key),
                    data: page.batches.slice_ref(r.data),
                });
            }
        }
    }
    Ok(out)
}

/// Retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First backoff ceiling.
    pub base: std::time::Duration,
    /// Largest backoff ceiling.
    pub cap: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            base: std::time::Duration::from_millis(50),
            cap: std::time::Duration::from_secs(5),
        }
    }
}

/// Errors worth retrying unchanged: throttling and transient server failures.
pub fn is_retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, message } => {
            matches!(
                code.as_str(),
                "ProvisionedThroughputExceededException" | "InternalFailure" | "ServiceUnavailable"
            ) || (code == "LimitExceededException" && message.starts_with("Rate exceeded"))
        }
        _ => false,
    }
}

type Waiters = std::sync::Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<Frame>>>;

/// An async client: many requests in flight on one connection (pipelined, answered in any
/// order), subscriptions as streams of events with automatic credit, retries with backoff.
/// Cheap to clone; clones share the connection. Needs a tokio runtime.
#[derive(Debug, Clone)]
pub struct AsyncClient {
    writer: std::sync::Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>,
    waiters: std::sync::Arc<Waiters>,
    next_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Keeps the requests in flight within the server's `max_in_flight`.
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    hello: ServerHello,
}

impl AsyncClient {
    /// Connects, performs the handshake, and starts the task that routes replies.
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> Result<AsyncClient, ClientError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&ClientHello::current().encode()).await?;
        let mut answer = [0u8; HELLO_BYTES];
        stream.read_exact(&mut answer).await?;
        let hello = ServerHello::decode(&answer)?;
        if hello.status != HELLO_OK {
            return Err(ClientError::Refused(hello.status));
        }
        let (mut read, write) = stream.into_split();
        let waiters: std::sync::Arc<Waiters> = std::sync::Arc::default();
        let routes = std::sync::Arc::clone(&waiters);
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(MAX_FRAME_DEFAULT);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                while let Ok(Some(frame)) = decoder.next_frame() {
                    let end = frame.flags & crate::protocol::FLAG_END != 0;
                    let mut map = routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(tx) = map.get(&frame.request_id) {
                        let _ = tx.send(frame.clone());
                    }
                    if end {
                        map.remove(&frame.request_id);
                    }
                }
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => decoder.extend(&buf[..n]),
                }
            }
            // The connection is gone: every waiter sees its channel close.
            routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        });
        Ok(AsyncClient {
            writer: std::sync::Arc::new(tokio::sync::Mutex::new(write)),
            waiters,
            next_id: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(usize::from(
                hello.max_in_flight.max(1),
            ))),
            hello,
        })
    }

    /// The server's limits, from its hello.
    pub fn server_hello(&self) -> ServerHello {
        self.hello
    }

    async fn send(
        &self,
        request: &Request,
    ) -> Result<(u64, tokio::sync::mpsc::UnboundedReceiver<Frame>), ClientError> {
        use tokio::io::AsyncWriteExt;
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, tx);
        self.writer.lock().await.write_all(&request.encode_frame(id)).await?;
        Ok((id, rx))
    }

    /// Sends a request and waits for its reply; a server error becomes
    /// [`ClientError::Server`]. Any number of calls may run at once.
    pub async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        // Waits for a free slot when the server's in-flight limit is reached.
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ClientError::Io(std::io::ErrorKind::BrokenPipe.into()))?;
        let (_, mut rx) = self.send(request).await?;
        let frame = rx
            .recv()
            .await
            .ok_or_else(|| ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()))?;
        match Response::decode(frame.opcode, frame.flags, &frame.body)? {
            Response::Error { code, message } => Err(ClientError::Server { code, message }),
            r => Ok(r),
        }
    }

    /// [`AsyncClient::call`], retrying throttling and transient failures with exponential
    /// backoff and full jitter.
    pub async fn call_with_retry(
        &self,
        request: &Request,
        policy: RetryPolicy,
    ) -> Result<Response, ClientError> {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let mut attempt = 0;
        loop {
            match self.call(request).await {
                Err(e) if is_retryable(&e) && attempt + 1 < policy.attempts => {
                    let ceiling = policy.base.saturating_mul(1 << attempt.min(16)).min(policy.cap);
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let wait = ceiling.mul_f64((seed % 10_000) as f64 / 10_000.0);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Starts a subscription (`SubscribeToShard`); its events arrive through
    /// [`Subscription::next_event`], which returns credit as events are taken.
    pub async fn subscribe(&self, request: &Request) -> Result<Subscription, ClientError> {
        let credit = match request {
            Request::SubscribeToShard { credit_bytes, .. } => u64::from(*credit_bytes),
            _ => 0,
        };
        let (id, rx) = self.send(request).await?;
        Ok(Subscription { client: self.clone(), id, rx, done: false, credit, consumed: 0 })
    }
}

/// A subscription's stream of events.
#[derive(Debug)]
pub struct Subscription {
    client: AsyncClient,
    id: u64,
    rx: tokio::sync::mpsc::UnboundedReceiver<Frame>,
    done: bool,
    /// Credit granted at the start.
    credit: u64,
    /// Bytes taken and not yet credited back.
    consumed: u64,
}

impl Subscription {
    /// The next event, `None` after the last one. Taking events grants their size back as
    /// credit (in one `Credit` frame per quarter of the initial credit), so the server keeps
    /// sending as fast as this is called.
    pub async fn next_event(&mut self) -> Option<Result<crate::protocol::Records, ClientError>> {
        if self.done {
            return None;
        }
        let frame = self.rx.recv().await?;
        self.done = frame.flags & crate::protocol::FLAG_END != 0;
        match Response::decode(frame.opcode, frame.flags, &frame.body) {
            Ok(Response::Records(r)) => {
                self.consumed += r.batches.len().max(1) as u64;
                if !self.done && self.consumed >= (self.credit / 4).max(1) {
                    let bytes = self.consumed.min(u64::from(u32::MAX)) as u32;
                    self.consumed -= u64::from(bytes);
                    let credit = Request::Credit { subscription_request_id: self.id, bytes };
                    let _ = self.client.send(&credit).await.map(|(id, _)| {
                        self.client
                            .waiters
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&id);
                    });
                }
                Some(Ok(r))
            }
            Ok(Response::Error { code, message }) => {
                Some(Err(ClientError::Server { code, message }))
            }
            Ok(other) => Some(Err(ClientError::Protocol(ProtocolError::Malformed(format!(
                "unexpected event {other:?}"
            ))))),
            Err(e) => Some(Err(e.into())),
        }
    }
}
