//! Client host names from DHCP leases ([`crate::local::leases`]), for the clients that are no
//! configured device: the clients list and the query log show them, never a metric label.
//!
//! The lease files are those of the policy snapshot in force (`[server] dhcp_leases`), so a
//! config reload that changes them takes effect here too; a file is read again when its
//! modification time changes. Both are checked every [`CHECK_INTERVAL`] by the records
//! thread (and once when the daemon starts), never on the query path nor by an API request:
//! those only look names up.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::local::Leases;
use crate::policy::PolicyHandle;

/// How often the lease files' list and modification times are looked at: a phone that just
/// joined shows its name within a second.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The names the lease files give, kept up to date.
#[derive(Default)]
pub struct ClientNames {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Where the lease files are named; none: no names.
    policy: Option<PolicyHandle>,
    /// The files `leases` was loaded from.
    files: Vec<PathBuf>,
    leases: Leases,
    checked_at: Option<Instant>,
}

impl ClientNames {
    /// Follows the lease files of the snapshot in `policy`, reading them now.
    pub fn follow(&self, policy: PolicyHandle) {
        let mut state = self.lock();
        state.policy = Some(policy);
        state.checked_at = None;
        state.check();
    }

    /// Reads the lease files again if [`CHECK_INTERVAL`] has passed and they (or the list of
    /// them) changed.
    pub fn refresh(&self) {
        self.lock().check();
    }

    /// The names as they are now. Holds a lock until dropped, so a batch is named under one.
    pub fn current(&self) -> Current<'_> {
        Current(self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves a usable state: a panic elsewhere cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The names, locked for a batch of look-ups.
pub struct Current<'a>(MutexGuard<'a, State>);

impl Current<'_> {
    /// The host name a lease gives `ip`.
    pub fn of(&self, ip: IpAddr) -> Option<String> {
        self.0.leases.name_of(ip).map(str::to_owned)
    }
}

impl State {
    fn check(&mut self) {
        let Some(policy) = &self.policy else {
            return;
        };
        if self
            .checked_at
            .is_some_and(|at| at.elapsed() < CHECK_INTERVAL)
        {
            return;
        }
        self.checked_at = Some(Instant::now());
        let policy = policy.load();
        let files = policy.local().lease_files();
        if files == self.files.as_slice() {
            self.leases.refresh();
        } else {
            self.files = files.to_vec();
            self.leases = Leases::load(files);
        }
    }
}
