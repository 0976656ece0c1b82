//! Overrides: changes to filtering that a household makes from the API or the command line
//! without editing the config — pause a device's filtering, allow or block names — for a while
//! (`for = "30m"`, or until a time) or until removed.
//!
//! They sit above the profiles in the decide stage: a pause or an allow wins over the profile's
//! block lists (and over the names inside answers: an allowed name is answered as it is), an
//! override block wins over the profile's allow lists. They are not part of the policy
//! snapshot: the query path reads an immutable [`Active`] set through an `ArcSwap` that every
//! change replaces, so a pause takes effect on the next query without a rebuild, and a reload
//! leaves them alone. [`store`] keeps them, persisted under `state_dir`.
//!
//! When several overrides match one question, the winner is:
//! 1. the one with the most specific target: a device, then a profile, then everyone;
//! 2. then the one naming the most specific name (a pause covers every name, less specifically
//!    than any name it could list), so "block tiktok.com for the tablet" still blocks while the
//!    tablet is paused;
//! 3. then the newest, because it is what the household asked for last.

pub mod store;

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::net::is_same_or_below;

pub use store::OverrideStore;

/// What an override does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// No blocking at all for its target.
    Pause,
    /// Its names (and their subdomains) are never blocked for its target.
    Allow,
    /// Its names (and their subdomains) are blocked for its target.
    Block,
}

impl Kind {
    /// Every kind, in the order metrics list them.
    pub const ALL: [Kind; 3] = [Kind::Pause, Kind::Allow, Kind::Block];

    /// Its name in JSON, the CLI and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pause => "pause",
            Kind::Allow => "allow",
            Kind::Block => "block",
        }
    }
}

/// Who an override applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// Every client.
    Everyone,
    /// A `[[device]]` by name.
    Device(&'a str),
    /// Every client whose profile has this name.
    Profile(&'a str),
}

/// One override, as the API shows it and `state_dir/overrides.json` stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Its number, unique for the life of the store.
    pub id: u64,
    /// What it does.
    pub kind: Kind,
    /// The device it applies to (neither this nor `profile`: everyone).
    #[serde(default)]
    pub device: Option<String>,
    /// The profile it applies to.
    #[serde(default)]
    pub profile: Option<String>,
    /// The names it allows or blocks (each with its subdomains); empty for a pause.
    #[serde(default)]
    pub names: Vec<String>,
    /// When it was made.
    pub created: Timestamp,
    /// When it ends by itself; `None` lasts until removed.
    #[serde(default)]
    pub expires: Option<Timestamp>,
}

impl Override {
    /// Who it applies to.
    pub fn target(&self) -> Target<'_> {
        match (&self.device, &self.profile) {
            (Some(device), _) => Target::Device(device),
            (None, Some(profile)) => Target::Profile(profile),
            (None, None) => Target::Everyone,
        }
    }

    /// Whether it still applies at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires.is_none_or(|end| now < end)
    }

    /// How specifically it covers `name`: `None` when it does not, else the length of the
    /// name it lists that covers `name` (0 for a pause, which covers every name).
    fn covers(&self, name: &str) -> Option<usize> {
        if self.kind == Kind::Pause {
            return Some(0);
        }
        self.names
            .iter()
            .filter(|listed| is_same_or_below(name, listed))
            .map(|listed| listed.len())
            .max()
    }
}

/// The override that decided a question: what the reply, the metrics and the query log say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Its id.
    pub id: u64,
    /// What it does.
    pub kind: Kind,
    /// When it ends.
    pub expires: Option<Timestamp>,
}

impl From<&Override> for Decision {
    fn from(rule: &Override) -> Self {
        Self {
            id: rule.id,
            kind: rule.kind,
            expires: rule.expires,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "override {} ({})", self.id, self.kind.as_str())?;
        match self.expires {
            Some(end) => write!(f, " until {}", end.round(jiff::Unit::Second).unwrap_or(end)),
            None => f.write_str(" until removed"),
        }
    }
}

/// The overrides in force, indexed by target so a question only looks at the ones that can
/// apply to it. Immutable: a change builds a new one.
#[derive(Debug, Default)]
pub struct Active {
    by_device: HashMap<String, Vec<Override>>,
    by_profile: HashMap<String, Vec<Override>>,
    everyone: Vec<Override>,
}

impl Active {
    /// The set of `overrides`.
    pub fn new(overrides: &[Override]) -> Self {
        let mut active = Self::default();
        for rule in overrides {
            let bucket = match rule.target() {
                Target::Device(device) => active.by_device.entry(device.to_owned()).or_default(),
                Target::Profile(profile) => {
                    active.by_profile.entry(profile.to_owned()).or_default()
                }
                Target::Everyone => &mut active.everyone,
            };
            bucket.push(rule.clone());
        }
        active
    }

