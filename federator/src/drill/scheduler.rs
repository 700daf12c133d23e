//! Drills in the controller process: on every tick the leader lists the drills and starts the
//! ones that are due — a drill created without `federator drill` (e.g. `kubectl apply`) once per
//! generation, a scheduled drill at each scheduled time — and marks as failed the runs a previous
//! controller left `Running`. What to do with one drill is decided by [`plan`], a pure function
//! of the drill and the time (tests pass fixed instants); the loop takes "now" from the
//! controller's clock (the system clock, or in end-to-end tests `--unsafe-test-clock`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use topology::drill_api::{
    DisasterRecoveryDrill, DrillFailure, DrillPhase, DrillStepName, RUN_BY_ANNOTATION, condition,
};

use super::hub::Hub;
use super::runner::{self, RunOptions};
use super::schedule::{Due, Schedule};
use crate::controller::{Clock, Leadership};

/// How often the leader looks at the drills.
pub const TICK: Duration = Duration::from_secs(2);
/// Prefix of `status.runner` for runs started by a controller.
pub const CONTROLLER_RUNNER: &str = "controller/";

/// What the controller does about one drill now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Start a run (for the scheduled instant, if scheduled).
    Run {
        scheduled_for: Option<Timestamp>,
    },
    /// Record when the next scheduled run is.
    SetNext(Option<Timestamp>),
    /// A run a controller started is `Running` but no run is in flight here: the controller
    /// that ran it stopped. Mark it failed (it never patched members; see the topology).
    MarkInterrupted,
    /// The schedule cannot be read: say so in the status (once).
    Invalid(String),
}

/// Pure: what to do with `drill` at `now`; `running_here` says whether this process runs it.
pub fn plan(drill: &DisasterRecoveryDrill, now: Timestamp, running_here: bool) -> Action {
    if running_here {
        return Action::Nothing;
    }
    let status = drill.status.clone().unwrap_or_default();
    if status.phase == Some(DrillPhase::Running) {
        let ours = status
            .runner
            .as_deref()
            .is_some_and(|r| r.starts_with(CONTROLLER_RUNNER));
        return if ours {
            Action::MarkInterrupted
        } else {
            Action::Nothing
        };
    }
    let Some(spec) = &drill.spec.schedule else {
        let by_cli = drill.annotations().contains_key(RUN_BY_ANNOTATION);
        let ran = status.observed_generation.is_some()
            && status.observed_generation == drill.metadata.generation;
        return if by_cli || ran {
            Action::Nothing
        } else {
            Action::Run {
                scheduled_for: None,
            }
        };
    };
    let schedule = match Schedule::parse(spec) {
        Ok(s) => s,
        Err(e) => {
            let said = status
                .failure
                .as_ref()
                .is_some_and(|f| f.message == e.to_string());
            return if said {
                Action::Nothing
            } else {
                Action::Invalid(e.to_string())
            };
        }
    };
    if spec.suspend {
        return Action::Nothing;
    }
    let created = drill
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    match schedule.due(status.last_schedule_time.map(|t| t.0), created, now) {
        Due::Now { at } => Action::Run {
            scheduled_for: Some(at),
        },
        Due::Later { next } if status.next_schedule_time.map(|t| t.0) != next => {
            Action::SetNext(next)
        }
        Due::Later { .. } => Action::Nothing,
    }
}

