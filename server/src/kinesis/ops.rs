//! Every operation but SubscribeToShard: a request's members in, the engine called, the
//! reply's members out.

use super::fields::*;
use super::*;

/// Runs one operation; `Ok(None)` for operations with an empty reply.
pub(super) fn dispatch(e: &Engine, op: &str, v: &Value) -> Result<Option<Value>, Fault> {
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
