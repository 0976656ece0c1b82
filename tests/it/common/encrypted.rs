//! [`EncryptedUpstream`]: a real DNS-over-TLS and DNS-over-HTTPS server (hickory-server's TLS
//! and HTTP/2 listeners, in process) with a certificate for [`SERVER_NAME`] issued by a CA the
//! test makes on the spot with rcgen; the CA's PEM file is there for `ca_file`.
//!
//! It serves the same kind of zone as [`super::TestUpstream`], counts the requests it gets and
//! the connections (client ports) they came on, can hold each answer back for a while, and can
//! close every connection with whatever queries were waiting on it while it goes on listening
//! (a fresh server takes over the ports, bound with `SO_REUSEPORT` beside the old one).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::Catalog;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

use super::upstream::{TestRecord, build_catalog};

/// The name the server's certificate is valid for.
pub const SERVER_NAME: &str = "dns.test";

/// How long the server may wait for a TLS handshake or the next request on a connection.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A DoT and a DoH listener on 127.0.0.1 serving `records`. Stops when dropped.
pub struct EncryptedUpstream {
    /// The DNS-over-TLS listener.
    pub dot: SocketAddr,
    /// The DNS-over-HTTPS listener (path `/dns-query`).
    pub doh: SocketAddr,
    /// PEM file of the CA that issued the server's certificate.
    pub ca_file: PathBuf,
    handler: SharedHandler,
    dot_config: Arc<ServerConfig>,
    doh_config: Arc<ServerConfig>,
    server: Server<SharedHandler>,
    _dir: tempfile::TempDir,
}

impl EncryptedUpstream {
    /// Starts both listeners (OS-chosen ports) serving `records`.
    pub async fn start(records: &[TestRecord<'_>]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (ca_pem, chain, key) = certificates();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write the CA file");
        let dot_config = server_config(&chain, &key, b"dot");
        let doh_config = server_config(&chain, &key, b"h2");
        let handler = SharedHandler(Arc::new(Handler {
            catalog: build_catalog(records),
            requests: AtomicUsize::new(0),
            sources: Mutex::new(HashSet::new()),
            delay: Mutex::new(Duration::ZERO),
        }));
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let (dot, doh) = (listen(any_port), listen(any_port));
        let (dot_addr, doh_addr) = (dot.local_addr().unwrap(), doh.local_addr().unwrap());
        let server = serve(&handler, dot, doh, &dot_config, &doh_config);
        Self {
            dot: dot_addr,
            doh: doh_addr,
            ca_file,
            handler,
            dot_config,
            doh_config,
            server,
            _dir: dir,
        }
    }

    /// Requests received so far, over either listener.
    pub fn queries(&self) -> usize {
        self.handler.0.requests.load(Ordering::SeqCst)
    }

    /// Distinct client connections (source addresses) requests came on so far.
    pub fn connections(&self) -> usize {
        self.handler.0.sources.lock().unwrap().len()
    }

    /// Holds every later answer back for `delay`.
    pub fn delay_answers(&self, delay: Duration) {
        *self.handler.0.delay.lock().unwrap() = delay;
    }

    /// Closes every connection, with the queries waiting on them unanswered, while new
    /// connections are taken as before: a fresh server listens on the same ports, then the
    /// old one stops.
    pub fn drop_connections(&mut self) {
        let (dot, doh) = (listen(self.dot), listen(self.doh));
        let fresh = serve(&self.handler, dot, doh, &self.dot_config, &self.doh_config);
        let old = std::mem::replace(&mut self.server, fresh);
        old.shutdown_token().cancel();
    }
}

impl Drop for EncryptedUpstream {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

/// A server with both listeners.
fn serve(
    handler: &SharedHandler,
    dot: TcpListener,
    doh: TcpListener,
    dot_config: &Arc<ServerConfig>,
    doh_config: &Arc<ServerConfig>,
) -> Server<SharedHandler> {
    let mut server = Server::new(handler.clone());
    server
        .register_tls_listener_with_tls_config(dot, CONNECTION_TIMEOUT, dot_config.clone())
        .expect("DoT listener");
    server
        .register_https_listener_with_tls_config(
            doh,
            CONNECTION_TIMEOUT,
            doh_config.clone(),
            None,
            "/dns-query".to_owned(),
        )
        .expect("DoH listener");
    server
}

/// A listener on `address` that another can share (`SO_REUSEPORT`).
fn listen(address: SocketAddr) -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("TCP socket");
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket
        .bind(&address.into())
        .unwrap_or_else(|e| panic!("bind {address}: {e}"));
    socket.listen(128).unwrap();
    TcpListener::from_std(socket.into()).expect("a listener in the runtime")
}

/// A CA (as PEM) and a certificate chain and key for [`SERVER_NAME`] issued by it.
fn certificates() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    let chain = vec![leaf.der().clone(), ca.der().clone()];
    (
        ca.pem(),
        chain,
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// The rustls server side, offering `alpn`.
fn server_config(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.to_vec(), key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

struct Handler {
    catalog: Catalog,
    requests: AtomicUsize,
    sources: Mutex<HashSet<SocketAddr>>,
    delay: Mutex<Duration>,
}

/// Counts each request, waits the delay, then lets the catalog answer; shared by the servers
/// before and after a restart.
#[derive(Clone)]
struct SharedHandler(Arc<Handler>);

// The signature `#[async_trait]` produces, as in `super::upstream`.
impl RequestHandler for SharedHandler {
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
            let handler = &self.0;
            handler.requests.fetch_add(1, Ordering::SeqCst);
            handler.sources.lock().unwrap().insert(request.src());
            let delay = *handler.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            handler
                .catalog
                .handle_request::<R, T>(request, response_handle)
                .await
        })
    }
}
