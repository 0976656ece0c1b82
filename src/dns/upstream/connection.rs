//! Upstreams reached over a connection kept open: `tcp://`, `tls://` (DNS over TLS) and
//! `https://` (DNS over HTTPS, HTTP/2), all through hickory's clients (its multiplexed TCP
//! stream, its rustls connector, its h2 client): no TLS or HTTP code of our own.
//!
//! One connection per upstream, opened on first use and kept: queries are pipelined on it
//! (several in flight, matched by ID, or one HTTP/2 stream each), so the handshake is paid
//! once, not per query. A query that fails on a connection it did not open itself (the
//! server closed it while idle, restarted, or dropped it under load) retires that connection
//! and is sent once more on a fresh one, within the same attempt and so the same deadline:
//! queries waiting on a dropped connection are retried, not lost. Queries that give up
//! (time out) retire the connection too: a connection that stopped answering without being
//! closed (a NAT that forgot it) would otherwise take every later query down with it. Queries
//! still in flight on a retired connection finish on it; it closes when the last is done.
//!
//! At most [`MAX_CONNECTIONS`] are open at once (the one in use and a retired one that
//! queries still finish on): a query that needs a new one beyond that waits, within its
//! attempt, for a retired one to close. So an upstream that keeps dropping connections
//! cannot make us hold more, and the descriptor budget ([`crate::fd_budget`]) counts that
//! many per connected upstream.
//!
//! The connection's own task (hickory's background exchange, h2's driver) runs on the
//! runtime `Upstreams` was made on, the daemon's shared one: a UDP listener's runtime does
//! not poll its I/O driver while it blocks in `recvmmsg` (see [`crate::server::udp`]), and a
//! connection shared by questions of every listener must not depend on one of them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{DnsRequest, DnsResponse};
use hickory_resolver::net::h2::HttpsClientStream;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::tls::tls_exchange;
use hickory_resolver::net::xfer::{DnsExchange, FirstAnswer};
use hickory_resolver::net::{DnsHandle, NetError};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use rustls_platform_verifier::BuilderVerifierExt;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ATTEMPT_TIMEOUT;
use super::sockets::ReusingProvider;
use crate::config::{TlsSettings, UpstreamProtocol, UpstreamSettings};

/// Queries in flight on one connection at most; more wait for a free slot (hickory answers
/// `Busy`). Far above a household's concurrency, within what DoT servers accept.
const MAX_IN_FLIGHT: usize = 128;

/// Connections open to one upstream at once, at most (see the module doc).
pub(super) const MAX_CONNECTIONS: usize = 2;

/// A connection to one upstream.
type Link = DnsExchange<ReusingProvider>;

/// A connection and its number, holding one of the upstream's [`MAX_CONNECTIONS`] slots
/// until the last query on it (and the upstream, while it is the one in use) lets go.
#[derive(Clone)]
struct Open {
    number: u64,
    link: Link,
    _slot: Arc<OwnedSemaphorePermit>,
}

/// What a connection is made of.
#[derive(Clone)]
enum Kind {
    Tcp,
    Tls {
        name: Arc<str>,
        config: Result<Arc<ClientConfig>, String>,
    },
    Https {
        name: Arc<str>,
        path: Arc<str>,
        config: Result<Arc<ClientConfig>, String>,
    },
}

/// An upstream reached over a kept-open connection.
pub(super) struct Connected {
    kind: Kind,
    /// Tried in order when opening (an upstream's bootstrap addresses).
    addresses: Vec<SocketAddr>,
    provider: ReusingProvider,
    /// Where connections' tasks run.
    runtime: Option<Handle>,
    /// The connection in use.
    current: Mutex<Option<Open>>,
    /// [`MAX_CONNECTIONS`] slots, one taken by each open connection.
    slots: Arc<Semaphore>,
    /// Held while a connection is opened, so that queries arriving meanwhile share it; holds
    /// the number of the last one opened.
    opening: tokio::sync::Mutex<u64>,
}

