//! A list server for download tests: plain HTTP on 127.0.0.1 serving one list whose body the
//! test can change, with an ETag so refreshes can be answered `304 Not Modified`, a count
//! of the requests it received, and an optional delay before each answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::{ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Default)]
struct Shared {
    body: Mutex<String>,
    version: AtomicUsize,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
    /// Milliseconds each answer waits after its request was counted.
    delay_ms: AtomicU64,
}

/// The running server; stops when dropped.
pub struct ListServer {
    /// `http://127.0.0.1:PORT/list.txt`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ListServer {
    /// Serves `body` at `/list.txt`.
    pub async fn start(body: &str) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.body.lock().unwrap() = body.to_owned();
        let app = Router::new()
            .route("/list.txt", get(serve))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{address}/list.txt"),
            shared,
            task,
        }
    }

    /// Replaces the body (and so its ETag).
    pub fn set_body(&self, body: &str) {
        *self.shared.body.lock().unwrap() = body.to_owned();
        self.shared.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes every later answer wait `delay` after the request was counted, so a test can act
    /// while a download is known to be in flight.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).expect("delay in range");
        self.shared.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests answered `304 Not Modified`.
    pub fn not_modified(&self) -> usize {
        self.shared.not_modified.load(Ordering::SeqCst)
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let etag = format!("\"v{}\"", shared.version.load(Ordering::SeqCst));
    if headers
        .get(IF_NONE_MATCH)
        .is_some_and(|value| value == etag.as_str())
    {
        shared.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let body = shared.body.lock().unwrap().clone();
    ([(ETAG, etag)], body).into_response()
}
