//! Downloads of URL lists: one refresh of one list, from the request to the stored copy.
//!
//! This module owns the HTTP client (reqwest over rustls with the `ring` provider; trust roots
//! come from the system store through `rustls-platform-verifier`), the conditional GET, the
//! retry policy, the download limit shared by all lists, and the checks a body must pass before
//! it replaces the stored copy in [`ListStore`]: not too large, not an HTML page, not binary,
//! not mostly invalid lines. A refresh that fails for any reason leaves the stored copy as it
//! was, so the resolver keeps blocking from the last good list.
//!
//! When to refresh, and what to do with the result (metrics, recompiling the policy), is the
//! caller's business; this module only logs one line per refresh.
//!
//! Redirects are followed (a few, for mirrors) except from HTTPS to plain HTTP: a list asked
//! for over HTTPS is never taken from a source anyone on the path could change.
//!
//! Refreshes of one URL take turns (two lists may share a source, and the API's refresh may
//! overlap the timer's): the second then asks with the validators the first stored, and the
//! two never write the copy at the same time, which could pair one's body with the other's
//! ETag.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{
    ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::{Client, ClientBuilder, Response, StatusCode, Url, redirect};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::parse::{ParseReport, parse_list};
use super::store::{ListStore, StoredMeta, unix_now};
use crate::config::DownloadSettings;

/// Sent with every request, so list maintainers can tell who is fetching.
const USER_AGENT: &str = concat!("metasink/", env!("CARGO_PKG_VERSION"));

/// Redirects followed before giving up (list hosts use one or two, for mirrors).
const MAX_REDIRECTS: usize = 5;

/// The delay before the second attempt; it doubles for each attempt after that.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How much of a body is sniffed for signs of binary data.
const SNIFF_BYTES: usize = 8 * 1024;

/// [`RefreshError::NotAList`] for a web page (often a login or error page served with 200).
const HTML: &str = "an HTML page";

/// [`RefreshError::NotAList`] for anything that is not text.
const BINARY: &str = "binary data";

/// Every value [`RefreshError::reason`] returns, so a caller can create its metric series
/// ahead of time.
pub const REFRESH_ERROR_REASONS: [&str; 10] = [
    "timeout",
    "http_status",
    "too_large",
    "html",
    "binary",
    "empty",
    "mostly_invalid",
    "network",
    "store",
    "insecure_redirect",
];

/// Fetches URL lists into a [`ListStore`]. Clones share the HTTP client (and its connection
/// pool) and the limit on downloads running at once.
///
/// Both `https://` and `http://` URLs are fetched. Prefer `https://`: over plain HTTP anyone on
/// the path can change what the resolver blocks or lets through.
#[derive(Clone, Debug)]
pub struct Downloader {
    client: Client,
    store: ListStore,
    /// One permit per download running at once, across every clone.
    limit: Arc<Semaphore>,
    /// A lock per URL, held for a whole refresh, across every clone. Entries stay: one per URL
    /// ever refreshed, and URLs come from the config file.
    turns: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Time one attempt may take, body included.
    timeout: Duration,
    /// Attempts per refresh, at least one.
    attempts: u32,
    /// Largest body accepted.
    max_bytes: u64,
    /// Delay before the second attempt (a field so tests can make it short).
    retry_delay: Duration,
}

/// What a successful refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// A new copy was downloaded, checked and stored.
    Updated {
        /// Its size.
        bytes: u64,
        /// Entries read from it.
        entries: usize,
        /// Lines that could not be read (no more than the entries, or it would have been refused).
        invalid_lines: usize,
        /// Time of the attempt that succeeded: download, check and store.
        elapsed: Duration,
    },
    /// The server said the stored copy is current; only its fetch time was updated.
    NotModified,
}

/// Why a refresh failed. The stored copy, if any, is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// An attempt took longer than `download.timeout`, body included.
    #[error("no complete answer within the download timeout")]
    Timeout,
    /// The server answered with a status other than 200 (or 304 to a conditional request).
    #[error("the server answered with HTTP status {0}")]
    Status(u16),
    /// The body is larger than `download.max_bytes`.
    #[error("the list is larger than download.max_bytes ({limit} bytes)")]
    TooLarge {
        /// The limit it passed.
        limit: u64,
    },
    /// The body is not a list at all: "an HTML page" or "binary data".
    #[error("the server sent {0}, not a list")]
    NotAList(&'static str),
    /// Not a single entry: an emptied file on the server would otherwise wipe a good list.
    #[error("the list has no entries")]
    Empty,
    /// More than half of the lines that are neither blank nor comments could not be read.
    #[error("{invalid} of {lines} lines are not list entries")]
    MostlyInvalid {
        /// Lines that could not be read.
        invalid: usize,
        /// Lines considered: entries plus invalid lines.
        lines: usize,
    },
    /// The connection failed: name resolution, refused, reset, TLS, too many redirects, a bad
    /// URL.
    #[error("network error: {0}")]
    Network(String),
    /// The new copy could not be written.
    #[error("cannot store the new copy: {0}")]
    Store(io::Error),
    /// The server redirected an `https://` URL to a plain `http://` one, which was not
    /// followed.
    #[error("{}", RedirectRefused::Downgrade)]
    InsecureRedirect,
}

