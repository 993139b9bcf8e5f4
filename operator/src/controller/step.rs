//! The reconcile's named steps, and which one a reconcile is in (for the error of a reconcile
//! cut off at its timeout, which must say where it stopped).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The reconcile's named steps, for an error that must say where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Validation of the spec (and, for an invalid one, its status and Event).
    Validate,
    /// The reads.
    Observe,
    /// The plan (pure).
    Plan,
    /// The children (pure).
    Build,
    /// The writes and the requests to gateways.
    Apply,
    /// The status write.
    Status,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Validate,
        Step::Observe,
        Step::Plan,
        Step::Build,
        Step::Apply,
        Step::Status,
    ];

    /// The step's name, as in its tracing span.
    pub fn name(self) -> &'static str {
        match self {
            Step::Validate => "validate",
            Step::Observe => "observe",
            Step::Plan => "plan",
            Step::Build => "build",
            Step::Apply => "apply",
            Step::Status => "status",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The step a reconcile is in, readable after its future was dropped (the future must stay
/// `Send` for kube-runtime, hence an atomic rather than a `Cell`).
#[derive(Debug, Default)]
pub(super) struct Progress(AtomicUsize);

impl Progress {
    pub(super) fn enter(&self, step: Step) {
        let index = Step::ALL.iter().position(|s| *s == step).unwrap_or(0);
        self.0.store(index, Ordering::Relaxed);
    }

    pub(super) fn step(&self) -> Step {
        Step::ALL[self.0.load(Ordering::Relaxed) % Step::ALL.len()]
    }
}
