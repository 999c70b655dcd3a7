//! A forwarded change the leader could not order, typed on the wire
//! (`ProposeRefusal` of `proto/peer.proto`): the leader says why, and the follower that
//! forwarded it gets back the same store error, so it answers its client (or forwards
//! once more, to the node named leader) as the leader would have.

use crate::peer_pb::propose_refusal::Reason;
use crate::peer_pb::ProposeRefusal;
use site_node::NodeError;

/// Longest message a refusal carries.
const MESSAGE_MAX: usize = 1024;

/// The refusal for `e`, when it says why the change was not ordered; `None` for errors
/// that are the request's own (a body that is no log entry).
pub fn refusal(e: &NodeError) -> Option<ProposeRefusal> {
    let (reason, leader, mut message) = match e {
        NodeError::NotLeader(l) => (Reason::NotLeader, *l, e.to_string()),
        NodeError::LeaderMoving(to) => (Reason::LeaderMoving, *to, e.to_string()),
        NodeError::NoQuorum(m) => (Reason::NoQuorum, 0, m.clone()),
        NodeError::NodeFailed(m) => (Reason::NodeFailed, 0, m.clone()),
        NodeError::Unavailable(m) => (Reason::Unavailable, 0, m.clone()),
        _ => return None,
    };
    if message.len() > MESSAGE_MAX {
        let mut end = MESSAGE_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    Some(ProposeRefusal {
        reason: reason as i32,
        leader,
        message,
    })
}

/// The store error for node `from`'s refusal.
pub fn error(from: u64, r: ProposeRefusal) -> NodeError {
    let said = |m: String| format!("node {from}: {m}");
    match Reason::try_from(r.reason).unwrap_or(Reason::Unavailable) {
        Reason::NotLeader => NodeError::NotLeader(r.leader),
        Reason::LeaderMoving => NodeError::LeaderMoving(r.leader),
        Reason::NoQuorum => NodeError::NoQuorum(said(r.message)),
        Reason::NodeFailed => NodeError::NodeFailed(said(r.message)),
        Reason::Unavailable => NodeError::Unavailable(said(r.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_comes_back_as_the_error_it_was() {
        let round = |e: NodeError| error(2, refusal(&e).expect("a refusal"));
        assert!(matches!(
            round(NodeError::NotLeader(3)),
            NodeError::NotLeader(3)
        ));
        assert!(matches!(
            round(NodeError::NotLeader(0)),
            NodeError::NotLeader(0)
        ));
        assert!(matches!(
            round(NodeError::LeaderMoving(1)),
            NodeError::LeaderMoving(1)
        ));
        let e = round(NodeError::NoQuorum("no leader".into()));
        assert_eq!(e.to_string(), "NO_QUORUM: node 2: no leader");
        assert!(matches!(
            round(NodeError::NodeFailed("disk".into())),
            NodeError::NodeFailed(_)
        ));
        assert!(matches!(
            round(NodeError::Unavailable("slow".into())),
            NodeError::Unavailable(_)
        ));
        assert!(refusal(&NodeError::SizeInvalid("not a log entry".into())).is_none());
    }

    #[test]
    fn a_refusal_carries_at_most_a_kibibyte_of_message() {
        let r = refusal(&NodeError::Unavailable("é".repeat(5000))).unwrap();
        assert!(r.message.len() <= MESSAGE_MAX, "{}", r.message.len());
        // An unknown reason (a newer peer) reads as "try again".
        let unknown = ProposeRefusal {
            reason: 99,
            leader: 0,
            message: "?".into(),
        };
        assert!(matches!(error(2, unknown), NodeError::Unavailable(_)));
    }
}
