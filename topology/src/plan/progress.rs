//! [`Progress`]: the part of the durable step log the state machine needs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

use crate::api::{Operation, OperationHooks, StepRecord};
use crate::region_api::{Hook, HookRun, Hooks};
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
    /// At a hook step: the index of the running hook in that step's list.
    pub hook: usize,
    /// A hook before the demotion failed: the operation ends `Aborted`.
    pub aborted: bool,
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
            hook: 0,
            aborted: false,
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
        next.hook = if transition.next == self.step && self.step.is_hooks() {
            self.hook + 1
        } else {
            0
        };
        next
    }

    /// The progress after the running hook ended as `end` said, at `now` (as the controller
    /// records it: the run, then the transition to `end.next`).
    pub fn end_hook(&self, end: &super::HookEnd, now: Timestamp) -> Progress {
        let mut next = self.advance(
            &Transition {
                next: end.next,
                token: None,
                rollback: false,
            },
            now,
        );
        next.aborted |= !end.ok && self.step == StepKind::HooksBeforeDemotion;
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
            hook: op.hooks.as_ref().and_then(|h| h.running).unwrap_or(0) as usize,
            aborted: op.hooks.as_ref().is_some_and(|h| {
                h.runs
                    .iter()
                    .any(|r| !r.ok && r.hook.starts_with("beforeDemotion/"))
            }),
        }
    }
}

/// The hooks a hook step runs, in order (none for any other step).
pub fn hooks_of(hooks: &Hooks, step: StepKind) -> &[Hook] {
    match step {
        StepKind::HooksBeforeDemotion => &hooks.before_demotion,
        StepKind::HooksAfterPromotion => &hooks.after_promotion,
        _ => &[],
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
            hooks: None,
        }
    }

    /// The running hook: its step's phase, its index and its definition.
    pub fn running_hook(&self) -> Option<(&'static str, usize, &Hook)> {
        let hooks = self.hooks.as_ref()?;
        let index = hooks.running? as usize;
        let hook = hooks_of(&hooks.declared, self.step).get(index)?;
        Some((self.step.hook_phase()?, index, hook))
    }

    /// Records the end of the running hook (`ok`, what it did or why it failed) at `now`; the
    /// transition that follows is recorded by [`Operation::record`].
    pub fn end_hook(&mut self, ok: bool, detail: String, now: Timestamp) {
        let Some((phase, _, hook)) = self.running_hook() else {
            return;
        };
        let name = format!("{phase}/{}", hook.name);
        let started_at = self
            .steps
            .last()
            .map_or(self.started_at.clone(), |s| s.started_at.clone());
        if let Some(hooks) = self.hooks.as_mut() {
            hooks.runs.push(HookRun {
                hook: name,
                started_at,
                finished_at: MicroTime(now),
                ok,
                detail,
            });
        }
    }

    /// Records `transition` in the log: closes the current step and opens the next one. The
    /// controller writes the result (with a resourceVersion precondition) before acting on it.
    pub fn record(&mut self, transition: &Transition, member: Option<String>, now: Timestamp) {
        let index = (transition.next == self.step)
            .then(|| self.hooks.as_ref().and_then(|h| h.running))
            .flatten()
            .map_or(0, |i| i + 1);
        let mut member = member;
        if transition.next.is_hooks() {
            let hooks = self.hooks.get_or_insert_with(OperationHooks::default);
            hooks.running = Some(index);
            member = hooks_of(&hooks.declared, transition.next)
                .get(index as usize)
                .map(|h| h.name.clone());
        } else if let Some(hooks) = self.hooks.as_mut() {
            hooks.running = None;
        }
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
