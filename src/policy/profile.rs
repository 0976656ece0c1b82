//! A compiled profile: the lists it blocks and allows as two masks, so a decision costs the
//! same whatever the number of lists or profiles.

use std::net::IpAddr;
use std::time::Duration;

use super::{ListIndex, ListMask};
use crate::config::BlockAnswer;

/// A profile in a policy snapshot.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name (a metric label).
    pub name: String,
    /// Lists whose names are blocked.
    pub block: ListMask,
    /// Lists whose names are never blocked.
    pub allow: ListMask,
    /// Network lists: an answer with an address inside one of their networks is blocked.
    pub block_networks: ListMask,
    /// How blocked names are answered.
    pub answer: BlockAnswer,
    /// TTL of blocked answers.
    pub blocked_ttl: Duration,
    /// Whether names inside upstream answers are checked too.
    pub inspect_answers: bool,
    /// `mode = "observe"`: a dry run; what it would block is answered as allowed, logged and
    /// counted as would-block.
    pub observe: bool,
}

impl Profile {
    /// True when one of `lists` is an allow list of this profile: allow wins over block.
    pub fn allows(&self, lists: ListMask) -> bool {
        !lists.and(self.allow).is_empty()
    }

    /// The list that blocks a name contained in `lists`, unless an allow list holds it.
    pub fn blocking_list(&self, lists: ListMask) -> Option<ListIndex> {
        if self.allows(lists) {
            return None;
        }
        lists.and(self.block).first()
    }

    /// The first of `addresses` inside a network this profile blocks, with the list holding
    /// it; `lists` are the network lists holding each address
    /// ([`super::Policy::networks_holding`]).
    pub fn blocking_network(
        &self,
        addresses: &[IpAddr],
        lists: &[ListMask],
    ) -> Option<(ListIndex, IpAddr)> {
        addresses
            .iter()
            .zip(lists)
            .find_map(|(&address, lists)| Some((lists.and(self.block_networks).first()?, address)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_wins_over_block() {
        let profile = Profile {
            name: "p".into(),
            block: [0, 1].into_iter().collect(),
            allow: ListMask::single(2),
            block_networks: ListMask::single(4),
            answer: BlockAnswer::Null,
            blocked_ttl: Duration::from_secs(10),
            inspect_answers: true,
            observe: false,
        };
        assert_eq!(profile.blocking_list([1, 3].into_iter().collect()), Some(1));
        assert_eq!(profile.blocking_list([1, 2].into_iter().collect()), None);
        assert_eq!(profile.blocking_list(ListMask::single(3)), None);
    }

    #[test]
    fn an_address_in_a_blocked_network_list_blocks() {
        let profile = Profile {
            name: "p".into(),
            block: ListMask::single(0),
            allow: ListMask::EMPTY,
            block_networks: ListMask::single(4),
            answer: BlockAnswer::Null,
            blocked_ttl: Duration::from_secs(10),
            inspect_answers: true,
            observe: false,
        };
        let addresses: Vec<IpAddr> = ["192.0.2.1", "157.240.1.35"]
            .map(|a| a.parse().expect("address"))
            .to_vec();
        let lists = [ListMask::single(0), [3, 4].into_iter().collect()];
        assert_eq!(
            profile.blocking_network(&addresses, &lists),
            Some((4, addresses[1])),
            "a name list holding an address does not count, the network list does"
        );
        assert_eq!(
            profile.blocking_network(&addresses, &[ListMask::EMPTY; 2]),
            None
        );
    }
}
