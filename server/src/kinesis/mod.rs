//! The Kinesis Data Streams HTTP API (AWS JSON 1.1), so that boto3, the AWS CLI and the
//! AWS SDKs work against Riffle by pointing `endpoint_url` at it (default
//! `127.0.0.1:4567`). It is a second front end over the same [`Engine`]: it needs nothing but
//! the engine's embedding API.
//!
//! `POST /` with `X-Amz-Target: Kinesis_20131202.<Op>` and a JSON body, for the stream,
//! shard, record, resharding, retention, consumer and tag operations (PutRecords in JSON
//! has a faster path of its own, `records.rs`); errors as `{"__type", "message"}` with HTTP 400 (500 for `InternalFailure`);
//! HTTP/1.1 and HTTP/2 (hyper); bodies in JSON (`application/x-amz-json-1.1`) or CBOR
//! (`application/x-amz-cbor-1.1`, the Java SDK's default: blobs as byte strings, timestamps
//! as tag 1), answered in the request's format. Requests are not authenticated (signatures
//! are accepted unchecked) unless credentials are configured: then every request must be
//! signed with one of them (SigV4, [`crate::sigv4`]). SubscribeToShard answers with an
//! `application/vnd.amazon.eventstream` body (an `initial-response`, then
//! `SubscribeToShardEvent`s) streamed as records become durable.
//!
//! Tested with real clients against a real `riffled`: boto3 and the AWS CLI
//! (`tests/kinesis_boto3.rs`), the AWS SDK for Rust over HTTP/1.1 and HTTP/2 and the AWS SDK
//! for JavaScript v3 over HTTP/2 (`tests/kinesis_sdk.rs`), and raw CBOR requests.

mod cbor;
mod events;
mod fields;
mod ops;
mod records;

use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use riffle_engine::{
    ConsumerRef, Engine, Error, IteratorType, ListShardsInput, PutRecordInput, ShardFilter,
    StreamMode,
};
use serde_json::{json, Map, Value};

use cbor::{cbor_to_json, json_to_cbor};
use events::{start_subscription, stream_events, EventBody};
use ops::dispatch;

/// Largest request body accepted (a 5 MiB PutRecords is about 7 MiB in base64 JSON).
const BODY_LIMIT: usize = 16 * 1024 * 1024;
const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// A running Kinesis API listener.
#[derive(Debug)]
pub struct KinesisApi {
    local_addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KinesisApi {
    /// Listens on `addr` and serves `engine` on its own threads.
    /// With `credentials`, every request must be signed (SigV4) with one of them; without,
    /// signatures are accepted unchecked.
    pub fn start(
        addr: SocketAddr,
        engine: Engine,
        threads: usize,
        credentials: Option<crate::sigv4::Credentials>,
        subscriptions: std::sync::Arc<crate::service::SubscriptionRegistry>,
    ) -> std::io::Result<KinesisApi> {
        let credentials = credentials.map(std::sync::Arc::new);
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("riffle-kinesis")
            .enable_all()
            .build()?;
        let (shutdown, mut stop) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new().name("riffle-kinesis-accept".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "kinesis listener"),
                };
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let _ = stream.set_nodelay(true);
                            let engine = engine.clone();
                            let credentials = credentials.clone();
                            let subscriptions = std::sync::Arc::clone(&subscriptions);
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |request| {
                                    let (engine, credentials, subscriptions) =
                                        (engine.clone(), credentials.clone(), std::sync::Arc::clone(&subscriptions));
                                    async move {
                                        Ok::<_, std::convert::Infallible>(handle(engine, credentials, subscriptions, request).await)
                                    }
                                });
                                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                            });
                        }
                        _ = stop.changed() => break,
                    }
                }
            });
        })?;
        tracing::info!(%local_addr, "kinesis api listening");
        Ok(KinesisApi { local_addr, shutdown, thread: Some(thread) })
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An error reply: the exception name, its message, and the HTTP status.
#[derive(Debug)]
struct Fault {
    code: String,
    message: Option<String>,
    status: u16,
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        let code = e.kinesis_name().to_string();
        let status = if code == "InternalFailure" { 500 } else { 400 };
        Fault { message: Some(e.to_string()), code, status }
    }
}

fn fault(code: &str, message: impl Into<String>) -> Fault {
    Fault { code: code.into(), message: Some(message.into()), status: 400 }
}

