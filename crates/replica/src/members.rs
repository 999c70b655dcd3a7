//! Membership of the site's group: a [`MemberChange`] travels in the log as a Raft
//! `ConfChangeV2` whose context is the change; applying it (on every node, in log order)
//! changes the group's voters, and the [`crate::Applier`] records the address and tells
//! the watchers. A node that joins is sent a snapshot taken when the change is applied,
//! so that its configuration includes the new node.

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry as RaftEntry, EntryType,
};
use site_state::{MemberChange, StateError};

/// What the group's configuration says when a change is asked.
pub struct Conf<'a> {
    /// The voters now.
    pub voters: &'a [u64],
    /// Whether a change is proposed but not yet applied.
    pub pending: bool,
}

/// The configuration change that makes `change`: `Ok(None)` if it is already so, `Err`
/// if it cannot be made.
pub fn conf_change(
    conf: &Conf<'_>,
    change: &MemberChange,
) -> Result<Option<ConfChangeV2>, StateError> {
    if conf.pending {
        // raft-rs would turn it into an empty entry that answers nobody.
        return Err(StateError::InUse(
            "another membership change is being applied: try again in a moment".into(),
        ));
    }
    if change.id() == 0 {
        return Err(StateError::Invalid("0 is not a node id".into()));
    }
    if let MemberChange::Add { address, .. } = change {
        site_state::check_address(address).map_err(StateError::Invalid)?;
    }
    let (kind, id) = match change {
        MemberChange::Add { id, .. } if conf.voters.contains(id) => return Ok(None),
        MemberChange::Add { id, .. } => (ConfChangeType::AddNode, *id),
        MemberChange::Remove { id } if !conf.voters.contains(id) => {
            return Err(StateError::NotFound(format!("node {id} of the site")))
        }
        MemberChange::Remove { .. } if conf.voters.len() == 1 => {
            return Err(StateError::InUse(
                "the last node of a site cannot be removed".into(),
            ))
        }
        MemberChange::Remove { id } => (ConfChangeType::RemoveNode, *id),
    };
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = id;
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(single);
    cc.context = site_entry::encode_member_change(change).into();
    Ok(Some(cc))
}

/// The configuration change a committed entry carries (either wire form).
pub fn decode(e: &RaftEntry) -> Result<ConfChangeV2, String> {
    if e.get_entry_type() == EntryType::EntryConfChange {
        ConfChange::parse_from_bytes(&e.data)
            .map(|c| {
                let mut single = ConfChangeSingle::default();
                single.set_change_type(c.get_change_type());
                single.node_id = c.node_id;
                let mut v2 = ConfChangeV2::default();
                v2.mut_changes().push(single);
                v2
            })
            .map_err(|e| e.to_string())
    } else {
        ConfChangeV2::parse_from_bytes(&e.data).map_err(|e| e.to_string())
    }
}

/// The [`MemberChange`] in a configuration change's context.
pub fn change_of(cc: &ConfChangeV2) -> Result<MemberChange, String> {
    site_entry::decode_member_change(&cc.context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: u64) -> MemberChange {
        MemberChange::Add {
            id,
            address: format!("127.0.0.1:{}", 7000 + id),
        }
    }

    #[test]
    fn adding_a_voter_twice_changes_nothing_and_removing_a_stranger_is_refused() {
        let conf = Conf {
            voters: &[1, 2, 3],
            pending: false,
        };
        assert_eq!(conf_change(&conf, &add(2)), Ok(None));
        assert!(matches!(
            conf_change(&conf, &MemberChange::Remove { id: 9 }),
            Err(StateError::NotFound(_))
        ));
        let cc = conf_change(&conf, &add(4)).unwrap().unwrap();
        assert_eq!(cc.get_changes()[0].node_id, 4);
        assert_eq!(
            cc.get_changes()[0].get_change_type(),
            ConfChangeType::AddNode
        );
        assert_eq!(change_of(&cc), Ok(add(4)));
    }

    #[test]
    fn the_last_voter_stays_and_one_change_at_a_time() {
        let alone = Conf {
            voters: &[1],
            pending: false,
        };
        assert!(matches!(
            conf_change(&alone, &MemberChange::Remove { id: 1 }),
            Err(StateError::InUse(_))
        ));
        let busy = Conf {
            voters: &[1, 2, 3],
            pending: true,
        };
        assert!(matches!(
            conf_change(&busy, &add(4)),
            Err(StateError::InUse(_))
        ));
    }

    #[test]
    fn a_node_must_have_an_id_and_a_host_and_port() {
        let conf = Conf {
            voters: &[1, 2, 3],
            pending: false,
        };
        for address in ["h :1", "http://h:1", "[::1", "h\0:1", ""] {
            let change = MemberChange::Add {
                id: 4,
                address: address.into(),
            };
            assert!(
                matches!(conf_change(&conf, &change), Err(StateError::Invalid(_))),
                "{address:?}"
            );
        }
        assert!(matches!(
            conf_change(&conf, &add(0)),
            Err(StateError::Invalid(_))
        ));
    }

    #[test]
    fn both_wire_forms_decode() {
        let mut old = ConfChange::default();
        old.set_change_type(ConfChangeType::RemoveNode);
        old.node_id = 5;
        let mut e = RaftEntry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.data = old.write_to_bytes().unwrap().into();
        let v2 = decode(&e).unwrap();
        assert_eq!(v2.get_changes()[0].node_id, 5);
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e.data = b"\xff\xff garbage".to_vec().into();
        assert!(decode(&e).is_err());
    }
}
