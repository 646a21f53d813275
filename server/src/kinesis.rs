//! The Kinesis Data Streams HTTP API (AWS JSON 1.1), so that boto3, the AWS CLI and the
//! AWS SDKs work against Riffle by pointing `endpoint_url` at it (default
//! `127.0.0.1:4567`). It is a second front end over the same [`Engine`]: it needs nothing but
//! the engine's embedding API.
//!
//! Built so far (issue 7, first part): `POST /` with `X-Amz-Target: Kinesis_20131202.<Op>`
//! and a JSON body, for the stream, shard, record, resharding, retention, consumer and tag
//! operations; errors as `{"__type", "message"}` with HTTP 400 (500 for `InternalFailure`);
//! HTTP/1.1 and HTTP/2 (hyper); bodies in JSON (`application/x-amz-json-1.1`) or CBOR
//! (`application/x-amz-cbor-1.1`, the Java SDK's default: blobs as byte strings, timestamps
//! as tag 1), answered in the request's format. Requests are not authenticated (signatures
//! are accepted unchecked) unless credentials are configured: then every request must be
//! signed with one of them (SigV4, [`crate::sigv4`]). SubscribeToShard answers with an
//! `application/vnd.amazon.eventstream` body (an `initial-response`, then
//! `SubscribeToShardEvent`s) streamed as records become durable.

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

// ---- CBOR ----

/// A CBOR request body as the JSON shape the operations read: byte strings (blobs) become
/// base64 text, tag-1 timestamps become epoch seconds.
fn cbor_to_json(v: ciborium::Value) -> Value {
    use ciborium::Value as C;
    match v {
        C::Map(entries) => Value::Object(
            entries
                .into_iter()
                .filter_map(|(k, v)| match k {
                    C::Text(k) => Some((k, cbor_to_json(v))),
                    _ => None,
                })
                .collect(),
        ),
        C::Array(items) => Value::Array(items.into_iter().map(cbor_to_json).collect()),
        C::Text(s) => Value::String(s),
        C::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        C::Integer(i) => {
            let i = i128::from(i);
            i64::try_from(i).map(Value::from).unwrap_or_else(|_| Value::from(i as f64))
        }
        C::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        C::Bool(b) => Value::Bool(b),
        C::Tag(_, inner) => cbor_to_json(*inner),
        _ => Value::Null,
    }
}

/// A reply in CBOR: `Data` blobs as byte strings, `*Timestamp` members as tag 1 (epoch
/// seconds), everything else as its JSON value.
fn json_to_cbor(v: &Value, key: Option<&str>) -> ciborium::Value {
    use ciborium::Value as C;
    match v {
        Value::Object(m) => {
            C::Map(m.iter().map(|(k, v)| (C::Text(k.clone()), json_to_cbor(v, Some(k)))).collect())
        }
        Value::Array(a) => C::Array(a.iter().map(|v| json_to_cbor(v, key)).collect()),
        Value::String(s) if key == Some("Data") => {
            C::Bytes(base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default())
        }
        Value::String(s) => C::Text(s.clone()),
        Value::Number(n) if key.is_some_and(|k| k.ends_with("Timestamp")) => {
            C::Tag(1, Box::new(C::Float(n.as_f64().unwrap_or(0.0))))
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => C::Integer(i.into()),
            (None, Some(u)) => C::Integer(u.into()),
            _ => C::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::Bool(b) => C::Bool(*b),
        Value::Null => C::Null,
    }
}

// ---- request fields ----

fn lower_first(name: &str) -> String {
    let mut c = name.chars();
    c.next().map_or_else(String::new, |f| f.to_lowercase().collect::<String>() + c.as_str())
}

fn missing(name: &str) -> Fault {
    Fault::from(Error::Validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        lower_first(name)
    )))
}

fn opt_str<'a>(v: &'a Value, name: &str) -> Result<Option<&'a str>, Fault> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(fault(
            "SerializationException",
            format!("Unexpected value type for {name}: expected a string"),
        )),
    }
}

fn req_str<'a>(v: &'a Value, name: &str) -> Result<&'a str, Fault> {
    opt_str(v, name)?.ok_or_else(|| missing(name))
}

