//! One reconcile's decision as an ordered list of [`Effect`]s, computed purely from the topology
//! as the hub has it, the observation of its members and the ledger's [`View`]: the status
//! decision ([`decide_status`]), then the patch gate, the dry runs before a switchover's first
//! change (and [`refuse`] when they were refused), the rotation policy, and whether the status
//! is written now or held. `reconcile.rs` only executes the effects, in order.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use topology::api::{Member, Outcome};
use topology::plan::{Action, Desired};
use topology::{
    DistributedTopology, DistributedTopologyStatus, Observed, OperationKind, StepKind, Topology,
};

use super::autofailover::AutoStart;
use super::rotation::{self, Start, sooner};
use super::{Note, decide_status, refuse, stop_for_deletion};
use crate::controller::ledger::{SETTLE, View, Write};
use crate::controller::observe::Observation;
use crate::members::ClusterKey;

/// The finalizer on every topology this controller manages: a deletion waits for the controller
/// to finish (or stop) the operation in flight and record it, then the controller removes it.
pub const FINALIZER: &str = "federator.dev/topology";

/// What one reconcile decides from.
pub struct Input<'a> {
    /// The topology as the hub's store has it (a few milliseconds behind this process's own last
    /// status write at times: the write's precondition then refuses the decision, 409).
    pub stored: &'a DistributedTopology,
    pub observation: &'a Observation,
    /// What the ledger remembered for this topology when the reconcile started.
    pub ledger: &'a View,
    /// Wall-clock time, for the step log and conditions.
    pub now: Timestamp,
}

/// One thing a reconcile does, in the order [`decide`] lists them.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Before the first change of a switchover: these patches, each sent to its member as a
    /// server-side dry run. If any is refused, nothing else of this plan happens: the reconcile
    /// decides again with the refusals ([`decide`]'s `refused`), which holds the operation.
    DryRun(Vec<Action>),
    /// The status (step log included): written now with a resourceVersion precondition, held in
    /// the ledger, or already on the hub. Whatever the ledger held before is replaced.
    Status(Write),
    /// Steps and the operation that this decision finished, with their durations, and the
    /// decided status (its rotations are counted): metrics.
    Finished {
        steps: Vec<(StepKind, Duration)>,
        /// Hooks that ended: phase, ok, duration.
        hooks: Vec<(&'static str, bool, Duration)>,
        operation: Option<(Outcome, Duration)>,
        decided: Box<DistributedTopologyStatus>,
    },
    /// Events for the ordered publisher, off the reconcile's path; Normal ones raised while an
    /// operation runs may wait for it to end or hold. Always present: an empty batch outside an
    /// operation releases what the publisher holds.
    Events {
        notes: Vec<Note>,
        during_operation: bool,
    },
    /// An Event published at once (a rotation skipped or held).
    Publish(Note),
    /// `spec.primary` set for a due rotation, on the version the status write just returned;
    /// the reconcile ends there (the spec change comes back through the watch).
    StartRotation(Start),
    /// `spec.primary` and `spec.failover` set for an automatic failover the status write just
    /// recorded (the explicit failover path takes it from there); the reconcile ends there.
    StartFailover(AutoStart),
    /// The patch decided again is the one the member accepted, and its watch has not shown it
    /// yet: not sent (the reconcile comes back after `SETTLE` at the latest).
    Withheld(Action),
    /// [`FINALIZER`] added to a topology that lacks it, before anything else is done for it;
    /// the reconcile ends there (the changed object comes back through the watch).
    AddFinalizer,
    /// The topology is being deleted and nothing is in flight any more: [`FINALIZER`] removed
    /// (after the status write and the Events that record it); the reconcile ends there.
    Release,
    /// The one member patch, sent only after the status write succeeded, only while leading.
    Patch {
        action: Action,
        /// The running operation it belongs to (what the ledger remembers it by).
        operation: Option<String>,
        /// The member Cluster it goes to (what the ledger remembers it by).
        cluster: Option<ClusterKey>,
        /// When the member change this patch answers was delivered (the start of
        /// `federator_reaction_seconds`); `None` for Demote, which answers the hub.
        answers: Option<Instant>,
    },
}

