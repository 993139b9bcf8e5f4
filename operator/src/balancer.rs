//! Low-churn rebalancing after a scale-up, as a small state machine (pure) plus a thin NATS
//! executor, so the same code runs in the operator and in tests and benchmarks without
//! Kubernetes.
//!
//! One round: every pod above `mean × (1 + tolerance)` is paused (`accepting=false`: its
//! readiness fails and the Service stops sending it clients), then, once the pause has had time
//! to reach the endpoints (`lead`), asked to shed down to the mean (spread over `spread`). The
//! other pods above the mean are paused for the round too, shedding nothing. Shed clients
//! reconnect, and can only land on pods still accepting: the ones below the mean. When the
//! round has landed in the stats (`spread + settle`) the pods accept again, and the next round
//! starts only from fresh counts, so nothing is shed twice and shedding stops as soon as the
//! pods are within tolerance.

use std::collections::BTreeMap;
use std::time::Duration;

use volley_crds::BalanceSpec;
use volley_crds::wire::{self, ControlReply, ControlRequest};

use crate::scaling::{self, PodView, ShedBudget};
use crate::stats;

/// Timing of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// From pausing a pod to asking it to shed: readiness probe period plus endpoint
    /// propagation, so shed clients do not come straight back.
    pub lead: Duration,
    /// The shed's spread (`over_ms`).
    pub spread: Duration,
    /// After the spread, until the stats surely show the result (a stats interval + slack).
    pub settle: Duration,
    /// Pause the shedding pods (the low-churn rule). Off only to measure what it saves: shed
    /// clients then come back through the Service at random, often to the pod that shed them.
    pub pause: bool,
}

impl Default for Timing {
    /// For Kubernetes: readiness period 2s + endpoint propagation, the 10s spread, the gateway's
    /// 5s stats interval + slack.
    fn default() -> Self {
        Self {
            lead: Duration::from_secs(4),
            spread: Duration::from_secs(10),
            settle: Duration::from_secs(7),
            pause: true,
        }
    }
}

/// One control request the balancer wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stop accepting new connections.
    Pause(String),
    /// Close `count` connections with 1012, spread over `over_ms`.
    Shed {
        /// Pod.
        pod: String,
        /// Connections.
        count: u64,
        /// Spread in milliseconds.
        over_ms: u64,
    },
    /// Accept again.
    Resume(String),
}

impl Command {
    /// The pod it is for.
    pub fn pod(&self) -> &str {
        match self {
            Self::Pause(p) | Self::Resume(p) | Self::Shed { pod: p, .. } => p,
        }
    }

    /// The wire request.
    pub fn request(&self) -> ControlRequest {
        match self {
            Self::Pause(_) => ControlRequest::Accepting { value: false },
            Self::Resume(_) => ControlRequest::Accepting { value: true },
            Self::Shed { count, over_ms, .. } => ControlRequest::Shed {
                count: *count,
                over_ms: *over_ms,
            },
        }
    }

    /// Metrics label.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Pause(_) | Self::Resume(_) => "accepting",
            Self::Shed { .. } => "shed",
        }
    }
}

/// A paused pod's round.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Round {
    count: u64,
    shed_at: u64,
    shed_sent: bool,
    /// The shed failed: resume on the next step.
    aborted: bool,
}

/// A pod's Resume is tried this many times in a row at most (one step apart); past that, the pod
/// (if it is still paused) is left to [`Balancer::orphans`], which finds it from its stats.
pub const RESUME_ATTEMPTS: u32 = 5;

