//! Client sessions on a shard: admitting an upgrade (auth, limits, URL topics) and acting on the
//! client's frames and ops (sub, unsub, ping, refresh) under the per-connection rate limit.

use super::*;
use crate::access::{self, Sub, SubRefusal};

impl Shard {
    /// Checks an upgrade request against the gateway's state and limits and, if it passes,
    /// answers 101 and subscribes the URL's topics.
    pub(super) fn admit(
        &mut self,
        key: usize,
        mut request: UpgradeRequest,
    ) -> Result<(), Rejection> {
        let admission = access::admit(
            std::mem::take(&mut request.topics),
            request.token.as_deref(),
            self.config.verifier.as_deref(),
            self.config.max_subscriptions,
        )?;
        if self.shared.is_draining() {
            return Err(Rejection::unavailable("the gateway is shutting down"));
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if self.shared.ip_limited() {
            let ip = conn
                .socket
                .peer_addr()
                .map_err(|_| Rejection::bad_request("peer address unknown"))?
                .ip();
            if !self.shared.try_admit_ip(ip) {
                return Err(Rejection::new(
                    RejectReason::TooManyConnections,
                    "too many connections from this address",
                ));
            }
            conn.counted_ip = Some(ip);
        }
        if !self.shared.try_admit(self.id) {
            if let Some(ip) = conn.counted_ip.take() {
                self.shared.release_ip(ip);
            }
            return Err(Rejection::unavailable(
                "the gateway is at its connection limit",
            ));
        }
        self.shared.metrics.handshake("ok");
        conn.phase = Phase::Open;
        conn.format = request.format;
        conn.outbox
            .push(Bytes::from(handshake::accept_response(&request)));
        let access::Admission {
            identity,
            allowed,
            forbidden,
        } = admission;
        conn.identity = identity.map(Box::new);
        conn.subs = allowed.iter().map(|t| t.as_str().into()).collect();
        for t in &allowed {
            self.index_insert(t, key);
        }
        for t in &forbidden {
            self.reply(key, SubRefusal::Forbidden.reply(t));
        }
        // The 101 goes out now: the client waits for it before anything else happens.
        self.write_conn(key);
        Ok(())
    }

    pub(super) fn reject(&mut self, key: usize, rejection: &Rejection) {
        self.shared.metrics.handshake(rejection.reason().label());
        let response = Bytes::from(handshake::reject_response(rejection));
        self.start_closing(key, response);
    }

    /// Returns whether to keep reading this connection.
    pub(super) fn on_frame_bytes(&mut self, key: usize, n: usize) -> bool {
        self.decode_frames(key, Some(n))
    }

    /// Decodes client frames from the scratch buffer (`Some(n)`: the last read) or from the
    /// connection's pending bytes, then applies what they asked for.
    pub(super) fn decode_frames(&mut self, key: usize, fresh: Option<usize>) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let actions = &mut self.actions;
        let on_event = |event: ClientEvent<'_>| {
            let action = match event {
                ClientEvent::Text(text) => {
                    Action::Op(protocol::parse_op(text).map_err(|e| e.to_string()))
                }
                ClientEvent::Binary(_) => Action::Binary,
                ClientEvent::Ping(payload) => Action::Ping(Bytes::copy_from_slice(payload)),
                ClientEvent::Pong(_) => return ControlFlow::Continue(()),
                ClientEvent::Close { code, .. } => {
                    actions.push(Action::Close(code));
                    return ControlFlow::Break(());
                }
            };
            actions.push(action);
            ControlFlow::Continue(())
        };
        let max = self.config.max_message_bytes;
        let result = match fresh {
            Some(n) if conn.inbuf.is_empty() => {
                let buf = &mut self.scratch[..n];
                let result = frame::decode(buf, &mut conn.fragments, max, on_event);
                if let Ok(consumed) = result
                    && consumed < n
                {
                    conn.inbuf = buf[consumed..].to_vec();
                }
                result.map(|_| ())
            }
            _ => {
                if let Some(n) = fresh {
                    conn.inbuf.extend_from_slice(&self.scratch[..n]);
                }
                let result = frame::decode(&mut conn.inbuf, &mut conn.fragments, max, on_event);
                if let Ok(consumed) = result {
                    conn.keep_tail_of_inbuf(consumed);
                }
                result.map(|_| ())
            }
        };
        self.apply_actions(key);
        match result {
            Ok(()) => self.conns.get(key).is_some_and(Conn::is_open),
            Err(violation) => {
                self.shared
                    .metrics
                    .protocol_closes
                    .get_or_create(&crate::metrics::ReasonLabel {
                        reason: violation.label(),
                    })
                    .inc();
                self.close(key, violation.close_code(), violation.reason());
                false
            }
        }
    }

    fn apply_actions(&mut self, key: usize) {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            if !self.conns.get(key).is_some_and(Conn::is_open) {
                break;
            }
            if matches!(action, Action::Op(_) | Action::Binary) {
                match self.rate(key) {
                    Rate::Allow => {}
                    Rate::Deny { first } => {
                        if first {
                            let limit = self.config.max_client_messages_per_second;
                            let message = format!("over {limit} messages per second; slow down");
                            self.reply(key, protocol::error(ErrorCode::Limit, None, &message));
                        }
                        continue;
                    }
                    Rate::Close => {
                        self.close(key, 1008, "message rate limit");
                        break;
                    }
                }
            }
            match action {
                Action::Op(Ok(ClientOp::Sub(topics))) => self.subscribe(key, topics),
                Action::Op(Ok(ClientOp::Unsub(topics))) => self.unsubscribe(key, topics),
                Action::Op(Ok(ClientOp::Ping)) => self.reply(key, protocol::pong()),
                Action::Op(Ok(ClientOp::Refresh(token))) => self.refresh(key, &token),
                Action::Op(Err(message)) => {
                    self.reply(key, protocol::error(ErrorCode::BadRequest, None, &message))
                }
                Action::Binary => self.reply(
                    key,
                    protocol::error(
                        ErrorCode::BadRequest,
                        None,
                        "binary messages are not part of volley.v1",
                    ),
                ),
                Action::Ping(payload) => {
                    self.enqueue(key, frame::encode(OpCode::Control(Control::Pong), &payload));
                }
                Action::Close(code) => {
                    // Echo the peer's code as RFC 6455 asks; 1005 (no code) is answered with 1000.
                    self.close(key, code.unwrap_or(1000), "");
                }
            }
        }
        self.actions = actions;
    }

    /// Counts one client message against the per-connection rate limit.
    fn rate(&mut self, key: usize) -> Rate {
        let now_s = self.now_s();
        let limit = self.config.max_client_messages_per_second;
        let Some(conn) = self.conns.get_mut(key) else {
            return Rate::Allow;
        };
        if conn.rate_window_s != now_s {
            let went_over = u32::from(conn.rate_count) > limit;
            let adjacent = now_s == conn.rate_window_s.wrapping_add(1);
            conn.rate_strikes = if went_over && adjacent {
                conn.rate_strikes.saturating_add(1)
            } else {
                0
            };
            conn.rate_window_s = now_s;
            conn.rate_count = 0;
        }
        conn.rate_count = conn.rate_count.saturating_add(1);
        let count = u32::from(conn.rate_count);
        if count <= limit {
            Rate::Allow
        } else if conn.rate_strikes >= SUSTAINED_RATE_WINDOWS {
            Rate::Close
        } else {
            Rate::Deny {
                first: count == limit + 1,
            }
        }
    }

    /// `{"op":"refresh","token":..}`: a newer token for the same user extends the connection.
    fn refresh(&mut self, key: usize, token: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let verifier = self.config.verifier.as_deref();
        let reply = match access::refresh(verifier, conn.identity.as_deref(), token) {
            Ok(fresh) => {
                let expires_at = fresh.expires_at;
                conn.identity = Some(Box::new(fresh));
                protocol::refreshed(expires_at)
            }
            Err(e) => e.reply(),
        };
        self.reply(key, reply);
    }

    fn subscribe(&mut self, key: usize, topics: Vec<String>) {
        let mut accepted: Vec<String> = Vec::new();
        for t in topics {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let max = self.config.max_subscriptions;
            match access::check_sub(conn.identity.as_deref(), &t, &conn.subs, max) {
                Ok(Sub::Held) => {}
                Ok(Sub::New) => {
                    conn.subs.push(t.as_str().into());
                    self.index_insert(&t, key);
                }
                Err(refusal) => {
                    self.reply(key, refusal.reply(&t));
                    continue;
                }
            }
            accepted.push(t);
        }
        if !accepted.is_empty() {
            let names: Vec<&str> = accepted.iter().map(String::as_str).collect();
            self.reply(key, protocol::subscribed(&names));
        }
    }

    fn unsubscribe(&mut self, key: usize, topics: Vec<String>) {
        for t in &topics {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Some(i) = conn.subs.iter().position(|s| **s == **t) {
                conn.subs.swap_remove(i);
                self.index_remove(t, key);
            }
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.reply(key, protocol::unsubscribed(&names));
    }

    pub(super) fn index_insert(&mut self, pattern: &str, key: usize) {
        self.shared.count_subscriptions(1);
        if self.index.insert(pattern, key) {
            self.report_interest(pattern, true);
        }
    }

    pub(super) fn index_remove(&mut self, pattern: &str, key: usize) {
        self.shared.count_subscriptions(-1);
        if self.index.remove(pattern, key) {
            self.report_interest(pattern, false);
        }
    }

    pub(super) fn report_interest(&self, pattern: &str, wanted: bool) {
        if let Some(sink) = &self.interest {
            // The receiver is gone only when the gateway is shutting down.
            let _ = sink.send(InterestChange {
                shard: self.id,
                pattern: pattern.into(),
                wanted,
            });
        }
    }

    pub(super) fn reply(&mut self, key: usize, text: String) {
        self.enqueue(
            key,
            frame::encode(OpCode::Data(Data::Text), text.as_bytes()),
        );
    }

    /// Queues a control-path frame (reply, pong, ping). These are small and rare, so they are not
    /// held to the slow-consumer bound: a client that does not read gets caught by its messages.
    pub(super) fn enqueue(&mut self, key: usize, frame: Bytes) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.outbox.push(frame);
        mark_dirty(conn, key, &mut self.dirty);
    }
}

/// What one client frame asked for; collected while the read buffer is borrowed, applied after.
#[derive(Debug)]
pub(super) enum Action {
    Op(Result<ClientOp, String>),
    Binary,
    Ping(Bytes),
    Close(Option<u16>),
}

/// What the rate limit says about one client message.
enum Rate {
    Allow,
    /// Over the limit this second: dropped, with an error reply for the first one.
    Deny {
        first: bool,
    },
    /// Over the limit for several seconds in a row.
    Close,
}

/// Seconds in a row over the message rate after which a connection is closed.
const SUSTAINED_RATE_WINDOWS: u8 = 2;
