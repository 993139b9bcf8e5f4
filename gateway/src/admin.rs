//! The admin HTTP server (axum): health, readiness, Prometheus metrics and the publish API.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;

use crate::capacity::Capacity;
use crate::history::store::Store;
use crate::hub::{Publish, PublishError};
use crate::nats::{self, Acks, NatsState};
use crate::topic;

mod idempotency;
pub mod server;

/// Where a published message goes.
#[derive(Clone)]
pub(crate) enum Publisher {
    /// Straight to this gateway's own clients (standalone mode).
    Local(Arc<dyn Publish>),
    /// To NATS, so every gateway of the cluster delivers it.
    Nats {
        client: async_nats::Client,
        state: Arc<NatsState>,
        /// The server round trip that confirms a core publish.
        acks: Arc<Acks>,
        prefix: Arc<str>,
        /// Topics with history are published through JetStream (202 means stored).
        history: Option<Box<Store>>,
    },
}

/// What a publish did, for the 202 body.
#[derive(Debug, Default)]
struct Published {
    /// The `Idempotency-Key` it was stored under (topics with history only).
    key: Option<String>,
    /// JetStream had already stored a message with that key: this one was not stored again.
    duplicate: bool,
}

impl Publisher {
    /// Whether `topic` goes through JetStream (and so takes an `Idempotency-Key`).
    fn stores(&self, topic: &str) -> bool {
        matches!(self, Publisher::Nats { history: Some(store), .. } if store.config().covers_topic(topic))
    }

    async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        key: Option<String>,
    ) -> Result<Published, PublishError> {
        match self {
            Publisher::Local(local) => local.publish(topic, payload).map(|()| Published::default()),
            Publisher::Nats {
                history: Some(store),
                ..
            } if store.config().covers_topic(topic) => {
                let key = key.unwrap_or_else(|| nuid::next().to_string());
                let duplicate = store.publish(topic, payload, &key).await?;
                Ok(Published {
                    key: Some(key),
                    duplicate,
                })
            }
            Publisher::Nats {
                client,
                state,
                acks,
                prefix,
                ..
            } => nats::publish(client, state, acks, prefix, topic, payload)
                .await
                .map(|()| Published::default()),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) publisher: Publisher,
    pub(crate) capacity: Arc<Capacity>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) api_key: Option<Arc<str>>,
    /// `maxPendingBytes`: a message whose frame is larger could never be queued for anyone.
    pub(crate) max_frame_bytes: usize,
    /// `maxPublishBytes` (set by [`router`]).
    pub(crate) max_publish_bytes: usize,
}

