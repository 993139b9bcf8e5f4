//! One task per connection: the upgrade through tungstenite (with the shards' access rules and
//! JWT auth), then a loop that drives the shared sans-IO [`Session`]: client frames in, what the
//! session queued (replies, pings, the close) out, every matching broadcast message written as it
//! arrives (send + flush each), and a tick for liveness and token expiry. The protocol itself is
//! the shards' own: only the IO differs.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::Context;
use super::upgrade;
use crate::access::{self, Admission};
use crate::capacity::Capacity;
use crate::frame::ProtocolError;
use crate::handshake::{Format, RejectReason, Rejection, SUBPROTOCOL};
use crate::message::Message;
use crate::session::{CLOSE_LINGER, Cause, Clock, Effect, Session};

/// See the end of the loop in [`serve`]: the shards' sweep period.
const RECHECK: Duration = Duration::from_secs(1);

type Ws = WebSocketStream<TcpStream>;

/// Gives the connection slot back however the task ends.
struct Slot(Arc<Capacity>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release(0);
    }
}

/// What the upgrade callback hands to the task.
struct Admitted {
    admission: Admission,
    format: Format,
    /// `?since=N&epoch=..`: the URL topic resumes (answered like the shards: this engine has no
    /// history, so `recovered:false`, `no_history`).
    resume: Option<(u64, Option<String>)>,
    messages: tokio::sync::broadcast::Receiver<Arc<Message>>,
    slot: Slot,
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
    let metrics = &ctx.capacity.metrics;
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
        upgrade.since.is_some(),
        upgrade.token.as_deref(),
        ctx.limits.verifier.as_deref(),
        ctx.limits.max_subscriptions,
    )?;
    if ctx.capacity.is_draining() {
        return Err(Rejection::unavailable("the gateway is shutting down"));
    }
    if !ctx.capacity.try_admit(0) {
        return Err(Rejection::unavailable(
            "the gateway is at its connection limit",
        ));
    }
    Ok((
        upgrade.subprotocol,
        Admitted {
            admission,
            format: upgrade.format,
            resume: upgrade.since.map(|since| (since, upgrade.epoch.take())),
            messages: ctx.messages.subscribe(),
            slot: Slot(ctx.capacity.clone()),
        },
    ))
}

async fn serve(ws: &mut Ws, ctx: &Context, admitted: Admitted) {
    let Admitted {
        admission,
        format,
        resume,
        mut messages,
        slot: _slot,
    } = admitted;
    let limits = &ctx.limits;
    let metrics = &ctx.capacity.metrics;
    let mut clock = Clock::new(std::time::Instant::now());
    let mut session = Session::new(&clock, Duration::ZERO);
    let mut effects = Vec::new();
    let url_topic = admission.resumed.clone();
    session.open(admission, format, &clock, limits, &mut effects);
    if let (Some((since, epoch)), Some(topic)) = (resume, url_topic) {
        session.resume(&topic, since, epoch, &clock, limits, &mut effects);
    }
    if pump(ws, ctx, &mut session, &clock, &mut effects)
        .await
        .is_break()
    {
        return;
    }
    let mut drain = ctx.drain.clone();
    // One timer per connection, set to when the session next has something to do (not a fixed
    // period: 19,000 idle connections ticking every second would cost a core's worth of wake-ups).
    let mut due = session.next_tick(&clock, SystemTime::now(), limits);
    let tick = tokio::time::sleep_until(due.into());
    tokio::pin!(tick);
    loop {
        let mut fired = false;
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    if !session.wants(message.topic()) {
                        continue;
                    }
                    let frame = message.frame(session.format());
                    let Some(out) = upgrade::message_of(frame) else { continue };
                    if !send(ws, ctx, out).await {
                        return;
                    }
                    metrics.frames_delivered.inc();
                    metrics.bytes_delivered.inc_by(frame.len() as u64);
                    continue;
                }
                // The task fell further behind than the channel keeps: messages are lost.
                Err(RecvError::Lagged(_)) => session.slow_consumer(&clock, &mut effects),
                Err(RecvError::Closed) => return,
            },
            incoming = ws.next() => {
                clock = clock.at(std::time::Instant::now());
                session.on_received(&clock);
                match &incoming {
                    Some(Ok(message)) => {
                        if let Some(violation) = upgrade::violation_in(message) {
                            // tungstenite already queued its 1002; `pump` sends it.
                            session.on_violation(&violation, &clock, &mut effects);
                        } else if let Some(event) = upgrade::event_of(message) {
                            let _ = session.on_frame(event, &clock, limits, &mut effects);
                        }
                    }
                    Some(Err(e)) => match upgrade::violation_of(e, ctx.max_message_bytes) {
                        // Closed with its code like on the shards (`pump` writes the close).
                        Some(violation) => session.on_violation(&violation, &clock, &mut effects),
                        None => return,
                    },
                    None => return,
                }
                // tungstenite queues the pong itself (one at a time: a newer pong replaces an
                // unsent one); pushing it out under the deadline is how a client that pings and
                // never reads gets closed instead of being read forever.
                if matches!(incoming, Some(Ok(WsMessage::Ping(_)))) && !flush(ws, ctx).await {
                    return;
                }
            },
            _ = drain.changed() => {
                session.close(1001, "server shutting down; reconnect and resume", Cause::Planned, &clock, &mut effects);
            }
            () = &mut tick => {
                fired = true;
                clock = clock.at(std::time::Instant::now());
                session.on_tick(&clock, SystemTime::now(), limits, &mut effects);
            }
        }
        if pump(ws, ctx, &mut session, &clock, &mut effects)
            .await
            .is_break()
        {
            return;
        }
        let mut next = session.next_tick(&clock, SystemTime::now(), limits);
        if fired && next <= clock.now() {
            // Nothing was due after all (a token's `exp` read off the wall clock a moment
            // early): look again a sweep period later rather than spin on a spent timer.
            next = clock.now() + RECHECK;
        }
        if fired || next != due {
            due = next;
            tick.as_mut().reset(due.into());
        }
    }
}