impl RefreshError {
    /// A short label for metrics: one of [`REFRESH_ERROR_REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Status(_) => "http_status",
            Self::TooLarge { .. } => "too_large",
            Self::NotAList(what) if *what == HTML => "html",
            Self::NotAList(_) => "binary",
            Self::Empty => "empty",
            Self::MostlyInvalid { .. } => "mostly_invalid",
            Self::Network(_) => "network",
            Self::Store(_) => "store",
            Self::InsecureRedirect => "insecure_redirect",
        }
    }

    /// Whether another attempt may fare better: a slow or unreachable server, or one that
    /// failed on its side (5xx). The other failures would only repeat.
    fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Network(_) => true,
            Self::Status(status) => (500..600).contains(status),
            _ => false,
        }
    }
}

/// Why a [`Downloader`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The HTTP client could not be set up; most often no CA certificates were found (on
    /// Debian and Raspberry Pi OS they come with the `ca-certificates` package).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl Downloader {
    /// A downloader with the limits of `settings`, storing into `store`.
    pub fn new(settings: &DownloadSettings, store: ListStore) -> Result<Self, DownloadError> {
        Self::with_client(settings, store, Client::builder())
    }

    /// [`Self::new`] with an HTTP client built from `builder` (tests add their own trust root).
    fn with_client(
        settings: &DownloadSettings,
        store: ListStore,
        builder: ClientBuilder,
    ) -> Result<Self, DownloadError> {
        // reqwest is built without a crypto provider so that it does not pull in aws-lc-rs.
        // Installing fails only when a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = builder
            .user_agent(USER_AGENT)
            .redirect(redirect::Policy::custom(|attempt| {
                match check_redirect(attempt.previous(), attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }))
            .build()
            .map_err(|error| DownloadError::Client(error_chain(&error)))?;
        Ok(Self {
            client,
            store,
            // Semaphore::new panics above MAX_PERMITS; nobody needs that many downloads anyway.
            limit: Arc::new(Semaphore::new(
                settings.concurrency.clamp(1, Semaphore::MAX_PERMITS),
            )),
            turns: Arc::default(),
            timeout: settings.timeout,
            attempts: settings.attempts.max(1),
            max_bytes: settings.max_bytes,
            retry_delay: FIRST_RETRY_DELAY,
        })
    }

    /// Fetch `url` for list `id` now: a conditional GET (If-None-Match / If-Modified-Since from
    /// the stored meta), with `download.timeout` per attempt (whole body included), up to
    /// `download.attempts` attempts with a doubling delay (1 s, 2 s, 4 s …), and at most
    /// `download.concurrency` downloads at once across the `Downloader` and its clones. A
    /// refresh of a URL that is already being refreshed waits for that one to finish first.
    ///
    /// On 200 the body is checked, then stored with its validators. On 304 the stored copy is
    /// kept and only its fetch time is updated (the caller need not re-read it). Only timeouts,
    /// network errors and 5xx answers are retried. Logs one line with the outcome.
    pub async fn refresh(&self, id: &str, url: &str) -> Result<Refreshed, RefreshError> {
        let turn = self.turn(url);
        let result = {
            let _turn = turn.lock().await;
            self.refresh_with_retries(id, url).await
        };
        match &result {
            Ok(Refreshed::Updated {
                bytes,
                entries,
                invalid_lines,
                elapsed,
            }) => info!(
                list = id,
                bytes,
                entries,
                invalid_lines,
                ?elapsed,
                "list downloaded"
            ),
            Ok(Refreshed::NotModified) => info!(list = id, "list unchanged on the server"),
            Err(error) => warn!(list = id, reason = error.reason(), %error, "list download failed"),
        }
        result
    }

    /// The lock refreshes of `url` take turns with.
    fn turn(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        // Nothing panics while holding the map, but if something did, the map is still sound.
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(turns.entry(url.to_owned()).or_default())
    }

    async fn refresh_with_retries(&self, id: &str, url: &str) -> Result<Refreshed, RefreshError> {
        let parsed = parse_url(url)?;
        let condition = Condition::for_stored(&self.store, id, url);
        let mut attempt = 1;
        loop {
            match self.attempt(&parsed, url, condition.as_ref()).await {
                Err(error) if error.is_retryable() && attempt < self.attempts => {
                    let delay = self.delay_after(attempt);
                    debug!(list = id, attempt, %error, ?delay, "download attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// The delay after failed attempt number `attempt` (counting from 1).
    fn delay_after(&self, attempt: u32) -> Duration {
        self.retry_delay
            .saturating_mul(2_u32.saturating_pow(attempt.saturating_sub(1)))
    }

    /// One attempt, holding a download permit until the new copy is stored: that bounds the
    /// bodies held in memory to `concurrency × max_bytes`.
    async fn attempt(
        &self,
        url: &Url,
        key: &str,
        condition: Option<&Condition>,
    ) -> Result<Refreshed, RefreshError> {
        // The semaphore is never closed, so this always gets a permit.
        let _permit = self.limit.acquire().await.ok();
        let started = Instant::now();
        let fetched = tokio::time::timeout(self.timeout, self.fetch(url, condition))
            .await
            .unwrap_or(Err(RefreshError::Timeout))?;
        match fetched {
            Fetched::NotModified(meta) => {
                // Only a few hundred bytes, but synced to the disk: that can take a while on
                // an SD card, and the DNS listeners share the runtime's worker threads.
                let (store, key) = (self.store.clone(), key.to_owned());
                on_blocking_pool(move || store.save_meta(&key, &meta).map_err(RefreshError::Store))
                    .await?;
                Ok(Refreshed::NotModified)
            }
            Fetched::Body(download) => {
                let bytes = download.meta.bytes;
                let report = check_and_store(self.store.clone(), key.to_owned(), download).await?;
                Ok(Refreshed::Updated {
                    bytes,
                    entries: report.entries,
                    invalid_lines: report.invalid_count,
                    elapsed: started.elapsed(),
                })
            }
        }
    }

    /// The request and the body, without the time limit (the caller applies it).
    async fn fetch(
        &self,
        url: &Url,
        condition: Option<&Condition>,
    ) -> Result<Fetched, RefreshError> {
        let mut request = self.client.get(url.clone());
        if let Some(condition) = condition {
            request = request.headers(condition.headers.clone());
        }
        let response = request.send().await.map_err(network_error)?;
        match (response.status(), condition) {
            (StatusCode::OK, _) => {}
            (StatusCode::NOT_MODIFIED, Some(condition)) => {
                return Ok(Fetched::NotModified(StoredMeta {
                    fetched_at: unix_now(),
                    ..condition.meta.clone()
                }));
            }
            (status, _) => return Err(RefreshError::Status(status.as_u16())),
        }
        // A page served as HTML is not worth downloading to find out.
        if is_html_content_type(response.headers()) {
            return Err(RefreshError::NotAList(HTML));
        }
        let etag = header_text(response.headers(), &ETAG);
        let last_modified = header_text(response.headers(), &LAST_MODIFIED);
        let body = read_capped(response, self.max_bytes).await?;
        Ok(Fetched::Body(Download {
            meta: StoredMeta {
                etag,
                last_modified,
                fetched_at: unix_now(),
                bytes: body.len() as u64,
            },
            body,
        }))
    }
}

/// The stored copy a refresh may keep, and the headers that ask the server whether it changed.
struct Condition {
    meta: StoredMeta,
    headers: HeaderMap,
}

impl Condition {
    /// `None` when there is nothing to keep (no usable validator, or no body of the size the
    /// meta records): then the GET is unconditional, so a 304 cannot leave the list without a
    /// copy, or with a cut one.
    fn for_stored(store: &ListStore, id: &str, url: &str) -> Option<Self> {
        let meta = store.meta(url)?;
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (IF_NONE_MATCH, &meta.etag),
            (IF_MODIFIED_SINCE, &meta.last_modified),
        ] {
            // A value that cannot be sent (say, an edited meta file) is just left out.
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, value);
            }
        }
        if headers.is_empty() {
            return None;
        }
        // The body is stored before its meta, so this only fails when the disk lost part of
        // it (a power cut before the store synced its files, a disk error) or someone edited
        // it. Asking with the validators would get a 304 and keep it like that for good.
        let problem = match store.body_len(url) {
            Ok(Some(bytes)) if bytes == meta.bytes => return Some(Self { meta, headers }),
            Ok(Some(bytes)) => format!(
                "the stored copy has {bytes} bytes where its download had {}",
                meta.bytes
            ),
            Ok(None) => "the stored copy is missing".to_owned(),
            Err(error) => format!("cannot read the stored copy: {error}"),
        };
        warn!(
            list = id,
            "{problem}; downloading the whole list instead of asking whether it changed"
        );
        None
    }
}

/// What one request brought back.
enum Fetched {
    /// 304: the stored copy's meta with a new fetch time.
    NotModified(StoredMeta),
    /// 200: a body no larger than the limit, not yet checked.
    Body(Download),
}

/// A downloaded body and the meta it will be stored with.
struct Download {
    body: Vec<u8>,
    meta: StoredMeta,
}

/// Why a redirect was not followed.
#[derive(Debug, thiserror::Error)]
enum RedirectRefused {
    /// More than [`MAX_REDIRECTS`] in a row.
    #[error("too many redirects (more than {MAX_REDIRECTS})")]
    TooMany,
    /// From HTTPS to anything else.
    #[error(
        "the server redirected an https:// URL to plain http://, which was not followed: \
         anyone on the path could change a list fetched that way"
    )]
    Downgrade,
}

