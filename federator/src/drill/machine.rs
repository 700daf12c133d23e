//! A running drill as a state machine, decided purely from its status (the durable state), the
//! topology and "now". [`decide`] names the one thing to do next; the executor (`run.rs`) does
//! it, writing the status first whenever the thing is a side effect. Because every fact a step
//! needs to go on (the canary, the switchover asked for and the topology generation it produced,
//! the measurements) is in the status, any controller process can pick a run up where the
//! previous one stopped.
//!
//! | Step | Facts in the status | Next |
//! |---|---|---|
//! | Preflight | (none) | check the topology here, then the databases |
//! | WriteCanary | `canary` | write the canary; start the probe; wait for its first acknowledged write |
//! | Switchover / SwitchBack | `switchovers[leg]` without, then with, `generation` | wait until Ready; ask; wait for the operation of that generation |
//! | Verify / VerifyReturn | the leg's measurements | the new primary takes the drill's write, has the canary, the probe recovered, nothing lost |

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use topology::api::Operation;
use topology::drill_api::{
    Canary, DisasterRecoveryDrill, DisasterRecoveryDrillStatus, DrillPhase, DrillStepName,
};
use topology::{DistributedTopology, StepKind};

use super::hub::{Progress, progress, ready_with, succeeded};

/// Default deadline of each switchover of a drill (`spec.timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the probe writer may take to get its first write acknowledged.
pub const PROBE_START_DEADLINE: Duration = Duration::from_secs(10);
/// How long the new primary may take to accept the drill's own write after the switchover.
pub const VERIFY_DEADLINE: Duration = Duration::from_secs(60);
/// After that, how long the probe writer may take to get a write acknowledged again.
pub const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);
/// How soon to look again at something only this process sees change (the probe's log, the
/// new primary's answer); everything on the hub wakes the controller through its watches.
pub const POLL: Duration = Duration::from_millis(50);

/// This process's probe writer for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeState {
    /// None here (not started yet, or this process took the run over).
    Absent,
    /// Started, no write acknowledged yet.
    Starting,
    /// At least one write acknowledged.
    Writing,
}

/// What [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub drill: &'a DisasterRecoveryDrill,
    /// `None`: the topology does not exist.
    pub topology: Option<&'a DistributedTopology>,
    pub now: Timestamp,
    pub probe: ProbeState,
}

/// Why a run fails, and whether the drill must set `spec.primary` back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
    /// The switchover had not touched a member (no operation, or one still at `Validate`):
    /// set `spec.primary` back, which the controller turns into an abandoned operation. `None`
    /// past `Validate`: the operation is the controller's to finish.
    pub set_back: Option<SetBack>,
    /// The switchover was past `Validate`: say that the drill left it to the controller.
    pub left_to_controller: bool,
}

/// Set `spec.primary` back to `to`, only on the topology as it was seen (`resourceVersion`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetBack {
    pub to: String,
    pub seen: Option<String>,
}

pub fn fail(reason: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        reason,
        message: message.into(),
        set_back: None,
        left_to_controller: false,
    }
}

/// The one thing to do next for a running drill.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Open this step (a status write).
    Begin(DrillStepName),
    /// Preflight passed its topology checks: check the databases of `from` (the primary) and
    /// `spec.to`, then close the step.
    CheckDatabases { from: String },
    /// Write the canary on `on` and record it.
    WriteCanary { on: String },
    /// Start this process's probe writer (first time, or after a takeover).
    StartProbe,
    /// Close the current step as succeeded.
    Complete { message: String },
    /// Nothing to do before `until`, unless the topology changes.
    Wait { until: Timestamp },
    /// Record switchover `leg` as asked for (a status write), then set `spec.primary: to`.
    Request {
        leg: usize,
        from: String,
        to: String,
    },
    /// `spec.primary` already is the leg's `to` (the process stopped between setting it and
    /// recording it): record the generation it produced.
    RecordGeneration { leg: usize, generation: i64 },
    /// The operation of `leg` succeeded: record it and close the step.
    Switched {
        leg: usize,
        operation: Box<Operation>,
    },
    /// Check `primary` after switchover `leg` (the original primary again when `returned`).
    Verify {
        leg: usize,
        primary: String,
        returned: bool,
    },
    /// End the run as failed at the current step.
    Fail(Failure),
    /// Every step succeeded: end the run.
    Succeed,
}