/// Carries out the session's effects and writes what it queued, in order. `Break` when the
/// connection is over (closed or dropped).
async fn pump(
    ws: &mut Ws,
    ctx: &Context,
    session: &mut Session,
    clock: &Clock,
    effects: &mut Vec<Effect>,
) -> ControlFlow<()> {
    let mut dropped = false;
    let mut peer_closed = false;
    // This engine is standalone only (the config refuses it with NATS), so sessions never wait
    // for a confirmation; were one asked for, a pattern is live here as soon as the session
    // filters on it (publishes reach every task's broadcast receiver directly).
    let mut wanted = Vec::new();
    for effect in effects.drain(..) {
        match effect {
            Effect::Closing(cause) => {
                ctx.capacity.metrics.session_closed(cause);
                // An invalid close code only comes from a peer Close tungstenite already
                // answered (`upgrade::violation_in`): its 1002 goes out like an echo.
                peer_closed = cause == Cause::Peer
                    || cause == Cause::Violation(ProtocolError::InvalidCloseCode(0).label());
            }
            Effect::Drop(_) => dropped = true,
            Effect::Recovery(result) => ctx.capacity.metrics.recovery(result),
            Effect::Want(pattern) => wanted.push(pattern),
            // The session's own patterns are this engine's filter, the `Slot` gives the slot
            // back, and everything queued is written right below. Standalone only: no history,
            // so sessions never ask for a replay (a resume is answered `no_history` by the
            // session itself).
            Effect::Subscribe(_)
            | Effect::Unsubscribe(_)
            | Effect::Left
            | Effect::Queued
            | Effect::Withdraw(_)
            | Effect::Replay(_) => {}
        }
    }
    for pattern in wanted {
        let mut more = Vec::new();
        session.on_confirmed(&pattern, true, clock, &ctx.limits, &mut more);
        // Only a reply and `Subscribe` come of it: nothing else to carry out.
        drop(more);
    }
    if dropped {
        return ControlFlow::Break(());
    }
    if peer_closed {
        // tungstenite queued the echo of the peer's close itself; reading on sends it and sees
        // the end of the stream, so the peer gets our close instead of a reset.
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        return ControlFlow::Break(());
    }
    while let Some(frame) = session.outbox_mut().pop() {
        match upgrade::message_of(&frame) {
            Some(WsMessage::Close(frame)) => {
                close(ws, frame).await;
                return ControlFlow::Break(());
            }
            // tungstenite already answered the ping (see `serve`).
            Some(WsMessage::Pong(_)) | None => {}
            Some(message) => {
                if !send(ws, ctx, message).await {
                    return ControlFlow::Break(());
                }
            }
        }
    }
    ControlFlow::Continue(())
}

/// tungstenite's limits from the gateway's: client messages and frames no larger than
/// `maxMessageBytes` (1009 past it), and at most `maxPendingBytes` buffered for writing. Without
/// the write cap tungstenite buffers without bound for a peer that does not read.
fn ws_config(ctx: &Context) -> WebSocketConfig {
    WebSocketConfig::default()
        // Every send is flushed at once anyway; the cap below is the only buffer bound.
        .write_buffer_size(0)
        .max_write_buffer_size(ctx.limits.max_pending_bytes.max(1))
        .max_message_size(Some(ctx.max_message_bytes))
        .max_frame_size(Some(ctx.max_message_bytes))
}

/// Sends and flushes one message within the write deadline (the ping interval). A peer that does
/// not take it in time, or whose buffer is full, is a slow consumer: false, the task ends and the
/// socket is dropped (a close frame could not get through either).
async fn send(ws: &mut Ws, ctx: &Context, message: WsMessage) -> bool {
    match tokio::time::timeout(ctx.limits.ping_interval, ws.send(message)).await {
        Ok(Ok(())) => true,
        Ok(Err(WsError::WriteBufferFull(_))) | Err(_) => {
            ctx.capacity.metrics.slow_consumer_closes.inc();
            false
        }
        Ok(Err(_)) => false,
    }
}

/// Flushes what tungstenite queued by itself (pongs) within the write deadline; see [`send`].
async fn flush(ws: &mut Ws, ctx: &Context) -> bool {
    match tokio::time::timeout(ctx.limits.ping_interval, ws.flush()).await {
        Ok(Ok(())) => true,
        Err(_) => {
            ctx.capacity.metrics.slow_consumer_closes.inc();
            false
        }
        Ok(Err(_)) => false,
    }
}

/// The close handshake as the session's `Phase::Closing` has it: send the close frame, then read
/// (and drop) what the peer still sends until its own close or the end of the stream, for at
/// most [`CLOSE_LINGER`]. Dropping the socket at once would reset a peer still sending, which
/// then never reads our close.
async fn close(ws: &mut Ws, frame: Option<CloseFrame>) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        if ws.close(frame).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
