//! The renew deadline kube-lease-manager lacks: the leader stops leading by itself when the API
//! server has not accepted a write to its Lease for a while.
//!
//! kube-lease-manager 0.13 keeps reporting "leader" while its renewals fail with anything but a
//! conflict (manager.rs `watch`: it logs and backs off), and it never reports a successful
//! renewal. Meanwhile the Lease expires and a standby takes it, so two replicas would reconcile.
//! client-go's leader election has a renew deadline for this
//! (<https://pkg.go.dev/k8s.io/client-go/tools/leaderelection#LeaderElectionConfig>: "RenewDeadline
//! is the duration that the acting master will retry refreshing leadership before giving up").
//! Here the manager's own client is wrapped to see each accepted PATCH of the Lease, which is
//! exactly a successful acquire or renewal, without any extra request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use tokio::sync::watch;
use tokio::time::Instant;

/// When the API server last accepted a write (PATCH) to the Lease.
#[derive(Debug, Clone, Default)]
pub(super) struct Writes(Arc<Mutex<Option<Instant>>>);

impl Writes {
    /// Records an accepted write sent at `sent`. The API server stamped the renewal no earlier
    /// than that, so a standby counts the lease from there too; counting from the answer's arrival
    /// would stretch the deadline by the request's latency.
    fn mark(&self, sent: Instant) {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Answers can arrive out of order; keep the latest send.
        if last.is_none_or(|l| l < sent) {
            *last = Some(sent);
        }
    }

    fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `client` as seen by the lease manager: every request goes through unchanged but fails after
/// `timeout` (kube-client's own `read_timeout` is off by default, and a renewal that hangs
/// would otherwise never be retried), and a 2xx answer to a PATCH of the Lease at `path` is
/// recorded in `writes` with the time it was sent.
pub(super) fn recording(client: Client, path: String, writes: Writes, timeout: Duration) -> Client {
    let ns = client.default_namespace().to_string();
    Client::new(
        Recorder {
            inner: client,
            path: Arc::from(path),
            writes,
            timeout,
        },
        ns,
    )
}

/// A Lease request that got no answer within the recorder's timeout.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the API server within {0:?}")]
pub(super) struct RequestTimeout(Duration);

#[derive(Clone)]
struct Recorder {
    inner: Client,
    path: Arc<str>,
    writes: Writes,
    timeout: Duration,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

impl tower::Service<Request<Body>> for Recorder {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // `Client::send` waits for its own readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let write = req.method() == Method::PATCH && req.uri().path() == &*self.path;
        let (inner, writes, timeout) = (self.inner.clone(), self.writes.clone(), self.timeout);
        Box::pin(async move {
            // Before sending: the renewTime in the body is about now, and the deadline must not
            // outlast the lease a standby computes from it.
            let sent = Instant::now();
            let resp = tokio::time::timeout(timeout, inner.send(req))
                .await
                .map_err(|_| kube::Error::Service(Box::new(RequestTimeout(timeout))))??;
            if write && resp.status().is_success() {
                writes.mark(sent);
            }
            Ok(resp)
        })
    }
}

/// Forwards the manager's leadership (`upstream`) to `out`, except that leading turns false for
/// good once no write was accepted for `deadline` (the operator then stops and exits, and a
/// fresh process competes again). Ends when every receiver of `out` is gone, dropping
/// `upstream` so the manager releases the lease, or when the manager ends.
pub(super) async fn guard(
    mut upstream: watch::Receiver<bool>,
    out: watch::Sender<bool>,
    writes: Writes,
    deadline: Duration,
) {
    loop {
        let leading = *upstream.borrow_and_update();
        out.send_replace(leading);
        // The start of this leading period, taken once: a leader reported from a GET alone (a
        // restart under an identity the Lease still names) has no accepted write of its own,
        // and its deadline must still run out.
        let since = Instant::now();
        let expiry = async {
            if !leading {
                return std::future::pending().await;
            }
            loop {
                // Every acquire is a write, so a recorded one belongs to this period (or, after
                // a lost and won-again lease, to the write that won it).
                let last = writes.last().unwrap_or(since);
                let at = last + deadline;
                if Instant::now() >= at {
                    return;
                }
                tokio::time::sleep_until(at).await;
            }
        };
        tokio::select! {
            biased;
            () = out.closed() => return,
            changed = upstream.changed() => if changed.is_err() { return },
            () = expiry => {
                tracing::error!(
                    ?deadline,
                    "no Lease renewal accepted within the renew deadline; stepping down"
                );
                out.send_replace(false);
                out.closed().await;
                return;
            }
        }
    }
}
