//! Preset profiles: what a household picks by name (`profile = "quest"`) without writing any
//! `[[profile]]` or `[[list]]`.
//!
//! Every preset that keeps an app allows that app's keep lists, which also hold Meta's shared
//! edges (`*.c10r.facebook.com`, `*.xx.fbcdn.net`, …): allow wins over block, so inspecting the
//! CNAME targets of an answer can never take the apps down through those edges. Blocked
//! answers are the null address / NODATA, never NXDOMAIN (WhatsApp retries NXDOMAIN in a storm).

//!
//! Plain data: `config` turns each [`Preset`] into profile settings (answers, TTLs, inspection),
//! so the catalogue depends on nothing.

/// The profile used for unknown clients when the config does not say otherwise.
pub const DEFAULT_PROFILE: &str = "meta-apps";

/// A preset profile: its name and the bundled lists it blocks and allows.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    /// What a config calls it (`profile = "quest"`).
    pub name: &'static str,
    /// Ids of the bundled lists it blocks.
    pub block: &'static [&'static str],
    /// Ids of the bundled lists it allows (allow wins over block).
    pub allow: &'static [&'static str],
    /// Ids of the bundled network lists whose addresses it blocks in answers.
    pub block_networks: &'static [&'static str],
}

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
    // Per-app presets: an app's own names blocked, the kept apps' keep lists allowed (allow
    // wins, so a name an app list shares with a kept app stays reachable).
    (
        "whatsapp-only",
        &[
            "app-facebook",
            "app-instagram",
            "app-messenger",
            "app-threads",
            "app-quest",
            "app-meta-ai",
            "meta-ai",
            "meta-tracking",
        ],
        &["keep-whatsapp"],
    ),
    (
        "no-instagram",
        &["app-instagram", "app-threads", "meta-ai", "meta-tracking"],
        &["keep-facebook", "keep-messenger", "keep-whatsapp"],
    ),
];

/// (preset, network lists): the presets whose answers into a network are blocked. Only
/// `no-meta`: Meta's networks also serve every kept app.
const NETWORK_PRESETS: &[(&str, &[&str])] = &[("no-meta", &["meta-networks"])];

/// The preset profiles, in a stable order.
pub fn presets() -> impl Iterator<Item = Preset> {
    PRESETS.iter().map(|&(name, block, allow)| Preset {
        name,
        block,
        allow,
        block_networks: NETWORK_PRESETS
            .iter()
            .find(|&&(preset, _)| preset == name)
            .map_or(&[], |&(_, lists)| lists),
    })
}