/// The drill loop of `federator controller`; returns when `shutdown` completes.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    leader: Leadership,
    identity: String,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let in_flight: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    let api: Api<DisasterRecoveryDrill> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if !leader.is_leader() {
            continue;
        }
        let drills = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                // No CRD installed yet, or the hub is unreachable: try again at the next tick.
                tracing::debug!(error = %e, "listing DisasterRecoveryDrills");
                continue;
            }
        };
        let now = clock.now();
        for drill in drills {
            let ns = drill.namespace().unwrap_or_default();
            let key = (ns.clone(), drill.name_any());
            let here = in_flight.lock().map(|s| s.contains(&key)).unwrap_or(true);
            let action = plan(&drill, now, here);
            if action == Action::Nothing {
                continue;
            }
            let hub = Hub::new(client.clone(), &ns, identity.clone());
            match action {
                Action::Nothing => {}
                Action::Run { scheduled_for } => {
                    let busy = in_flight
                        .lock()
                        .map(|s| s.iter().any(|(n, _)| *n == ns) && !s.is_empty())
                        .unwrap_or(true);
                    // One drill at a time per namespace: two drills of one topology would
                    // fight over its spec.primary (the second fails its preflight anyway).
                    if busy {
                        continue;
                    }
                    if let Ok(mut s) = in_flight.lock() {
                        s.insert(key.clone());
                    }
                    let in_flight = in_flight.clone();
                    let options = RunOptions {
                        runner: format!("{CONTROLLER_RUNNER}{identity}"),
                        scheduled_for,
                        ..RunOptions::default()
                    };
                    tracing::info!(drill = %key.1, namespace = %key.0, ?scheduled_for, "starting a drill");
                    tokio::spawn(async move {
                        let report = runner::run(&hub, &drill, options).await;
                        tracing::info!(drill = %key.1, phase = ?report.phase, "drill ended");
                        if let Ok(mut s) = in_flight.lock() {
                            s.remove(&key);
                        }
                    });
                }
                Action::SetNext(next) => {
                    let mut status = drill.status.clone().unwrap_or_default();
                    status.next_schedule_time = next.map(Time);
                    if let Err(e) = hub.save(&key.1, &status).await {
                        tracing::warn!(error = %e, "recording the next drill time");
                    }
                }
                Action::MarkInterrupted => {
                    let mut status = drill.status.clone().unwrap_or_default();
                    let step = status
                        .steps
                        .last()
                        .map(|s| s.name)
                        .unwrap_or(DrillStepName::Preflight);
                    let message = format!(
                        "the controller running it ({}) stopped at {step}; the drill only ever set spec.primary of {}: check it with `federator status`",
                        status.runner.as_deref().unwrap_or("?"),
                        drill.spec.topology
                    );
                    interrupt(
                        &mut status,
                        step,
                        "Interrupted",
                        &message,
                        drill.metadata.generation,
                    );
                    if let Err(e) = hub.save(&key.1, &status).await {
                        tracing::warn!(error = %e, "marking an interrupted drill");
                    }
                    hub.event(&drill, true, "DrillFailed", &message).await;
                }
                Action::Invalid(message) => {
                    let mut status = drill.status.clone().unwrap_or_default();
                    interrupt(
                        &mut status,
                        DrillStepName::Preflight,
                        "InvalidSchedule",
                        &message,
                        drill.metadata.generation,
                    );
                    if let Err(e) = hub.save(&key.1, &status).await {
                        tracing::warn!(error = %e, "reporting an invalid drill schedule");
                    }
                    hub.event(&drill, true, "InvalidSchedule", &message).await;
                }
            }
        }
    }
}

