//! A blocking client of the binary protocol, with pipelining: send many requests, then
//! collect their replies (in any order) by request id. The async client with subscriptions
//! and retries is the next step (issue 4); this one serves the CLI-less tests and tools.

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