/// Whether a redirect to `next` may be followed, `previous` being the URLs requested so far
/// (the list's own URL first). Once a request went over HTTPS, every later one must too.
fn check_redirect(previous: &[Url], next: &Url) -> Result<(), RedirectRefused> {
    // `previous` holds the list's own URL too, which is not a redirect.
    if previous.len() > MAX_REDIRECTS {
        return Err(RedirectRefused::TooMany);
    }
    if previous.iter().any(|url| url.scheme() == "https") && next.scheme() != "https" {
        return Err(RedirectRefused::Downgrade);
    }
    Ok(())
}

/// Parses `url` once, up front, so a malformed one fails without retries.
fn parse_url(url: &str) -> Result<Url, RefreshError> {
    let parsed =
        Url::parse(url).map_err(|error| RefreshError::Network(format!("bad URL: {error}")))?;
    match parsed.scheme() {
        "https" | "http" => Ok(parsed),
        other => Err(RefreshError::Network(format!(
            "unsupported URL scheme `{other}` (expected https or http)"
        ))),
    }
}

/// Reads the body chunk by chunk, stopping as soon as it passes `limit`: a huge or endless
/// body costs at most `limit` bytes of memory.
async fn read_capped(mut response: Response, limit: u64) -> Result<Vec<u8>, RefreshError> {
    let too_large = RefreshError::TooLarge { limit };
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit) {
        return Err(too_large);
    }
    let mut body = Vec::new();
    // The announced length is within the limit, so reserving it saves regrowing a big body;
    // if the memory is not there, reading will find out soon enough.
    if let Some(length) = announced.and_then(|length| usize::try_from(length).ok()) {
        body.try_reserve_exact(length).ok();
    }
    while let Some(chunk) = response.chunk().await.map_err(network_error)? {
        if body.len().saturating_add(chunk.len()) as u64 > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks the body and stores it, on the blocking pool: reading a big list takes a while, and
/// the DNS listeners share the runtime's worker threads.
async fn check_and_store(
    store: ListStore,
    url: String,
    download: Download,
) -> Result<ParseReport, RefreshError> {
    on_blocking_pool(move || {
        let report = check_list(&download.body)?;
        store
            .save(&url, &download.body, &download.meta)
            .map_err(RefreshError::Store)?;
        Ok(report)
    })
    .await
}

/// Runs `work` on the blocking pool, away from the worker threads the DNS listeners share.
async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RefreshError> + Send + 'static,
) -> Result<T, RefreshError> {
    tokio::task::spawn_blocking(work)
        .await
        // Only a panic or a runtime shutting down gets here; the store's renames leave each
        // file old or new either way.
        .unwrap_or_else(|error| Err(RefreshError::Store(io::Error::other(error))))
}

