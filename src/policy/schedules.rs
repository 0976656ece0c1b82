//! Which profile each configured device has right now.
//!
//! A device with a `schedule` is compiled into one [`Device`] per profile its windows can give
//! it (each with its own metric handles, so its queries are counted under the profile that
//! decided them), and the variant in force is one atomic index. A clock tick off the query path
//! ([`ConfiguredDevice::apply`], once a second and when a snapshot is built) moves that index;
//! a query only reads it.

use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::civil::DateTime;

use super::Device;
use crate::config::Window;
use crate::config::schedule::window_at;

/// A `[[device]]` of the snapshot.
pub(super) struct ConfiguredDevice {
    /// Its own profile first, then one per other profile its windows name.
    variants: Vec<Device>,
    /// Its windows, in order, each with the variant it switches to.
    windows: Vec<Window>,
    window_variants: Vec<usize>,
    /// The variant in force.
    current: AtomicUsize,
}

impl ConfiguredDevice {
    /// A device whose own profile is `own`; `variant(profile_name)` makes the [`Device`] of
    /// it with `profile_name` (its own profile when `None`).
    pub(super) fn new(
        windows: &[Window],
        own: &str,
        mut variant: impl FnMut(&str) -> Device,
    ) -> Self {
        let mut names = vec![own];
        let window_variants = windows
            .iter()
            .map(
                |window| match names.iter().position(|&n| n == window.profile) {
                    Some(index) => index,
                    None => {
                        names.push(&window.profile);
                        names.len() - 1
                    }
                },
            )
            .collect();
        let device = Self {
            variants: names.into_iter().map(&mut variant).collect(),
            windows: windows.to_vec(),
            window_variants,
            current: AtomicUsize::new(0),
        };
        device.publish(0);
        device
    }

    /// The device as it is now.
    pub(super) fn now(&self) -> &Device {
        // Relaxed: the index is the whole message; each variant is complete from the build.
        &self.variants[self.current.load(Ordering::Relaxed)]
    }

    /// Every variant (its own profile's first).
    pub(super) fn variants(&self) -> &[Device] {
        &self.variants
    }

    /// Its schedule.
    pub(super) fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Puts in force the variant of local time `time`.
    pub(super) fn apply(&self, time: DateTime) {
        if self.windows.is_empty() {
            return;
        }
        let variant = window_at(&self.windows, time).map_or(0, |index| self.window_variants[index]);
        if self.current.swap(variant, Ordering::Relaxed) != variant {
            self.publish(variant);
        }
    }

    /// Exports which profile is in force (`metasink_device_profile`).
    fn publish(&self, in_force: usize) {
        for (index, device) in self.variants.iter().enumerate() {
            device.counters.set_in_force(index == in_force);
        }
    }
}