/// Response bodies: whole (`Full`) or an event stream.
type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> hyper::Response<Body> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    let id = format!("{:032x}", rand_id());
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        headers.insert("x-amzn-RequestId", v);
    }
    response
}

fn rand_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (u128::from(h.finish()) << 64) | u128::from(h.finish().rotate_left(17))
}

async fn handle(
    engine: Engine,
    credentials: Option<std::sync::Arc<crate::sigv4::Credentials>>,
    subscriptions: std::sync::Arc<crate::service::SubscriptionRegistry>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Body> {
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-amz-json-1.1")
        .to_string();
    let target =
        request.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_string);
    let cbor = content_type.starts_with("application/x-amz-cbor");
    let reply_type = if content_type.starts_with("application/x-amz-json") || cbor {
        content_type.clone()
    } else {
        "application/x-amz-json-1.1".into()
    };
    let encode = move |v: &Value| -> Vec<u8> {
        if cbor {
            let mut out = Vec::new();
            let _ = ciborium::into_writer(&json_to_cbor(v, None), &mut out);
            out
        } else {
            serde_json::to_vec(v).unwrap_or_default()
        }
    };
    let error = |f: Fault| {
        let mut body = Map::new();
        body.insert("__type".into(), json!(f.code));
        if let Some(m) = f.message {
            // SerializationException spells it `Message` (as real Kinesis does).
            let key = if f.code == "SerializationException" { "Message" } else { "message" };
            body.insert(key.into(), json!(m));
        }
        respond(f.status, &reply_type, encode(&Value::Object(body)))
    };
    let Some(operation) =
        target.as_deref().and_then(|t| t.strip_prefix(TARGET_PREFIX)).map(str::to_string)
    else {
        return error(Fault {
            code: "UnknownOperationException".into(),
            message: None,
            status: 400,
        });
    };
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let mut headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())))
        .collect();
    if !headers.iter().any(|(n, _)| n == "host") {
        if let Some(authority) = request.uri().authority() {
            headers.push(("host".into(), authority.to_string())); // HTTP/2's :authority
        }
    }
    let body = match Limited::new(request.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(fault(
                "SerializationException",
                format!("The request body exceeds {BODY_LIMIT} bytes or could not be read."),
            ))
        }
    };
    if let Some(credentials) = &credentials {
        if let Err(r) = crate::sigv4::verify(credentials, &method, &path, &query, &headers, &body) {
            return error(fault(r.code, r.message));
        }
    }
    if operation == "PutRecords" && !cbor {
        // The hot path (records.rs); `None` hands the body to the general path below.
        let (fast_engine, fast_body) = (engine.clone(), body.clone());
        let fast =
            tokio::task::spawn_blocking(move || records::put_records(&fast_engine, &fast_body));
        match fast.await {
            Ok(Some(Ok(reply))) => return respond(200, &reply_type, reply),
            Ok(Some(Err(f))) => return error(f),
            Ok(None) => {}
            Err(_) => {
                return error(Fault { code: "InternalFailure".into(), message: None, status: 500 })
            }
        }
    }
    let parsed = if body.is_empty() {
        Some(json!({}))
    } else if cbor {
        ciborium::from_reader::<ciborium::Value, _>(&body[..]).ok().map(cbor_to_json)
    } else {
        serde_json::from_slice(&body).ok()
    };
    let input = match parsed {
        Some(v @ Value::Object(_)) => v,
        _ => {
            return error(fault(
                "SerializationException",
                "Start of structure or map found where not expected.",
            ))
        }
    };
    if operation == "SubscribeToShard" {
        return match start_subscription(&engine, &subscriptions, &input) {
            Ok((iterator, claim)) => {
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                tokio::spawn(stream_events(engine, iterator, claim, tx));
                let mut response = hyper::Response::new(EventBody(rx).boxed());
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/vnd.amazon.eventstream"),
                );
                response
            }
            Err(f) => error(f),
        };
    }
    let result = tokio::task::spawn_blocking(move || dispatch(&engine, &operation, &input)).await;
    match result {
        Ok(Ok(Some(v))) => respond(200, &reply_type, encode(&v)),
        Ok(Ok(None)) => respond(200, &reply_type, Vec::new()),
        Ok(Err(f)) => error(f),
        Err(_) => error(Fault { code: "InternalFailure".into(), message: None, status: 500 }),
    }
}