/// Whether `body` reads as a list: text, not a web page, at least half of its lines good.
fn check_list(body: &[u8]) -> Result<ParseReport, RefreshError> {
    if looks_binary(body) {
        return Err(RefreshError::NotAList(BINARY));
    }
    if looks_like_html(body) {
        return Err(RefreshError::NotAList(HTML));
    }
    // A stray non-UTF-8 byte further on (a Latin-1 comment) only spoils its own line.
    let report = parse_list(&String::from_utf8_lossy(body), |_| {});
    if report.entries == 0 && report.invalid_count == 0 {
        return Err(RefreshError::Empty);
    }
    // More than half of entries + invalid lines are invalid ⇔ invalid > entries.
    if report.invalid_count > report.entries {
        return Err(RefreshError::MostlyInvalid {
            invalid: report.invalid_count,
            lines: report.entries.saturating_add(report.invalid_count),
        });
    }
    Ok(report)
}

/// A NUL byte, or bytes that are not UTF-8, in the first [`SNIFF_BYTES`] (a character cut by
/// that boundary does not count).
fn looks_binary(body: &[u8]) -> bool {
    let head = &body[..body.len().min(SNIFF_BYTES)];
    if head.contains(&0) {
        return true;
    }
    // `error_len` is `None` when the input merely ends inside a character.
    std::str::from_utf8(head).is_err_and(|error| error.error_len().is_some())
}

/// Whether the first non-blank bytes open an HTML document.
fn looks_like_html(body: &[u8]) -> bool {
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(body)
        .trim_ascii_start();
    [&b"<!doctype html"[..], b"<html"].iter().any(|start| {
        body.get(..start.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(start))
    })
}

fn is_html_content_type(headers: &HeaderMap) -> bool {
    header_text(headers, &reqwest::header::CONTENT_TYPE).is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/html"))
    })
}

fn header_text(headers: &HeaderMap, name: &reqwest::header::HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    Some(value.to_owned())
}

