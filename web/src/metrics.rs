//! The Prometheus endpoint: `GET /metrics` on the listener named `metrics`,
//! which the master binds from `[metrics] listen` (loopback only), served
//! with the console's HTTP stack (hyper). No login: the address is the
//! access control. At most [`MAX_CLIENTS`] scrapes at a time (the others
//! wait in the listen backlog), a request head of at most 8 KiB (`431`
//! beyond), [`IO_TIMEOUT`] for a connection. `GET` or `HEAD /metrics` →
//! 200 in the text exposition format 0.0.4
//! ([`postern_shared::metrics::render`]): the router's counters (asked
//! with `request=metrics`) and the master's worker states
//! (`request=workers`), each asked within [`ASK_TIMEOUT`]; any other path
//! → 404; another method → 405.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use postern_shared::ipc::{Outcome, RouterRequest, WorkerRequest};
use postern_shared::metrics::{render, RouterMetrics};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::Shared;

/// Scrapes served at the same time.
pub const MAX_CLIENTS: usize = 8;
/// Longest a connection may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a scrape waits for the router's counters and the master's
/// worker states.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// The exposition format.
const CONTENT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the endpoint until the process ends.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accept on the metrics socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(scrape(req, &shared).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IO_TIMEOUT)
                .max_buf_size(8192)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(IO_TIMEOUT, conn).await;
        });
    }
}

async fn scrape(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    };
    let head = req.method() == Method::HEAD;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found: try /metrics\n");
    }
    let (router, workers) = tokio::join!(
        tokio::time::timeout(
            ASK_TIMEOUT,
            shared.ask_router(RouterRequest::Metrics.encode())
        ),
        tokio::time::timeout(ASK_TIMEOUT, shared.ask_master(WorkerRequest::Workers)),
    );
    let router = router
        .ok()
        .and_then(Result::ok)
        .map(|a| RouterMetrics::from_attrs(&a));
    let workers = workers.ok().and_then(Result::ok).filter(Outcome::is_ok);
    let body = render(router.as_ref(), workers.as_ref());
    // HEAD: the same headers (its length too), no body.
    let len = body.len();
    let mut r = Response::new(Full::new(if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT));
    r.headers_mut()
        .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}
