//! The switchover planner: [`plan`] lists the steps and exact patches of a switchover up front
//! (for humans and the CLI); [`next_step`] is the state machine the controller drives, one
//! decision per call, from the durable [`Progress`] and the latest [`Observed`] snapshot.
//!
//! Both are pure. Safety (switchover-design.md): the old primary's spec becomes replica before
//! the target's becomes primary, and the target is promoted only with the token the old primary
//! published after its shutdown checkpoint — unless a failover was explicitly asked for.

mod machine;
pub mod patch;
mod progress;

use serde::Serialize;
use serde_json::Value;

use crate::cnpg::Role;
use crate::model::Topology;
use crate::observed::{Observed, ObservedMember};
use crate::step::{OperationKind, StepKind};
use crate::validate::{ValidationError, validate_live_members};

pub use machine::{
    Action, Context, Decision, HOOK_RECHECK, HOOK_TIMEOUT, HookEnd, HookLook, HookState, NO_HOOKS,
    REPLAY_RECHECK, REPLAY_RECHECK_STREAMING, Transition, WaitFor, next_step,
};
pub use progress::{Progress, hooks_of};

/// What the planner is asked to reach.
#[derive(Clone, Copy, Debug)]
pub struct Desired<'a> {
    pub topology: &'a Topology,
    /// The member that should become primary.
    pub to: &'a str,
    pub kind: OperationKind,
}

/// A switchover laid out in advance; the token is not known yet, so promotion patches carry a
/// placeholder naming where it will come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub kind: OperationKind,
    pub from: String,
    pub to: String,
    pub steps: Vec<PlannedStep>,
}

/// One step of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedStep {
    pub step: StepKind,
    /// The member patched or watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The exact JSON merge patch sent to that member's Cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// What must be observed before the next step starts.
    pub done_when: String,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0:?} is not a member of the topology")]
    UnknownTarget(String),
    #[error("{0} is already the primary; nothing to do")]
    AlreadyPrimary(String),
    #[error("the members are not in a state a switchover can start from; {0}")]
    Invalid(#[source] ValidationError),
}

/// The placeholder shown instead of the (future) demotion token in a plan.
pub fn token_placeholder(from: &str) -> String {
    format!("<status.demotionToken of {from}>")
}

/// Lays out the switchover (or failover) from the observed primary to `desired.to`.
pub fn plan(observed: &Observed, desired: &Desired<'_>) -> Result<Plan, PlanError> {
    let topology = desired.topology;
    let to = desired.to;
    if topology.member(to).is_none() {
        return Err(PlanError::UnknownTarget(to.to_owned()));
    }
    let from = match observed.primary() {
        Some(p) if p == to => return Err(PlanError::AlreadyPrimary(to.to_owned())),
        Some(p) => p.to_owned(),
        // A failover may start while the old primary cannot be read: it is the desired one.
        None if desired.kind == OperationKind::Failover => topology.primary().to_owned(),
        None => String::new(),
    };
    let failover_unreachable = desired.kind == OperationKind::Failover
        && !observed.get(&from).is_some_and(|m| m.reachable);
    // A readable but fenced old primary takes no write: validated like an unreachable one (only
    // the target must be usable), and still demoted first.
    let failover_fenced = desired.kind == OperationKind::Failover
        && observed
            .get(&from)
            .is_some_and(|m| m.reachable && m.status.fenced);
    let members = observed.by_member(topology);
    if !failover_unreachable && !failover_fenced {
        validate_live_members(topology, observed, &members, Some(to))
            .map_err(PlanError::Invalid)?;
    }

    let progress = Progress::start(desired.kind, &from, to, Default::default());
    let mut steps = Vec::new();
    let mut step = StepKind::Validate;
    let token = (desired.kind == OperationKind::Switchover).then(|| token_placeholder(&from));
    while step != StepKind::Done {
        steps.extend(planned(
            step,
            topology,
            observed,
            &members,
            &progress,
            token.as_deref(),
        ));
        step = step.next(desired.kind, !failover_unreachable);
    }
    steps.push(PlannedStep {
        step: StepKind::Done,
        member: None,
        patch: None,
        done_when: "the operation moves to status.history with its step timings".into(),
    });
    Ok(Plan {
        kind: desired.kind,
        from,
        to: to.to_owned(),
        steps,
    })
}

