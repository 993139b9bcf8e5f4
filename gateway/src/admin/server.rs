//! Serving the admin routes under hard limits, so no client of the admin port can hold the
//! gateway's descriptors or tasks: a deadline for each request head (which is also the idle
//! keep-alive timeout), a deadline for each whole request (body included), and a cap on open
//! admin connections that keeps the rest of the descriptor table for the shards.
//!
//! At the cap a new connection is still accepted, and the oldest connection with no request in
//! progress (one that is idle or still sending its head) is dropped for it. So a flood of idle
//! connections can neither fill the descriptor table nor lock out the next `/healthz` probe.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinSet};

/// The whole request head must arrive within this, counted from the connection's start or from
/// the end of its previous response: slow headers and idle keep-alive connections are both
/// closed by it. hyper starts this timer whenever it waits for a head ([hyper's
/// `header_read_timeout`], "if a client does not transmit the entire header within this time, the
/// connection is closed").
///
/// [hyper's `header_read_timeout`]: https://docs.rs/hyper/1/hyper/server/conn/http1/struct.Builder.html#method.header_read_timeout
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request, body included, must be read and answered within this; past it the client
/// gets 408 and the connection is closed (its unread body is never waited for).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most admin connections open at once (health probes, scrapes and publishers need few).
pub const MAX_CONNECTIONS: usize = 256;
/// The admin server never holds more than this share of the open-file limit.
const FD_SHARE_DIVISOR: u64 = 16;
/// Pause after an accept error (out of descriptors) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The admin connection cap for a process whose open-file limit is `nofile` (when known).
pub fn connection_cap(nofile: Option<u64>) -> usize {
    let share = nofile.map_or(usize::MAX, |n| (n / FD_SHARE_DIVISOR).max(1) as usize);
    MAX_CONNECTIONS.min(share)
}

/// The soft "Max open files" limit from the text of `/proc/self/limits`.
pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process's open-file limit, if the platform tells.
fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// One open connection as the accept loop sees it.
#[derive(Debug)]
struct Entry {
    /// Accept order: smaller is older.
    seq: u64,
    /// Requests in progress on it.
    busy: Arc<AtomicUsize>,
    abort: AbortHandle,
}

/// Which connection to drop to make room: the oldest without a request in progress, else the
/// oldest of all. Entries are `(seq, busy)`.
pub fn pick_victim(entries: impl IntoIterator<Item = (u64, bool)>) -> Option<u64> {
    let mut oldest_idle: Option<u64> = None;
    let mut oldest: Option<u64> = None;
    for (seq, busy) in entries {
        oldest = Some(oldest.map_or(seq, |o| o.min(seq)));
        if !busy {
            oldest_idle = Some(oldest_idle.map_or(seq, |o| o.min(seq)));
        }
    }
    oldest_idle.or(oldest)
}

/// Serves `routes` on `listener` until the task is aborted.
pub async fn run(listener: TcpListener, routes: Router) {
    let cap = connection_cap(open_files_limit());
    let service = TowerToHyperService::new(routes);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut open: HashMap<tokio::task::Id, Entry> = HashMap::new();
    let mut seq = 0u64;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                open.remove(&id);
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on a full descriptor table.
                tracing::warn!(error = %e, "admin accept failed; pausing");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        while open.len() >= cap {
            let victim = pick_victim(
                open.values()
                    .map(|e| (e.seq, e.busy.load(Ordering::Acquire) > 0)),
            );
            let Some(key) =
                victim.and_then(|v| open.iter().find(|(_, e)| e.seq == v).map(|(k, _)| *k))
            else {
                break;
            };
            if let Some(entry) = open.remove(&key) {
                entry.abort.abort();
            }
        }
        seq += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let abort = tasks.spawn(serve_connection(stream, service.clone(), busy.clone()));
        open.insert(abort.id(), Entry { seq, busy, abort });
    }
}

/// Counts a request in progress for as long as it lives, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(busy: &Arc<AtomicUsize>) -> InFlight {
        busy.fetch_add(1, Ordering::AcqRel);
        InFlight(busy.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    routes: TowerToHyperService<Router>,
    busy: Arc<AtomicUsize>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = InFlight::new(&busy);
        let response = hyper::service::Service::call(&routes, request.map(Body::new));
        async move {
            let _in_flight = in_flight;
            match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
                Ok(response) => response,
                Err(_) => Ok::<_, Infallible>(request_timeout()),
            }
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(true);
    if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(error = %e, "admin connection ended");
    }
}

fn request_timeout() -> Response<Body> {
    let mut response = Response::new(Body::from(
        "{\"error\":\"the request was not complete in time\"}",
    ));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests;
