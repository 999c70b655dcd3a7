#![deny(missing_docs)]
//! The site's log as typed protobuf (`proto/entry.proto`): what a node writes into its
//! Raft log and sends its peers, an [`Entry`] per command and a [`MemberChange`] in the
//! context of each configuration change. Names travel as text and are parsed again when
//! read: bytes that do not make a command are an error, never a command.
//!
//! Logs written by earlier versions hold JSON: [`decode_entry`] and
//! [`decode_member_change`] read both (a protobuf message never begins with `{`, which
//! would be field 15 as a group, a wire type this schema never writes).

mod command;
#[cfg(test)]
mod command_test;

pub use command::{command_from_wire, command_to_wire};
use prost::Message;
use site_state::{Entry, MemberChange};

/// Generated from `proto/entry.proto` (package `entry.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/entry.v1.rs"));
}

/// Whether `bytes` were written as JSON by an earlier version.
fn is_json(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
}

/// `entry` as the log holds it.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    pb::Entry {
        now_ms: entry.now,
        command: Some(command_to_wire(&entry.cmd)),
    }
    .encode_to_vec()
}

/// The entry in `bytes` (protobuf, or JSON from an earlier version), or why they hold none.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, String> {
    if is_json(bytes) {
        return serde_json::from_slice(bytes).map_err(|e| format!("log entry (JSON): {e}"));
    }
    let e = pb::Entry::decode(bytes).map_err(|e| format!("log entry: {e}"))?;
    Ok(Entry {
        now: e.now_ms,
        cmd: command_from_wire(e.command.ok_or("log entry: no command")?)?,
    })
}

/// `change` as a message.
pub fn member_change_to_wire(change: &MemberChange) -> pb::MemberChange {
    match change {
        MemberChange::Add { id, address } => pb::MemberChange {
            id: *id,
            address: address.clone(),
        },
        MemberChange::Remove { id } => pb::MemberChange {
            id: *id,
            address: String::new(),
        },
    }
}

/// The change a message says: an empty address is a node leaving.
pub fn member_change_from_wire(m: pb::MemberChange) -> MemberChange {
    if m.address.is_empty() {
        MemberChange::Remove { id: m.id }
    } else {
        MemberChange::Add {
            id: m.id,
            address: m.address,
        }
    }
}

/// `change` as a configuration change's context holds it.
pub fn encode_member_change(change: &MemberChange) -> Vec<u8> {
    member_change_to_wire(change).encode_to_vec()
}

/// The change in a configuration change's context (protobuf, or JSON from an earlier
/// version), or why it holds none. Node 0 is no node: a change naming it is none.
pub fn decode_member_change(bytes: &[u8]) -> Result<MemberChange, String> {
    let change = if is_json(bytes) {
        serde_json::from_slice(bytes).map_err(|e| format!("no membership change (JSON): {e}"))?
    } else if bytes.is_empty() {
        return Err("no membership change: empty context".into());
    } else {
        pb::MemberChange::decode(bytes)
            .map(member_change_from_wire)
            .map_err(|e| format!("no membership change: {e}"))?
    };
    if change.id() == 0 {
        return Err("no membership change: node id 0".into());
    }
    Ok(change)
}