/// The balancer's state for one cluster.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    timing: Timing,
    rounds: BTreeMap<String, Round>,
    budget: ShedBudget,
    /// Pods whose Resume failed, with how many attempts failed: sent again on the next step.
    retry: BTreeMap<String, u32>,
    /// Resumes sent on the last step, with the attempts that failed before them (for
    /// [`Balancer::failed`]).
    resuming: BTreeMap<String, u32>,
    /// When a Resume was last sent to each pod (unix ms), so stats taken before it arrived do not
    /// trigger another one; entries older than `settle` are dropped.
    resumed_at: BTreeMap<String, u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Balancer {
    /// A balancer with `timing`.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            ..Self::default()
        }
    }

    /// Whether a round is in progress (some pod paused).
    pub fn busy(&self) -> bool {
        !self.rounds.is_empty()
    }

    /// Pods paused right now.
    pub fn paused(&self) -> Vec<String> {
        self.rounds.keys().cloned().collect()
    }

    /// What to send now. `settled`: no scaling in progress and every pod reporting; a new round
    /// starts only then, while a running round always finishes on time (pods are never left
    /// paused).
    pub fn step(
        &mut self,
        views: &[PodView],
        settled: bool,
        spec: &BalanceSpec,
        now_ms: u64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let over_ms = ms(self.timing.spread);
        let done_after = over_ms + ms(self.timing.settle);
        // A Resume that failed (timeout, no responder, or a reconcile that failed before the
        // commands went out) is sent again: a pod left paused takes no clients for good.
        self.resuming.clear();
        let settle = ms(self.timing.settle);
        self.resumed_at
            .retain(|_, at| now_ms < at.saturating_add(settle));
        for (pod, failures) in std::mem::take(&mut self.retry) {
            if !self.rounds.contains_key(&pod) {
                self.resumed_at.insert(pod.clone(), now_ms);
                self.resuming.insert(pod.clone(), failures);
                out.push(Command::Resume(pod));
            }
        }
        let mut finished = Vec::new();
        for (pod, round) in &mut self.rounds {
            // A pod missing from the views (stats late, or gone) keeps its round: resuming it
            // early would let its shed clients come straight back; a gone pod's requests just
            // fail and the round ends on time.
            if round.aborted {
                finished.push(pod.clone());
            } else if !round.shed_sent {
                if now_ms >= round.shed_at {
                    round.shed_sent = true;
                    out.push(Command::Shed {
                        pod: pod.clone(),
                        count: round.count,
                        over_ms,
                    });
                }
            } else if now_ms >= round.shed_at + done_after {
                finished.push(pod.clone());
            }
        }
        // A round that ends this step: the next one starts on a later step, from fresh counts.
        let ended = !finished.is_empty();
        for pod in finished {
            self.rounds.remove(&pod);
            if self.timing.pause {
                self.resumed_at.insert(pod.clone(), now_ms);
                self.resuming.insert(pod.clone(), 0);
                out.push(Command::Resume(pod));
            }
        }
        if ended
            || self.busy()
            || !settled
            || !spec.enabled
            || scaling::is_balanced(views, spec.tolerance)
        {
            return out;
        }
        let per_minute = u64::try_from(spec.max_shed_per_minute.max(0)).unwrap_or(0);
        let budget = self.budget.available(now_ms / 1000, per_minute);
        let plan = scaling::shed_plan(views, spec.tolerance, budget);
        self.budget.spend(plan.iter().map(|(_, n)| n).sum());
        // Without a lead (no endpoints to update, as in tests) or without pausing, the shed goes
        // out at once.
        let at_once = self.timing.lead.is_zero() || !self.timing.pause;
        let shed_at = if at_once {
            now_ms
        } else {
            now_ms + ms(self.timing.lead)
        };
        let hold = if self.timing.pause {
            scaling::hold_list(views, &plan)
        } else {
            Vec::new()
        };
        for pod in hold {
            // Paused for the round, nothing to shed: it ends (and resumes) with the others.
            out.push(Command::Pause(pod.clone()));
            self.rounds.insert(
                pod,
                Round {
                    count: 0,
                    shed_at,
                    shed_sent: true,
                    aborted: false,
                },
            );
        }
        for (pod, count) in plan {
            if self.timing.pause {
                out.push(Command::Pause(pod.clone()));
            }
            if at_once {
                out.push(Command::Shed {
                    pod: pod.clone(),
                    count,
                    over_ms,
                });
            }
            self.rounds.insert(
                pod,
                Round {
                    count,
                    shed_at,
                    shed_sent: at_once,
                    aborted: false,
                },
            );
        }
        out
    }

    /// Resumes for pods paused although no round of this balancer paused them: stats say
    /// `accepting=false`, not draining, below `cap` connections (so not refusing for being full:
    /// the only other reason a gateway stops accepting is a pause). They are left over from a
    /// round of another operator replica (a leader handover mid-round: rounds live in the
    /// leader's memory), or from a Pause whose reply was lost, or a Resume that failed
    /// [`RESUME_ATTEMPTS`] times. The gateway's pause never expires, so without this the pod
    /// would stay NotReady for good. A pod resumed less than `settle` ago is skipped: its stats
    /// may predate the Resume. Resuming a pod that is accepting already is harmless.
    pub fn orphans(&mut self, views: &[PodView], cap: u64, now_ms: u64) -> Vec<Command> {
        let settle = ms(self.timing.settle);
        self.resumed_at
            .retain(|_, at| now_ms < at.saturating_add(settle));
        let mut out = Vec::new();
        for v in views {
            if v.accepting
                || v.draining
                || v.connections >= cap
                || self.rounds.contains_key(&v.name)
                || self.resumed_at.contains_key(&v.name)
            {
                continue;
            }
            self.resumed_at.insert(v.name.clone(), now_ms);
            self.resuming.entry(v.name.clone()).or_insert(0);
            out.push(Command::Resume(v.name.clone()));
        }
        out
    }

    /// Feeds back a command that failed: a pause that did not happen cancels its round (nothing
    /// is shed from a pod still taking connections); a shed that did not happen ends the round
    /// at once (the pod is resumed on the next step); a resume that did not happen is sent again
    /// on the next step, up to [`RESUME_ATTEMPTS`] times.
    pub fn failed(&mut self, cmd: &Command) {
        match cmd {
            Command::Pause(pod) => {
                self.rounds.remove(pod);
            }
            Command::Shed { pod, .. } => {
                if let Some(r) = self.rounds.get_mut(pod) {
                    r.aborted = true;
                }
            }
            Command::Resume(pod) => {
                let failures = self.resuming.get(pod).copied().unwrap_or(0) + 1;
                if failures < RESUME_ATTEMPTS {
                    self.retry.insert(pod.clone(), failures);
                }
            }
        }
    }
}

