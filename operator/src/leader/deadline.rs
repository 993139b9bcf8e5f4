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
    fn mark(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `client` as seen by the lease manager: every request goes through unchanged, and a 2xx
/// answer to a PATCH of the Lease at `path` is recorded in `writes`.
pub(super) fn recording(client: Client, path: String, writes: Writes) -> Client {
    let ns = client.default_namespace().to_string();
    Client::new(
        Recorder {
            inner: client,
            path: Arc::from(path),
            writes,
        },
        ns,
    )
}

#[derive(Clone)]
struct Recorder {
    inner: Client,
    path: Arc<str>,
    writes: Writes,
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
        let (inner, writes) = (self.inner.clone(), self.writes.clone());
        Box::pin(async move {
            let resp = inner.send(req).await?;
            if write && resp.status().is_success() {
                writes.mark();
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
        let expiry = async {
            if !leading {
                return std::future::pending().await;
            }
            loop {
                // No write seen yet counts from now (the acquire PATCH normally is one).
                let last = writes.last().unwrap_or_else(Instant::now);
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
