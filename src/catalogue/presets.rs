//! Preset profiles: what a household picks by name (`profile = "quest"`) without writing any
//! `[[profile]]` or `[[list]]`.
//!
//! Every preset that keeps an app allows that app's keep lists, which also hold Meta's shared
//! edges (`*.c10r.facebook.com`, `*.xx.fbcdn.net`, …): allow wins over block, so inspecting the
//! CNAME targets of an answer can never take the apps down through those edges. Blocked
//! answers are the null address / NODATA, never NXDOMAIN (WhatsApp retries NXDOMAIN in a storm).

use std::time::Duration;

use crate::config::{BlockAnswer, ProfileMode, ProfileSettings};

/// The profile used for unknown clients when the config does not say otherwise.
pub const DEFAULT_PROFILE: &str = "meta-apps";

/// TTL of blocked answers in presets: short, so a change of profile takes effect quickly.
const PRESET_BLOCKED_TTL: Duration = Duration::from_secs(10);

/// (name, block lists, allow lists) of every preset.
const PRESETS: &[(&str, &[&str], &[&str])] = &[
    ("no-meta", &["all-meta"], &[]),
    (
        "meta-apps",
        &["meta-ai", "meta-tracking"],
        &[
            "keep-facebook",
            "keep-messenger",
            "keep-instagram",
            "keep-whatsapp",
        ],
    ),
    (
        "quest",
        &["meta-ai", "meta-tracking", "quest-telemetry"],
        &["keep-quest"],
    ),
    (
        "glasses-phone",
        &["meta-ai", "meta-tracking", "glasses"],
        &["keep-glasses", "keep-whatsapp", "keep-instagram"],
    ),
    (
        "strict",
        &["meta-tracking-strict", "meta-ai", "meta-tracking"],
        &[],
    ),
];

/// The preset profiles, in a stable order.
pub fn presets() -> Vec<ProfileSettings> {
    PRESETS
        .iter()
        .map(|&(name, block, allow)| ProfileSettings {
            name: name.to_owned(),
            block: block.iter().map(|&id| id.to_owned()).collect(),
            allow: allow.iter().map(|&id| id.to_owned()).collect(),
            answer: BlockAnswer::Null,
            blocked_ttl: PRESET_BLOCKED_TTL,
            inspect_answers: true,
            mode: ProfileMode::Enforce,
        })
        .collect()
}