/// Java-int coercion: fractions floored, large values clamped (spec §1.1).
fn opt_u32(v: &Value, name: &str) -> Result<Option<u32>, Fault> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(0.0).floor().clamp(i32::MIN as f64, i32::MAX as f64);
            if f < 0.0 {
                return Err(Fault::from(Error::Validation(format!(
                    "1 validation error detected: Value '{f}' at '{}' failed to satisfy constraint: Member must have value greater than or equal to 1",
                    lower_first(name)
                ))));
            }
            Ok(Some(f as u32))
        }
        Some(_) => Err(fault(
            "SerializationException",
            format!("Unexpected value type for {name}: expected a number"),
        )),
    }
}

fn req_u32(v: &Value, name: &str) -> Result<u32, Fault> {
    opt_u32(v, name)?.ok_or_else(|| missing(name))
}

/// Epoch seconds (with a fraction) to milliseconds.
fn opt_time_ms(v: &Value, name: &str) -> Result<Option<u64>, Fault> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            Ok(Some((n.as_f64().unwrap_or(0.0).max(0.0) * 1000.0).round() as u64))
        }
        Some(_) => Err(fault(
            "SerializationException",
            format!("Unexpected value type for {name}: expected a timestamp"),
        )),
    }
}

fn blob(v: &Value, name: &str) -> Result<Vec<u8>, Fault> {
    let text = req_str(v, name)?;
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| {
        fault("SerializationException", format!("Value for {name} is not valid base64."))
    })
}

