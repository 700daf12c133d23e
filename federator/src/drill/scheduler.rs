//! When the controller starts a drill that is not running: a drill created without `federator
//! drill` (e.g. `kubectl apply`) once per generation, a scheduled drill at each scheduled time.
//! [`plan`] is a pure function of the drill and the time (tests pass fixed instants); the
//! controller passes its clock (the system clock, or in end-to-end tests `--unsafe-test-clock`).

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use topology::drill_api::{DisasterRecoveryDrill, DrillPhase, RUN_BY_ANNOTATION};

use super::schedule::{Due, Schedule};

/// Prefix of `status.runner` for runs started by a controller.
pub const CONTROLLER_RUNNER: &str = "controller/";

/// What the controller does about one drill that is not running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Start a run (for the scheduled instant, if scheduled).
    Run {
        scheduled_for: Option<Timestamp>,
    },
    /// Record when the next scheduled run is.
    SetNext(Option<Timestamp>),
    /// The schedule cannot be read: say so in the status (once).
    Invalid(String),
}

/// Pure: what to do with `drill` at `now` (a running drill is the state machine's).
pub fn plan(drill: &DisasterRecoveryDrill, now: Timestamp) -> Action {
    let status = drill.status.clone().unwrap_or_default();
    if status.phase == Some(DrillPhase::Running) {
        return Action::Nothing;
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
            plan(&drill(serde_json::json!({})), t(NOW)),
            Action::Run {
                scheduled_for: None
            }
        );
        let ran =
            drill(serde_json::json!({"status": {"phase": "Succeeded", "observedGeneration": 2}}));
        assert_eq!(plan(&ran, t(NOW)), Action::Nothing);
        let edited =
            drill(serde_json::json!({"status": {"phase": "Failed", "observedGeneration": 1}}));
        assert_eq!(
            plan(&edited, t(NOW)),
            Action::Run {
                scheduled_for: None
            }
        );
        let cli =
            drill(serde_json::json!({"metadata": {"annotations": {RUN_BY_ANNOTATION: "cli"}}}));
        assert_eq!(plan(&cli, t(NOW)), Action::Nothing);
    }

    #[test]
    fn a_scheduled_drill_runs_when_due_and_records_the_next_time() {
        let scheduled = drill(
            serde_json::json!({"spec": {"schedule": {"cron": "0 3 * * *", "timeZone": "UTC"}}}),
        );
        assert_eq!(
            plan(&scheduled, t(NOW)),
            Action::Run {
                scheduled_for: Some(t("2026-11-23T03:00:00Z"))
            }
        );
        let done = drill(serde_json::json!({
            "spec": {"schedule": {"cron": "0 3 * * *", "timeZone": "UTC"}},
            "status": {"phase": "Succeeded", "lastScheduleTime": "2026-11-23T03:00:00Z"}
        }));
        assert_eq!(
            plan(&done, t(NOW)),
            Action::SetNext(Some(t("2026-11-24T03:00:00Z")))
        );
        let suspended = drill(
            serde_json::json!({"spec": {"schedule": {"cron": "0 3 * * *", "timeZone": "UTC", "suspend": true}}}),
        );
        assert_eq!(plan(&suspended, t(NOW)), Action::Nothing);
    }

    #[test]
    fn a_running_drill_is_left_to_its_state_machine() {
        let left =
            drill(serde_json::json!({"status": {"phase": "Running", "runner": "controller/x-1"}}));
        assert_eq!(plan(&left, t(NOW)), Action::Nothing);
    }

    #[test]
    fn an_invalid_schedule_is_reported_once() {
        let bad = drill(
            serde_json::json!({"spec": {"schedule": {"cron": "every day", "timeZone": "UTC"}}}),
        );
        let Action::Invalid(message) = plan(&bad, t(NOW)) else {
            panic!("not reported");
        };
        assert!(message.contains("spec.schedule.cron"), "{message}");
        let reported = drill(serde_json::json!({
            "spec": {"schedule": {"cron": "every day", "timeZone": "UTC"}},
            "status": {"phase": "Failed", "failure": {"step": "Preflight", "reason": "InvalidSchedule", "message": message}}
        }));
        assert_eq!(plan(&reported, t(NOW)), Action::Nothing);
    }
}
