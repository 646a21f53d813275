#!/usr/bin/env bash
# The AWS CLI (v1, from PyPI) against riffled's Kinesis API. Usage: aws_cli.sh http://HOST:PORT
# Fails (non-zero, with the command) at the first unexpected result.
set -euo pipefail
EP=$1
export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=secret AWS_DEFAULT_REGION=us-east-1
k() { python3 -m awscli --endpoint-url "$EP" --output json kinesis "$@"; }
fail() { echo "FAILED: $*"; exit 1; }

k create-stream --stream-name cli --shard-count 2
k wait stream-exists --stream-name cli
[ "$(k describe-stream-summary --stream-name cli --query StreamDescriptionSummary.OpenShardCount)" = 2 ] || fail open shards
# CLI v1 sends --data as given (v2 would expect base64); reads show base64.
SEQ=$(k put-record --stream-name cli --partition-key a --data hello --query SequenceNumber --output text)
[ -n "$SEQ" ] || fail put-record
k put-records --stream-name cli --records Data=b25l,PartitionKey=x Data=dHdv,PartitionKey=y > /tmp/riffle-cli-put.json
[ "$(python3 -c 'import json,sys; print(json.load(open("/tmp/riffle-cli-put.json"))["FailedRecordCount"])')" = 0 ] || fail put-records
IT=$(k get-shard-iterator --stream-name cli --shard-id shardId-000000000000 --shard-iterator-type AT_SEQUENCE_NUMBER \
    --starting-sequence-number "$SEQ" --query ShardIterator --output text)
[ "$(k get-records --shard-iterator "$IT" --limit 1 --query 'Records[0].Data' --output text)" = aGVsbG8= ] || fail get-records
[ "$(k list-shards --stream-name cli --query 'length(Shards)')" = 2 ] || fail list-shards
k split-shard --stream-name cli --shard-to-split shardId-000000000000 --new-starting-hash-key 1000000
[ "$(k list-shards --stream-name cli --query 'length(Shards)')" = 4 ] || fail split
k add-tags-to-stream --stream-name cli --tags team=core
[ "$(k list-tags-for-stream --stream-name cli --query 'Tags[0].Value' --output text)" = core ] || fail tags
if k describe-stream-summary --stream-name nope 2> /tmp/riffle-cli-err.txt; then fail "missing stream"; fi
grep -q "ResourceNotFoundException" /tmp/riffle-cli-err.txt || fail "error name: $(cat /tmp/riffle-cli-err.txt)"
k delete-stream --stream-name cli
[ "$(k list-streams --query 'length(StreamNames)')" = 0 ] || fail delete
echo "aws cli conformance: ok"
