//! Push fan-out against a real `riffled`: SubscribeToShard with credit, a slow consumer
//! among eight, subscriptions ended by shutdown, and the subscription rate and takeover rules.

use riffle_server::client::{decode_records, Client, ClientError};
use riffle_server::protocol::{Request, Response, FLAG_ERROR};

use super::{put, Riffled};

/// A record read back: (sequence number, data).
type Stored = (u128, Vec<u8>);

/// Reads a subscription's events until `want` records arrived (or the end of the shard),
/// granting credit back after each event, sleeping `pause` per event (a slow consumer).
fn consume_subscription(
    c: &mut Client,
    id: u64,
    want: usize,
    pause: std::time::Duration,
) -> (Vec<Stored>, Option<Vec<String>>) {
    let mut got = Vec::new();
    loop {
        let frame = c.next_frame().expect("event");
        assert_eq!(frame.request_id, id);
        let response =
            Response::decode(frame.opcode, frame.flags, &frame.body).expect("event decodes");
        let Response::Records(page) = response else { panic!("{response:?}") };
        let records = decode_records(&page).expect("valid records in the event");
        got.extend(records.into_iter().map(|r| (r.sequence_number, r.data.to_vec())));
        if frame.flags & riffle_server::protocol::FLAG_END != 0 {
            let children = (!page.child_shards.is_empty())
                .then(|| page.child_shards.iter().map(|c| c.shard_id.clone()).collect());
            return (got, children);
        }
        std::thread::sleep(pause);
        c.send(&Request::Credit {
            subscription_request_id: id,
            bytes: page.batches.len().max(1) as u32,
        })
        .expect("credit");
        if got.len() >= want {
            return (got, None);
        }
    }
}

fn subscribe(c: &mut Client, consumer: &str, shard: &str, credit: u32) -> u64 {
    c.send(&Request::SubscribeToShard {
        stream: "f".into(),
        consumer_name: consumer.into(),
        shard_id: shard.into(),
        iterator_type: 0,
        starting_sequence_number: None,
        timestamp_ms: None,
        credit_bytes: credit,
    })
    .expect("subscribe")
}

/// Push fan-out to 8 consumers, one of them slow, while a producer writes: every consumer
/// gets every record once, in order, as stored.
#[test]
fn push_fan_out_to_eight_consumers_with_one_slow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut admin = server.client();
    admin
        .call(&Request::CreateStream { stream: "f".into(), shard_count: Some(1), on_demand: false })
        .expect("create");
    for i in 0..8 {
        admin
            .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: format!("c{i}") })
            .expect("register");
    }
    admin
        .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: "end".into() })
        .expect("register");
    const N: usize = 600;
    let consumers: Vec<_> = (0..8)
        .map(|i| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr).expect("connect");
                let id = subscribe(&mut c, &format!("c{i}"), "shardId-000000000000", 16 * 1024);
                let pause = std::time::Duration::from_millis(if i == 0 { 15 } else { 0 });
                consume_subscription(&mut c, id, N, pause).0
            })
        })
        .collect();
    let mut sent = Vec::new();
    for i in 0..N {
        let data = format!("{i:06}-{}", "x".repeat(1000)).into_bytes();
        let (_, seq) = put(&mut admin, "f", "k", &data);
        sent.push((seq, data));
    }
    for (i, c) in consumers.into_iter().enumerate() {
        let got = c.join().expect("consumer");
        assert_eq!(got.len(), N, "consumer {i}");
        assert_eq!(got, sent, "consumer {i} got every record once, in order");
    }
    // The end of a closed shard ends the subscription and names the children.
    let mut c = server.client();
    let id = subscribe(&mut c, "end", "shardId-000000000000", 64 * 1024 * 1024);
    std::thread::sleep(std::time::Duration::from_millis(50));
    admin
        .call(&Request::SplitShard {
            stream: "f".into(),
            shard_id: "0".into(),
            new_starting_hash_key: 1 << 127,
        })
        .expect("split");
    let (got, children) = consume_subscription(&mut c, id, usize::MAX, std::time::Duration::ZERO);
    assert_eq!(got.len(), N);
    assert_eq!(
        children,
        Some(vec!["shardId-000000000001".to_string(), "shardId-000000000002".to_string()])
    );
    // An unknown consumer is an ordinary error.
    let id = subscribe(&mut c, "nobody", "shardId-000000000001", 1024);
    assert!(
        matches!(c.receive(id), Err(ClientError::Server { code, .. }) if code == "ResourceNotFoundException")
    );
}

/// SIGTERM with a subscription open: the subscriber is told why (`ServiceUnavailable`),
/// in-flight requests are answered, and riffled exits 0.
#[test]
fn shutdown_ends_subscriptions_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut admin = server.client();
    admin
        .call(&Request::CreateStream { stream: "f".into(), shard_count: Some(1), on_demand: false })
        .expect("create");
    admin
        .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: "c".into() })
        .expect("register");
    let mut c = server.client();
    let id = subscribe(&mut c, "c", "shardId-000000000000", 1 << 20);
    let first = c.next_frame().expect("a first event (heartbeat)");
    assert_eq!(first.request_id, id);
    assert!(server.terminate().success(), "exit 0");
    loop {
        let frame = c.next_frame().expect("frames until the reason");
        if frame.flags & FLAG_ERROR != 0 {
            match Response::decode(frame.opcode, frame.flags, &frame.body) {
                Ok(Response::Error { code, .. }) => assert_eq!(code, "ServiceUnavailable"),
                other => panic!("{other:?}"),
            }
            break;
        }
    }
}

/// SubscribeToShard's rules across connections: one call per second per consumer and shard
/// (`LimitExceededException`), no second subscription within 5 s of a successful one
/// (`ResourceInUseException`), and after that the newer one takes over (the older ends with
/// `ResourceInUseException`).
#[test]
fn subscribe_to_shard_rate_and_takeover_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Riffled::start(dir.path());
    let mut admin = server.client();
    admin
        .call(&Request::CreateStream { stream: "f".into(), shard_count: Some(1), on_demand: false })
        .expect("create");
    admin
        .call(&Request::RegisterConsumer { stream: "f".into(), consumer_name: "c".into() })
        .expect("register");
    let mut first = server.client();
    let first_id = subscribe(&mut first, "c", "0", 1 << 20);
    assert_eq!(first.next_frame().expect("an event").request_id, first_id);
    let mut second = server.client();
    let id = subscribe(&mut second, "c", "shardId-000000000000", 1 << 20);
    assert!(
        matches!(second.receive(id), Err(ClientError::Server { code, .. }) if code == "LimitExceededException")
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let id = subscribe(&mut second, "c", "0", 1 << 20);
    assert!(
        matches!(second.receive(id), Err(ClientError::Server { code, .. }) if code == "ResourceInUseException")
    );
    std::thread::sleep(std::time::Duration::from_millis(4000));
    let id = subscribe(&mut second, "c", "0", 1 << 20);
    assert_eq!(second.next_frame().expect("the newer subscription runs").request_id, id);
    loop {
        let frame = first.next_frame().expect("the older subscription's frames");
        if frame.flags & FLAG_ERROR != 0 {
            match Response::decode(frame.opcode, frame.flags, &frame.body) {
                Ok(Response::Error { code, .. }) => assert_eq!(code, "ResourceInUseException"),
                other => panic!("{other:?}"),
            }
            break;
        }
    }
}
