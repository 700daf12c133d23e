//! [`Progress`]: the part of the durable step log the state machine needs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

use crate::api::{Operation, StepRecord};
use crate::step::{OperationKind, StepKind};

use super::Transition;

/// How far an operation got, as persisted in `status.operation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub kind: OperationKind,
    /// Primary when the operation started.
    pub from: String,
    /// Requested primary.
    pub to: String,
    /// The current step.
    pub step: StepKind,
    /// The demotion token of `from`, once seen.
    pub token: Option<String>,
    /// A fatal token error sent the operation back to `from`.
    pub rolled_back: bool,
    /// When the current step was entered (deadlines count from here).
    pub step_started_at: Timestamp,
    /// When the Demote step was entered: a `ReplicaClusterSwitch` transition after this instant
    /// belongs to this demotion.
    pub demote_started_at: Option<Timestamp>,
}

impl Progress {
    /// A new operation at its first step.
    pub fn start(kind: OperationKind, from: &str, to: &str, now: Timestamp) -> Progress {
        Progress {
            kind,
            from: from.to_owned(),
            to: to.to_owned(),
            step: StepKind::Validate,
            token: None,
            rolled_back: false,
            step_started_at: now,
            demote_started_at: None,
        }
    }

    /// The member being promoted: `to`, or `from` after a rollback.
    pub fn target(&self) -> &str {
        if self.rolled_back {
            &self.from
        } else {
            &self.to
        }
    }

    /// The member giving up the primary role: `from`, or `to` after a rollback.
    pub fn loser(&self) -> &str {
        if self.rolled_back {
            &self.to
        } else {
            &self.from
        }
    }

    /// The progress after `transition`, entered at `now`.
    pub fn advance(&self, transition: &Transition, now: Timestamp) -> Progress {
        let mut next = self.clone();
        next.step = transition.next;
        next.step_started_at = now;
        if next.token.is_none() {
            next.token.clone_from(&transition.token);
        }
        next.rolled_back |= transition.rollback;
        if transition.next == StepKind::Demote {
            next.demote_started_at = Some(now);
        }
        next
    }

    /// Reads the progress back from the status log.
    pub fn from_operation(op: &Operation) -> Progress {
        let entered = |step: StepKind| {
            op.steps
                .iter()
                .rev()
                .find(|r| r.step == step)
                .map(|r| r.started_at.0)
        };
        Progress {
            kind: op.kind,
            from: op.from.clone(),
            to: op.to.clone(),
            step: op.step,
            token: op.token.clone(),
            rolled_back: op.rolled_back,
            step_started_at: entered(op.step).unwrap_or(op.started_at.0),
            demote_started_at: entered(StepKind::Demote),
        }
    }
}

impl Operation {
    /// A new operation log, at its first step.
    pub fn new(id: String, kind: OperationKind, from: &str, to: &str, now: Timestamp) -> Operation {
        Operation {
            id,
            kind,
            from: from.to_owned(),
            to: to.to_owned(),
            step: StepKind::Validate,
            token: None,
            rolled_back: false,
            started_at: MicroTime(now),
            finished_at: None,
            steps: vec![StepRecord {
                step: StepKind::Validate,
                member: None,
                started_at: MicroTime(now),
                finished_at: None,
            }],
            hold: None,
            outcome: None,
        }
    }

    /// Records `transition` in the log: closes the current step and opens the next one. The
    /// controller writes the result (with a resourceVersion precondition) before acting on it.
    pub fn record(&mut self, transition: &Transition, member: Option<String>, now: Timestamp) {
        if let Some(current) = self.steps.last_mut()
            && current.finished_at.is_none()
        {
            current.finished_at = Some(MicroTime(now));
        }
        self.step = transition.next;
        if self.token.is_none() {
            self.token.clone_from(&transition.token);
        }
        self.rolled_back |= transition.rollback;
        self.hold = None;
        self.steps.push(StepRecord {
            step: transition.next,
            member,
            started_at: MicroTime(now),
            finished_at: None,
        });
    }
}
