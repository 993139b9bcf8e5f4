//! One task per connection: the upgrade through tungstenite (with the shards' access rules and
//! JWT auth), then a loop that writes every matching broadcast message as it arrives (send +
//! flush each), answers client ops, and closes at the token's `exp` unless it was refreshed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::Context;
use super::upgrade;
use crate::access::{self, Sub, SubRefusal};
use crate::auth::Identity;
use crate::handshake::{Format, RejectReason, Rejection, SUBPROTOCOL};
use crate::message::Message;
use crate::protocol::{self, ClientOp, ErrorCode};
use crate::rate::{RateLimit, Verdict};
use crate::state::Shared;
use crate::topic;

/// Longest single wait on a token's expiry timer. The timer runs on the monotonic clock but `exp`
/// is wall-clock time, so a long wait is cut into pieces that each look at the wall clock again
/// (as the shards do every second), and a far-future `exp` cannot overflow an `Instant`.
const MAX_EXPIRY_WAIT: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<TcpStream>;

/// Gives the connection slot back however the task ends.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release(0);
    }
}

/// What the upgrade callback hands to the task.
struct Admitted {
    conn: ConnState,
    /// URL topics the connection may not have: each gets an error reply after the 101.
    forbidden: Vec<String>,
    format: Format,
    messages: tokio::sync::broadcast::Receiver<Arc<Message>>,
    slot: Slot,
}

/// What a connection holds and may do: its subscriptions and, when auth is on, its token.
struct ConnState {
    topics: Vec<String>,
    identity: Option<Identity>,
}

// The callback's error type is fixed by tungstenite's `Callback` contract, so it cannot be boxed.
#[allow(clippy::result_large_err)]
pub(super) async fn run(stream: TcpStream, ctx: Arc<Context>) {
    let mut admitted: Option<Admitted> = None;
    let mut refused: Option<RejectReason> = None;
    let callback = |request: &Request, mut response: Response| {
        let decided = admit(&ctx, request);
        match decided {
            Ok((subprotocol, a)) => {
                if subprotocol {
                    response.headers_mut().insert(
                        "sec-websocket-protocol",
                        HeaderValue::from_static(SUBPROTOCOL),
                    );
                }
                admitted = Some(a);
                Ok(response)
            }
            Err(rejection) => {
                refused = Some(rejection.reason());
                Err::<Response, ErrorResponse>(upgrade::error_response(&rejection))
            }
        }
    };
    let accepted = tokio::time::timeout(
        ctx.handshake_timeout,
        tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(ws_config(ctx.as_ref())),
        ),
    )
    .await;
    let metrics = &ctx.shared.metrics;
    let mut ws = match accepted {
        Ok(Ok(ws)) => ws,
        _ => {
            // tungstenite refuses some requests before our callback runs; count those as
            // malformed, like the shards' parser would.
            metrics.handshake(refused.unwrap_or(RejectReason::Malformed).label());
            return;
        }
    };
    let Some(admitted) = admitted else {
        return;
    };
    metrics.handshake("ok");
    serve(&mut ws, &ctx, admitted).await;
}

/// The shards' admission rules (parsing, URL topics, token), then a slot and a broadcast
/// receiver. The receiver is taken before the 101 goes out, so every message published after the
/// client sees it is delivered.
fn admit(ctx: &Context, request: &Request) -> Result<(bool, Admitted), Rejection> {
    let mut upgrade = upgrade::parse(request, &ctx.handshake)?;
    let admission = access::admit(
        std::mem::take(&mut upgrade.topics),
        upgrade.token.as_deref(),
        ctx.verifier.as_deref(),
        ctx.max_subscriptions,
    )?;
    if ctx.shared.is_draining() {
        return Err(Rejection::unavailable("the gateway is shutting down"));
    }
    if !ctx.shared.try_admit(0) {
        return Err(Rejection::unavailable(
            "the gateway is at its connection limit",
        ));
    }
    Ok((
        upgrade.subprotocol,
        Admitted {
            conn: ConnState {
                topics: admission.allowed,
                identity: admission.identity,
            },
            forbidden: admission.forbidden,
            format: upgrade.format,
            messages: ctx.messages.subscribe(),
            slot: Slot(ctx.shared.clone()),
        },
    ))
}

