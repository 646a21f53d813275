// The AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis, from npm) against riffled's
// Kinesis API. This SDK sends every Kinesis call over HTTP/2 (its NodeHttp2Handler; h2c
// for an http:// endpoint), SubscribeToShard included.
// Usage: node conformance.mjs http://127.0.0.1:PORT
// Exits non-zero with a message on the first difference.
import {
  KinesisClient, CreateStreamCommand, DescribeStreamSummaryCommand, PutRecordCommand,
  PutRecordsCommand, ListShardsCommand, GetShardIteratorCommand, GetRecordsCommand,
  SplitShardCommand, RegisterStreamConsumerCommand, DescribeStreamConsumerCommand,
  SubscribeToShardCommand, DeregisterStreamConsumerCommand, ListStreamsCommand,
  DeleteStreamCommand, AddTagsToStreamCommand, ListTagsForStreamCommand,
  ResourceInUseException, ResourceNotFoundException, waitUntilStreamExists,
} from "@aws-sdk/client-kinesis";

const endpoint = process.argv[2];
const k = new KinesisClient({
  endpoint, region: "us-east-1", maxAttempts: 1,
  credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
});
const enc = new TextEncoder();
const dec = new TextDecoder();

function check(cond, what) {
  if (!cond) {
    console.log("FAILED:", typeof what === "string" ? what : JSON.stringify(what));
    process.exit(1);
  }
}
async function failure(command) {
  try {
    await k.send(command);
  } catch (e) {
    return e;
  }
  return null;
}
const shardId = (n) => `shardId-${String(n).padStart(12, "0")}`;

await k.send(new CreateStreamCommand({ StreamName: "orders", ShardCount: 3 }));
await waitUntilStreamExists({ client: k, maxWaitTime: 10, minDelay: 1 }, { StreamName: "orders" });
const summary = (await k.send(new DescribeStreamSummaryCommand({ StreamName: "orders" }))).StreamDescriptionSummary;
check(summary.StreamStatus === "ACTIVE" && summary.OpenShardCount === 3, summary);
const arn = summary.StreamARN;
check(arn === "arn:aws:kinesis:us-east-1:000000000000:stream/orders", arn);
check(summary.StreamCreationTimestamp instanceof Date, "timestamps parse as Dates");

let e = await failure(new CreateStreamCommand({ StreamName: "orders", ShardCount: 1 }));
check(e instanceof ResourceInUseException && e.message === "Stream orders under account 000000000000 already exists.", `${e}`);
e = await failure(new DescribeStreamSummaryCommand({ StreamName: "missing" }));
check(e instanceof ResourceNotFoundException && e.$metadata.httpStatusCode === 400, `${e}`);

// Spec §1.5 reference keys.
let first;
for (const [key, shard] of [["a", 0], ["b", 1], ["e", 2]]) {
  const out = await k.send(new PutRecordCommand({ StreamName: "orders", PartitionKey: key, Data: enc.encode(key) }));
  check(out.ShardId === shardId(shard), [key, out]);
  first ??= out.SequenceNumber;
}
const batch = await k.send(new PutRecordsCommand({
  StreamARN: arn,
  Records: Array.from({ length: 50 }, (_, i) => ({ PartitionKey: "a", Data: Uint8Array.of(i) })),
}));
check(batch.FailedRecordCount === 0 && batch.Records.length === 50, batch.FailedRecordCount);

const shards = (await k.send(new ListShardsCommand({ StreamName: "orders" }))).Shards;
check(shards.map((s) => s.ShardId).join() === [0, 1, 2].map(shardId).join(), shards);
const iterator = async (ShardIteratorType, extra = {}) =>
  (await k.send(new GetShardIteratorCommand({ StreamName: "orders", ShardId: shardId(0), ShardIteratorType, ...extra }))).ShardIterator;
const page = await k.send(new GetRecordsCommand({ ShardIterator: await iterator("TRIM_HORIZON"), Limit: 10 }));
check(page.Records.length === 10 && dec.decode(page.Records[0].Data) === "a" && page.Records[0].SequenceNumber === first, page.Records[0]);
check(page.Records[0].ApproximateArrivalTimestamp instanceof Date, "arrival time");
const at = await iterator("AT_TIMESTAMP", { Timestamp: new Date(Date.now() - 60_000) });
const fromTime = await k.send(new GetRecordsCommand({ ShardIterator: at, Limit: 1 }));
check(fromTime.Records[0].SequenceNumber === first, "AT_TIMESTAMP");
const after = await iterator("AFTER_SEQUENCE_NUMBER", { StartingSequenceNumber: page.Records[3].SequenceNumber });
const next = await k.send(new GetRecordsCommand({ ShardIterator: after, Limit: 1 }));
check(next.Records[0].SequenceNumber === page.Records[4].SequenceNumber, "AFTER_SEQUENCE_NUMBER");
e = await failure(new GetRecordsCommand({ ShardIterator: "garbage" }));
check(e?.name === "InvalidArgumentException", `${e}`);

// Resharding: the split parent ends with its children.
await k.send(new SplitShardCommand({ StreamName: "orders", ShardToSplit: shardId(0), NewStartingHashKey: (2n ** 100n).toString() }));
const end = await k.send(new GetRecordsCommand({ ShardIterator: await iterator("LATEST") }));
check(end.NextShardIterator === undefined && end.ChildShards.length === 2, end);

await k.send(new AddTagsToStreamCommand({ StreamName: "orders", Tags: { team: "payments" } }));
const tags = (await k.send(new ListTagsForStreamCommand({ StreamName: "orders" }))).Tags;
check(tags.length === 1 && tags[0].Key === "team" && tags[0].Value === "payments", tags);

// Enhanced fan-out: SubscribeToShard's event stream over HTTP/2.
const consumer = (await k.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: "billing" }))).Consumer;
check(consumer.ConsumerARN.startsWith(`${arn}/consumer/billing:`), consumer);
const described = (await k.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumer.ConsumerARN }))).ConsumerDescription;
check(described.ConsumerStatus === "ACTIVE", described);
const open = (await k.send(new ListShardsCommand({ StreamName: "orders", ShardFilter: { Type: "AT_LATEST" } }))).Shards[0];
const pushed = await k.send(new PutRecordCommand({
  StreamName: "orders", PartitionKey: "p", ExplicitHashKey: open.HashKeyRange.StartingHashKey, Data: enc.encode("pushed"),
}));
check(pushed.ShardId === open.ShardId, [pushed, open]);
const subscription = await k.send(new SubscribeToShardCommand({
  ConsumerARN: consumer.ConsumerARN, ShardId: open.ShardId, StartingPosition: { Type: "TRIM_HORIZON" },
}));
let found = null;
let events = 0;
for await (const event of subscription.EventStream) {
  const body = event.SubscribeToShardEvent;
  check(body && typeof body.ContinuationSequenceNumber === "string" && typeof body.MillisBehindLatest === "number", event);
  found = body.Records.find((r) => dec.decode(r.Data) === "pushed") ?? null;
  if (found || ++events > 20) break;
}
check(found !== null && found.SequenceNumber === pushed.SequenceNumber, "the pushed record arrives by SubscribeToShard");
await k.send(new DeregisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: "billing" }));

const names = (await k.send(new ListStreamsCommand({}))).StreamNames;
check(names.join() === "orders", names);
await k.send(new DeleteStreamCommand({ StreamName: "orders" }));
e = await failure(new DescribeStreamSummaryCommand({ StreamName: "orders" }));
check(e instanceof ResourceNotFoundException, `${e}`);
k.destroy();
console.log("javascript sdk conformance: ok");