/// The admin routes. `max_publish_bytes` bounds a publish body (413 past it).
pub(crate) fn router(state: AdminState, max_publish_bytes: usize) -> Router {
    let state = AdminState {
        max_publish_bytes,
        ..state
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/publish/{topic}", post(publish))
        .layer(DefaultBodyLimit::max(max_publish_bytes))
        .with_state(state)
}

/// Binds `addr` and serves the admin routes in the background; returns the bound address.
pub(crate) async fn serve(
    addr: std::net::SocketAddr,
    state: AdminState,
    max_publish_bytes: usize,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let routes = router(state, max_publish_bytes);
    let task = tokio::spawn(server::run(listener, routes));
    Ok((bound, task))
}

/// The process is alive and serving its clients. The NATS state is reported, not judged: a NATS
/// outage must not get gateways restarted (that would disconnect every client).
async fn healthz(State(state): State<AdminState>) -> String {
    match &state.publisher {
        Publisher::Local(_) => "ok\n".to_owned(),
        Publisher::Nats { state, history, .. } => {
            let nats = if state.is_connected() {
                "connected"
            } else {
                "disconnected"
            };
            let history = match history {
                None => String::new(),
                Some(store) if store.state().is_available() => "history: available\n".to_owned(),
                Some(store) => format!(
                    "history: unavailable ({}); history topics are served live only\n",
                    store
                        .state()
                        .problem()
                        .unwrap_or_else(|| "not checked yet".to_owned())
                ),
            };
            // Still 200 (live delivery to existing subscriptions works); `/readyz` fails when
            // the cause is a missing `_INBOX.>` right (see `NatsState::unfit`).
            let confirm = if state.confirm_failing() {
                "publish confirmation: failing (the NATS user needs publish rights on _INBOX.>); \
                 HTTP publishes answer 503 while delivered\n"
            } else {
                ""
            };
            format!("ok\nnats: {nats}\n{confirm}{history}")
        }
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let ready = state.capacity.readiness().map_err(|why| why.as_str());
    // Cluster mode: not before NATS is connected (and history checked) for the first time.
    let ready = ready.and_then(|()| match &state.publisher {
        Publisher::Local(_) => Ok(()),
        Publisher::Nats { state, history, .. } => {
            state.settled(history.as_deref().map(|store| &**store.state()))?;
            // Past the start-up wait too: a user lacking `_INBOX.>` rights is a deployment
            // error every new subscription would hit, not an outage.
            state.unfit().map_or(Ok(()), Err)
        }
    });
    match ready {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode(&state.registry),
    )
        .into_response()
}

async fn publish(
    State(state): State<AdminState>,
    Path(topic_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(key) = &state.api_key
        && !api_key_matches(&headers, key)
    {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
    }
    // A declared length over the limit is refused before a byte of the body is read; a body
    // that is slow or never comes is cut off by the server's request deadline.
    let limit = state.max_publish_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(e) if is_length_limit(&e) => return too_large(limit),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
    };
    if let Err(e) = topic::validate_subject(&topic_name) {
        let status = if e.is_forbidden() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        return error(status, &format!("topic `{topic_name}`: {e}"));
    }
    // Refused before it is accepted: a frame over the pending bound would close every
    // subscriber as a slow consumer instead of reaching any of them.
    let frame = crate::message::largest_frame_len(&topic_name, &body);
    if frame > state.max_frame_bytes {
        let message = format!(
            "the message framed for clients is {frame} bytes, over maxPendingBytes ({}): no \
             subscriber could queue it",
            state.max_frame_bytes
        );
        return error(StatusCode::PAYLOAD_TOO_LARGE, &message);
    }
    // Only a JetStream publish can be deduplicated; for other topics the header is ignored.
    let stores = state.publisher.stores(&topic_name);
    let key = if stores {
        match idempotency::given_or_new(&headers) {
            Ok(key) => Some(key),
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    } else {
        None
    };
    match state
        .publisher
        .publish(&topic_name, body, key.clone())
        .await
    {
        Ok(published) => {
            let mut body = serde_json::json!({ "topic": topic_name });
            let mut response_headers = HeaderMap::new();
            if let Some(key) = &published.key {
                body["idempotencyKey"] = key.as_str().into();
                body["duplicate"] = published.duplicate.into();
                if let Ok(value) = key.parse() {
                    response_headers.insert(idempotency::HEADER, value);
                }
            }
            (StatusCode::ACCEPTED, response_headers, axum::Json(body)).into_response()
        }
        // JetStream did not acknowledge: the message may still have been stored (an ack lost
        // or late). Retrying with the same key stores it at most once.
        Err(PublishError::Unavailable) if stores => {
            let key = key.unwrap_or_default();
            let body = serde_json::json!({
                "error": "JetStream did not acknowledge the message: it may or may not be \
                          stored; retry with the same Idempotency-Key to store it exactly once \
                          (within the stream's duplicate window)",
                "idempotencyKey": key,
            });
            let mut response_headers = HeaderMap::new();
            if let Ok(value) = key.parse() {
                response_headers.insert(idempotency::HEADER, value);
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                response_headers,
                axum::Json(body),
            )
                .into_response()
        }
        // Can never succeed: retrying would not help, so not a 503.
        Err(e @ PublishError::TooLarge { .. }) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string())
        }
        Err(
            e @ (PublishError::Overloaded
            | PublishError::Closed
            | PublishError::Unavailable
            | PublishError::Unconfirmed),
        ) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// The key may come as `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
fn api_key_matches(headers: &HeaderMap, key: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let plain = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    [bearer, plain]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.trim().as_bytes(), key.as_bytes()))
}

/// Compares without an early exit, so response timing does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is over maxPublishBytes ({limit})"),
    )
}

/// Whether reading a body failed because it passed the limit given to `to_bytes`.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}