async fn serve(ws: &mut Ws, ctx: &Context, admitted: Admitted) {
    let Admitted {
        mut conn,
        forbidden,
        format,
        mut messages,
        slot: _slot,
    } = admitted;
    for t in &forbidden {
        let reply = SubRefusal::Forbidden.reply(t);
        if !send(ws, ctx, WsMessage::Text(reply.into())).await {
            return;
        }
    }
    let metrics = &ctx.shared.metrics;
    let opened = Instant::now();
    let mut rate = RateLimit::default();
    let mut drain = ctx.drain.clone();
    let period = ctx.ping_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    let mut heard = Instant::now();
    // Armed only for a token; an anonymous connection never polls it, so never registers it.
    let expiry = tokio::time::sleep_until(expiry_check(conn.identity.as_ref()));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    if !conn.topics.iter().any(|p| topic::matches(p, message.topic())) {
                        continue;
                    }
                    let frame = message.frame(format);
                    let Some(out) = to_ws(frame) else { continue };
                    if !send(ws, ctx, out).await {
                        return;
                    }
                    metrics.frames_delivered.inc();
                    metrics.bytes_delivered.inc_by(frame.len() as u64);
                }
                Err(RecvError::Lagged(_)) => {
                    metrics.slow_consumer_closes.inc();
                    close(ws, CloseCode::Policy, "slow consumer").await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = ws.next() => {
                heard = Instant::now();
                // Every client frame counts against the rate, pings and pongs too.
                if matches!(incoming, Some(Ok(ref m)) if !m.is_close()) {
                    let now_ms = opened.elapsed().as_millis() as u64;
                    match rate.check(now_ms, ctx.max_client_messages_per_second) {
                        Verdict::Allow => {}
                        Verdict::Deny { first } => {
                            if first {
                                let limit = ctx.max_client_messages_per_second;
                                let message = format!("over {limit} messages per second; slow down");
                                let reply = protocol::error(ErrorCode::Limit, None, &message);
                                if !send(ws, ctx, WsMessage::Text(reply.into())).await {
                                    return;
                                }
                            }
                            continue;
                        }
                        Verdict::Close => {
                            ctx.shared.metrics.protocol_close("rate_limit");
                            close(ws, CloseCode::Policy, "message rate limit").await;
                            return;
                        }
                    }
                }
                match incoming {
                    Some(Ok(WsMessage::Text(text))) => {
                        if text.len() > ctx.max_message_bytes {
                            close(ws, CloseCode::Size, "message too big").await;
                            return;
                        }
                        let expires_at = conn.identity.as_ref().map(|i| i.expires_at);
                        let replies = on_op(&text, &mut conn, ctx);
                        // A refresh may move `exp` either way; an earlier one must not wait
                        // for the check already armed.
                        if conn.identity.as_ref().map(|i| i.expires_at) != expires_at {
                            expiry.as_mut().reset(expiry_check(conn.identity.as_ref()));
                        }
                        for reply in replies {
                            if !send(ws, ctx, WsMessage::Text(reply.into())).await {
                                return;
                            }
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        let reply = protocol::error(
                            ErrorCode::BadRequest,
                            None,
                            "binary messages are not part of volley.v1",
                        );
                        if !send(ws, ctx, WsMessage::Text(reply.into())).await {
                            return;
                        }
                    }
                    // tungstenite queues the pong itself (one at a time: a newer pong replaces
                    // an unsent one); pushing it out under the deadline is how a client that
                    // pings and never reads gets closed instead of being read forever.
                    Some(Ok(WsMessage::Ping(_))) => {
                        if !flush(ws, ctx).await {
                            return;
                        }
                    }
                    // tungstenite echoes the close itself.
                    Some(Ok(_)) => {}
                    Some(Err(WsError::Capacity(_))) => {
                        close(ws, CloseCode::Size, "message too big").await;
                        return;
                    }
                    None | Some(Err(_)) => return,
                }
            },
            () = &mut expiry, if conn.identity.is_some() => {
                let now = SystemTime::now();
                if conn.identity.as_ref().is_some_and(|i| i.remaining(now).is_zero()) {
                    close(ws, CloseCode::Policy, "token expired").await;
                    return;
                }
                expiry.as_mut().reset(expiry_check(conn.identity.as_ref()));
            }
            _ = drain.changed() => {
                close(ws, CloseCode::Away, "shutting down; reconnect and resume").await;
                return;
            }
            _ = tick.tick() => {
                let silent = heard.elapsed();
                if silent >= period * 2 {
                    return;
                }
                if silent >= period && !send(ws, ctx, WsMessage::Ping(Default::default())).await {
                    return;
                }
            }
        }
    }
}

/// Turns an encoded frame back into a tungstenite message without copying the payload.
fn to_ws(frame: &bytes::Bytes) -> Option<WsMessage> {
    let (text, payload) = upgrade::payload_of(frame)?;
    if text {
        Utf8Bytes::try_from(payload).ok().map(WsMessage::Text)
    } else {
        Some(WsMessage::Binary(payload))
    }
}