/// The stream named by `StreamARN` or `StreamName` (both must agree).
fn stream(v: &Value) -> Result<String, Fault> {
    match (opt_str(v, "StreamARN")?, opt_str(v, "StreamName")?) {
        (Some(arn), Some(name)) => {
            if !arn.ends_with(&format!("/{name}")) {
                return Err(fault(
                    "InvalidArgumentException",
                    format!("StreamARN {arn} and StreamName {name} name different streams."),
                ));
            }
            Ok(arn.to_string())
        }
        (Some(arn), None) => Ok(arn.to_string()),
        (None, Some(name)) => Ok(name.to_string()),
        (None, None) => {
            Err(fault("InvalidArgumentException", "Neither StreamARN nor StreamName was provided."))
        }
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn shard_json(s: &riffle_engine::Shard) -> Value {
    let mut v = json!({
        "ShardId": s.shard_id,
        "HashKeyRange": {"StartingHashKey": s.hash_key_range.start.to_string(), "EndingHashKey": s.hash_key_range.end.to_string()},
        "SequenceNumberRange": {"StartingSequenceNumber": s.starting_sequence_number.to_string()},
    });
    if let Some(p) = &s.parent_shard_id {
        v["ParentShardId"] = json!(p);
    }
    if let Some(p) = &s.adjacent_parent_shard_id {
        v["AdjacentParentShardId"] = json!(p);
    }
    if let Some(e) = s.ending_sequence_number {
        v["SequenceNumberRange"]["EndingSequenceNumber"] = json!(e.to_string());
    }
    v
}

fn consumer_json(c: &riffle_engine::Consumer, with_stream: bool) -> Value {
    let mut v = json!({
        "ConsumerName": c.consumer_name, "ConsumerARN": c.consumer_arn,
        "ConsumerStatus": c.consumer_status.as_str(), "ConsumerCreationTimestamp": seconds(c.consumer_creation_ms),
    });
    if with_stream {
        v["StreamARN"] = json!(c.stream_arn);
    }
    v
}

fn with_consumer<T>(
    v: &Value,
    f: impl FnOnce(ConsumerRef<'_>) -> Result<T, Error>,
) -> Result<T, Fault> {
    let (arn, stream, name) =
        (opt_str(v, "ConsumerARN")?, opt_str(v, "StreamARN")?, opt_str(v, "ConsumerName")?);
    match (arn, stream, name) {
        (Some(arn), _, _) => Ok(f(ConsumerRef::Arn(arn))?),
        (None, Some(stream), Some(name)) => {
            Ok(f(ConsumerRef::Name { stream, consumer_name: name })?)
        }
        _ => Err(fault(
            "InvalidArgumentException",
            "Provide ConsumerARN, or StreamARN and ConsumerName.",
        )),
    }
}

fn tags_of(v: &Value) -> Result<Vec<(String, String)>, Fault> {
    match v.get("Tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => {
            Ok(m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        }
        Some(_) => Err(fault("SerializationException", "Tags must be a map of strings.")),
    }
}

fn iterator_type(text: &str) -> Result<IteratorType, Fault> {
    Ok(text.parse::<IteratorType>()?)
}

/// Runs one operation; `Ok(None)` for operations with an empty reply.
fn dispatch(e: &Engine, op: &str, v: &Value) -> Result<Option<Value>, Fault> {
    Ok(match op {
        "CreateStream" => {
            let name = req_str(v, "StreamName")?;
            let mode = match v.pointer("/StreamModeDetails/StreamMode").and_then(Value::as_str) {
                Some("ON_DEMAND") => Some(StreamMode::OnDemand),
                Some("PROVISIONED") | None => Some(StreamMode::Provisioned),
                Some(other) => {
                    return Err(Fault::from(Error::Validation(format!(
                        "1 validation error detected: Value '{other}' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"
                    ))))
                }
            };
            e.create_stream(name, opt_u32(v, "ShardCount")?, mode, &tags_of(v)?)?;
            None
        }
        "DeleteStream" => {
            let enforce =
                v.get("EnforceConsumerDeletion").and_then(Value::as_bool).unwrap_or(false);
            e.delete_stream(&stream(v)?, enforce)?;
            None
        }
        "DescribeStreamSummary" => {
            let s = e.describe_stream_summary(&stream(v)?)?;
            Some(json!({"StreamDescriptionSummary": {
                "StreamName": s.stream_name, "StreamARN": s.stream_arn, "StreamStatus": s.stream_status.as_str(),
                "StreamModeDetails": {"StreamMode": s.stream_mode.as_str()},
                "RetentionPeriodHours": s.retention_period_hours, "StreamCreationTimestamp": seconds(s.stream_creation_ms),
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}], "EncryptionType": "NONE",
                "OpenShardCount": s.open_shard_count, "ConsumerCount": s.consumer_count,
            }}))
        }
        "DescribeStream" => {
            let d = e.describe_stream(
                &stream(v)?,
                opt_u32(v, "Limit")?,
                opt_str(v, "ExclusiveStartShardId")?,
            )?;
            Some(json!({"StreamDescription": {
                "StreamName": d.stream_name, "StreamARN": d.stream_arn, "StreamStatus": d.stream_status.as_str(),
                "StreamModeDetails": {"StreamMode": d.stream_mode.as_str()},
                "Shards": d.shards.iter().map(shard_json).collect::<Vec<_>>(), "HasMoreShards": d.has_more_shards,
                "RetentionPeriodHours": d.retention_period_hours, "StreamCreationTimestamp": seconds(d.stream_creation_ms),
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}], "EncryptionType": "NONE",
            }}))
        }
        "ListStreams" => {
            let out = e.list_streams(
                opt_u32(v, "Limit")?,
                opt_str(v, "ExclusiveStartStreamName")?,
                opt_str(v, "NextToken")?,
            )?;
            let mut r = json!({
                "StreamNames": out.stream_names, "HasMoreStreams": out.has_more_streams,
                "StreamSummaries": out.stream_summaries.iter().map(|s| json!({
                    "StreamName": s.stream_name, "StreamARN": s.stream_arn, "StreamStatus": s.stream_status.as_str(),
                    "StreamModeDetails": {"StreamMode": s.stream_mode.as_str()}, "StreamCreationTimestamp": seconds(s.stream_creation_ms),
                })).collect::<Vec<_>>(),
            });
            if let Some(t) = out.next_token {
                r["NextToken"] = json!(t);
            }
            Some(r)
        }
        "ListShards" => {
            let filter = match v.get("ShardFilter") {
                None | Some(Value::Null) => None,
                Some(f) => Some(match req_str(f, "Type")? {
                    "FROM_TRIM_HORIZON" => ShardFilter::FromTrimHorizon,
                    "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
                    "AT_LATEST" => ShardFilter::AtLatest,
                    "AFTER_SHARD_ID" => {
                        ShardFilter::AfterShardId(req_str(f, "ShardId")?.to_string())
                    }
                    "AT_TIMESTAMP" => ShardFilter::AtTimestamp(
                        opt_time_ms(f, "Timestamp")?.ok_or_else(|| missing("Timestamp"))?,
                    ),
                    "FROM_TIMESTAMP" => ShardFilter::FromTimestamp(
                        opt_time_ms(f, "Timestamp")?.ok_or_else(|| missing("Timestamp"))?,
                    ),
                    other => {
                        return Err(fault(
                            "ValidationException",
                            format!("Unknown ShardFilter type {other}"),
                        ))
                    }
                }),
            };
            let named = match (opt_str(v, "StreamARN")?, opt_str(v, "StreamName")?) {
                (None, None) => None,
                _ => Some(stream(v)?),
            };
            let out = e.list_shards(&ListShardsInput {
                stream: named.as_deref(),
                next_token: opt_str(v, "NextToken")?,
                exclusive_start_shard_id: opt_str(v, "ExclusiveStartShardId")?,
                max_results: opt_u32(v, "MaxResults")?,
                stream_creation_ms: opt_time_ms(v, "StreamCreationTimestamp")?,
                shard_filter: filter,
            })?;
            let mut r = json!({"Shards": out.shards.iter().map(shard_json).collect::<Vec<_>>()});
            if let Some(t) = out.next_token {
                r["NextToken"] = json!(t);
            }
            Some(r)
        }
        "PutRecord" => {
            let data = blob(v, "Data")?;
            let input = PutRecordInput {
                partition_key: req_str(v, "PartitionKey")?,
                data: &data,
                explicit_hash_key: opt_str(v, "ExplicitHashKey")?,
                sequence_number_for_ordering: opt_str(v, "SequenceNumberForOrdering")?,
            };
            let out = e.put_record(&stream(v)?, &input)?;
            Some(
                json!({"ShardId": out.shard_id.to_string(), "SequenceNumber": out.sequence_number.to_string()}),
            )
        }
        "PutRecords" => {
            let Some(Value::Array(items)) = v.get("Records") else {
                return Err(missing("Records"));
            };
            let mut owned = Vec::with_capacity(items.len());
            for item in items {
                owned.push((
                    req_str(item, "PartitionKey")?.to_string(),
                    blob(item, "Data")?,
                    opt_str(item, "ExplicitHashKey")?.map(str::to_string),
                ));
            }
            let input: Vec<PutRecordInput<'_>> = owned
                .iter()
                .map(|(k, d, h)| PutRecordInput {
                    partition_key: k,
                    data: d,
                    explicit_hash_key: h.as_deref(),
                    sequence_number_for_ordering: None,
                })
                .collect();
            let out = e.put_records(&stream(v)?, &input)?;
            Some(json!({
                "FailedRecordCount": out.failed_record_count,
                "Records": out.records.iter().map(|r| match r {
                    Ok(ok) => json!({"ShardId": ok.shard_id.to_string(), "SequenceNumber": ok.sequence_number.to_string()}),
                    Err(f) => json!({"ErrorCode": f.error_code, "ErrorMessage": f.error_message}),
                }).collect::<Vec<_>>(),
            }))
        }
        "GetShardIterator" => {
            let kind = iterator_type(req_str(v, "ShardIteratorType")?)?;
            let it = e.get_shard_iterator(
                &stream(v)?,
                req_str(v, "ShardId")?,
                kind,
                opt_str(v, "StartingSequenceNumber")?,
                opt_time_ms(v, "Timestamp")?,
            )?;
            Some(json!({"ShardIterator": it}))
        }
        "GetRecords" => {
            let out = e.get_records(req_str(v, "ShardIterator")?, opt_u32(v, "Limit")?)?;
            let mut r = json!({
                "Records": out.records.iter().map(|rec| json!({
                    "SequenceNumber": rec.sequence_number.to_string(),
                    "ApproximateArrivalTimestamp": seconds(rec.approximate_arrival_ms),
                    "Data": base64::engine::general_purpose::STANDARD.encode(&rec.data),
                    "PartitionKey": rec.partition_key_str(),
                })).collect::<Vec<_>>(),
                "MillisBehindLatest": out.millis_behind_latest,
            });
            if let Some(next) = out.next_shard_iterator {
                r["NextShardIterator"] = json!(next);
            }
            if let Some(children) = out.child_shards {
                r["ChildShards"] = json!(children.iter().map(|c| json!({
                    "ShardId": c.shard_id, "ParentShards": c.parent_shards,
                    "HashKeyRange": {"StartingHashKey": c.hash_key_range.start.to_string(), "EndingHashKey": c.hash_key_range.end.to_string()},
                })).collect::<Vec<_>>());
            }
            Some(r)
        }
        "SplitShard" => {
            e.split_shard(
                &stream(v)?,
                req_str(v, "ShardToSplit")?,
                req_str(v, "NewStartingHashKey")?,
            )?;
            None
        }
        "MergeShards" => {
            e.merge_shards(
                &stream(v)?,
                req_str(v, "ShardToMerge")?,
                req_str(v, "AdjacentShardToMerge")?,
            )?;
            None
        }
        "UpdateShardCount" => {
            let out = e.update_shard_count(
                &stream(v)?,
                req_u32(v, "TargetShardCount")?,
                req_str(v, "ScalingType")?,
            )?;
            Some(json!({"StreamName": out.stream_name, "StreamARN": out.stream_arn,
                "CurrentShardCount": out.current_shard_count, "TargetShardCount": out.target_shard_count}))
        }
        "IncreaseStreamRetentionPeriod" => {
            e.increase_stream_retention_period(&stream(v)?, req_u32(v, "RetentionPeriodHours")?)?;
            None
        }
        "DecreaseStreamRetentionPeriod" => {
            e.decrease_stream_retention_period(&stream(v)?, req_u32(v, "RetentionPeriodHours")?)?;
            None
        }
        "RegisterStreamConsumer" => {
            let c =
                e.register_stream_consumer(req_str(v, "StreamARN")?, req_str(v, "ConsumerName")?)?;
            Some(json!({"Consumer": consumer_json(&c, false)}))
        }
        "DeregisterStreamConsumer" => {
            with_consumer(v, |c| e.deregister_stream_consumer(c))?;
            None
        }
        "DescribeStreamConsumer" => {
            let c = with_consumer(v, |c| e.describe_stream_consumer(c))?;
            Some(json!({"ConsumerDescription": consumer_json(&c, true)}))
        }
        "ListStreamConsumers" => {
            let out = e.list_stream_consumers(
                req_str(v, "StreamARN")?,
                opt_u32(v, "MaxResults")?,
                opt_str(v, "NextToken")?,
            )?;
            let mut r = json!({"Consumers": out.consumers.iter().map(|c| consumer_json(c, false)).collect::<Vec<_>>()});
            if let Some(t) = out.next_token {
                r["NextToken"] = json!(t);
            }
            Some(r)
        }
        "AddTagsToStream" => {
            e.add_tags_to_stream(&stream(v)?, &tags_of(v)?)?;
            None
        }
        "RemoveTagsFromStream" => {
            let keys: Vec<String> = match v.get("TagKeys") {
                Some(Value::Array(a)) => {
                    a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect()
                }
                _ => return Err(missing("TagKeys")),
            };
            e.remove_tags_from_stream(&stream(v)?, &keys)?;
            None
        }
        "ListTagsForStream" => {
            let out = e.list_tags_for_stream(
                &stream(v)?,
                opt_str(v, "ExclusiveStartTagKey")?,
                opt_u32(v, "Limit")?,
            )?;
            Some(
                json!({"Tags": out.tags.iter().map(|(k, val)| json!({"Key": k, "Value": val})).collect::<Vec<_>>(),
                "HasMoreTags": out.has_more_tags}),
            )
        }
        "DescribeLimits" => {
            let l = e.describe_limits()?;
            Some(json!({"ShardLimit": l.shard_limit, "OpenShardCount": l.open_shard_count,
                "OnDemandStreamCount": l.on_demand_stream_count, "OnDemandStreamCountLimit": l.on_demand_stream_count_limit}))
        }
        _ => {
            return Err(Fault {
                code: "UnknownOperationException".into(),
                message: None,
                status: 400,
            })
        }
    })
}

