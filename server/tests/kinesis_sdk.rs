//! The Kinesis HTTP API against the AWS SDK for Rust (`aws-sdk-kinesis`), unchanged: the
//! same scenario as the boto3 conformance script (every operation, the errors a Kinesis
//! user expects, the iterator types, resharding, SubscribeToShard), over HTTP/1.1 and over
//! HTTP/2, plus SigV4 verification. Then the AWS SDK for JavaScript v3 (from npm), which
//! speaks HTTP/2 only, runs a script of the same scenario.
//!
//! The SDK's own HTTPS client (rustls over aws-lc) is left out: it is a long C build and
//! these tests speak plain HTTP on loopback. Instead the SDK gets a hyper client through
//! its `HttpClient` seam, HTTP/1.1 or HTTP/2 with prior knowledge (h2c), which is the
//! transport the real Kinesis uses for SubscribeToShard.

mod support;

use std::time::Duration;

use aws_sdk_kinesis as kinesis;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardFilter, ShardFilterType, ShardIteratorType, StartingPosition,
    SubscribeToShardEventStream,
};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;

/// An SDK HTTP connector over hyper's pooled client: HTTP/1.1, or HTTP/2 with prior
/// knowledge. A response in any other version fails the call.
#[derive(Debug, Clone)]
struct Hyper {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        SdkBody,
    >,
    version: http::Version,
}

impl Hyper {
    fn new(http2: bool) -> Hyper {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(http2)
                .build_http();
        Hyper {
            client,
            version: if http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 },
        }
    }
}

impl HttpConnector for Hyper {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (client, version) = (self.client.clone(), self.version);
        HttpConnectorFuture::new(async move {
            let request =
                request.try_into_http1x().map_err(|e| ConnectorError::other(e.into(), None))?;
            let response =
                client.request(request).await.map_err(|e| ConnectorError::io(e.into()))?;
            if response.version() != version {
                let got = format!("a response in {:?}, not {version:?}", response.version());
                return Err(ConnectorError::other(got.into(), None));
            }
            let response = response.map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

fn client(endpoint: &str, http2: bool, key: &str, secret: &str) -> kinesis::Client {
    let connector = SharedHttpConnector::new(Hyper::new(http2));
    let config = kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "riffle-tests"))
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .retry_config(kinesis::config::retry::RetryConfig::disabled())
        .build();
    kinesis::Client::from_conf(config)
}

/// The Kinesis error name and message of a failed call (panics on a transport failure,
/// printing it).
fn error<E, R>(result: Result<impl std::fmt::Debug, SdkError<E, R>>) -> (String, String)
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(SdkError::ServiceError(e)) => (
            e.err().code().unwrap_or_default().to_string(),
            e.err().message().unwrap_or_default().to_string(),
        ),
        Err(other) => panic!("expected a service error, got {other:?}"),
    }
}

fn shard_id(n: u32) -> String {
    format!("shardId-{n:012}")
}

async fn iterator(k: &kinesis::Client, shard: &str, kind: ShardIteratorType) -> String {
    iterator_at(k, shard, kind, None).await
}

/// A shard iterator of `orders`, from `sequence` for the two sequence-number types.
async fn iterator_at(
    k: &kinesis::Client,
    shard: &str,
    kind: ShardIteratorType,
    sequence: Option<&str>,
) -> String {
    k.get_shard_iterator()
        .stream_name("orders")
        .shard_id(shard)
        .shard_iterator_type(kind)
        .set_starting_sequence_number(sequence.map(str::to_string))
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator
        .expect("an iterator")
}

/// The whole scenario, against a fresh `riffled`, over one HTTP version.
async fn conformance(http2: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = support::start(dir.path(), &["--no-limits"]);
    let k = client(&daemon.endpoint, http2, "AKIDEXAMPLE", "secret");
    let arn = streams(&k).await;
    let first = puts(&k, &arn).await;
    reads(&k, first).await;
    let open_shard = resharding(&k).await;
    retention_and_tags(&k).await;
    consumers(&k, &arn, &open_shard).await;
    teardown(&k, &arn).await;
}