/// When to look at the token's `exp` next: at `exp`, or sooner (see [`MAX_EXPIRY_WAIT`]).
fn expiry_check(identity: Option<&Identity>) -> Instant {
    let wait = identity.map_or(MAX_EXPIRY_WAIT, |i| i.remaining(SystemTime::now()));
    Instant::now() + wait.min(MAX_EXPIRY_WAIT)
}

/// Applies one client op to the connection's state and returns the replies.
fn on_op(text: &str, conn: &mut ConnState, ctx: &Context) -> Vec<String> {
    match protocol::parse_op(text) {
        Ok(ClientOp::Sub(wanted)) => subscribe(wanted, conn, ctx).0,
        // The baseline engine serves standalone clients only, where no topic has history: the
        // subscription is made and each resumed pattern is told it gets live messages only.
        Ok(ClientOp::Resume(resume)) => {
            let (mut replies, accepted) = subscribe(resume.topics.clone(), conn, ctx);
            for (pattern, _) in &resume.since {
                if accepted.contains(pattern) {
                    let reason = crate::history::NotRecovered::NoHistory;
                    replies.push(protocol::resumed(
                        pattern,
                        None,
                        protocol::Recovery::NotRecovered {
                            reason: reason.label(),
                            message: reason.message(),
                        },
                    ));
                }
            }
            replies
        }
        Ok(ClientOp::Unsub(gone)) => {
            conn.topics.retain(|t| !gone.contains(t));
            let names: Vec<&str> = gone.iter().map(String::as_str).collect();
            vec![protocol::unsubscribed(&names)]
        }
        Ok(ClientOp::Ping) => vec![protocol::pong()],
        Ok(ClientOp::Refresh(token)) => {
            let verifier = ctx.verifier.as_deref();
            match access::refresh(verifier, conn.identity.as_ref(), &token) {
                Ok(fresh) => {
                    let expires_at = fresh.expires_at;
                    conn.identity = Some(fresh);
                    vec![protocol::refreshed(expires_at)]
                }
                Err(e) => vec![e.reply()],
            }
        }
        Err(e) => vec![protocol::error(ErrorCode::BadRequest, None, &e.to_string())],
    }
}

/// Subscribes `wanted`; returns the replies and the topics accepted.
fn subscribe(
    wanted: Vec<String>,
    conn: &mut ConnState,
    ctx: &Context,
) -> (Vec<String>, Vec<String>) {
    let mut replies = Vec::new();
    let mut accepted = Vec::new();
    for t in wanted {
        let identity = conn.identity.as_ref();
        match access::check_sub(identity, &t, &conn.topics, ctx.max_subscriptions) {
            Ok(Sub::Held) => {}
            Ok(Sub::New) => conn.topics.push(t.clone()),
            Err(refusal) => {
                replies.push(refusal.reply(&t));
                continue;
            }
        }
        accepted.push(t);
    }
    if !accepted.is_empty() {
        let names: Vec<&str> = accepted.iter().map(String::as_str).collect();
        replies.push(protocol::subscribed(&names));
    }
    (replies, accepted)
}

/// tungstenite's limits from the gateway's: client messages and frames no larger than
/// `maxMessageBytes` (1009 past it), and at most `maxPendingBytes` buffered for writing. Without
/// the write cap tungstenite buffers without bound for a peer that does not read.
fn ws_config(ctx: &Context) -> WebSocketConfig {
    WebSocketConfig::default()
        // Every send is flushed at once anyway; the cap below is the only buffer bound.
        .write_buffer_size(0)
        .max_write_buffer_size(ctx.max_pending_bytes.max(1))
        .max_message_size(Some(ctx.max_message_bytes))
        .max_frame_size(Some(ctx.max_message_bytes))
}

/// Sends and flushes one message within the write deadline (the ping interval). A peer that does
/// not take it in time, or whose buffer is full, is a slow consumer: false, the task ends and the
/// socket is dropped (a close frame could not get through either).
async fn send(ws: &mut Ws, ctx: &Context, message: WsMessage) -> bool {
    match tokio::time::timeout(ctx.ping_interval, ws.send(message)).await {
        Ok(Ok(())) => true,
        Ok(Err(WsError::WriteBufferFull(_))) | Err(_) => {
            ctx.shared.metrics.slow_consumer_closes.inc();
            false
        }
        Ok(Err(_)) => false,
    }
}

/// Flushes what tungstenite queued by itself (pongs) within the write deadline; see [`send`].
async fn flush(ws: &mut Ws, ctx: &Context) -> bool {
    match tokio::time::timeout(ctx.ping_interval, ws.flush()).await {
        Ok(Ok(())) => true,
        Err(_) => {
            ctx.shared.metrics.slow_consumer_closes.inc();
            false
        }
        Ok(Err(_)) => false,
    }
}

async fn close(ws: &mut Ws, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
}