/// What one reconcile does: its effects in order, then when to come back.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub effects: Vec<Effect>,
    /// Reconcile again after this long if nothing else wakes the topology: a deadline, a retry
    /// of a step, the end of a held write's window, a rotation's schedule.
    pub requeue_after: Option<Duration>,
    /// The operation the decision is about (running, or finished by it), for the logs.
    pub operation: Option<String>,
}

/// Decides one reconcile of `input`. `refused`: the refusals of the dry runs a previous call
/// asked for ([`Effect::DryRun`]); the operation then holds `ValidationFailed` instead.
pub fn decide(input: &Input<'_>, refused: Option<&str>) -> Plan {
    let stored = input.stored;
    let ours = stored
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    let deleting = stored.metadata.deletion_timestamp.is_some();
    if !ours {
        // No member is touched for a topology whose deletion the controller would not see.
        // Being deleted without it: nothing of ours is in flight (it is added first).
        return Plan {
            effects: if deleting {
                Vec::new()
            } else {
                vec![Effect::AddFinalizer]
            },
            requeue_after: None,
            operation: None,
        };
    }
    let on_top = input.ledger.on_top(stored);
    // Decide on top of what was held back, not yet written.
    let topo = on_top.as_ref().unwrap_or(stored);
    let now = input.now;
    let observation = input.observation;
    let mut decided = decide_status(topo, observation, now);
    let operation = decided.status.operation.as_ref().map(|op| op.id.clone());
    let mut effects = Vec::new();
    let mut requeue_after = decided.requeue_after;

    let cluster = decided
        .effect
        .as_ref()
        .and_then(|a| cluster_of(&topo.spec.members, &a.member));
    if let Some(action) = &decided.effect
        && let Some(cluster) = &cluster
        && input
            .ledger
            .awaiting_watch(operation.as_deref(), action, cluster)
    {
        // Accepted already; the member's watch event (on its way) wakes us with it applied, and
        // if it never shows it, this reconcile comes back when the gate's window ends.
        effects.push(Effect::Withheld(action.clone()));
        decided.effect = None;
        requeue_after = sooner(requeue_after, Some(SETTLE));
    }

    // Before the first change of a switchover: would every member accept its patch?
    if decided
        .effect
        .as_ref()
        .is_some_and(|a| a.step == StepKind::Demote)
        && let Ok(topology) = Topology::from_spec(&topo.spec)
    {
        let problems = match refused {
            Some(problems) => Some(problems.to_owned()),
            None => match trials(&topology, &observation.observed) {
                Ok(trials) => {
                    effects.push(Effect::DryRun(trials));
                    None
                }
                Err(problem) => Some(problem),
            },
        };
        if let Some(problems) = problems {
            let previous = topo
                .status
                .as_ref()
                .and_then(|s| s.operation.as_ref())
                .and_then(|op| op.hold.as_ref());
            refuse(
                &mut decided,
                previous,
                problems,
                topo.metadata.generation,
                now,
            );
        }
    }

    if deleting {
        stop_for_deletion(&mut decided, topo.metadata.generation, now);
    }

    // Scheduled rotations, against the status about to be written: a due rotation is recorded
    // as handled in that write, before `spec.primary` is set.
    let rotation = if deleting {
        rotation::Evaluated::default()
    } else {
        rotation::evaluate(&topo.spec, observation, &mut decided.status, now)
    };
    let release = deleting && decided.status.operation.is_none() && decided.effect.is_none();
    if release {
        let members: Vec<&str> = topo.spec.members.iter().map(|m| m.name.as_str()).collect();
        decided.events.push(Note {
            warning: false,
            reason: "Released".into(),
            action: "Release",
            message: format!(
                "the topology is deleted; Federator no longer manages {} (primary now: {})",
                members.join(", "),
                decided.status.observed_primary.as_deref().unwrap_or("none")
            ),
        });
    }

    // The status is written before any side effect (also when unchanged, if a patch follows:
    // the precondition proves the step log we act on is current). Inside a running operation a
    // change with no patch after it may be held (`ledger.rs`).
    let auto_start = decided.auto_start.take();
    let patch_follows =
        decided.effect.is_some() || rotation.start.is_some() || auto_start.is_some();
    // A hook runs only once the step log on the hub names it: entering one is written at once.
    let hook_follows = running_hook(&decided.status).is_some()
        && running_hook(&decided.status) != stored.status.as_ref().and_then(running_hook);
    let write = if release && decided.finished_operation.is_none() {
        // The object goes with this reconcile: only an operation it ended is worth recording
        // (the Events are what remains); a member's news would be one more hub write for nothing.
        Write::Nothing
    } else {
        input
            .ledger
            .write(stored, &decided.status, patch_follows || hook_follows)
    };
    if let Write::Later(held) = &write {
        requeue_after = sooner(requeue_after, Some(held.after));
    }
    effects.push(Effect::Status(write));
    effects.push(Effect::Finished {
        steps: decided.finished_steps,
        hooks: decided.finished_hooks,
        operation: decided.finished_operation,
        decided: Box::new(decided.status.clone()),
    });
    let during_operation = decided
        .status
        .operation
        .as_ref()
        .is_some_and(|op| op.outcome.is_none() && op.hold.is_none());
    effects.push(Effect::Events {
        notes: decided.events,
        during_operation,
    });
    effects.extend(rotation.events.into_iter().map(Effect::Publish));

    if release {
        effects.push(Effect::Release);
        requeue_after = None;
    } else if let Some(start) = auto_start.filter(|_| decided.effect.is_none()) {
        effects.push(Effect::StartFailover(start));
        requeue_after = None;
    } else if let Some(start) = rotation.start {
        effects.push(Effect::StartRotation(start));
        requeue_after = None;
    } else if let Some(action) = decided.effect {
        let answers = (action.step != StepKind::Demote)
            .then(|| input.ledger.last_change())
            .flatten();
        effects.push(Effect::Patch {
            action,
            operation: operation.clone(),
            cluster,
            answers,
        });
        // The member's watcher sees the change and wakes us; no timer needed.
        requeue_after = None;
    } else {
        requeue_after = sooner(requeue_after, rotation.requeue_after);
    }
    // The logs name the operation running, or the one this decision finished.
    let finished = decided
        .finished_operation
        .and(decided.status.history.last());
    Plan {
        effects,
        requeue_after,
        operation: operation.or_else(|| finished.map(|op| op.id.clone())),
    }
}