/// CreateStream and DescribeStreamSummary, and the errors of creating and describing;
/// returns the stream's ARN.
async fn streams(k: &kinesis::Client) -> String {
    k.create_stream().stream_name("orders").shard_count(3).send().await.expect("CreateStream");
    let summary = k
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("a summary");
    assert_eq!(summary.stream_status.as_str(), "ACTIVE");
    assert_eq!(summary.open_shard_count, 3);
    assert_eq!(summary.stream_arn, "arn:aws:kinesis:us-east-1:000000000000:stream/orders");
    let arn = summary.stream_arn.clone();
    assert_eq!(summary.retention_period_hours, 24);

    let (code, message) =
        error(k.create_stream().stream_name("orders").shard_count(1).send().await);
    assert_eq!(code, "ResourceInUseException");
    assert_eq!(message, "Stream orders under account 000000000000 already exists.");
    let missing = k.describe_stream_summary().stream_name("missing").send().await;
    assert!(missing
        .as_ref()
        .is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception())));
    assert_eq!(
        error(missing).1,
        "Stream missing under account 000000000000 not found.",
        "the modeled ResourceNotFoundException, with Kinesis's message"
    );
    let (code, _) = error(k.create_stream().stream_name("bad name!").shard_count(1).send().await);
    assert_eq!(code, "ValidationException");

    arn
}

/// The reference keys of spec §1.5 route to their shards; PutRecords by the ARN. Returns
/// the first record's sequence number.
async fn puts(k: &kinesis::Client, arn: &str) -> Option<String> {
    let mut first = None;
    for (key, shard) in [("a", 0), ("b", 1), ("e", 2)] {
        let out = k
            .put_record()
            .stream_name("orders")
            .partition_key(key)
            .data(Blob::new(key.as_bytes()))
            .send()
            .await
            .expect("PutRecord");
        assert_eq!(out.shard_id, shard_id(shard), "{key}");
        assert!(out.sequence_number.parse::<u128>().expect("a decimal sequence number") > 0);
        first.get_or_insert(out.sequence_number);
    }
    let entries: Vec<PutRecordsRequestEntry> = (0..50u8)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key("a")
                .data(Blob::new(vec![i]))
                .build()
                .expect("an entry")
        })
        .collect();
    let batch = k
        .put_records()
        .stream_arn(arn)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(batch.failed_record_count, Some(0));
    assert_eq!(batch.records.len(), 50);
    assert!(batch.records.iter().all(|r| r.shard_id.as_deref() == Some("shardId-000000000000")));

    first
}