    /// True when there is nothing to look at: the query path's whole cost then.
    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty() && self.by_profile.is_empty() && self.everyone.is_empty()
    }

    /// The override that decides `name` for a client of `device` with `profile` at `now`, if
    /// any (see the module docs for which one wins).
    pub fn decide(
        &self,
        device: &str,
        profile: &str,
        name: &str,
        now: Timestamp,
    ) -> Option<&Override> {
        let levels = [
            self.by_device.get(device).map(Vec::as_slice),
            self.by_profile.get(profile).map(Vec::as_slice),
            Some(self.everyone.as_slice()),
        ];
        levels
            .into_iter()
            .flatten()
            .find_map(|rules| most_specific(rules, name, now))
    }
}

/// Among `rules` of one target, the live one that covers `name` most specifically, the newest
/// on a tie.
fn most_specific<'a>(rules: &'a [Override], name: &str, now: Timestamp) -> Option<&'a Override> {
    rules
        .iter()
        .filter(|rule| rule.is_live(now))
        .filter_map(|rule| Some((rule.covers(name)?, rule.created, rule)))
        .max_by_key(|&(specificity, created, _)| (specificity, created))
        .map(|(_, _, rule)| rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn rule(id: u64, kind: Kind, target: Target<'_>, names: &[&str]) -> Override {
        let (device, profile) = match target {
            Target::Device(d) => (Some(d.to_owned()), None),
            Target::Profile(p) => (None, Some(p.to_owned())),
            Target::Everyone => (None, None),
        };
        Override {
            id,
            kind,
            device,
            profile,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            created: at(id as i64),
            expires: None,
        }
    }

    fn decided(rules: &[Override], device: &str, profile: &str, name: &str) -> Option<u64> {
        Active::new(rules)
            .decide(device, profile, name, at(100))
            .map(|rule| rule.id)
    }

    #[test]
    fn a_name_covers_its_subdomains_but_not_lookalikes() {
        let allow = [rule(1, Kind::Allow, Target::Everyone, &["oculus.com"])];
        assert_eq!(decided(&allow, "tv", "default", "oculus.com"), Some(1));
        assert_eq!(
            decided(&allow, "tv", "default", "graph.oculus.com"),
            Some(1)
        );
        assert_eq!(decided(&allow, "tv", "default", "myoculus.com"), None);
        assert_eq!(decided(&allow, "tv", "default", "com"), None);
    }

    #[test]
    fn the_most_specific_target_wins_whatever_the_names() {
        let rules = [
            rule(
                1,
                Kind::Block,
                Target::Profile("kids"),
                &["graph.oculus.com"],
            ),
            rule(2, Kind::Allow, Target::Device("quest"), &["oculus.com"]),
            rule(3, Kind::Block, Target::Everyone, &["graph.oculus.com"]),
        ];
        assert_eq!(
            decided(&rules, "quest", "kids", "graph.oculus.com"),
            Some(2)
        );
        assert_eq!(
            decided(&rules, "tablet", "kids", "graph.oculus.com"),
            Some(1)
        );
        assert_eq!(
            decided(&rules, "tv", "default", "graph.oculus.com"),
            Some(3)
        );
        assert_eq!(decided(&rules, "tv", "default", "www.oculus.com"), None);
    }

    #[test]
    fn a_named_block_beats_a_pause_of_the_same_target_and_the_newest_breaks_ties() {
        let rules = [
            rule(1, Kind::Block, Target::Device("tablet"), &["tiktok.com"]),
            rule(2, Kind::Pause, Target::Device("tablet"), &[]),
            rule(3, Kind::Allow, Target::Device("tablet"), &["example.org"]),
            rule(4, Kind::Block, Target::Device("tablet"), &["example.org"]),
        ];
        assert_eq!(decided(&rules, "tablet", "kids", "www.tiktok.com"), Some(1));
        assert_eq!(decided(&rules, "tablet", "kids", "facebook.com"), Some(2));
        assert_eq!(decided(&rules, "tablet", "kids", "example.org"), Some(4));
    }

    #[test]
    fn an_expired_override_decides_nothing() {
        let mut pause = rule(1, Kind::Pause, Target::Everyone, &[]);
        pause.expires = Some(at(100));
        let active = Active::new(&[pause]);
        assert!(active.decide("tv", "default", "a.com", at(99)).is_some());
        assert!(active.decide("tv", "default", "a.com", at(100)).is_none());
    }

    #[test]
    fn an_empty_set_says_so() {
        assert!(Active::new(&[]).is_empty());
        assert!(!Active::new(&[rule(1, Kind::Pause, Target::Everyone, &[])]).is_empty());
    }
}
