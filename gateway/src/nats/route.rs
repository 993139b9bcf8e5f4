//! Which copy of a NATS message is delivered when several held feeds match its subject: NATS
//! hands one copy to each matching subscription or consumer, and a client must get one.
//!
//! - A subject some JetStream feed matches is delivered from JetStream copies only (they carry
//!   the stream sequence a client resumes from); a core copy of it, from an overlapping pattern
//!   without history, is dropped.
//! - A sequenced copy is dropped when another feed has already delivered that sequence on that
//!   subject: every feed delivers a subject's messages in stream order without gaps from its
//!   first message on, so "delivered by `u`" is `start(u) <= seq <= mark(u, subject)`. Feeds far
//!   apart in time (one just opened, one lagging) therefore lose nothing when one of them is
//!   released or reopened, and deliver nothing twice.
//! - Copies without a sequence of a subject no JetStream feed matches come from the oldest
//!   matching subscription, so a newer one never hides one that was already delivering.

use std::collections::HashMap;

/// Subjects whose per-feed marks are kept at most: past it, a new subject matched by several
/// JetStream feeds is delivered from the oldest of them only (bounded memory over dedupe
/// across feed switches for that subject).
pub(crate) const MAX_MARKED_SUBJECTS: usize = 65_536;

/// What the held feeds matching a subject are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Matches {
    /// Oldest matching feed of any kind.
    pub oldest: Option<u64>,
    /// Oldest matching JetStream feed, and how many match.
    pub oldest_durable: Option<u64>,
    pub durable: usize,
}

impl Matches {
    pub(crate) fn add(&mut self, id: u64, durable: bool) {
        self.oldest = Some(self.oldest.map_or(id, |o| o.min(id)));
        if durable {
            self.oldest_durable = Some(self.oldest_durable.map_or(id, |o| o.min(id)));
            self.durable += 1;
        }
    }
}

/// Marks kept per subject at most (feeds opened, reopened or released while it was busy); past
/// it the oldest is dropped, which can only let a copy through twice, never lose one.
const MAX_MARKS_PER_SUBJECT: usize = 8;

/// One uninterrupted run of a feed: from `start` on it delivers every message of its subjects.
#[derive(Debug, Clone, Copy)]
struct Run {
    id: u64,
    start: u64,
}

/// What a run delivered on one subject: everything from its start through `mark`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    run: u64,
    start: u64,
    mark: u64,
}

/// Per-feed progress used to drop the later copies of a sequenced message.
#[derive(Debug)]
pub(crate) struct Routing {
    /// The current run of each JetStream feed that delivered since it was (re)opened from
    /// scratch.
    runs: HashMap<u64, Run>,
    next_run: u64,
    /// Per subject matched by several JetStream feeds: what each run delivered on it.
    marks: HashMap<Box<str>, Vec<Mark>>,
    cap: usize,
}

impl Default for Routing {
    fn default() -> Self {
        Routing::with_cap(MAX_MARKED_SUBJECTS)
    }
}

impl Routing {
    pub(crate) fn with_cap(cap: usize) -> Routing {
        Routing {
            runs: HashMap::new(),
            next_run: 0,
            marks: HashMap::new(),
            cap,
        }
    }

    /// Whether the copy of a message on `subject` that came through feed `via` is delivered.
    pub(crate) fn accept(
        &mut self,
        subject: &str,
        seq: Option<u64>,
        via: u64,
        matches: &Matches,
    ) -> bool {
        let Some(seq) = seq else {
            return matches.durable == 0 && matches.oldest == Some(via);
        };
        let next_run = &mut self.next_run;
        let run = *self.runs.entry(via).or_insert_with(|| {
            *next_run += 1;
            Run {
                id: *next_run,
                start: seq,
            }
        });
        if let Some(marks) = self.marks.get_mut(subject) {
            let delivered = marks
                .iter()
                .any(|m| m.run != run.id && m.start <= seq && seq <= m.mark);
            match marks.iter_mut().find(|m| m.run == run.id) {
                Some(m) => m.mark = m.mark.max(seq),
                None => {
                    if marks.len() >= MAX_MARKS_PER_SUBJECT {
                        marks.remove(0);
                    }
                    marks.push(Mark {
                        run: run.id,
                        start: run.start,
                        mark: seq,
                    });
                }
            }
            // Alone again and past every other run: their marks can never match again.
            if matches.durable <= 1 && marks.iter().all(|m| m.run == run.id || m.mark < seq) {
                self.marks.remove(subject);
            }
            return !delivered;
        }
        if matches.durable <= 1 {
            return true;
        }
        if self.marks.len() >= self.cap {
            return matches.oldest_durable == Some(via);
        }
        self.marks.insert(
            subject.into(),
            vec![Mark {
                run: run.id,
                start: run.start,
                mark: seq,
            }],
        );
        true
    }

    /// Feed `id` was released, replaced by a core subscription, or reopened from scratch: its
    /// next message starts a new run. What its last run delivered stays marked, so a lagging
    /// overlapping feed does not deliver it again.
    pub(crate) fn restart(&mut self, id: u64) {
        self.runs.remove(&id);
    }

    /// The stream was recreated: sequences start again.
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.marks.clear();
    }

    #[cfg(test)]
    pub(crate) fn marked_subjects(&self) -> usize {
        self.marks.len()
    }
}

#[cfg(test)]
mod tests;