/// Every iterator type, the arrival time, and the iterator errors.
async fn reads(k: &kinesis::Client, first: Option<String>) {
    let shards = k.list_shards().stream_name("orders").send().await.expect("ListShards");
    let ids: Vec<&str> = shards.shards().iter().map(|s| s.shard_id.as_str()).collect();
    assert_eq!(ids, [shard_id(0), shard_id(1), shard_id(2)]);
    let shard0 = shard_id(0);
    let it = iterator(k, &shard0, ShardIteratorType::TrimHorizon).await;
    let page = k.get_records().shard_iterator(it).limit(10).send().await.expect("GetRecords");
    assert_eq!(page.records.len(), 10);
    assert_eq!(page.records[0].data.as_ref(), b"a");
    assert_eq!(page.records[0].partition_key.as_deref(), Some("a"));
    assert_eq!(Some(&page.records[0].sequence_number), first.as_ref());
    let arrival = page.records[0].approximate_arrival_timestamp.expect("an arrival time");
    let now = DateTime::from(std::time::SystemTime::now());
    assert!((now.secs() - arrival.secs()).abs() < 60, "arrival {arrival} against now {now}");
    assert!(page.next_shard_iterator.is_some());

    let fourth = page.records[3].sequence_number.clone();
    let at = iterator_at(k, &shard0, ShardIteratorType::AtSequenceNumber, Some(&fourth)).await;
    let got = k.get_records().shard_iterator(at).limit(1).send().await.expect("GetRecords");
    assert_eq!(got.records[0].sequence_number, fourth);
    let after =
        iterator_at(k, &shard0, ShardIteratorType::AfterSequenceNumber, Some(&fourth)).await;
    let got = k.get_records().shard_iterator(after).limit(1).send().await.expect("GetRecords");
    assert_eq!(got.records[0].sequence_number, page.records[4].sequence_number);
    // AT_TIMESTAMP (sent by the SDK as epoch seconds): a minute ago reads from the start;
    // a time in the future is refused, as Kinesis does.
    let at_timestamp = |offset: i64| {
        k.get_shard_iterator()
            .stream_name("orders")
            .shard_id(&shard0)
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(DateTime::from_secs(now.secs() + offset))
            .send()
    };
    let it = at_timestamp(-60).await.expect("AT_TIMESTAMP").shard_iterator.expect("an iterator");
    let got = k.get_records().shard_iterator(it).limit(10).send().await.expect("GetRecords");
    assert_eq!(got.records.len(), 10);
    assert_eq!(got.records[0].sequence_number, page.records[0].sequence_number);
    let (code, message) = error(at_timestamp(3600).await);
    assert_eq!(code, "InvalidArgumentException");
    assert!(message.starts_with("The timestampInMillis parameter cannot be greater"), "{message}");
    let latest = iterator(k, &shard0, ShardIteratorType::Latest).await;
    let got = k.get_records().shard_iterator(latest).send().await.expect("GetRecords");
    assert!(got.records.is_empty());
    assert_eq!(got.millis_behind_latest, Some(0));
    let (code, _) = error(k.get_records().shard_iterator("garbage").send().await);
    assert_eq!(code, "InvalidArgumentException");
    let (code, _) = error(
        k.get_shard_iterator()
            .stream_name("orders")
            .shard_id(shard_id(9))
            .shard_iterator_type(ShardIteratorType::Latest)
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
}

/// A split closes the parent, which ends with its children; a merge in the wrong order is
/// refused, the right one done; UpdateShardCount. Returns an open shard.
async fn resharding(k: &kinesis::Client) -> kinesis::types::Shard {
    let shard0 = shard_id(0);
    k.split_shard()
        .stream_name("orders")
        .shard_to_split(&shard0)
        .new_starting_hash_key((1u128 << 100).to_string())
        .send()
        .await
        .expect("SplitShard");
    let latest = iterator(k, &shard0, ShardIteratorType::Latest).await;
    let end = k.get_records().shard_iterator(latest).send().await.expect("GetRecords");
    assert!(end.next_shard_iterator.is_none());
    let children: Vec<&str> = end.child_shards().iter().map(|c| c.shard_id.as_str()).collect();
    assert_eq!(children, [shard_id(3), shard_id(4)]);
    let (code, _) = error(
        k.merge_shards()
            .stream_name("orders")
            .shard_to_merge(shard_id(2))
            .adjacent_shard_to_merge(shard_id(1))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException", "a merge of shards in the wrong order");
    k.merge_shards()
        .stream_name("orders")
        .shard_to_merge(shard_id(1))
        .adjacent_shard_to_merge(shard_id(2))
        .send()
        .await
        .expect("MergeShards");
    let out = k
        .update_shard_count()
        .stream_name("orders")
        .target_shard_count(4)
        .scaling_type(kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    assert_eq!(out.target_shard_count, Some(4));
    let open = k
        .list_shards()
        .stream_name("orders")
        .shard_filter(
            ShardFilter::builder().r#type(ShardFilterType::AtLatest).build().expect("filter"),
        )
        .send()
        .await
        .expect("ListShards AT_LATEST");
    assert_eq!(open.shards().len(), 4);

    open.shards()[0].clone()
}

/// Retention up and (refused) down; tags added, removed, listed.
async fn retention_and_tags(k: &kinesis::Client) {
    k.increase_stream_retention_period()
        .stream_name("orders")
        .retention_period_hours(48)
        .send()
        .await
        .expect("IncreaseStreamRetentionPeriod");
    let (code, message) = error(
        k.decrease_stream_retention_period()
            .stream_name("orders")
            .retention_period_hours(72)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert!(message.contains("Use IncreaseRetentionPeriod API"), "{message}");
    k.add_tags_to_stream()
        .stream_name("orders")
        .tags("team", "payments")
        .tags("tier", "gold")
        .send()
        .await
        .expect("AddTagsToStream");
    k.remove_tags_from_stream()
        .stream_name("orders")
        .tag_keys("tier")
        .send()
        .await
        .expect("RemoveTagsFromStream");
    let tags = k.list_tags_for_stream().stream_name("orders").send().await.expect("ListTags");
    let tags: Vec<(&str, Option<&str>)> =
        tags.tags.iter().map(|t| (t.key.as_str(), t.value.as_deref())).collect();
    assert_eq!(tags, [("team", Some("payments"))]);
}

/// Consumers, and SubscribeToShard: the pushed record arrives; a second subscription and an
/// unknown consumer are refused.
async fn consumers(k: &kinesis::Client, arn: &str, open_shard: &kinesis::types::Shard) {
    let consumer = k
        .register_stream_consumer()
        .stream_arn(arn)
        .consumer_name("billing")
        .send()
        .await
        .expect("RegisterStreamConsumer")
        .consumer
        .expect("a consumer");
    assert!(consumer.consumer_arn.starts_with(&format!("{arn}/consumer/billing:")));
    let consumer_arn = consumer.consumer_arn.clone();
    let described = k
        .describe_stream_consumer()
        .consumer_arn(&consumer_arn)
        .send()
        .await
        .expect("DescribeStreamConsumer")
        .consumer_description
        .expect("a description");
    assert_eq!(described.consumer_status.as_str(), "ACTIVE");
    let listed = k.list_stream_consumers().stream_arn(arn).send().await.expect("ListConsumers");
    assert_eq!(listed.consumers().len(), 1);

    let start_key = open_shard.hash_key_range.as_ref().expect("a range").starting_hash_key.clone();
    let pushed = k
        .put_record()
        .stream_name("orders")
        .partition_key("p")
        .explicit_hash_key(start_key)
        .data(Blob::new(&b"pushed"[..]))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(pushed.shard_id, open_shard.shard_id);
    let mut subscription = k
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id(&open_shard.shard_id)
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .expect("a position"),
        )
        .send()
        .await
        .expect("SubscribeToShard");
    let mut found = None;
    for _ in 0..20 {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.event_stream.recv())
            .await
            .expect("an event within 10 s")
            .expect("a well-formed event");
        let Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)) = event else {
            panic!("expected a SubscribeToShardEvent, got {event:?}");
        };
        assert!(!event.continuation_sequence_number().is_empty());
        assert!(event.millis_behind_latest() >= 0);
        found = event.records().iter().find(|r| r.data.as_ref() == b"pushed").cloned();
        if found.is_some() {
            break;
        }
    }
    let found = found.expect("the pushed record arrives by SubscribeToShard");
    assert_eq!(found.sequence_number, pushed.sequence_number);

    // A second subscription while the first runs is refused; so is an unknown consumer.
    let again = k
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id(&open_shard.shard_id)
        .starting_position(
            StartingPosition::builder().r#type(ShardIteratorType::Latest).build().expect("pos"),
        )
        .send()
        .await;
    let (code, _) = error(again.map(|_| ()));
    assert!(
        code == "LimitExceededException" || code == "ResourceInUseException",
        "a second subscription at once: {code}"
    );
    let unknown = k
        .subscribe_to_shard()
        .consumer_arn(format!("{arn}/consumer/nobody:1"))
        .shard_id(&open_shard.shard_id)
        .starting_position(
            StartingPosition::builder().r#type(ShardIteratorType::Latest).build().expect("pos"),
        )
        .send()
        .await;
    assert_eq!(error(unknown.map(|_| ())).0, "ResourceNotFoundException");
    drop(subscription);
}

