//! Resuming on a shard: asking the control plane for what a connection missed, holding its live
//! messages meanwhile (see [`crate::history::merge`]), and delivering the replay then the held
//! messages when the answer comes, with a `subscribed` reply saying whether it recovered.

use super::*;
use crate::history::merge::Merge;
use crate::protocol::Recovery;

/// Grace on top of `replayTimeout` before a shard stops waiting for a replay answer (the
/// control plane always answers within the timeout unless the answer was lost).
const REPLAY_ANSWER_GRACE_S: u32 = 5;

impl Shard {
    /// The epoch subscribe replies carry when `patterns` include one with history.
    pub(super) fn epoch_for<'a>(
        &self,
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Option<Arc<str>> {
        let history = self.config.history.as_ref()?;
        let mut patterns = patterns.into_iter();
        if patterns.any(|p| history.config.covers_pattern(p)) {
            history.state.epoch()
        } else {
            None
        }
    }

    /// Starts resuming `pattern` (already subscribed) after position `since`.
    pub(super) fn start_resume(
        &mut self,
        key: usize,
        pattern: &str,
        since: u64,
        epoch: Option<String>,
    ) {
        let covered = self
            .config
            .history
            .as_ref()
            .filter(|h| h.config.covers_pattern(pattern))
            .map(|h| h.config.replay_timeout);
        let (Some(timeout), Some(sink)) = (covered, &self.interest) else {
            self.answer_resume(key, pattern, Err(NotRecovered::NoHistory));
            return;
        };
        let now_s = self.now_s();
        let max_held = self.config.max_pending_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let merge = conn
            .merge
            .get_or_insert_with(|| Box::new(Merge::new(max_held)));
        if !merge.start(pattern) {
            // A replay of it is in flight already; its answer is the reply.
            return;
        }
        let timeout_s = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX);
        conn.replay_deadline_s = now_s
            .saturating_add(timeout_s)
            .saturating_add(REPLAY_ANSWER_GRACE_S);
        let request = ReplayRequest {
            shard: self.id,
            key,
            serial: conn.serial,
            pattern: pattern.into(),
            since,
            epoch,
        };
        if sink.send(ToRouter::Replay(request)).is_err() {
            // The router is gone: the gateway is shutting down.
            if let Some(merge) = conn.merge.as_deref_mut() {
                let (abandoned, deliver) = merge.abandon();
                self.give_up_replays(key, abandoned, deliver, NotRecovered::Unavailable);
            }
        }
    }

    /// The control plane answered a replay request.
    pub(super) fn on_replayed(&mut self, done: ReplayDone) {
        let ReplayDone {
            key,
            serial,
            pattern,
            epoch,
            outcome,
        } = done;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.serial != serial || !conn.is_open() {
            return;
        }
        let format = conn.format;
        let still_wanted = conn.subs.iter().any(|s| **s == *pattern);
        let Some(merge) = conn.merge.as_deref_mut() else {
            return;
        };
        let (replayed, result) = match outcome {
            Ok(r) if still_wanted => {
                let n = r.messages.len();
                (Some(r), Ok(n))
            }
            Ok(_) => (None, Err(NotRecovered::NoHistory)),
            Err(why) => (None, Err(why)),
        };
        let Some(deliver) = merge.finish(&pattern, replayed, |m| m.frame(format).len()) else {
            return;
        };
        if still_wanted {
            self.answer_resume_in(key, &pattern, epoch.as_deref(), result);
        }
        for message in &deliver {
            if !self.push_message(key, message) {
                break;
            }
        }
    }

    /// Replays given up on (hold buffer overflow, answer overdue): each pattern is told it is
    /// live only, then the held messages go out.
    pub(super) fn give_up_replays(
        &mut self,
        key: usize,
        abandoned: Vec<Box<str>>,
        deliver: Vec<Arc<Message>>,
        why: NotRecovered,
    ) {
        for pattern in &abandoned {
            self.answer_resume(key, pattern, Err(why));
        }
        for message in &deliver {
            if !self.push_message(key, message) {
                break;
            }
        }
    }

    fn answer_resume(&mut self, key: usize, pattern: &str, result: Result<usize, NotRecovered>) {
        let epoch = self.epoch_for([pattern]);
        self.answer_resume_in(key, pattern, epoch.as_deref(), result);
    }

    fn answer_resume_in(
        &mut self,
        key: usize,
        pattern: &str,
        epoch: Option<&str>,
        result: Result<usize, NotRecovered>,
    ) {
        let recovery = match result {
            Ok(replayed) => {
                self.shared.metrics.recovery("recovered");
                Recovery::Recovered { replayed }
            }
            Err(why) => {
                self.shared.metrics.recovery(why.label());
                Recovery::NotRecovered {
                    reason: why.label(),
                    message: why.message(),
                }
            }
        };
        self.reply(key, protocol::resumed(pattern, epoch, recovery));
    }

    /// Queues one message frame for a connection under the pending bound; false when that
    /// closed it as a slow consumer.
    pub(super) fn push_message(&mut self, key: usize, message: &Arc<Message>) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if !conn.is_open() {
            return false;
        }
        let frame = message.frame(conn.format);
        if conn.outbox.pending_bytes() + frame.len() > self.config.max_pending_bytes {
            self.slow_consumer(key);
            return false;
        }
        conn.outbox.push(frame.clone());
        self.stats.frames += 1;
        mark_dirty(conn, key, &mut self.dirty);
        true
    }
}
