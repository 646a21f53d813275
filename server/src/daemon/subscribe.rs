//! SubscribeToShard on a connection: push fan-out with credit-based flow control.

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::{DaemonConfig, Replies};
use crate::protocol::{self, Request};
use crate::service::{Reply, Service};

/// Flow-control state of one subscription, shared with the connection's reader.
pub(super) struct Subscription {
    /// Bytes the server may still send (credit granted minus bytes sent).
    pub(super) credit: Cell<i64>,
    /// Woken by new credit or by the connection closing.
    pub(super) wake: tokio::sync::Notify,
}

/// Serves one SubscribeToShard until its lifetime ends, the shard ends, the connection
/// goes, or the daemon stops. Events carry stored batches (zero copy); an event is sent only
/// while the subscription has credit, so a slow consumer holds at most one event beyond its
/// credit, and falls behind in the log instead of in memory.
pub(super) async fn subscribe(
    service: &Service,
    id: u64,
    request: Request,
    sub: &Subscription,
    tx: &Replies,
    config: &DaemonConfig,
    mut stop: watch::Receiver<bool>,
) {
    use crate::protocol::{op, Records, FLAG_END, FLAG_EVENT};
    use riffle_engine::{IteratorType, SequenceNumber};
    let opcode = op::SUBSCRIBE_TO_SHARD;
    let Request::SubscribeToShard {
        stream,
        consumer_name,
        shard_id,
        iterator_type,
        starting_sequence_number,
        timestamp_ms,
        credit_bytes,
    } = request
    else {
        return;
    };
    sub.credit.set(sub.credit.get() + i64::from(credit_bytes));
    let engine = service.engine();
    let kind = match iterator_type {
        0 => IteratorType::TrimHorizon,
        1 => IteratorType::Latest,
        2 => IteratorType::AtSequenceNumber,
        3 => IteratorType::AfterSequenceNumber,
        _ => IteratorType::AtTimestamp,
    };
    let seq = starting_sequence_number.map(|n| n.to_string());
    // SubscribeToShard's rules, across connections: keyed by stream, consumer and shard.
    let key = crate::service::subscription_key(&stream, &consumer_name, &shard_id);
    let claim = match service.subscriptions().claim(key, std::time::Instant::now()) {
        Ok(claim) => claim,
        Err(e) => {
            let _ = tx.send(Reply::error(id, opcode, e.kinesis_name(), &e.to_string()));
            return;
        }
    };
    let mut iterator = match engine.subscribe_to_shard(
        &stream,
        &consumer_name,
        &shard_id,
        kind,
        seq.as_deref(),
        timestamp_ms,
    ) {
        Ok(it) => it,
        Err(e) => {
            let _ = tx.send(Reply::error(id, opcode, e.kinesis_name(), &e.to_string()));
            return;
        }
    };
    claim.started();
    let taken_over = || claim.taken_over();
    let limited = engine.config().limits.enabled;
    let rate = 2.0 * 1024.0 * 1024.0; // bytes per second per consumer per shard
    let started = tokio::time::Instant::now();
    let deadline = started + config.subscription_lifetime;
    let mut allowed_at = started;
    // The first event goes out at once (it confirms the subscription and carries a
    // continuation even when nothing is there yet).
    let mut last_event = started.checked_sub(config.heartbeat).unwrap_or(started);
    // `end`: the end of a closed shard (no continuation); `last`: the final frame.
    let event = |raw: &riffle_engine::RawRecords, end: bool, last: bool| -> Reply {
        let continuation = if end {
            None
        } else if raw.to_position == 0 {
            Some(SequenceNumber::starting(raw.shard_index, raw.stream_epoch).to_string())
        } else {
            Some(
                SequenceNumber::record(raw.shard_index, raw.stream_epoch, raw.to_position - 1)
                    .to_string(),
            )
        };
        let records = Records {
            shard_index: raw.shard_index,
            stream_epoch: raw.stream_epoch,
            from_position: raw.from_position,
            to_position: raw.to_position,
            min_timestamp_ms: raw.min_timestamp_ms,
            millis_behind_latest: raw.millis_behind_latest,
            next: continuation,
            child_shards: raw
                .child_shards
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|c| protocol::Child {
                    shard_id: c.shard_id,
                    parent_shards: c.parent_shards,
                    starting_hash_key: c.hash_key_range.start,
                    ending_hash_key: c.hash_key_range.end,
                })
                .collect(),
            batches: Bytes::new(),
        };
        let total: usize = raw.batches.iter().map(Bytes::len).sum();
        let flags = FLAG_EVENT | if end || last { FLAG_END } else { 0 };
        Reply::frame_parts(id, opcode, flags, records.encode_head_for(total), raw.batches.clone())
    };
    'sub: loop {
        if taken_over() {
            let _ = tx.send(Reply::error(
                id,
                opcode,
                "ResourceInUseException",
                "A newer subscription of this consumer to this shard took over.",
            ));
            return;
        }
        // Wait for credit (and the per-consumer rate), the deadline, or shutdown.
        while sub.credit.get() <= 0 || (limited && tokio::time::Instant::now() < allowed_at) {
            if sub.credit.get() < i64::MIN / 4 {
                return; // the connection is closing
            }
            let pace = allowed_at.max(tokio::time::Instant::now() + Duration::from_millis(1));
            tokio::select! {
                _ = sub.wake.notified() => {}
                _ = tokio::time::sleep_until(pace), if sub.credit.get() > 0 => {}
                _ = tokio::time::sleep_until(deadline) => break 'sub,
                _ = stop.changed() => break 'sub,
                _ = claim.takeover.notify.notified() => continue 'sub,
            }
        }
        if *stop.borrow() {
            let _ = tx.send(Reply::error(id, opcode, "ServiceUnavailable", "riffled is shutting down; subscribe again from the last continuation sequence number."));
            return;
        }
        let now = tokio::time::Instant::now();
        let raw = match engine.read_for_subscription(&iterator, Some(10_000)) {
            Ok(raw) => raw,
            Err(e) => {
                let _ = tx.send(Reply::error(id, opcode, e.kinesis_name(), &e.to_string()));
                return;
            }
        };
        let Some(next) = raw.next_shard_iterator.clone() else {
            // The end of a closed shard: the last event names the children.
            let _ = tx.send(event(&raw, true, true));
            return;
        };
        if now >= deadline {
            let _ = tx.send(event(&raw, false, true));
            return;
        }
        let bytes: usize = raw.batches.iter().map(Bytes::len).sum();
        if raw.record_count > 0 || now.duration_since(last_event) >= config.heartbeat {
            sub.credit.set(sub.credit.get() - bytes as i64);
            if limited {
                allowed_at = allowed_at.max(now)
                    + Duration::from_secs_f64(raw.data_bytes as f64 / rate)
                    - Duration::from_secs(1).min(allowed_at.max(now) - started);
            }
            last_event = now;
            if tx.send(event(&raw, false, false)).is_err() {
                return;
            }
        }
        iterator = next;
        if raw.record_count == 0 {
            // At the tip: sleep until a record is durable, the heartbeat, or the end.
            let arrival = match engine.wait_for_records(&iterator) {
                Ok(wait) => wait,
                Err(e) => {
                    let _ = tx.send(Reply::error(id, opcode, e.kinesis_name(), &e.to_string()));
                    return;
                }
            };
            tokio::select! {
                _ = arrival => {}
                _ = tokio::time::sleep(config.heartbeat) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stop.changed() => {}
                _ = claim.takeover.notify.notified() => {}
                // New credit, or the connection closing (credit set far below zero).
                _ = sub.wake.notified() => {
                    if sub.credit.get() < i64::MIN / 4 {
                        return;
                    }
                }
            }
        }
    }
    if *stop.borrow() {
        let _ = tx.send(Reply::error(
            id,
            opcode,
            "ServiceUnavailable",
            "riffled is shutting down; subscribe again from the last continuation sequence number.",
        ));
    } else {
        // Lifetime over while waiting for credit: end without data.
        let _ =
            tx.send(Reply::frame_parts(id, opcode, FLAG_EVENT | FLAG_END, Vec::new(), Vec::new()));
    }
}
