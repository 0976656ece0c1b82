//! In-process upstream DNS servers for tests.
//!
//! [`TestUpstream`] is a real authoritative server built on hickory-server: a `Server` with UDP and
//! TCP bound on the same 127.0.0.1 port, serving a `Catalog` that holds one in-memory zone whose
//! origin is the root `.`, so a single zone holds names under any TLD. The apex carries an SOA
//! (TTL and minimum both [`NEGATIVE_TTL`]), so negative answers carry it in the authority section:
//!
//! - a name with no records at all → NXDOMAIN + SOA;
//! - a name that has records, asked for a type it lacks → NOERROR, no answers (NODATA) + SOA;
//! - a CNAME whose target is in the zone → the CNAME followed by the target's records (hickory
//!   chases the chain inside the zone, up to 8 links); a CNAME whose target has no records of the
//!   asked type → just the CNAME, NOERROR.
//!
//! Every query that reaches the handler is counted, in total and per (lower-cased name, type),
//! before the catalog answers it. The server stops when the `TestUpstream` is dropped.
//!
//! [`UnresponsiveUpstream`] is an address where UDP and TCP are bound but nothing ever answers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SOA, SVCB, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// TTL of the apex SOA record and its `minimum` field: the negative-caching TTL (RFC 2308) that
/// NXDOMAIN and NODATA answers from a [`TestUpstream`] carry.
pub const NEGATIVE_TTL: u32 = 60;

/// One record of a [`TestUpstream`]'s zone. Names are absolute whether or not they end in `.`.
#[derive(Clone, Debug)]
pub enum TestRecord<'a> {
    /// `name A addr` with a TTL.
    A(&'a str, Ipv4Addr, u32),
    /// `name AAAA addr` with a TTL.
    Aaaa(&'a str, Ipv6Addr, u32),
    /// `name CNAME target` with a TTL. A CNAME must be the only record at its name (hickory
    /// refuses the rest, and [`TestUpstream::start`] panics).
    Cname(&'a str, &'a str, u32),
    /// `name TXT "text"` (one character-string) with a TTL.
    Txt(&'a str, &'a str, u32),
    /// `name HTTPS 1 target` (ServiceMode, priority 1, no SvcParams) with a TTL. Target `.` means
    /// "the owner name itself".
    Https(&'a str, &'a str, u32),
    /// `name HTTPS 0 target` (AliasMode) with a TTL.
    HttpsAlias(&'a str, &'a str, u32),
    /// Any other record, as built with hickory-proto (e.g. an MX, or a CNAME loop).
    Raw(Box<Record>),
}

impl TestRecord<'_> {
    fn to_record(&self) -> Record {
        match self {
            Self::A(name, addr, ttl) => Record::from_rdata(fqdn(name), *ttl, RData::A(A(*addr))),
            Self::Aaaa(name, addr, ttl) => {
                Record::from_rdata(fqdn(name), *ttl, RData::AAAA(AAAA(*addr)))
            }
            Self::Cname(name, target, ttl) => {
                Record::from_rdata(fqdn(name), *ttl, RData::CNAME(CNAME(fqdn(target))))
            }
            Self::Txt(name, text, ttl) => Record::from_rdata(
                fqdn(name),
                *ttl,
                RData::TXT(TXT::new(vec![(*text).to_owned()])),
            ),
            Self::Https(name, target, ttl) => https(name, 1, target, *ttl),
            Self::HttpsAlias(name, target, ttl) => https(name, 0, target, *ttl),
            Self::Raw(record) => (**record).clone(),
        }
    }
}

fn https(name: &str, priority: u16, target: &str, ttl: u32) -> Record {
    let svcb = SVCB::new(priority, fqdn(target), Vec::new());
    Record::from_rdata(fqdn(name), ttl, RData::HTTPS(HTTPS(svcb)))
}

/// Parses `name` as an absolute domain name (`"."` or `""` is the root).
pub fn fqdn(name: &str) -> Name {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return Name::root();
    }
    let mut parsed =
        Name::from_ascii(trimmed).unwrap_or_else(|e| panic!("bad test name {name:?}: {e}"));
    parsed.set_fqdn(true);
    parsed
}

/// The counter key for a name: lower-case, without the trailing dot (the root is `""`).
fn count_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Query counters shared between the handler and the [`TestUpstream`].
#[derive(Default)]
struct Counters {
    total: AtomicUsize,
    per_query: Mutex<HashMap<(String, RecordType), usize>>,
    /// The source address of every request that came over UDP, in order.
    udp_sources: Mutex<Vec<SocketAddr>>,
}

/// Counts every request, then lets the catalog answer it.
struct CountingHandler {
    catalog: Catalog,
    counters: Arc<Counters>,
}

// `RequestHandler` is an `#[async_trait]` trait; this is the signature the macro produces, spelled
// out so the harness does not need `async-trait` as a dev-dependency.
impl RequestHandler for CountingHandler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.counters.total.fetch_add(1, Ordering::SeqCst);
            if request.protocol() == Protocol::Udp {
                self.counters
                    .udp_sources
                    .lock()
                    .unwrap()
                    .push(request.src());
            }
            {
                let mut per_query = self.counters.per_query.lock().unwrap();
                for query in request.queries.queries() {
                    let key = (count_key(&query.name().to_string()), query.query_type());
                    *per_query.entry(key).or_default() += 1;
                }
            }
            self.catalog
                .handle_request::<R, T>(request, response_handle)
                .await
        })
    }
}

