//! SubscribeToShard over HTTP: the request's checks, and the AWS event stream (framing
//! and the loop that sends events as records become durable).

use super::fields::*;
use super::*;

/// One event-stream message: prelude (total length, headers length, CRC), headers (string
/// values, type 7), payload, CRC of everything before it; all big-endian.
pub(super) fn event_message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
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
pub(super) struct EventBody(pub(super) tokio::sync::mpsc::Receiver<Bytes>);

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
pub(super) fn start_subscription(
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
pub(super) async fn stream_events(
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