/// The step after `step`, `None` after the last one.
pub fn next_step(step: DrillStepName, return_to_original: bool) -> Option<DrillStepName> {
    use DrillStepName::*;
    match step {
        Preflight => Some(WriteCanary),
        WriteCanary => Some(Switchover),
        Switchover => Some(Verify),
        Verify if return_to_original => Some(SwitchBack),
        Verify => None,
        SwitchBack => Some(VerifyReturn),
        VerifyReturn => None,
    }
}

/// The step a run is at: its last step while that one runs.
pub fn current_step(status: &DisasterRecoveryDrillStatus) -> Option<DrillStepName> {
    status
        .steps
        .last()
        .filter(|s| s.outcome == DrillPhase::Running)
        .map(|s| s.name)
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Pure: what to do next for a drill whose phase is `Running`.
pub fn decide(view: View<'_>) -> Decision {
    let drill = view.drill;
    let status = drill.status.clone().unwrap_or_default();
    let Some(last) = status.steps.last() else {
        return Decision::Begin(DrillStepName::Preflight);
    };
    match last.outcome {
        DrillPhase::Succeeded => {
            return match next_step(last.name, drill.spec.return_to_original) {
                Some(step) => Decision::Begin(step),
                None => Decision::Succeed,
            };
        }
        // A failure is written with the run's end in one status write; a failed step in a
        // running run means someone edited the status by hand.
        DrillPhase::Failed => {
            return Decision::Fail(fail(
                "Inconsistent",
                format!("step {} failed but the run was left Running", last.name),
            ));
        }
        DrillPhase::Running => {}
    }
    let started = last.started_at.0;
    let from = status.from.clone().unwrap_or_default();
    let to = status.to.clone().unwrap_or_else(|| drill.spec.to.clone());
    // Past the canary every step measures with the probe writer: start it again in a
    // process that took the run over.
    let probing = !matches!(
        last.name,
        DrillStepName::Preflight | DrillStepName::WriteCanary
    );
    if probing && view.probe == ProbeState::Absent {
        return Decision::StartProbe;
    }
    match last.name {
        DrillStepName::Preflight => preflight(view),
        DrillStepName::WriteCanary => match (&status.canary, view.probe) {
            (None, _) => Decision::WriteCanary { on: from },
            (Some(_), ProbeState::Absent) => Decision::StartProbe,
            (Some(c), ProbeState::Writing) => Decision::Complete {
                message: format!(
                    "canary {} acknowledged on {}; probe writing every 10 ms",
                    c.value, c.written_on
                ),
            },
            (Some(_), ProbeState::Starting) => {
                if view.now >= after(started, PROBE_START_DEADLINE) {
                    Decision::Fail(fail(
                        "ProbeNotWriting",
                        format!(
                            "the probe writer got no write acknowledged within {}s before the switchover",
                            PROBE_START_DEADLINE.as_secs()
                        ),
                    ))
                } else {
                    Decision::Wait {
                        until: after(view.now, POLL),
                    }
                }
            }
        },
        DrillStepName::Switchover => switch(view, &status, 0, &from, &to, started),
        DrillStepName::SwitchBack => switch(view, &status, 1, &to, &from, started),
        DrillStepName::Verify => Decision::Verify {
            leg: 0,
            primary: to,
            returned: false,
        },
        DrillStepName::VerifyReturn => Decision::Verify {
            leg: 1,
            primary: from,
            returned: true,
        },
    }
}

/// The topology checks of Preflight: Ready and idle, `to` another member.
fn preflight(view: View<'_>) -> Decision {
    let spec = &view.drill.spec;
    let Some(topo) = view.topology else {
        return Decision::Fail(fail(
            "TopologyNotFound",
            format!(
                "DistributedTopology {} does not exist in the drill's namespace (spec.topology)",
                spec.topology
            ),
        ));
    };
    if !topo.spec.members.iter().any(|m| m.name == spec.to) {
        let names: Vec<&str> = topo.spec.members.iter().map(|m| m.name.as_str()).collect();
        return Decision::Fail(fail(
            "UnknownMember",
            format!(
                "spec.to {} is not a member of {}; members: {}",
                spec.to,
                spec.topology,
                names.join(", ")
            ),
        ));
    }
    let from = topo.spec.primary.clone();
    if let Some(op) = topo.status.as_ref().and_then(|s| s.operation.as_ref()) {
        return Decision::Fail(fail(
            "OperationInProgress",
            format!(
                "{} has an operation in progress ({} → {}, at {}); a drill starts only on an idle topology",
                spec.topology, op.from, op.to, op.step
            ),
        ));
    }
    if let Err(why) = ready_with(topo, &from) {
        return Decision::Fail(fail(
            "TopologyNotReady",
            format!(
                "{} is {why}; a drill starts only on a healthy topology",
                spec.topology
            ),
        ));
    }
    if from == spec.to {
        return Decision::Fail(fail(
            "AlreadyPrimary",
            format!(
                "{} already is the primary of {}; drill to another member",
                spec.to, spec.topology
            ),
        ));
    }
    Decision::CheckDatabases { from }
}

/// Switchover `leg` from `from` to `to`, a step opened at `started`.
fn switch(
    view: View<'_>,
    status: &DisasterRecoveryDrillStatus,
    leg: usize,
    from: &str,
    to: &str,
    started: Timestamp,
) -> Decision {
    let spec = &view.drill.spec;
    let name = &spec.topology;
    let timeout = spec.timeout.map(|d| d.as_std()).unwrap_or(DEFAULT_TIMEOUT);
    let Some(topo) = view.topology else {
        return Decision::Fail(fail(
            "TopologyNotFound",
            format!("DistributedTopology {name} was deleted during the drill"),
        ));
    };
    // Not asked for yet, or asked for (recorded) but `spec.primary` not set yet because the
    // process stopped in between or the topology changed under the patch: ask once the topology
    // is Ready with `from` as primary. The patch carries the topology's resourceVersion, so it
    // only lands on the topology this decision saw.
    let asked = status.switchovers.get(leg);
    let recorded = asked.and_then(|a| a.generation);
    let Some(generation) = recorded.or_else(|| {
        (asked.is_some() && topo.spec.primary == to)
            .then(|| topo.metadata.generation.unwrap_or_default())
    }) else {
        // After the first move the old primary rejoins as a replica; the controller refuses a
        // switchover to a member that is not ready yet, so wait for the topology to settle.
        return match ready_with(topo, from) {
            Ok(()) => Decision::Request {
                leg,
                from: from.to_owned(),
                to: to.to_owned(),
            },
            Err(why) if view.now >= after(started, timeout) => Decision::Fail(fail(
                "TopologyNotReady",
                format!(
                    "{name} is {why} after {}s; nothing was changed",
                    timeout.as_secs()
                ),
            )),
            Err(_) => Decision::Wait {
                until: after(started, timeout),
            },
        };
    };
    if recorded.is_none() {
        // `spec.primary` already is `to`: the process stopped between setting it and
        // recording it. Record the generation it produced; never ask twice.
        return Decision::RecordGeneration { leg, generation };
    }
    let asked = asked.expect("a recorded generation belongs to an asked-for switchover");
    let requested = asked.requested_at.as_ref().map(|t| t.0).unwrap_or(started);
    let deadline = after(requested, timeout);
    let timed_out = view.now >= deadline;
    let waited = format!("{}s", timeout.as_secs());
    // Untouched (no operation yet, or still at Validate): set spec.primary back.
    let back_off = |reason: &'static str, message: String, step: Option<StepKind>| {
        let untouched = step.is_none_or(|s| s == StepKind::Validate);
        Decision::Fail(Failure {
            reason,
            message,
            set_back: untouched.then(|| SetBack {
                to: from.to_owned(),
                seen: topo.metadata.resource_version.clone(),
            }),
            left_to_controller: !untouched,
        })
    };
    match progress(topo, generation, from, to) {
        Progress::Ended(op) if succeeded(&op) => Decision::Switched { leg, operation: op },
        Progress::Ended(op) => Decision::Fail(fail(
            "SwitchoverFailed",
            format!(
                "operation {} {from} → {to} ended {:?}; the controller left {from} primary (see `federator status {name}`)",
                op.id, op.outcome
            ),
        )),
        Progress::Held {
            step,
            reason,
            message,
        } => back_off(
            "SwitchoverHeld",
            format!("the switchover {from} → {to} holds at {step} ({reason}): {message}"),
            Some(step),
        ),
        Progress::NotStarted if timed_out => back_off(
            "SwitchoverNotStarted",
            format!(
                "the controller did not start the switchover {from} → {to} within {waited} (is `federator controller` running and leading?)"
            ),
            None,
        ),
        Progress::Running { step } if timed_out => back_off(
            "SwitchoverTimedOut",
            format!("the switchover {from} → {to} was still at {step} after {waited}"),
            Some(step),
        ),
        Progress::NotStarted | Progress::Running { .. } => Decision::Wait { until: deadline },
    }
}