fn interrupt(
    status: &mut topology::drill_api::DisasterRecoveryDrillStatus,
    step: DrillStepName,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    status.phase = Some(DrillPhase::Failed);
    status.finished_at = Some(MicroTime(Timestamp::now()));
    if let Some(last) = status.steps.last_mut().filter(|s| s.finished_at.is_none()) {
        last.finished_at = status.finished_at.clone();
        last.outcome = DrillPhase::Failed;
        last.message = Some(message.to_owned());
    }
    status.failure = Some(DrillFailure {
        step,
        reason: reason.to_owned(),
        message: message.to_owned(),
    });
    status.conditions = vec![Condition {
        type_: condition::SUCCEEDED.into(),
        status: "False".into(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(extra: serde_json::Value) -> DisasterRecoveryDrill {
        let mut d = serde_json::json!({
            "apiVersion": "federator.dev/v1alpha1",
            "kind": "DisasterRecoveryDrill",
            "metadata": {"name": "d", "namespace": "ns", "generation": 2,
                         "creationTimestamp": "2026-11-01T00:00:00Z"},
            "spec": {"topology": "pg", "to": "pg-b"},
        });
        json_merge(&mut d, extra);
        serde_json::from_value(d).unwrap()
    }

    fn json_merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    json_merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-11-23T03:00:10Z";

    #[test]
    fn an_unscheduled_drill_runs_once_per_generation_unless_the_cli_runs_it() {
        assert_eq!(
            plan(&drill(serde_json::json!({})), t(NOW), false),
            Action::Run {
                scheduled_for: None
            }
        );
        assert_eq!(
            plan(&drill(serde_json::json!({})), t(NOW), true),
            Action::Nothing
        );
        let ran =
            drill(serde_json::json!({"status": {"phase": "Succeeded", "observedGeneration": 2}}));
        assert_eq!(plan(&ran, t(NOW), false), Action::Nothing);
        let edited =
            drill(serde_json::json!({"status": {"phase": "Failed", "observedGeneration": 1}}));
        assert_eq!(
            plan(&edited, t(NOW), false),
            Action::Run {
                scheduled_for: None
            }
        );
        let cli =
            drill(serde_json::json!({"metadata": {"annotations": {RUN_BY_ANNOTATION: "cli"}}}));
        assert_eq!(plan(&cli, t(NOW), false), Action::Nothing);
    }

    #[test]
    fn a_scheduled_drill_runs_when_due_and_records_the_next_time() {
        let scheduled = drill(
            serde_json::json!({"spec": {"schedule": {"cron": "0 3 * * *", "timeZone": "UTC"}}}),
        );
        assert_eq!(
            plan(&scheduled, t(NOW), false),
            Action::Run {
                scheduled_for: Some(t("2026-11-23T03:00:00Z"))
            }
        );
        let done = drill(serde_json::json!({
            "spec": {"schedule": {"cron": "0 3 * * *", "timeZone": "UTC"}},
            "status": {"phase": "Succeeded", "lastScheduleTime": "2026-11-23T03:00:00Z"}
        }));
        assert_eq!(
            plan(&done, t(NOW), false),
            Action::SetNext(Some(t("2026-11-24T03:00:00Z")))
        );
        let suspended = drill(
            serde_json::json!({"spec": {"schedule": {"cron": "0 3 * * *", "timeZone": "UTC", "suspend": true}}}),
        );
        assert_eq!(plan(&suspended, t(NOW), false), Action::Nothing);
    }

    #[test]
    fn a_run_left_running_by_a_controller_is_marked_interrupted_not_a_cli_run() {
        let left =
            drill(serde_json::json!({"status": {"phase": "Running", "runner": "controller/x-1"}}));
        assert_eq!(plan(&left, t(NOW), false), Action::MarkInterrupted);
        assert_eq!(plan(&left, t(NOW), true), Action::Nothing);
        let cli = drill(serde_json::json!({"status": {"phase": "Running", "runner": "cli/x-1"}}));
        assert_eq!(plan(&cli, t(NOW), false), Action::Nothing);
    }

    #[test]
    fn an_invalid_schedule_is_reported_once() {
        let bad = drill(
            serde_json::json!({"spec": {"schedule": {"cron": "every day", "timeZone": "UTC"}}}),
        );
        let Action::Invalid(message) = plan(&bad, t(NOW), false) else {
            panic!("not reported");
        };
        assert!(message.contains("spec.schedule.cron"), "{message}");
        let reported = drill(serde_json::json!({
            "spec": {"schedule": {"cron": "every day", "timeZone": "UTC"}},
            "status": {"phase": "Failed", "failure": {"step": "Preflight", "reason": "InvalidSchedule", "message": message}}
        }));
        assert_eq!(plan(&reported, t(NOW), false), Action::Nothing);
    }
}