impl Connected {
    /// The connection side of `settings`, or None for plain UDP.
    pub(super) fn new(settings: &UpstreamSettings, provider: ReusingProvider) -> Option<Self> {
        let (kind, tls) = match &settings.protocol {
            UpstreamProtocol::Udp => return None,
            UpstreamProtocol::Tcp => (Kind::Tcp, None),
            UpstreamProtocol::Tls(tls) => {
                let kind = Kind::Tls {
                    name: tls.server_name.as_str().into(),
                    config: client_config(tls, b"dot"),
                };
                (kind, Some(tls))
            }
            UpstreamProtocol::Https(tls, path) => {
                let kind = Kind::Https {
                    name: tls.server_name.as_str().into(),
                    path: path.as_str().into(),
                    config: client_config(tls, b"h2"),
                };
                (kind, Some(tls))
            }
        };
        let mut addresses = vec![settings.address];
        addresses.extend(
            tls.iter()
                .flat_map(|tls| tls.more_addresses.iter().copied()),
        );
        Some(Self {
            kind,
            addresses,
            provider,
            runtime: Handle::try_current().ok(),
            current: Mutex::new(None),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            opening: tokio::sync::Mutex::new(0),
        })
    }

    /// Sends `request()` and waits for its answer, once more on a fresh connection when a
    /// reused one failed.
    pub(super) async fn exchange(
        &self,
        request: impl Fn() -> DnsRequest,
    ) -> Result<DnsResponse, NetError> {
        let (open, reused) = self.link().await?;
        match self.send(&open, request()).await {
            Err(error) if reused && !matches!(error, NetError::Timeout) => {
                tracing::debug!(%error, "upstream connection lost; sending again on a new one");
                drop(open);
                let (open, _) = self.link().await?;
                self.send(&open, request()).await
            }
            result => result,
        }
    }

    /// One query on `open`, retired unless the answer comes.
    async fn send(&self, open: &Open, request: DnsRequest) -> Result<DnsResponse, NetError> {
        let mut unanswered = RetireUnlessAnswered {
            connected: self,
            number: open.number,
            answered: false,
        };
        let result = open.link.send(request).first_answer().await;
        unanswered.answered = result.is_ok();
        result
    }

    /// The connection in use, or a new one; and whether it was there already.
    async fn link(&self) -> Result<(Open, bool), NetError> {
        if let Some(open) = self.current() {
            return Ok((open, true));
        }
        let mut opened = self.opening.lock().await;
        // Opened by another query while this one waited: fresh for it too.
        if let Some(open) = self.current() {
            return Ok((open, false));
        }
        // Waits while retired connections hold every slot (the attempt's timeout bounds it).
        let slot = (self.slots.clone().acquire_owned().await)
            .map_err(|_| NetError::from("the upstream's connections are closed"))?;
        let link = self.open().await?;
        *opened += 1;
        let open = Open {
            number: *opened,
            link,
            _slot: Arc::new(slot),
        };
        *self.lock() = Some(open.clone());
        Ok((open, false))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        // Every update is one assignment: nothing is left half-done by a panic.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<Open> {
        self.lock().clone()
    }

    /// Forgets connection `number` if it is still the one in use.
    fn retire(&self, number: u64) {
        let mut current = self.lock();
        if current.as_ref().is_some_and(|open| open.number == number) {
            *current = None;
        }
    }