// ---- SubscribeToShard over HTTP: the AWS event stream ----

/// One event-stream message: prelude (total length, headers length, CRC), headers (string
/// values, type 7), payload, CRC of everything before it; all big-endian.
fn event_message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

/// The streamed body of a subscription.
struct EventBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Checks a SubscribeToShard request (including the rules per consumer and shard, shared
/// with the binary protocol) and returns the starting iterator and the subscription's
/// claim. Errors here are ordinary JSON errors (before any event).
fn start_subscription(
    e: &Engine,
    subscriptions: &std::sync::Arc<crate::service::SubscriptionRegistry>,
    v: &Value,
) -> Result<(String, crate::service::Claim), Fault> {
    let arn = req_str(v, "ConsumerARN")?;
    let shard = req_str(v, "ShardId")?;
    let Some(position) = v.get("StartingPosition") else { return Err(missing("StartingPosition")) };
    let kind = iterator_type(req_str(position, "Type")?)?;
    let consumer = e.describe_stream_consumer(ConsumerRef::Arn(arn))?;
    let key =
        crate::service::subscription_key(&consumer.stream_arn, &consumer.consumer_name, shard);
    let claim = subscriptions.claim(key, std::time::Instant::now())?;
    let iterator = e.subscribe_to_shard(
        &consumer.stream_arn,
        &consumer.consumer_name,
        shard,
        kind,
        opt_str(position, "SequenceNumber")?,
        opt_time_ms(position, "Timestamp")?,
    )?;
    claim.started();
    Ok((iterator, claim))
}

/// Sends events until the subscription's 5 minutes are over, the shard ends, or the client
/// goes. A full channel (the client reads slowly) holds the loop back: the records wait in
/// the log, not in memory.
async fn stream_events(
    e: Engine,
    mut iterator: String,
    claim: crate::service::Claim,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let json_headers = |event: &'static str| {
        vec![
            (":event-type", event),
            (":content-type", "application/x-amz-json-1.1"),
            (":message-type", "event"),
        ]
    };
    if tx.send(event_message(&json_headers("initial-response"), b"{}")).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        if claim.taken_over() {
            let body = serde_json::to_vec(&json!({"message": "A newer subscription of this consumer to this shard took over."}))
                .unwrap_or_default();
            let headers = [
                (":exception-type", "ResourceInUseException"),
                (":content-type", "application/x-amz-json-1.1"),
                (":message-type", "exception"),
            ];
            let _ = tx.send(event_message(&headers, &body)).await;
            return;
        }
        let page = {
            let (e, it) = (e.clone(), iterator.clone());
            tokio::task::spawn_blocking(move || e.subscription_page(&it, Some(10_000))).await
        };
        let (raw, records) = match page {
            Ok(Ok(page)) => page,
            Ok(Err(err)) => {
                let body =
                    serde_json::to_vec(&json!({"message": err.to_string()})).unwrap_or_default();
                let headers = [
                    (":exception-type", err.kinesis_name()),
                    (":content-type", "application/x-amz-json-1.1"),
                    (":message-type", "exception"),
                ];
                let _ = tx.send(event_message(&headers, &body)).await;
                return;
            }
            Err(_) => return,
        };
        let mut event = json!({
            "Records": records.iter().map(|rec| json!({
                "SequenceNumber": rec.sequence_number.to_string(),
                "ApproximateArrivalTimestamp": seconds(rec.approximate_arrival_ms),
                "Data": base64::engine::general_purpose::STANDARD.encode(&rec.data),
                "PartitionKey": rec.partition_key_str(),
            })).collect::<Vec<_>>(),
            "MillisBehindLatest": raw.millis_behind_latest,
        });
        let end = raw.next_shard_iterator.is_none();
        if end {
            event["ChildShards"] = json!(raw.child_shards.iter().flatten().map(|c| json!({
                "ShardId": c.shard_id, "ParentShards": c.parent_shards,
                "HashKeyRange": {"StartingHashKey": c.hash_key_range.start.to_string(), "EndingHashKey": c.hash_key_range.end.to_string()},
            })).collect::<Vec<_>>());
        } else {
            let continuation = if raw.to_position == 0 {
                riffle_engine::SequenceNumber::starting(raw.shard_index, raw.stream_epoch)
            } else {
                riffle_engine::SequenceNumber::record(
                    raw.shard_index,
                    raw.stream_epoch,
                    raw.to_position - 1,
                )
            };
            event["ContinuationSequenceNumber"] = json!(continuation.to_string());
        }
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        if tx.send(event_message(&json_headers("SubscribeToShardEvent"), &payload)).await.is_err()
            || end
        {
            return;
        }
        let Some(next) = raw.next_shard_iterator else { return };
        iterator = next;
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        if records.is_empty() {
            let Ok(arrival) = e.wait_for_records(&iterator) else { return };
            tokio::select! {
                _ = arrival => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = claim.takeover.notify.notified() => {}
                _ = tx.closed() => return,
            }
        }
    }
}