/// Deregistering, listing and deleting.
async fn teardown(k: &kinesis::Client, arn: &str) {
    k.deregister_stream_consumer()
        .stream_arn(arn)
        .consumer_name("billing")
        .send()
        .await
        .expect("DeregisterStreamConsumer");
    let names = k.list_streams().send().await.expect("ListStreams").stream_names;
    assert_eq!(names, ["orders"]);
    k.delete_stream().stream_name("orders").send().await.expect("DeleteStream");
    let (code, _) = error(k.describe_stream().stream_name("orders").send().await);
    assert_eq!(code, "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_runs_the_conformance_scenario_over_http1() {
    conformance(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_runs_the_conformance_scenario_over_http2() {
    conformance(true).await;
}

/// With `--credentials`, the SDK's signature (SigV4 over HTTP/2's `:authority`, too) is
/// accepted with the right key, and a wrong secret or an unknown key gets Kinesis's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_signs_and_riffle_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = support::start(dir.path(), &["--credentials", "AKIDRIFFLE:s3cret"]);
    for http2 in [false, true] {
        let good = client(&daemon.endpoint, http2, "AKIDRIFFLE", "s3cret");
        good.list_streams().send().await.expect("a correctly signed request");
        let wrong = client(&daemon.endpoint, http2, "AKIDRIFFLE", "wrong");
        assert_eq!(error(wrong.list_streams().send().await).0, "InvalidSignatureException");
        let unknown = client(&daemon.endpoint, http2, "NOBODY", "s3cret");
        assert_eq!(error(unknown.list_streams().send().await).0, "UnrecognizedClientException");
    }
}

/// The AWS SDK for JavaScript v3 (from npm; `scripts/test.sh` runs `npm ci` in
/// `tests/kinesis/js`) runs `tests/kinesis/js/conformance.mjs`. That SDK sends every call
/// over HTTP/2, so this is a second, independent HTTP/2 client, SubscribeToShard included.
#[test]
fn the_javascript_sdk_runs_its_conformance_script_over_http2() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kinesis/js");
    assert!(
        js.join("node_modules/@aws-sdk/client-kinesis").is_dir(),
        "Node.js and the JavaScript SDK are needed: npm ci --prefix {} (scripts/test.sh does it)",
        js.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = support::start(dir.path(), &["--no-limits"]);
    let out = std::process::Command::new("node")
        .arg(js.join("conformance.mjs"))
        .arg(&daemon.endpoint)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("javascript sdk conformance: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