    /// A new connection to the first address that takes one.
    async fn open(&self) -> Result<Link, NetError> {
        // Each address gets its share of an attempt, so a dead first one leaves time for the
        // next.
        let per_address = ATTEMPT_TIMEOUT / self.addresses.len().max(1) as u32;
        let mut last_error = NetError::NoConnections;
        for &address in &self.addresses {
            let connect = tokio::time::timeout(per_address, self.connect(address));
            let result = match &self.runtime {
                Some(runtime) => runtime
                    .spawn(connect)
                    .await
                    .unwrap_or_else(|error| Ok(Err(NetError::from(error.to_string())))),
                None => connect.await,
            };
            match result.unwrap_or(Err(NetError::Timeout)) {
                Ok(link) => return Ok(link),
                Err(error) => {
                    tracing::debug!(%address, %error, "cannot connect to upstream");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    /// Connects to `address` (on the runtime that polls it).
    fn connect(
        &self,
        address: SocketAddr,
    ) -> impl Future<Output = Result<Link, NetError>> + Send + 'static {
        let provider = self.provider.clone();
        let kind = self.kind.clone();
        async move {
            match kind {
                Kind::Tcp => {
                    let timeout = ATTEMPT_TIMEOUT;
                    TcpClientStream::exchange(address, None, timeout, Some(MAX_IN_FLIGHT), provider)
                        .await
                }
                Kind::Tls { name, config } => {
                    // Checked when the config was read; a name that is not one fails the
                    // connection, never falls back to plain DNS.
                    let name = ServerName::try_from(name.to_string())
                        .map_err(|error| NetError::from(format!("TLS name {name}: {error}")))?;
                    let config = (*config?).clone();
                    let timeout = ATTEMPT_TIMEOUT;
                    tls_exchange(
                        address,
                        name,
                        config,
                        timeout,
                        Some(MAX_IN_FLIGHT),
                        provider,
                    )
                    .await
                }
                Kind::Https { name, path, config } => {
                    let mut builder = HttpsClientStream::builder(config?, provider);
                    builder.request_timeout(ATTEMPT_TIMEOUT);
                    builder.exchange(address, name, path).await
                }
            }
        }
    }
}

/// Retires a connection when a query on it ends without an answer, by error or by being
/// given up (dropped on timeout).
struct RetireUnlessAnswered<'a> {
    connected: &'a Connected,
    number: u64,
    answered: bool,
}

impl Drop for RetireUnlessAnswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.connected.retire(self.number);
        }
    }
}

/// The rustls client of `tls`: ring, the system's roots or those of `ca_file`, and `alpn`.
fn client_config(tls: &TlsSettings, alpn: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let mut config = match &tls.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let (_, ignored) = roots.add_parsable_certificates(ca.certificates.iter().cloned());
            if ignored > 0 {
                tracing::warn!(file = %ca.path.display(), ignored, "certificates not usable as roots");
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .with_platform_verifier()
            .map_err(|error| format!("the system's certificate roots: {error}"))?
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;
    use crate::dns::Question;

    /// A TCP server on loopback that takes every connection, keeps it and never answers:
    /// its address and how many it took.
    async fn silent_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                kept.push(stream);
            }
        });
        (address, accepted)
    }

    async fn accepted_after(accepted: &AtomicUsize, wait: Duration) -> usize {
        tokio::time::sleep(wait).await;
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn retired_connections_still_in_use_hold_their_slots() {
        let (address, accepted) = silent_server().await;
        let settings = UpstreamSettings {
            address,
            protocol: UpstreamProtocol::Tcp,
        };
        let connected = Arc::new(Connected::new(&settings, ReusingProvider::default()).unwrap());
        let ask = || {
            let connected = connected.clone();
            tokio::spawn(async move {
                let question = Question::parse("www.example.com", "A").unwrap();
                let _ = connected
                    .exchange(|| super::super::request(&question))
                    .await;
            })
        };
        // Two queries waiting, each on a connection retired under it (as when the server
        // drops one and the next is opened).
        let mut waiting = Vec::new();
        for number in 1..=MAX_CONNECTIONS as u64 {
            waiting.push(ask());
            let opened = accepted_after(&accepted, Duration::from_millis(200)).await;
            assert_eq!(opened, number as usize);
            connected.retire(number);
        }
        // A third query waits for a slot rather than opening a third connection...
        let third = ask();
        let opened = accepted_after(&accepted, Duration::from_millis(300)).await;
        assert_eq!(
            opened, MAX_CONNECTIONS,
            "no more than {MAX_CONNECTIONS} at once"
        );
        // ...and opens its own once a query that held one is done (answered or given up).
        waiting.remove(0).abort();
        let opened = accepted_after(&accepted, Duration::from_millis(300)).await;
        assert_eq!(opened, MAX_CONNECTIONS + 1);
        third.abort();
        waiting.into_iter().for_each(|task| task.abort());
    }
}
