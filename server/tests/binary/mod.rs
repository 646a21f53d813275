//! Shared by the binary-protocol tests (`riffled/`, `daemon.rs`): reading a shard back
//! through the blocking client.

use riffle_server::client::{decode_records, Client};
use riffle_server::protocol::{Request, Response};

/// Every record of a shard from TRIM_HORIZON: (sequence number, data).
pub fn read_shard(client: &mut Client, stream: &str, shard: &str) -> Vec<(u128, Vec<u8>)> {
    let Response::ShardIterator(mut it) = client
        .call(&Request::GetShardIterator {
            stream: stream.into(),
            shard_id: shard.into(),
            iterator_type: 0,
            starting_sequence_number: None,
            timestamp_ms: None,
        })
        .expect("iterator")
    else {
        panic!()
    };
    let mut out = Vec::new();
    loop {
        let Response::Records(page) = client
            .call(&Request::GetRecords { shard_iterator: it.clone(), limit: Some(1000) })
            .expect("get")
        else {
            panic!()
        };
        let before = out.len();
        let records = decode_records(&page).expect("valid records from the wire");
        out.extend(records.into_iter().map(|r| (r.sequence_number, r.data.to_vec())));
        match page.next {
            Some(next) if out.len() > before => it = next,
            _ => return out,
        }
    }
}