/// The Demote patch and every Bookkeeping patch of the switchover about to start: what the dry
/// runs try, before the first real change (RBAC, the CNPG webhook and the CRD schema judge them
/// all while nothing has changed yet).
fn trials(topology: &Topology, observed: &Observed) -> Result<Vec<Action>, String> {
    let desired = Desired {
        topology,
        to: topology.primary(),
        kind: OperationKind::Switchover,
    };
    let plan = topology::plan(observed, &desired).map_err(|e| e.to_string())?;
    Ok(plan
        .steps
        .into_iter()
        .filter(|s| matches!(s.step, StepKind::Demote | StepKind::Bookkeeping))
        .filter_map(|step| {
            Some(Action {
                step: step.step,
                member: step.member?,
                patch: step.patch?,
            })
        })
        .collect())
}

/// The running operation's hook step and hook index, while it runs a hook.
fn running_hook(status: &DistributedTopologyStatus) -> Option<(StepKind, u32)> {
    let op = status.operation.as_ref()?;
    let index = op.hooks.as_ref()?.running?;
    op.step.is_hooks().then_some((op.step, index))
}

/// The Cluster that topology member `name` stands for.
fn cluster_of(members: &[Member], name: &str) -> Option<ClusterKey> {
    members
        .iter()
        .find(|m| m.name == name)
        .map(ClusterKey::of_member)
}
