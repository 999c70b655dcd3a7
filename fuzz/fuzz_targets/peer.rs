//! What a peer sends: a batch of Raft messages (each a raft `Message`, its entries the
//! site's log entries) and a forwarded change: no panic on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use protobuf::Message as _;
use site_api::peer_pb;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = peer_pb::RaftBatch::decode(data) {
        for m in &batch.messages {
            if let Ok(msg) = raft::eraftpb::Message::parse_from_bytes(m) {
                for e in msg.get_entries() {
                    let _ = site_entry::decode_entry(&e.data);
                    let _ = site_entry::decode_member_change(&e.context);
                }
            }
        }
    }
    if let Ok(p) = peer_pb::ProposeRequest::decode(data) {
        if let Some(ask) = p.ask {
            let _ = site_api::ask_wire::ask_from_wire(ask);
        }
    }
    if let Ok(r) = peer_pb::ProposeResponse::decode(data) {
        if let Some(o) = r.ordered {
            let _ = site_api::ask_wire::ordered_from_wire(o);
        }
    }
});
