"""boto3 against riffled's Kinesis API: the operations a Kinesis user runs first, and the
errors they expect. Usage: python3 boto3_conformance.py http://127.0.0.1:PORT
Exits non-zero with a message on the first difference."""
import sys

import boto3
import botocore

endpoint = sys.argv[1]
k = boto3.client(
    "kinesis",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="secret",
    config=botocore.config.Config(retries={"max_attempts": 1}),
)


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)


def error_code(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"].get("Message", "")
    return None, None


k.create_stream(StreamName="orders", ShardCount=3)
k.get_waiter("stream_exists").wait(StreamName="orders", WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
summary = k.describe_stream_summary(StreamName="orders")["StreamDescriptionSummary"]
check(summary["StreamStatus"] == "ACTIVE" and summary["OpenShardCount"] == 3, f"summary {summary}")
arn = summary["StreamARN"]
check(arn == "arn:aws:kinesis:us-east-1:000000000000:stream/orders", arn)

code, message = error_code(k.create_stream, StreamName="orders", ShardCount=1)
check(code == "ResourceInUseException" and message == "Stream orders under account 000000000000 already exists.", (code, message))
code, message = error_code(k.describe_stream_summary, StreamName="missing")
check(code == "ResourceNotFoundException" and message == "Stream missing under account 000000000000 not found.", (code, message))
check(isinstance(k.exceptions.ResourceNotFoundException, type), "modeled exceptions")

# Spec §1.5 reference keys.
for key, shard in [("a", 0), ("b", 1), ("e", 2)]:
    out = k.put_record(StreamName="orders", PartitionKey=key, Data=key.encode())
    check(out["ShardId"] == f"shardId-{shard:012d}", f"{key} -> {out}")
    check(int(out["SequenceNumber"]) > 0, out)
batch = k.put_records(StreamName="orders", Records=[{"PartitionKey": "a", "Data": bytes([i])} for i in range(50)])
check(batch["FailedRecordCount"] == 0 and len(batch["Records"]) == 50, batch["FailedRecordCount"])

shards = k.list_shards(StreamName="orders")["Shards"]
check([s["ShardId"] for s in shards] == [f"shardId-{i:012d}" for i in range(3)], shards)
it = k.get_shard_iterator(StreamName="orders", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
page = k.get_records(ShardIterator=it, Limit=10)
check(len(page["Records"]) == 10 and page["Records"][0]["Data"] == b"a", page["Records"][:1])
check(page["Records"][0]["PartitionKey"] == "a" and "ApproximateArrivalTimestamp" in page["Records"][0], page["Records"][0])
seq = page["Records"][3]["SequenceNumber"]
after = k.get_shard_iterator(StreamName="orders", ShardId="shardId-000000000000",
                             ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seq)["ShardIterator"]
check(k.get_records(ShardIterator=after, Limit=1)["Records"][0]["SequenceNumber"] == page["Records"][4]["SequenceNumber"], "AFTER_SEQUENCE_NUMBER")
code, _ = error_code(k.get_records, ShardIterator="garbage")
check(code == "InvalidArgumentException", code)

# Resharding: split, then the parent ends with its children.
k.split_shard(StreamName="orders", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**100))
latest = k.get_shard_iterator(StreamName="orders", ShardId="shardId-000000000000", ShardIteratorType="LATEST")["ShardIterator"]
end = k.get_records(ShardIterator=latest)
check(end.get("NextShardIterator") is None and len(end["ChildShards"]) == 2, end)
code, _ = error_code(k.merge_shards, StreamName="orders", ShardToMerge="shardId-000000000002", AdjacentShardToMerge="shardId-000000000001")
check(code == "InvalidArgumentException", f"reversed merge {code}")
out = k.update_shard_count(StreamName="orders", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
check(out["TargetShardCount"] == 4, out)

# Retention, tags, consumers.
k.increase_stream_retention_period(StreamName="orders", RetentionPeriodHours=48)
code, message = error_code(k.decrease_stream_retention_period, StreamName="orders", RetentionPeriodHours=72)
check(code == "InvalidArgumentException" and "Use IncreaseRetentionPeriod API" in message, message)
k.add_tags_to_stream(StreamName="orders", Tags={"team": "payments"})
check(k.list_tags_for_stream(StreamName="orders")["Tags"] == [{"Key": "team", "Value": "payments"}], "tags")
consumer = k.register_stream_consumer(StreamARN=arn, ConsumerName="billing")["Consumer"]
check(consumer["ConsumerName"] == "billing" and consumer["ConsumerARN"].startswith(arn + "/consumer/billing:"), consumer)
described = k.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
check(described["ConsumerStatus"] == "ACTIVE", described)
check(len(k.list_stream_consumers(StreamARN=arn)["Consumers"]) == 1, "list consumers")

# Enhanced fan-out: SubscribeToShard over the event stream.
open_shard = k.list_shards(StreamName="orders", ShardFilter={"Type": "AT_LATEST"})["Shards"][0]
start_key = open_shard["HashKeyRange"]["StartingHashKey"]
pushed = k.put_record(StreamName="orders", PartitionKey="p", ExplicitHashKey=start_key, Data=b"pushed")
check(pushed["ShardId"] == open_shard["ShardId"], (pushed, open_shard))
stream_events = k.subscribe_to_shard(
    ConsumerARN=consumer["ConsumerARN"], ShardId=open_shard["ShardId"], StartingPosition={"Type": "TRIM_HORIZON"}
)["EventStream"]
found = None
for n, event in enumerate(stream_events):
    body = event["SubscribeToShardEvent"]
    check("ContinuationSequenceNumber" in body and "MillisBehindLatest" in body, body)
    for r in body["Records"]:
        if r["Data"] == b"pushed":
            found = r
    if found or n > 20:
        break
check(found is not None and found["SequenceNumber"] == pushed["SequenceNumber"], "the pushed record arrives by SubscribeToShard")
# The rules per consumer and shard (the first subscription is still open): at most one call
# per second, and none within 5 s of a running subscription.
code, _ = error_code(k.subscribe_to_shard, ConsumerARN=consumer["ConsumerARN"], ShardId=open_shard["ShardId"],
                     StartingPosition={"Type": "LATEST"})
check(code in ("LimitExceededException", "ResourceInUseException"), f"a second subscription at once: {code}")
code, _ = error_code(k.subscribe_to_shard, ConsumerARN=arn + "/consumer/nobody:1", ShardId=open_shard["ShardId"],
                     StartingPosition={"Type": "LATEST"})
check(code == "ResourceNotFoundException", code)
k.deregister_stream_consumer(StreamARN=arn, ConsumerName="billing")

names = k.list_streams()["StreamNames"]
check(names == ["orders"], names)
k.delete_stream(StreamName="orders")
code, _ = error_code(k.describe_stream, StreamName="orders")
check(code == "ResourceNotFoundException", code)
print("boto3 conformance: ok")
