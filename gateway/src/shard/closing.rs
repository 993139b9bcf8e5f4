//! Closing connections: the close handshake, dropping, and the paced drain and shed plans.

use super::*;

/// Close reason of a shed (1012): the client should reconnect (the Service steers it to a less
/// loaded pod) and resume with `since`, losing nothing (docs/history.md).
pub const SHED_REASON: &str = "rebalance; reconnect and resume";
/// Close reason of a drain (1001, SIGTERM or the operator's drain before a scale-down).
pub const DRAIN_REASON: &str = "server shutting down; reconnect and resume";

impl Shard {
    /// Starts the close handshake: pending messages not yet started are dropped, the close frame
    /// goes out next.
    pub(super) fn close(&mut self, key: usize, code: u16, reason: &str) {
        self.start_closing(key, frame::encode_close(code, reason));
    }

    pub(super) fn start_closing(&mut self, key: usize, last: Bytes) {
        self.leave_open(key);
        let deadline_ms = self.now_ms() + CLOSE_LINGER_MS;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(conn.phase, Phase::Closing { .. }) {
            return;
        }
        conn.phase = Phase::Closing {
            deadline_ms,
            fin_sent: false,
        };
        conn.inbuf = Vec::new();
        conn.outbox.discard_unstarted();
        conn.outbox.push(last);
        if !conn.write_blocked {
            self.write_conn(key);
        }
    }

    /// Unsubscribes an open connection and gives back its slot; no-op otherwise.
    pub(super) fn leave_open(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.is_open() {
            return;
        }
        if let Some(ip) = conn.counted_ip.take() {
            self.shared.release_ip(ip);
        }
        for pattern in std::mem::take(&mut conn.subs) {
            self.index_remove(&pattern, key);
        }
        self.shared.release(self.id);
    }

    /// Drops a connection at once.
    pub(super) fn remove(&mut self, key: usize) {
        self.leave_open(key);
        if self.conns.contains(key) {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.socket);
        }
    }

    pub(super) fn start_drain(&mut self, over: Duration) {
        if self.drain.is_some() {
            return;
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_paused_until = None;
        self.shed = None;
        self.drain = Some(self.plan(usize::MAX, over, 1001, DRAIN_REASON));
        // Handshakes in flight will not complete into a draining gateway.
        let pending: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Handshake { .. }))
            .map(|(k, _)| k)
            .collect();
        for key in pending {
            self.remove(key);
        }
        self.next_sweep = self.now;
    }

    pub(super) fn start_shed(&mut self, count: usize, over: Duration) {
        if self.drain.is_some() || count == 0 {
            return;
        }
        self.shed = Some(self.plan(count, over, 1012, SHED_REASON));
        self.next_sweep = self.now;
    }

    /// A plan over at most `count` of the open connections.
    pub(super) fn plan(
        &self,
        count: usize,
        over: Duration,
        code: u16,
        reason: &'static str,
    ) -> Plan {
        let open = self.conns.iter().filter(|(_, c)| c.is_open()).count();
        Plan {
            pace: Pace {
                start: self.now,
                over,
                total: count.min(open),
            },
            done: 0,
            code,
            reason,
        }
    }

    /// Closes what the drain and shed plans have due by now.
    pub(super) fn pace_closes(&mut self) {
        if let Some(drain) = &self.drain
            && drain.pace.expired(self.now, DRAIN_GRACE)
        {
            let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.remove(key);
            }
            return;
        }
        if let Some((due, code, reason)) = take_due(&mut self.drain, self.now) {
            self.close_some(due, code, reason);
        }
        if let Some((due, code, reason)) = take_due(&mut self.shed, self.now) {
            self.close_some(due, code, reason);
        }
        if self.shed.as_ref().is_some_and(|p| p.done >= p.pace.total) {
            self.shed = None;
        }
    }

    pub(super) fn close_some(&mut self, count: usize, code: u16, reason: &'static str) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(k, _)| k)
            .take(count)
            .collect();
        for key in keys {
            self.close(key, code, reason);
        }
    }
}

/// Closing connections on purpose, paced over a window: a drain (all, 1001, then the shard exits)
/// or a shed (some, 1012, for rebalancing).
pub(super) struct Plan {
    pace: Pace,
    done: usize,
    code: u16,
    reason: &'static str,
}

/// How many closes a plan has due now; counts them as done.
fn take_due(plan: &mut Option<Plan>, now: Instant) -> Option<(usize, u16, &'static str)> {
    let p = plan.as_mut()?;
    let due = p.pace.target(now).saturating_sub(p.done);
    p.done += due;
    (due > 0).then_some((due, p.code, p.reason))
}