/// Sends `cmds` to the pods of cluster `ns/cluster` over NATS, in order, feeding failures back
/// into `balancer`. Returns each command with the gateway's reply (`None` when it failed).
pub async fn execute(
    balancer: &mut Balancer,
    client: &async_nats::Client,
    ns: &str,
    cluster: &str,
    cmds: Vec<Command>,
) -> Vec<(Command, Option<ControlReply>)> {
    let mut out = Vec::with_capacity(cmds.len());
    let mut cancelled: Vec<String> = Vec::new();
    for cmd in cmds {
        if cancelled.iter().any(|p| p == cmd.pod()) {
            continue;
        }
        let subject = wire::control_subject(ns, cluster, cmd.pod());
        let reply = match stats::control(client, subject, &cmd.request()).await {
            Ok(r) if r.ok => Some(r),
            Ok(r) => {
                tracing::warn!(pod = cmd.pod(), op = cmd.op(), error = ?r.error, "control request refused");
                None
            }
            Err(e) => {
                tracing::warn!(pod = cmd.pod(), op = cmd.op(), error = %e, "control request failed");
                None
            }
        };
        if reply.is_none() {
            balancer.failed(&cmd);
            if matches!(cmd, Command::Pause(_)) {
                cancelled.push(cmd.pod().to_string());
            }
        }
        out.push((cmd, reply));
    }
    out
}

#[cfg(test)]
mod tests;