fn planned(
    step: StepKind,
    topology: &Topology,
    observed: &Observed,
    members: &[Option<&ObservedMember>],
    progress: &Progress,
    token: Option<&str>,
) -> Vec<PlannedStep> {
    let (from, to) = (progress.from.as_str(), progress.to.as_str());
    let one = |member: &str, patch: Option<Value>, done_when: String| {
        vec![PlannedStep {
            step,
            member: Some(member.to_owned()),
            patch,
            done_when,
        }]
    };
    match step {
        StepKind::Validate => vec![PlannedStep {
            step,
            member: None,
            patch: None,
            done_when: "live validation passes and every patch below passes a server-side dry run"
                .into(),
        }],
        StepKind::Demote => one(
            from,
            Some(machine::demote_patch(topology, progress)),
            format!("{from}'s spec.replica shows the patch"),
        ),
        StepKind::AwaitDemotionStarted => one(
            from,
            None,
            format!("{from} shows switchReplicaClusterStatus.inProgress or a demotion token"),
        ),
        StepKind::AwaitToken => one(
            from,
            None,
            format!("{from}'s status.demotionToken is non-empty; it is persisted at once"),
        ),
        StepKind::CheckToken => {
            let mut steps = one(
                to,
                None,
                format!("the token decodes and its system id and timeline match {to}"),
            );
            // Entered from CheckToken only when the target's channel has an object store.
            if observed.get(to).is_some_and(|m| m.source.has_archive()) && token.is_some() {
                steps.extend(planned(
                    StepKind::AwaitReplay,
                    topology,
                    observed,
                    members,
                    progress,
                    token,
                ));
            }
            steps
        }
        StepKind::AwaitReplay => one(
            to,
            None,
            format!(
                "{to}'s designated primary reports a replayLsn past the token's REDO location (object-store channel; read through pods/proxy)"
            ),
        ),
        StepKind::Promote => one(
            to,
            Some(patch::promote(to, token)),
            format!("{to}'s spec.replica shows the patch"),
        ),
        StepKind::AwaitPromotion => one(
            to,
            None,
            match token {
                Some(_) => {
                    format!("{to}'s status.lastPromotionToken equals the token and it is healthy")
                }
                None => format!("{to} is primary and healthy"),
            },
        ),
        StepKind::Bookkeeping => {
            // The old primary's Demote patch already names the new primary (unless a failover
            // could not reach it), so at run time it is never pending here.
            let demoted = steps_include_demote(progress, observed);
            let actions: Vec<_> = machine::bookkeeping_actions(topology, members, progress, true)
                .into_iter()
                .filter(|(member, _)| !(demoted && *member == progress.from))
                .collect();
            if actions.is_empty() {
                return vec![PlannedStep {
                    step,
                    member: None,
                    patch: None,
                    done_when: "every other member already names the new primary".into(),
                }];
            }
            actions
                .into_iter()
                .map(|(member, patch)| PlannedStep {
                    step,
                    done_when: format!("{member}'s spec.replica shows the patch"),
                    member: Some(member),
                    patch: Some(patch),
                })
                .collect()
        }
        StepKind::ClearToken => one(
            to,
            Some(patch::clear_token()),
            format!("{to}'s spec.replica.promotionToken is gone"),
        ),
        StepKind::RollbackTarget
        | StepKind::HooksBeforeDemotion
        | StepKind::HooksAfterPromotion
        | StepKind::Done => Vec::new(),
    }
}

fn steps_include_demote(progress: &Progress, observed: &Observed) -> bool {
    progress.kind == OperationKind::Switchover
        || observed.get(&progress.from).is_some_and(|m| m.reachable)
}

/// Counts members that are primary by spec; used by tests and by the controller's sanity checks.
pub fn primaries_by_spec(observed: &Observed) -> usize {
    observed
        .members
        .values()
        .filter(|m| m.role() == Some(Role::Primary))
        .count()
}