/// What Verify found on the new primary at one look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFacts {
    /// The drill's own write was acknowledged.
    pub writable: bool,
    /// The canary is there (`None`: not looked at, the write failed).
    pub canary_found: Option<bool>,
    /// The probe writer got a write acknowledged after its first failure since the switchover
    /// was asked for (or never failed).
    pub recovered: bool,
    /// Probe writes acknowledged (this process's probe) up to the look.
    pub acknowledged: u64,
    /// Of those, the sequence numbers the new primary lacks.
    pub lost: Vec<i64>,
    /// RPO in milliseconds (see `measure::rpo`).
    pub rpo_millis: u64,
}

/// What Verify does with what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Look again at `until`.
    Retry {
        until: Timestamp,
    },
    Fail(Failure),
}

/// Pure: Verify's verdict on `primary` for a step opened at `started`.
pub fn judge_verify(
    facts: &VerifyFacts,
    primary: &str,
    canary: &Canary,
    started: Timestamp,
    now: Timestamp,
) -> Verdict {
    if !facts.writable {
        return if now >= after(started, VERIFY_DEADLINE) {
            Verdict::Fail(fail(
                "NewPrimaryNotWritable",
                format!(
                    "{primary} did not accept a write within {}s after the switchover",
                    VERIFY_DEADLINE.as_secs()
                ),
            ))
        } else {
            Verdict::Retry {
                until: after(now, Duration::from_millis(200)),
            }
        };
    }
    if facts.canary_found == Some(false) {
        return Verdict::Fail(fail(
            "CanaryMissing",
            format!(
                "{primary} does not have the canary {} written on {}",
                canary.value, canary.written_on
            ),
        ));
    }
    if !facts.recovered {
        return if now >= after(started, VERIFY_DEADLINE + RECOVERY_DEADLINE) {
            Verdict::Fail(fail(
                "WritesNotRecovered",
                format!(
                    "the probe writer got no write acknowledged within {}s after its first failure (on {primary})",
                    RECOVERY_DEADLINE.as_secs()
                ),
            ))
        } else {
            Verdict::Retry {
                until: after(now, POLL),
            }
        };
    }
    if !facts.lost.is_empty() {
        return Verdict::Fail(fail(
            "AcknowledgedWritesLost",
            format!(
                "{primary} lacks {} of {} acknowledged probe writes (seq {:?}…); RPO {} ms",
                facts.lost.len(),
                facts.acknowledged,
                &facts.lost[..facts.lost.len().min(5)],
                facts.rpo_millis
            ),
        ));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::drill::fixtures::{at, drill, micro, op, running, step, topo};

    fn decide_at(
        d: &DisasterRecoveryDrill,
        t: Option<&DistributedTopology>,
        now: i64,
        probe: ProbeState,
    ) -> Decision {
        decide(View {
            drill: d,
            topology: t,
            now: at(now),
            probe,
        })
    }

    #[test]
    fn steps_follow_in_order_and_the_return_legs_only_with_return() {
        use DrillStepName::*;
        let chain = |ret| {
            let mut steps = vec![Preflight];
            while let Some(n) = next_step(*steps.last().unwrap(), ret) {
                steps.push(n);
            }
            steps
        };
        assert_eq!(chain(false), [Preflight, WriteCanary, Switchover, Verify]);
        assert_eq!(
            chain(true),
            [
                Preflight,
                WriteCanary,
                Switchover,
                Verify,
                SwitchBack,
                VerifyReturn
            ]
        );
        let fresh = drill(false, json!({"phase": "Running"}));
        let t = topo(2, "pg-a", Value::Null, json!([]));
        assert_eq!(
            decide_at(&fresh, Some(&t), 0, ProbeState::Absent),
            Decision::Begin(Preflight)
        );
        let mut done = running(
            &["Preflight", "WriteCanary", "Switchover", "Verify"],
            json!([]),
        );
        done["steps"][3] = step("Verify", 3, "Succeeded");
        assert_eq!(
            decide_at(
                &drill(false, done.clone()),
                Some(&t),
                9,
                ProbeState::Writing
            ),
            Decision::Succeed
        );
        assert_eq!(
            decide_at(&drill(true, done), Some(&t), 9, ProbeState::Writing),
            Decision::Begin(SwitchBack)
        );
    }

    #[test]
    fn preflight_checks_the_topology_before_any_database() {
        let d = drill(
            false,
            json!({"phase": "Running", "steps": [step("Preflight", 0, "Running")]}),
        );
        let ready = topo(2, "pg-a", Value::Null, json!([]));
        assert_eq!(
            decide_at(&d, Some(&ready), 0, ProbeState::Absent),
            Decision::CheckDatabases {
                from: "pg-a".into()
            }
        );
        let busy = topo(2, "pg-a", op(2, "Demote", json!({})), json!([]));
        let Decision::Fail(f) = decide_at(&d, Some(&busy), 0, ProbeState::Absent) else {
            panic!("not refused");
        };
        assert_eq!(f.reason, "OperationInProgress");
        assert_eq!(f.set_back, None, "nothing was changed: nothing to set back");
        let on_b = topo(2, "pg-b", Value::Null, json!([]));
        let Decision::Fail(f) = decide_at(&d, Some(&on_b), 0, ProbeState::Absent) else {
            panic!("not refused");
        };
        assert_eq!(f.reason, "AlreadyPrimary");
        let Decision::Fail(f) = decide_at(&d, None, 0, ProbeState::Absent) else {
            panic!("not refused");
        };
        assert!(f.message.contains("spec.topology"), "{f:?}");
    }

    #[test]
    fn a_process_that_took_the_run_over_starts_its_probe_before_anything_else() {
        let t = topo(2, "pg-a", Value::Null, json!([]));
        for steps in [
            &["Preflight", "WriteCanary", "Switchover"][..],
            &["Preflight", "WriteCanary", "Switchover", "Verify"][..],
        ] {
            let d = drill(true, running(steps, json!([])));
            assert_eq!(
                decide_at(&d, Some(&t), 3, ProbeState::Absent),
                Decision::StartProbe
            );
        }
        // At WriteCanary without a canary: the canary first (ON CONFLICT DO NOTHING).
        let mut s = running(&["Preflight", "WriteCanary"], json!([]));
        s["canary"] = Value::Null;
        assert_eq!(
            decide_at(&drill(false, s), Some(&t), 1, ProbeState::Absent),
            Decision::WriteCanary { on: "pg-a".into() }
        );
    }

    #[test]
    fn a_switchover_is_asked_for_once_ready_then_followed_by_its_generation() {
        let steps = ["Preflight", "WriteCanary", "Switchover"];
        let d = drill(false, running(&steps, json!([])));
        let ready = topo(2, "pg-a", Value::Null, json!([]));
        assert_eq!(
            decide_at(&d, Some(&ready), 3, ProbeState::Writing),
            Decision::Request {
                leg: 0,
                from: "pg-a".into(),
                to: "pg-b".into()
            }
        );
        // Asked for, spec.primary not set yet (stopped between the two): ask again.
        let asked = json!([{"from": "pg-a", "to": "pg-b", "requestedAt": micro(3),
            "acknowledgedWrites": 0, "lostWrites": 0, "rpoMillis": 0}]);
        let d = drill(false, running(&steps, asked.clone()));
        assert!(matches!(
            decide_at(&d, Some(&ready), 4, ProbeState::Writing),
            Decision::Request { leg: 0, .. }
        ));
        // spec.primary set, generation not recorded: record it, never ask twice.
        let moved = topo(3, "pg-b", Value::Null, json!([]));
        assert_eq!(
            decide_at(&d, Some(&moved), 4, ProbeState::Writing),
            Decision::RecordGeneration {
                leg: 0,
                generation: 3
            }
        );
        let mut with_gen = asked;
        with_gen[0]["generation"] = json!(3);
        let d = drill(false, running(&steps, with_gen));
        let running_op = topo(3, "pg-b", op(3, "AwaitToken", json!({})), json!([]));
        assert_eq!(
            decide_at(&d, Some(&running_op), 10, ProbeState::Writing),
            Decision::Wait { until: at(3 + 300) },
            "the deadline counts from the request recorded in the status"
        );
        let done = topo(
            3,
            "pg-b",
            Value::Null,
            json!([op(
                3,
                "ClearToken",
                json!({"outcome": "Succeeded", "finishedAt": "2026-11-23T09:00:07.000000Z"})
            )]),
        );
        let Decision::Switched { leg: 0, operation } =
            decide_at(&d, Some(&done), 10, ProbeState::Writing)
        else {
            panic!("not switched");
        };
        assert_eq!(operation.id, "3-pg-a-to-pg-b");
    }

    #[test]
    fn a_failed_switchover_sets_spec_primary_back_only_while_nothing_was_touched() {
        let steps = ["Preflight", "WriteCanary", "Switchover"];
        let asked = json!([{"from": "pg-a", "to": "pg-b", "requestedAt": micro(3), "generation": 3,
            "acknowledgedWrites": 0, "lostWrites": 0, "rpoMillis": 0}]);
        let d = drill(false, running(&steps, asked));
        let held = |step: &str| {
            topo(
                3,
                "pg-b",
                op(
                    3,
                    step,
                    json!({"hold": {"reason": "MemberNotReady", "message": "m"}}),
                ),
                json!([]),
            )
        };
        let Decision::Fail(f) = decide_at(&d, Some(&held("Validate")), 10, ProbeState::Writing)
        else {
            panic!("not failed");
        };
        assert_eq!(
            (f.reason, f.set_back.map(|b| b.to), f.left_to_controller),
            ("SwitchoverHeld", Some("pg-a".to_owned()), false)
        );
        let Decision::Fail(f) = decide_at(&d, Some(&held("AwaitToken")), 10, ProbeState::Writing)
        else {
            panic!("not failed");
        };
        assert_eq!((f.set_back, f.left_to_controller), (None, true));
        // Never started within the timeout: set back.
        let idle = topo(3, "pg-b", Value::Null, json!([]));
        let Decision::Fail(f) = decide_at(&d, Some(&idle), 3 + 300, ProbeState::Writing) else {
            panic!("not failed");
        };
        assert_eq!(
            (f.reason, f.set_back.map(|b| b.to)),
            ("SwitchoverNotStarted", Some("pg-a".to_owned()))
        );
    }

    #[test]
    fn verify_retries_within_its_deadlines_and_names_what_failed() {
        let canary = Canary {
            value: "d-1-canary".into(),
            written_on: "pg-a".into(),
            written_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(at(0)),
            found_on_new_primary: None,
            found_after_return: None,
        };
        let facts = |writable, found, recovered, lost: Vec<i64>| VerifyFacts {
            writable,
            canary_found: found,
            recovered,
            acknowledged: 10,
            lost,
            rpo_millis: 0,
        };
        let judge = |f: &VerifyFacts, now| judge_verify(f, "pg-b", &canary, at(0), at(now));
        assert!(matches!(
            judge(&facts(false, None, false, vec![]), 10),
            Verdict::Retry { .. }
        ));
        let Verdict::Fail(f) = judge(&facts(false, None, false, vec![]), 60) else {
            panic!()
        };
        assert_eq!(f.reason, "NewPrimaryNotWritable");
        let Verdict::Fail(f) = judge(&facts(true, Some(false), true, vec![]), 1) else {
            panic!()
        };
        assert!(f.message.contains("d-1-canary"), "{f:?}");
        assert!(matches!(
            judge(&facts(true, Some(true), false, vec![]), 70),
            Verdict::Retry { .. }
        ));
        let Verdict::Fail(f) = judge(&facts(true, Some(true), false, vec![]), 90) else {
            panic!()
        };
        assert_eq!(f.reason, "WritesNotRecovered");
        let Verdict::Fail(f) = judge(&facts(true, Some(true), true, vec![7, 8]), 1) else {
            panic!()
        };
        assert_eq!(f.reason, "AcknowledgedWritesLost");
        assert_eq!(
            judge(&facts(true, Some(true), true, vec![]), 1),
            Verdict::Pass
        );
    }

    /// Operation states a topology can show for the leg's generation.
    fn operation_strategy() -> impl Strategy<Value = (Value, Value)> {
        let steps = [
            "Validate",
            "Demote",
            "AwaitToken",
            "AwaitPromotion",
            "Bookkeeping",
            "ClearToken",
        ];
        prop_oneof![
            Just((Value::Null, json!([]))),
            (0..steps.len(), any::<bool>()).prop_map(move |(i, held)| {
                let extra = if held {
                    json!({"hold": {"reason": "R", "message": "m"}})
                } else {
                    json!({})
                };
                (op(3, steps[i], extra), json!([]))
            }),
            any::<bool>().prop_map(|ok| {
                let outcome = if ok { "Succeeded" } else { "Abandoned" };
                (
                    Value::Null,
                    json!([op(
                        3,
                        "ClearToken",
                        json!({"outcome": outcome, "finishedAt": "2026-11-23T09:00:07.000000Z"})
                    )]),
                )
            }),
        ]
    }

    proptest! {
        /// Whatever the drill's status says about the switchover leg (nothing, asked for,
        /// generation recorded) and whatever the topology shows, the drill sets `spec.primary`
        /// to `to` only when it has not recorded the switchover's generation yet, the topology
        /// does not already say `to` and is Ready and idle with `from` as primary; and it sets
        /// it back only while the operation has not passed Validate.
        #[test]
        fn spec_primary_is_set_at_most_once_and_set_back_only_before_members_are_touched(
            asked in 0..3usize,
            spec_primary_moved in any::<bool>(),
            (operation, history) in operation_strategy(),
            now in 3i64..700,
        ) {
            let steps = ["Preflight", "WriteCanary", "Switchover"];
            let switchovers = match asked {
                0 => json!([]),
                1 => json!([{"from": "pg-a", "to": "pg-b", "requestedAt": micro(3),
                    "acknowledgedWrites": 0, "lostWrites": 0, "rpoMillis": 0}]),
                _ => json!([{"from": "pg-a", "to": "pg-b", "requestedAt": micro(3), "generation": 3,
                    "acknowledgedWrites": 0, "lostWrites": 0, "rpoMillis": 0}]),
            };
            let d = drill(false, running(&steps, switchovers));
            let primary = if spec_primary_moved { "pg-b" } else { "pg-a" };
            let t = topo(3, primary, operation.clone(), history);
            let decision = decide_at(&d, Some(&t), now, ProbeState::Writing);
            if let Decision::Request { .. } = decision {
                prop_assert!(asked < 2, "asked again after the generation was recorded");
                prop_assert!(!spec_primary_moved, "asked while spec.primary already says to");
                prop_assert!(
                    ready_with(&t, "pg-a").is_ok(),
                    "asked while the topology is not Ready and idle with pg-a primary"
                );
            }
            if let Decision::Fail(Failure { set_back: Some(_), .. }) = &decision {
                let step = operation.get("step").and_then(Value::as_str);
                prop_assert!(step.is_none() || step == Some("Validate"), "set back at {step:?}");
            }
        }
    }
}
