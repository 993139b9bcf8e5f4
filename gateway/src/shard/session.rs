//! Client sessions on a shard: admitting an upgrade (auth, limits, URL topics) and acting on the
//! client's frames and ops (sub, unsub, ping, refresh) under the per-connection rate limit.

use super::*;
use crate::access::{self, Sub, SubRefusal};
use crate::outbox::Outbox;
use crate::rate::Verdict;

impl Shard {
    /// Checks an upgrade request against the gateway's state and limits and, if it passes,
    /// answers 101 and subscribes the URL's topics.
    pub(super) fn admit(
        &mut self,
        key: usize,
        mut request: UpgradeRequest,
    ) -> Result<(), Rejection> {
        // A URL position names one topic's place in history: with several it is ambiguous.
        if request.since.is_some() && request.topics.len() != 1 {
            return Err(Rejection::bad_request(
                "since needs exactly one topic in the URL (resume several with the sub op)",
            ));
        }
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
        conn.serial = self.next_serial;
        self.next_serial += 1;
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
        // URL topics get no reply, except those with history: their clients need the epoch.
        match (request.since, allowed.first()) {
            (Some(since), Some(topic)) => {
                self.start_resume(key, topic.as_str(), since, request.epoch.take());
            }
            _ => {
                let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
                if let Some(epoch) = self.epoch_for(names.iter().copied()) {
                    self.reply(key, protocol::subscribed_with_epoch(&names, Some(&epoch)));
                }
            }
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
                ClientEvent::Pong(_) => Action::Pong,
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
            // Every client frame counts, pings and pongs too: each ping asks for a pong, and a
            // pong flood costs reads like any other frame.
            if !matches!(action, Action::Close(_)) {
                match self.rate(key) {
                    Verdict::Allow => {}
                    Verdict::Deny { first } => {
                        if first {
                            let limit = self.config.max_client_messages_per_second;
                            let message = format!("over {limit} messages per second; slow down");
                            self.reply(key, protocol::error(ErrorCode::Limit, None, &message));
                        }
                        continue;
                    }
                    Verdict::Close => {
                        self.shared.metrics.protocol_close("rate_limit");
                        self.close(key, 1008, "message rate limit");
                        break;
                    }
                }
            }
            match action {
                Action::Op(Ok(ClientOp::Sub(topics))) => self.subscribe(key, topics, None),
                Action::Op(Ok(ClientOp::Resume(resume))) => {
                    let topics = resume.topics.clone();
                    self.subscribe(key, topics, Some(resume));
                }
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
                // Liveness is already noted (any bytes count); only the rate limit cares.
                Action::Pong => {}
                Action::Close(code) => {
                    // Echo the peer's code as RFC 6455 asks; 1005 (no code) is answered with 1000.
                    self.close(key, code.unwrap_or(1000), "");
                }
            }
        }
        self.actions = actions;
    }

    /// Counts one client message against the per-connection rate limit.
    fn rate(&mut self, key: usize) -> Verdict {
        let now_ms = self.now_ms();
        let limit = self.config.max_client_messages_per_second;
        match self.conns.get_mut(key) {
            Some(conn) => conn.rate.check(now_ms, limit),
            None => Verdict::Allow,
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

    /// Subscribes `topics`; those with a position in `resume` are then resumed (their reply
    /// comes when the replay is done), the others answered at once.
    fn subscribe(&mut self, key: usize, topics: Vec<String>, resume: Option<protocol::Resume>) {
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
        let mut resumed = Vec::new();
        if let Some(resume) = &resume {
            accepted.retain(|t| match resume.since(t) {
                Some(since) => {
                    resumed.push((t.clone(), since));
                    false
                }
                None => true,
            });
        }
        if !accepted.is_empty() {
            let names: Vec<&str> = accepted.iter().map(String::as_str).collect();
            let epoch = self.epoch_for(names.iter().copied());
            self.reply(
                key,
                protocol::subscribed_with_epoch(&names, epoch.as_deref()),
            );
        }
        let epoch = resume.and_then(|r| r.epoch);
        for (pattern, since) in resumed {
            self.start_resume(key, &pattern, since, epoch.clone());
        }
    }

    fn unsubscribe(&mut self, key: usize, topics: Vec<String>) {
        for t in &topics {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Some(merge) = conn.merge.as_deref_mut() {
                merge.forget(t);
            }
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
            let _ = sink.send(ToRouter::Interest(InterestChange {
                shard: self.id,
                pattern: pattern.into(),
                wanted,
            }));
        }
    }

    pub(super) fn reply(&mut self, key: usize, text: String) {
        self.enqueue(
            key,
            frame::encode(OpCode::Data(Data::Text), text.as_bytes()),
        );
    }

    /// Queues a control-path frame (reply, pong, ping) under the same bound as messages: each of
    /// these is a heap allocation of its own, so a client that asks for replies and never reads
    /// them would otherwise grow the gateway without limit. Past the bound it is closed as a slow
    /// consumer (1008).
    pub(super) fn enqueue(&mut self, key: usize, frame: Bytes) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.outbox.footprint() + Outbox::cost_of(&frame) > self.config.max_pending_bytes {
            self.slow_consumer(key);
            return;
        }
        conn.outbox.push(frame);
        mark_dirty(conn, key, &mut self.dirty);
    }

    /// Closes an open connection that does not keep up with what is queued for it.
    pub(super) fn slow_consumer(&mut self, key: usize) {
        if self.conns.get(key).is_some_and(Conn::is_open) {
            self.stats.slow_closes += 1;
            self.close(key, 1008, "slow consumer");
        }
    }
}

/// What one client frame asked for; collected while the read buffer is borrowed, applied after.
#[derive(Debug)]
pub(super) enum Action {
    Op(Result<ClientOp, String>),
    Binary,
    Ping(Bytes),
    Pong,
    Close(Option<u16>),
}