/// The error and its causes on one line, without the URL (it may carry a token, and the log
/// line names the list anyway); a redirect to plain HTTP is an error of its own.
fn network_error(error: reqwest::Error) -> RefreshError {
    let mut cause = std::error::Error::source(&error);
    while let Some(error) = cause {
        if let Some(RedirectRefused::Downgrade) = error.downcast_ref() {
            return RefreshError::InsecureRedirect;
        }
        cause = error.source();
    }
    RefreshError::Network(error_chain(&error.without_url()))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const GOOD_LIST: &str = "# title: test\nads.example\n0.0.0.0 tracker.example pixel.example\n";
    const OLD_LIST: &[u8] = b"old.example\n";

    /// How the test server answers request number `n` (from 1), given its headers.
    type Reply = Box<dyn Fn(usize, &HeaderMap) -> Response + Send + Sync>;

    /// What the test server saw.
    struct Seen {
        reply: Reply,
        /// Time each request is held before it is answered.
        hold: Duration,
        requests: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        headers: Mutex<Vec<HeaderMap>>,
    }

    impl Seen {
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn headers(&self, n: usize) -> HeaderMap {
            self.headers.lock().unwrap()[n].clone()
        }
    }

    /// An HTTP server on 127.0.0.1 answering every path with `reply`.
    async fn serve(hold: Duration, reply: Reply) -> (String, Arc<Seen>) {
        let seen = Arc::new(Seen {
            reply,
            hold,
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            headers: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&seen));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}/list.txt"), seen)
    }

    async fn answer(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Response {
        let n = seen.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
        seen.headers.lock().unwrap().push(headers.clone());
        tokio::time::sleep(seen.hold).await;
        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
        (seen.reply)(n, &headers)
    }

    fn plain(status: StatusCode, body: impl Into<Vec<u8>>) -> Response {
        (status, [("content-type", "text/plain")], body.into()).into_response()
    }

    /// A raw server on 127.0.0.1 that runs `script` on each connection (after reading the
    /// request head), for answers axum would not give: stalls, slow endless bodies.
    async fn serve_raw<F, Fut>(script: F) -> (String, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut head = [0; 4096];
                // The request fits one read; its content does not matter.
                let _ = stream.read(&mut head).await;
                tokio::spawn(script(stream));
            }
        });
        (format!("http://{address}/list.txt"), connections)
    }

    fn settings(attempts: u32, timeout: Duration) -> DownloadSettings {
        DownloadSettings {
            interval: Duration::from_secs(86_400),
            timeout,
            attempts,
            max_bytes: 1024 * 1024,
            concurrency: 2,
        }
    }

    /// A downloader with short retry delays, and its store in a fresh directory.
    fn downloader(settings: &DownloadSettings) -> (Downloader, ListStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        let mut downloader = Downloader::new(settings, store.clone()).unwrap();
        downloader.retry_delay = Duration::from_millis(10);
        (downloader, store, dir)
    }

    fn default_downloader() -> (Downloader, ListStore, tempfile::TempDir) {
        downloader(&settings(3, Duration::from_secs(2)))
    }

    /// How the HTTPS test server answers a request for a path: a whole HTTP/1.1 response.
    type RawReply = Arc<dyn Fn(&str) -> String + Send + Sync>;

    /// An HTTPS server on 127.0.0.1 with a certificate made on the spot, answering each
    /// request with `reply`; its `https://` URL for `/list.txt`, the certificate to trust, and
    /// a count of the requests it read.
    async fn serve_tls(reply: RawReply) -> (String, reqwest::Certificate, Arc<AtomicUsize>) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, reply, counter) =
                    (acceptor.clone(), Arc::clone(&reply), Arc::clone(&counter));
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut byte = [0; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let _ = stream.write_all(reply(path).as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        let root = reqwest::Certificate::from_der(cert.der()).unwrap();
        (format!("https://{address}/list.txt"), root, requests)
    }

    /// A default downloader whose client trusts only `root`.
    fn tls_downloader(root: reqwest::Certificate) -> (Downloader, ListStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = ListStore::new(dir.path());
        let builder = Client::builder().tls_certs_only([root]);
        let settings = settings(3, Duration::from_secs(2));
        let mut downloader = Downloader::with_client(&settings, store.clone(), builder).unwrap();
        downloader.retry_delay = Duration::from_millis(10);
        (downloader, store, dir)
    }

    fn redirect_to(location: &str) -> String {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        )
    }

    fn raw_list() -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{GOOD_LIST}",
            GOOD_LIST.len()
        )
    }

    /// A previous good copy, which failed refreshes must leave alone.
    fn seed(store: &ListStore, url: &str) -> StoredMeta {
        let meta = StoredMeta {
            etag: None,
            last_modified: None,
            fetched_at: 7,
            bytes: OLD_LIST.len() as u64,
        };
        store.save(url, OLD_LIST, &meta).unwrap();
        meta
    }

    fn assert_untouched(store: &ListStore, url: &str, meta: &StoredMeta) {
        assert_eq!(store.load(url).unwrap().as_deref(), Some(OLD_LIST));
        assert_eq!(store.meta(url).as_ref(), Some(meta));
    }

    #[tokio::test]
    async fn etag_then_not_modified() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, headers| match headers.get("if-none-match") {
                Some(tag) if tag == "\"v1\"" => StatusCode::NOT_MODIFIED.into_response(),
                _ => (
                    [("etag", "\"v1\""), ("content-type", "text/plain")],
                    GOOD_LIST,
                )
                    .into_response(),
            }),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();

        let first = downloader.refresh("test", &url).await.unwrap();
        let Refreshed::Updated {
            bytes,
            entries,
            invalid_lines,
            ..
        } = first
        else {
            panic!("expected a download, got {first:?}");
        };
        assert_eq!(
            (bytes, entries, invalid_lines),
            (GOOD_LIST.len() as u64, 3, 0)
        );
        assert_eq!(
            store.load(&url).unwrap().as_deref(),
            Some(GOOD_LIST.as_bytes())
        );
        let meta = store.meta(&url).unwrap();
        assert_eq!(meta.etag.as_deref(), Some("\"v1\""));
        assert!(meta.fetched_at > 0);
        assert_eq!(seen.headers(0)["user-agent"], USER_AGENT);
        assert!(!seen.headers(0).contains_key("if-none-match"));

        // Back-date the fetch so the second one visibly moves it.
        store
            .save_meta(
                &url,
                &StoredMeta {
                    fetched_at: 1,
                    ..meta.clone()
                },
            )
            .unwrap();
        let second = downloader.refresh("test", &url).await.unwrap();
        assert_eq!(second, Refreshed::NotModified);
        assert_eq!(seen.headers(1)["if-none-match"], "\"v1\"");
        assert_eq!(
            store.load(&url).unwrap().as_deref(),
            Some(GOOD_LIST.as_bytes())
        );
        let refreshed = store.meta(&url).unwrap();
        assert!(refreshed.fetched_at >= meta.fetched_at);
        assert_eq!(refreshed.etag, meta.etag);
        assert_eq!(refreshed.bytes, meta.bytes);
        assert_eq!(seen.requests(), 2);
    }

    #[tokio::test]
    async fn last_modified_then_not_modified() {
        const DATE: &str = "Tue, 01 Apr 2025 10:00:00 GMT";
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, headers| match headers.get("if-modified-since") {
                Some(since) if since == DATE => StatusCode::NOT_MODIFIED.into_response(),
                _ => ([("last-modified", DATE)], GOOD_LIST).into_response(),
            }),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();

        let first = downloader.refresh("test", &url).await.unwrap();
        assert!(matches!(first, Refreshed::Updated { .. }), "{first:?}");
        assert_eq!(
            store.meta(&url).unwrap().last_modified.as_deref(),
            Some(DATE)
        );
        let second = downloader.refresh("test", &url).await.unwrap();
        assert_eq!(second, Refreshed::NotModified);
        assert_eq!(seen.headers(1)["if-modified-since"], DATE);
        assert!(!seen.headers(1).contains_key("if-none-match"));
        assert_eq!(seen.requests(), 2);
    }

    #[tokio::test]
    async fn validators_without_the_whole_stored_body_are_not_sent() {
        // No body at all, then one a byte short of what the meta records (a power cut).
        for body in [None, Some(&GOOD_LIST.as_bytes()[..GOOD_LIST.len() - 1])] {
            let (url, seen) = serve(
                Duration::ZERO,
                Box::new(|_, headers| match headers.get("if-none-match") {
                    Some(_) => StatusCode::NOT_MODIFIED.into_response(),
                    None => plain(StatusCode::OK, GOOD_LIST),
                }),
            )
            .await;
            let (downloader, store, _dir) = default_downloader();
            let meta = StoredMeta {
                etag: Some("\"v1\"".into()),
                last_modified: Some("Tue, 01 Apr 2025 10:00:00 GMT".into()),
                fetched_at: 7,
                bytes: GOOD_LIST.len() as u64,
            };
            match body {
                Some(body) => store.save(&url, body, &meta).unwrap(),
                None => store.save_meta(&url, &meta).unwrap(),
            }

            let result = downloader.refresh("test", &url).await.unwrap();
            assert!(
                matches!(result, Refreshed::Updated { .. }),
                "{body:?}: {result:?}"
            );
            assert!(!seen.headers(0).contains_key("if-none-match"), "{body:?}");
            assert!(
                !seen.headers(0).contains_key("if-modified-since"),
                "{body:?}"
            );
            assert_eq!(
                store.load(&url).unwrap().as_deref(),
                Some(GOOD_LIST.as_bytes())
            );
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_keep_the_stored_copy() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, _| plain(StatusCode::INTERNAL_SERVER_ERROR, "oops")),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();
        let meta = seed(&store, &url);

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert!(matches!(error, RefreshError::Status(500)), "{error:?}");
        assert_eq!(error.reason(), "http_status");
        assert_eq!(seen.requests(), 3);
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn a_retry_can_succeed() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|n, _| match n {
                1 => plain(StatusCode::SERVICE_UNAVAILABLE, "busy"),
                _ => plain(StatusCode::OK, GOOD_LIST),
            }),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();

        let result = downloader.refresh("test", &url).await.unwrap();
        assert!(matches!(result, Refreshed::Updated { .. }), "{result:?}");
        assert_eq!(seen.requests(), 2);
        assert!(store.has_body(&url));
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, _| plain(StatusCode::NOT_FOUND, "no")),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert!(matches!(error, RefreshError::Status(404)), "{error:?}");
        assert_eq!(error.reason(), "http_status");
        assert_eq!(seen.requests(), 1);
        assert!(!store.has_body(&url));
    }

    #[tokio::test]
    async fn html_pages_are_refused() {
        // Once by its content type, once by its content (a page sent as text/plain).
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|n, _| match n {
                1 => ([("content-type", "text/html; charset=utf-8")], GOOD_LIST).into_response(),
                _ => plain(
                    StatusCode::OK,
                    "\u{feff}\n  <!DOCTYPE html>\n<p>Sign in</p>\n",
                ),
            }),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();
        let meta = seed(&store, &url);

        for _ in 0..2 {
            let error = downloader.refresh("test", &url).await.unwrap_err();
            assert_eq!(error.reason(), "html", "{error:?}");
        }
        assert_eq!(seen.requests(), 2);
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn binary_bodies_are_refused() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, _| {
                let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00];
                gzip.extend_from_slice(GOOD_LIST.as_bytes());
                ([("content-type", "application/octet-stream")], gzip).into_response()
            }),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();
        let meta = seed(&store, &url);

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert_eq!(error.reason(), "binary", "{error:?}");
        assert_eq!(seen.requests(), 1);
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn mostly_invalid_lists_are_refused() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, _| {
                plain(
                    StatusCode::OK,
                    "# a list?\nads.example\nnot a list\n{\"json\": 1}\n",
                )
            }),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();
        let meta = seed(&store, &url);

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert!(
            matches!(
                error,
                RefreshError::MostlyInvalid {
                    invalid: 2,
                    lines: 3
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.reason(), "mostly_invalid");
        assert_eq!(seen.requests(), 1);
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn an_emptied_list_does_not_replace_a_good_one() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, _| plain(StatusCode::OK, "# nothing here any more\n\n")),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();
        let meta = seed(&store, &url);

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert!(matches!(error, RefreshError::Empty), "{error:?}");
        assert_eq!(error.reason(), "empty");
        assert_eq!(seen.requests(), 1);
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let (url, connections) = serve_raw(|mut stream| async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&b"ads.example\n".repeat(4)).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let (downloader, store, _dir) = downloader(&settings(2, Duration::from_millis(300)));
        let meta = seed(&store, &url);

        let started = Instant::now();
        let error = downloader.refresh("test", &url).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(error, RefreshError::Timeout), "{error:?}");
        assert_eq!(error.reason(), "timeout");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn an_oversized_body_is_cut_off_early() {
        // 1 MiB in 1 KiB pieces, a millisecond apart: reading it all would take over a second.
        let (url, connections) = serve_raw(|mut stream| async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let piece = b"ads.example\n".repeat(1024 / 12 + 1);
            for _ in 0..1024 {
                if stream.write_all(&piece[..1024]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        let mut settings = settings(3, Duration::from_secs(5));
        settings.max_bytes = 1024;
        let (downloader, store, _dir) = downloader(&settings);

        let started = Instant::now();
        let error = downloader.refresh("test", &url).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(error, RefreshError::TooLarge { limit: 1024 }),
            "{error:?}"
        );
        assert_eq!(error.reason(), "too_large");
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert!(!store.has_body(&url));
        assert_eq!(store.meta(&url), None);
    }

    #[tokio::test]
    async fn an_announced_oversized_body_is_not_read() {
        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|_, _| plain(StatusCode::OK, vec![b'a'; 4096])),
        )
        .await;
        let mut settings = settings(3, Duration::from_secs(2));
        settings.max_bytes = 1024;
        let (downloader, store, _dir) = downloader(&settings);

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert_eq!(error.reason(), "too_large", "{error:?}");
        assert_eq!(seen.requests(), 1);
        assert!(!store.has_body(&url));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_network_error() {
        // Bound and dropped: nothing listens there any more, so connecting is refused.
        let address: SocketAddr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("http://{address}/list.txt");
        let (downloader, store, _dir) = default_downloader();
        let meta = seed(&store, &url);

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert!(matches!(error, RefreshError::Network(_)), "{error:?}");
        assert_eq!(error.reason(), "network");
        assert!(!error.to_string().contains("list.txt"), "{error}");
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn bad_urls_fail_without_a_request() {
        let (downloader, _store, _dir) = default_downloader();
        for url in ["not a url", "ftp://127.0.0.1/list.txt"] {
            let error = downloader.refresh("test", url).await.unwrap_err();
            assert_eq!(error.reason(), "network", "{url}: {error:?}");
        }
    }

    #[tokio::test]
    async fn concurrency_is_limited_across_clones() {
        for (concurrency, expected) in [(1, 1), (2, 2)] {
            let (url, seen) = serve(
                Duration::from_millis(100),
                Box::new(|_, _| plain(StatusCode::OK, GOOD_LIST)),
            )
            .await;
            let mut settings = settings(1, Duration::from_secs(2));
            settings.concurrency = concurrency;
            let (downloader, _store, _dir) = downloader(&settings);
            let other = downloader.clone();
            let second_url = url.replace("list.txt", "other.txt");

            let (a, b) = tokio::join!(
                downloader.refresh("a", &url),
                other.refresh("b", &second_url)
            );
            assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
            assert_eq!(seen.requests(), 2);
            assert_eq!(seen.max_in_flight.load(Ordering::SeqCst), expected);
        }
    }

    #[tokio::test]
    async fn refreshes_of_one_url_take_turns() {
        let (url, seen) = serve(
            Duration::from_millis(100),
            Box::new(|_, headers| match headers.get("if-none-match") {
                Some(tag) if tag == "\"v1\"" => StatusCode::NOT_MODIFIED.into_response(),
                _ => ([("etag", "\"v1\"")], GOOD_LIST).into_response(),
            }),
        )
        .await;
        // Room for both at once, so only the per-URL turn can keep them apart.
        let (downloader, store, _dir) = default_downloader();
        let other = downloader.clone();

        let (a, b) = tokio::join!(downloader.refresh("a", &url), other.refresh("b", &url));
        let mut results = [a.unwrap(), b.unwrap()];
        results.sort_by_key(|result| *result == Refreshed::NotModified);
        assert!(
            matches!(results[0], Refreshed::Updated { .. }),
            "{results:?}"
        );
        assert_eq!(results[1], Refreshed::NotModified);
        assert_eq!(seen.max_in_flight.load(Ordering::SeqCst), 1);
        assert_eq!(seen.headers(1)["if-none-match"], "\"v1\"");
        assert_eq!(
            store.load(&url).unwrap().as_deref(),
            Some(GOOD_LIST.as_bytes())
        );
        assert_eq!(store.meta(&url).unwrap().etag.as_deref(), Some("\"v1\""));
    }

    #[tokio::test]
    async fn a_redirect_from_https_to_http_is_refused_and_counted_as_such() {
        let (plain_url, plain) = serve(
            Duration::ZERO,
            Box::new(|_, _| plain(StatusCode::OK, "downgraded.example\n")),
        )
        .await;
        let (url, root, requests) =
            serve_tls(Arc::new(move |_: &str| redirect_to(&plain_url))).await;
        let (downloader, store, _dir) = tls_downloader(root);
        let meta = seed(&store, &url);

        let error = downloader.refresh("test", &url).await.unwrap_err();
        assert!(matches!(error, RefreshError::InsecureRedirect), "{error:?}");
        assert_eq!(error.reason(), "insecure_redirect");
        assert!(error.to_string().contains("plain http://"), "{error}");
        // Not retried, and the plain-HTTP server was never asked.
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        assert_eq!(plain.requests(), 0);
        assert_untouched(&store, &url, &meta);
    }

    #[tokio::test]
    async fn redirects_within_https_and_within_http_are_followed() {
        let (url, root, requests) = serve_tls(Arc::new(|path: &str| match path {
            "/list.txt" => redirect_to("/mirror/list.txt"),
            _ => raw_list(),
        }))
        .await;
        let (downloader, store, _dir) = tls_downloader(root);
        let result = downloader.refresh("test", &url).await.unwrap();
        assert!(
            matches!(result, Refreshed::Updated { entries: 3, .. }),
            "{result:?}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 2);
        assert_eq!(
            store.load(&url).unwrap().as_deref(),
            Some(GOOD_LIST.as_bytes())
        );

        let (url, seen) = serve(
            Duration::ZERO,
            Box::new(|n, _| match n {
                1 => (StatusCode::FOUND, [("location", "/mirror/list.txt")]).into_response(),
                _ => plain(StatusCode::OK, GOOD_LIST),
            }),
        )
        .await;
        let (downloader, store, _dir) = default_downloader();
        let result = downloader.refresh("test", &url).await.unwrap();
        assert!(
            matches!(result, Refreshed::Updated { entries: 3, .. }),
            "{result:?}"
        );
        assert_eq!(seen.requests(), 2);
        assert_eq!(
            store.load(&url).unwrap().as_deref(),
            Some(GOOD_LIST.as_bytes())
        );
    }

    #[test]
    fn once_on_https_a_redirect_stays_on_https() {
        let url = |text: &str| Url::parse(text).unwrap();
        let (https, http) = (url("https://a.example/l"), url("http://a.example/l"));
        let mirror = url("https://b.example/l");
        let one = std::slice::from_ref;
        assert!(check_redirect(one(&https), &mirror).is_ok());
        assert!(check_redirect(one(&http), &mirror).is_ok());
        assert!(check_redirect(one(&http), &url("http://b.example/l")).is_ok());
        for previous in [vec![https.clone()], vec![http.clone(), mirror.clone()]] {
            assert!(
                matches!(
                    check_redirect(&previous, &http),
                    Err(RedirectRefused::Downgrade)
                ),
                "{previous:?}"
            );
        }
        let chain = vec![http.clone(); MAX_REDIRECTS + 1];
        assert!(matches!(
            check_redirect(&chain, &http),
            Err(RedirectRefused::TooMany)
        ));
        assert!(check_redirect(&chain[..MAX_REDIRECTS], &http).is_ok());
    }

    #[test]
    fn retry_delays_double() {
        let (downloader, _store, _dir) = downloader(&settings(5, Duration::from_secs(1)));
        let delays: Vec<_> = (1..=4).map(|n| downloader.delay_after(n)).collect();
        assert_eq!(delays, [10, 20, 40, 80].map(Duration::from_millis));
        assert!(downloader.delay_after(u32::MAX) > Duration::from_secs(86_400));
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_html(b"<html><body>"));
        assert!(looks_like_html(b"\r\n \t<!DocType HTML>"));
        assert!(!looks_like_html(b"ads.example\n<html>\n"));
        assert!(!looks_like_html(b"<htm"));
        assert!(!looks_like_html(b""));

        assert!(looks_binary(b"ads.example\n\0"));
        assert!(looks_binary(b"\xff\xfeads.example"));
        assert!(!looks_binary("bücher.de\n".as_bytes()));
        // A character cut by the sniffing window is not binary; one cut at the very end isn't
        // either, and a bad byte past the window is left to the lossy reading.
        let mut cut = vec![b'a'; SNIFF_BYTES - 1];
        cut.extend_from_slice("ü".as_bytes());
        assert!(!looks_binary(&cut));
        assert!(!looks_binary(&"ü".as_bytes()[..1]));
        cut.push(0xff);
        assert!(!looks_binary(&cut));
        let mut latin1_late = b"ads.example\n".repeat(SNIFF_BYTES / 12 + 1);
        latin1_late.extend_from_slice(b"# caf\xe9\n");
        assert!(check_list(&latin1_late).is_ok());
        assert!(looks_binary(b"# caf\xe9\nads.example\n"));
    }

    #[test]
    fn every_reason_is_listed() {
        let errors = [
            RefreshError::Timeout,
            RefreshError::Status(503),
            RefreshError::TooLarge { limit: 1 },
            RefreshError::NotAList(HTML),
            RefreshError::NotAList(BINARY),
            RefreshError::Empty,
            RefreshError::MostlyInvalid {
                invalid: 2,
                lines: 3,
            },
            RefreshError::Network("refused".into()),
            RefreshError::Store(io::Error::other("disk full")),
            RefreshError::InsecureRedirect,
        ];
        let reasons: Vec<_> = errors.iter().map(RefreshError::reason).collect();
        assert_eq!(reasons, REFRESH_ERROR_REASONS);
    }
}
