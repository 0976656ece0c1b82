//! The file-descriptor budget. At start the soft `RLIMIT_NOFILE` is raised to the hard limit
//! (a unit's `LimitNOFILE=`, or the shell's `ulimit -Hn`), and what clients can open — HTTP
//! connections and DNS-over-TCP connections — is capped at a share of it, so that however
//! many connections clients open, descriptors are left for the DNS listeners, for upstream
//! queries and for the daemon's own files. The connections the daemon keeps to its
//! `tcp://`, `tls://` and `https://` upstreams (a bounded number each) are set aside first,
//! like the listeners; what is left for upstream queries sizes the caps of the fetches in
//! flight (`crate::pipeline`). The budget is logged at start.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors set aside for the daemon itself: standard streams, the runtime's epoll and
/// wake-up descriptors, signal and netlink sockets, list files read during a reload and the
/// connections of list downloads.
pub const RESERVED: usize = 64;
/// HTTP connections open at once, at most: a few dozen serve Prometheus, health checks and
/// a person with a browser.
pub const MAX_HTTP_CONNECTIONS: usize = 32;
/// DNS-over-TCP connections open at once, at most.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// Below this many descriptors for upstream queries a warning is logged: a busy household
/// has that many queries in flight after an outage.
const FEW_UPSTREAM_SOCKETS: usize = 128;
/// The limit assumed when the hard limit is unlimited (the kernel's default `nr_open`).
const UNLIMITED: u64 = 1 << 20;

/// How the descriptors are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft limit in force.
    pub limit: usize,
    /// The listening sockets (DNS over UDP and TCP, HTTP).
    pub listeners: usize,
    /// The connections kept open to upstreams (DoT, DoH, TCP), at most.
    pub upstream_connections: usize,
    /// HTTP connections open at once.
    pub http_connections: usize,
    /// DNS-over-TCP connections open at once, all listen addresses together.
    pub tcp_connections: usize,
    /// What is left for upstream queries' sockets (not counting [`RESERVED`]).
    pub upstream_sockets: usize,
}

impl FdBudget {
    /// Shares out `limit` descriptors, `listeners` of which are listening sockets and
    /// `upstream_connections` connections kept open to upstreams: HTTP connections get at
    /// most a sixteenth of what is left after those and [`RESERVED`], TCP clients at most a
    /// quarter, upstream queries the rest (at least eleven sixteenths).
    pub fn plan(limit: usize, listeners: usize, upstream_connections: usize) -> Self {
        let available = limit.saturating_sub(RESERVED + listeners + upstream_connections);
        let http_connections = (available / 16).clamp(1, MAX_HTTP_CONNECTIONS);
        let tcp_connections = (available / 4).clamp(1, MAX_TCP_CONNECTIONS);
        Self {
            limit,
            listeners,
            upstream_connections,
            http_connections,
            tcp_connections,
            upstream_sockets: available.saturating_sub(http_connections + tcp_connections),
        }
    }

    /// Raises the soft descriptor limit to the hard one and plans with it; logs the outcome.
    pub fn raise_and_plan(listeners: usize, upstream_connections: usize) -> Self {
        let limit = raise_soft_limit();
        let budget = Self::plan(limit, listeners, upstream_connections);
        tracing::info!(
            limit = budget.limit,
            listeners = budget.listeners,
            upstream_connections = budget.upstream_connections,
            reserved = RESERVED,
            http_connections = budget.http_connections,
            tcp_connections = budget.tcp_connections,
            upstream_sockets = budget.upstream_sockets,
            "file descriptor budget"
        );
        if budget.upstream_sockets < FEW_UPSTREAM_SOCKETS {
            tracing::warn!(
                limit,
                "few file descriptors: raise LimitNOFILE (the unit) or `ulimit -n`"
            );
        }
        budget
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit in force afterwards.
fn raise_soft_limit() -> usize {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let soft = current.unwrap_or(UNLIMITED);
    let hard = maximum.unwrap_or(UNLIMITED);
    let limit = if hard > soft {
        let raised = Rlimit {
            current: Some(hard),
            maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => hard,
            Err(error) => {
                tracing::warn!(%error, soft, hard, "could not raise the descriptor limit");
                soft
            }
        }
    } else {
        soft
    };
    usize::try_from(limit).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_limit_gets_the_full_caps_and_the_rest_goes_upstream() {
        let budget = FdBudget::plan(16_384, 5, 0);
        assert_eq!(budget.http_connections, MAX_HTTP_CONNECTIONS);
        assert_eq!(budget.tcp_connections, MAX_TCP_CONNECTIONS);
        assert_eq!(
            budget.upstream_sockets,
            16_384 - RESERVED - 5 - MAX_HTTP_CONNECTIONS - MAX_TCP_CONNECTIONS
        );
    }

    #[test]
    fn a_small_limit_shrinks_the_client_caps_and_never_overcommits() {
        for limit in [100, 256, 512, 1024, 2048] {
            let budget = FdBudget::plan(limit, 5, 8);
            let spent = RESERVED
                + 5
                + 8
                + budget.http_connections
                + budget.tcp_connections
                + budget.upstream_sockets;
            assert_eq!(spent, limit, "{budget:?}");
            assert!(
                budget.upstream_sockets >= (limit - RESERVED - 5 - 8) * 11 / 16,
                "{budget:?}"
            );
        }
        assert_eq!(FdBudget::plan(1024, 5, 0).tcp_connections, 238);
    }

    #[test]
    fn connections_kept_to_upstreams_come_out_of_the_upstream_share() {
        let plain = FdBudget::plan(1024, 5, 0);
        let encrypted = FdBudget::plan(1024, 5, 40);
        assert_eq!(encrypted.upstream_connections, 40);
        assert_eq!(
            plain.upstream_sockets + plain.http_connections + plain.tcp_connections,
            encrypted.upstream_sockets
                + encrypted.http_connections
                + encrypted.tcp_connections
                + 40,
            "{encrypted:?}"
        );
        assert!(encrypted.upstream_sockets < plain.upstream_sockets);
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_soft_limit();
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        assert_eq!(current, maximum);
        assert_eq!(Some(limit as u64), current);
    }
}