/// A real authoritative DNS server on `addr` (UDP and TCP, same port) serving the records it was
/// started with. Stops when dropped.
pub struct TestUpstream {
    /// Where it listens, for both UDP and TCP.
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    server: Server<CountingHandler>,
}

impl TestUpstream {
    /// Starts a server on 127.0.0.1 (an OS-chosen port) serving `records`.
    ///
    /// Panics if a record cannot be added to the zone (e.g. a CNAME next to other records).
    pub async fn start(records: &[TestRecord<'_>]) -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), records).await
    }

    /// Like [`TestUpstream::start`] on a given loopback address (e.g. `::1` or `127.0.0.2`).
    pub async fn start_on(ip: IpAddr, records: &[TestRecord<'_>]) -> Self {
        assert!(
            ip.is_loopback(),
            "tests bind loopback addresses only, not {ip}"
        );
        let catalog = build_catalog(records);
        let counters = Arc::new(Counters::default());
        let (udp, tcp) = bind_udp_and_tcp(ip).await;
        let addr = udp.local_addr().expect("udp local_addr");

        let mut server = Server::new(CountingHandler {
            catalog,
            counters: counters.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 32);
        Self {
            addr,
            counters,
            server,
        }
    }

    /// Unresponsive address: see [`UnresponsiveUpstream`].
    pub fn start_unresponsive() -> UnresponsiveUpstream {
        UnresponsiveUpstream::start()
    }

    /// Number of requests received so far (UDP and TCP together).
    pub fn queries(&self) -> usize {
        self.counters.total.load(Ordering::SeqCst)
    }

    /// Number of questions received so far for `name` (case-insensitive, trailing dot optional)
    /// and `rtype`.
    pub fn queries_for(&self, name: &str, rtype: RecordType) -> usize {
        let per_query = self.counters.per_query.lock().unwrap();
        per_query
            .get(&(count_key(name), rtype))
            .copied()
            .unwrap_or(0)
    }

    /// The source ports of the requests received over UDP so far, in order.
    pub fn udp_source_ports(&self) -> Vec<u16> {
        let sources = self.counters.udp_sources.lock().unwrap();
        sources.iter().map(SocketAddr::port).collect()
    }

    /// Sets both counters back to zero.
    pub fn reset_counts(&self) {
        let mut per_query = self.counters.per_query.lock().unwrap();
        per_query.clear();
        self.counters.total.store(0, Ordering::SeqCst);
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        // Stops the accept/receive loops; dropping `server` then aborts its tasks.
        self.server.shutdown_token().cancel();
    }
}

fn build_catalog(records: &[TestRecord<'_>]) -> Catalog {
    const SERIAL: u32 = 1;
    let origin = Name::root();
    // The type annotation picks the default runtime provider (Tokio).
    let mut zone: InMemoryZoneHandler<TokioRuntimeProvider> =
        InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);

    let soa = SOA::new(
        fqdn("ns.upstream.test"),
        fqdn("hostmaster.upstream.test"),
        SERIAL,
        3600,
        600,
        86400,
        NEGATIVE_TTL,
    );
    let soa = Record::from_rdata(origin.clone(), NEGATIVE_TTL, RData::SOA(soa));
    assert!(zone.upsert_mut(soa, SERIAL), "SOA refused by the zone");

    for record in records {
        let rr = record.to_record();
        assert!(
            zone.upsert_mut(rr.clone(), SERIAL),
            "the zone refused {rr} (a CNAME must be alone at its name)"
        );
    }

    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    catalog
}

/// Binds UDP on port 0, then TCP on the same port, retrying if that TCP port is taken.
async fn bind_udp_and_tcp(ip: IpAddr) -> (UdpSocket, TcpListener) {
    let mut last_error = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind UDP on {ip}: {e}"));
        let addr = udp.local_addr().expect("udp local_addr");
        match TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("no port on {ip} free for both UDP and TCP: {last_error:?}");
}

/// An upstream that never answers: a UDP socket that is never read and a TCP listener that never
/// accepts (connections complete in the kernel's backlog, then nothing is ever sent), both on
/// `addr`. Queries to it time out. Kept alive until dropped.
pub struct UnresponsiveUpstream {
    /// Where it listens, for both UDP and TCP.
    pub addr: SocketAddr,
    _udp: std::net::UdpSocket,
    _tcp: std::net::TcpListener,
}

impl UnresponsiveUpstream {
    /// Binds on 127.0.0.1 with an OS-chosen port.
    pub fn start() -> Self {
        let mut last_error = None;
        for _ in 0..20 {
            let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind UDP");
            let addr = udp.local_addr().expect("udp local_addr");
            match std::net::TcpListener::bind(addr) {
                Ok(tcp) => {
                    return Self {
                        addr,
                        _udp: udp,
                        _tcp: tcp,
                    };
                }
                Err(e) => last_error = Some(e),
            }
        }
        panic!("no 127.0.0.1 port free for both UDP and TCP: {last_error:?}");
    }
}
