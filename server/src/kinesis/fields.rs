//! Reading request members (with the model's validation errors) and writing the shapes
//! replies share (shards, consumers, timestamps).

use super::*;

pub(super) fn lower_first(name: &str) -> String {
    let mut c = name.chars();
    c.next().map_or_else(String::new, |f| f.to_lowercase().collect::<String>() + c.as_str())
}

pub(super) fn missing(name: &str) -> Fault {
    Fault::from(Error::Validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        lower_first(name)
    )))
}

pub(super) fn opt_str<'a>(v: &'a Value, name: &str) -> Result<Option<&'a str>, Fault> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(fault(
            "SerializationException",
            format!("Unexpected value type for {name}: expected a string"),
        )),
    }
}

pub(super) fn req_str<'a>(v: &'a Value, name: &str) -> Result<&'a str, Fault> {
    opt_str(v, name)?.ok_or_else(|| missing(name))
}

/// Java-int coercion: fractions floored, large values clamped (spec §1.1).
pub(super) fn opt_u32(v: &Value, name: &str) -> Result<Option<u32>, Fault> {
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

pub(super) fn req_u32(v: &Value, name: &str) -> Result<u32, Fault> {
    opt_u32(v, name)?.ok_or_else(|| missing(name))
}

/// Epoch seconds (with a fraction) to milliseconds.
pub(super) fn opt_time_ms(v: &Value, name: &str) -> Result<Option<u64>, Fault> {
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

pub(super) fn blob(v: &Value, name: &str) -> Result<Vec<u8>, Fault> {
    let text = req_str(v, name)?;
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| {
        fault("SerializationException", format!("Value for {name} is not valid base64."))
    })
}

/// The stream named by `StreamARN` or `StreamName` (both must agree).
pub(super) fn stream(v: &Value) -> Result<String, Fault> {
    stream_of(opt_str(v, "StreamARN")?, opt_str(v, "StreamName")?)
}

/// The stream named by a `StreamARN` and a `StreamName` member, either of which may be absent.
pub(super) fn stream_of(arn: Option<&str>, name: Option<&str>) -> Result<String, Fault> {
    match (arn, name) {
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

pub(super) fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

pub(super) fn shard_json(s: &riffle_engine::Shard) -> Value {
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

pub(super) fn consumer_json(c: &riffle_engine::Consumer, with_stream: bool) -> Value {
    let mut v = json!({
        "ConsumerName": c.consumer_name, "ConsumerARN": c.consumer_arn,
        "ConsumerStatus": c.consumer_status.as_str(), "ConsumerCreationTimestamp": seconds(c.consumer_creation_ms),
    });
    if with_stream {
        v["StreamARN"] = json!(c.stream_arn);
    }
    v
}

pub(super) fn with_consumer<T>(
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

pub(super) fn tags_of(v: &Value) -> Result<Vec<(String, String)>, Fault> {
    match v.get("Tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => {
            Ok(m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        }
        Some(_) => Err(fault("SerializationException", "Tags must be a map of strings.")),
    }
}

pub(super) fn iterator_type(text: &str) -> Result<IteratorType, Fault> {
    Ok(text.parse::<IteratorType>()?)
}
