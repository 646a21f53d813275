//! CBOR bodies (`application/x-amz-cbor-1.1`), translated to and from the JSON shape the
//! operations use: blobs are byte strings, timestamps tag 1.

use super::*;

/// A CBOR request body as the JSON shape the operations read: byte strings (blobs) become
/// base64 text, tag-1 timestamps become epoch seconds.
pub(super) fn cbor_to_json(v: ciborium::Value) -> Value {
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
pub(super) fn json_to_cbor(v: &Value, key: Option<&str>) -> ciborium::Value {
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
