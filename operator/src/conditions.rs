//! Maintains `status.conditions` (`meta.v1.Condition`): a transition time changes only when the
//! status does, and every condition carries the generation it was computed for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond<'a> {
    /// Condition type (e.g. `Ready`).
    pub type_: &'a str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: String,
}

/// Sets `new` in `conds`, keeping the previous transition time if the status did not change.
pub fn set(conds: &mut Vec<Condition>, new: Cond<'_>, generation: Option<i64>, now: &Time) {
    let status = if new.status { "True" } else { "False" };
    let existing = conds.iter_mut().find(|c| c.type_ == new.type_);
    let transition = match &existing {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    let cond = Condition {
        type_: new.type_.to_string(),
        status: status.to_string(),
        reason: new.reason.to_string(),
        message: new.message,
        observed_generation: generation,
        last_transition_time: transition,
    };
    match existing {
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
}

/// Whether condition `type_` is True.
pub fn is_true(conds: &[Condition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests;
