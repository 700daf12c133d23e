//! The rotation scheduler in the reconcile, at injected instants: what is recorded in
//! `status.rotation`, which Events go out (once per decision), when to look again, and when a
//! rotation starts.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use topology::api::Operation;
use topology::api::{DistributedTopologySpec, MemberStatus};
use topology::conditions::kind;
use topology::{DistributedTopology, DistributedTopologyStatus, OperationKind};

use super::*;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A pair `a` (primary) / `b`, rotating daily at 02:00 UTC, with `rotation` merged over that.
fn spec(rotation: serde_json::Value) -> DistributedTopologySpec {
    let mut policy = json!({"schedule": "0 2 * * *", "timeZone": "UTC"});
    for (key, value) in rotation.as_object().unwrap() {
        policy[key] = value.clone();
    }
    serde_json::from_value(json!({
        "members": [
            {"name": "a", "cluster": "r1", "namespace": "db"},
            {"name": "b", "cluster": "r2", "namespace": "db"},
        ],
        "shape": {"star": {}},
        "primary": "a",
        "rotation": policy,
    }))
    .unwrap()
}

fn observation(ready: &[(&str, bool)]) -> Observation {
    Observation {
        members: ready
            .iter()
            .map(|(name, ready)| MemberStatus {
                name: (*name).to_owned(),
                ready: *ready,
                reachable: true,
                ..MemberStatus::default()
            })
            .collect(),
        ..Observation::default()
    }
}

fn healthy() -> Observation {
    observation(&[("a", true), ("b", true)])
}

fn idle() -> DistributedTopologyStatus {
    DistributedTopologyStatus {
        observed_primary: Some("a".into()),
        ..DistributedTopologyStatus::default()
    }
}

fn reasons(events: &[Note]) -> Vec<&str> {
    events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn a_due_rotation_starts_once_and_is_recorded_before_it_starts() {
    let spec = spec(json!({}));
    let mut status = idle();
    let first = evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T01:59:30.4Z"));
    let rotation = status.rotation.clone().unwrap();
    assert_eq!(rotation.active_since, Time(ts("2026-06-01T01:59:30Z")));
    assert_eq!(
        rotation.next_rotation_time,
        Some(Time(ts("2026-06-01T02:00:00Z")))
    );
    assert_eq!(rotation.last_decision.unwrap().decision, "Wait");
    assert_eq!(first.requeue_after, Some(Duration::from_secs(30)));
    assert!(first.start.is_none() && first.events.is_empty());

    let due = evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T02:00:01Z"));
    let start = due.start.expect("the rotation starts");
    assert_eq!((start.from.as_str(), start.to.as_str()), ("a", "b"));
    assert_eq!(start.note.reason, "RotationStarted");
    let rotation = status.rotation.clone().unwrap();
    assert_eq!(
        rotation.last_schedule_time,
        Some(Time(ts("2026-06-01T02:00:00Z")))
    );
    let started = rotation.last_rotation.unwrap();
    assert_eq!((started.from.as_str(), started.to.as_str()), ("a", "b"));
    assert_eq!(rotation.last_decision.unwrap().decision, "Rotate");
    assert_eq!(
        rotation.next_rotation_time,
        Some(Time(ts("2026-06-02T02:00:00Z")))
    );

    // The next reconcile may still see spec.primary = a (the patch is on its way): it must not
    // start the same rotation again, nor one to the member after b.
    let again = evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T02:00:02Z"));
    assert!(again.start.is_none(), "{again:?}");
    assert!(again.events.is_empty());
}

#[test]
fn a_freeze_skips_with_one_warning_event_and_the_reason_in_status() {
    let spec = spec(json!({"freezePeriods": [{
        "start": "2026-05-30T00:00:00Z", "end": "2026-06-02T00:00:00Z", "reason": "month-end close",
    }]}));
    let mut status = idle();
    evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T01:00:00Z"));
    // The frozen 02:00 is passed over in the next rotation time.
    assert_eq!(
        status.rotation.as_ref().unwrap().next_rotation_time,
        Some(Time(ts("2026-06-02T02:00:00Z")))
    );
    let skipped = evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T02:00:00Z"));
    assert!(skipped.start.is_none());
    assert_eq!(reasons(&skipped.events), ["RotationSkipped"]);
    assert!(skipped.events[0].warning);
    assert!(
        skipped.events[0].message.contains("month-end close"),
        "{}",
        skipped.events[0].message
    );
    let last_skip = status.rotation.clone().unwrap().last_skip.unwrap();
    assert_eq!(last_skip.reason.as_deref(), Some("FreezePeriod"));
    for second in 1..4 {
        let later = format!("2026-06-01T02:00:0{second}Z");
        let again = evaluate(&spec, &healthy(), &mut status, ts(&later));
        assert!(
            again.events.is_empty() && again.start.is_none(),
            "{again:?}"
        );
    }
    assert_eq!(
        status
            .rotation
            .unwrap()
            .last_skip
            .unwrap()
            .reason
            .as_deref(),
        Some("FreezePeriod")
    );
}

#[test]
fn a_failed_precondition_holds_with_one_event_and_the_rotation_starts_when_it_clears() {
    let spec = spec(json!({"missedSchedule": {"policy": "RunOnce"}}));
    let mut status = idle();
    evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T01:00:00Z"));
    let b_down = observation(&[("a", true), ("b", false)]);
    let held = evaluate(&spec, &b_down, &mut status, ts("2026-06-01T02:00:00Z"));
    assert_eq!(reasons(&held.events), ["RotationHeld"]);
    assert!(held.events[0].message.contains("MembersNotReady"));
    assert!(held.start.is_none());
    // Until just past the starting deadline (15m): then it turns into a MissedDeadline skip.
    assert_eq!(
        held.requeue_after,
        Some(Duration::from_secs(15 * 60) + Duration::from_millis(1))
    );
    let decision = status.rotation.clone().unwrap().last_decision.unwrap();
    assert_eq!(
        (decision.decision.as_str(), decision.reason.as_deref()),
        ("Hold", Some("PreconditionFailed"))
    );
    let still = evaluate(&spec, &b_down, &mut status, ts("2026-06-01T02:01:00Z"));
    assert!(still.events.is_empty(), "the same hold is announced once");

    let cleared = evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T02:02:00Z"));
    assert_eq!(cleared.start.map(|s| s.to), Some("b".to_owned()));
}

#[test]
fn an_operation_in_progress_or_an_invalid_topology_never_starts_a_rotation() {
    let spec = spec(json!({}));
    let mut busy = idle();
    evaluate(&spec, &healthy(), &mut busy, ts("2026-06-01T01:00:00Z"));
    busy.operation = Some(Operation::new(
        "1-a-to-b".into(),
        OperationKind::Switchover,
        "a",
        "b",
        ts("2026-06-01T01:59:00Z"),
    ));
    let out = evaluate(&spec, &healthy(), &mut busy, ts("2026-06-01T02:00:00Z"));
    assert!(out.start.is_none());
    assert_eq!(
        busy.rotation.unwrap().last_skip.unwrap().reason.as_deref(),
        Some("OperationInProgress")
    );

    let mut invalid = idle();
    evaluate(&spec, &healthy(), &mut invalid, ts("2026-06-01T01:00:00Z"));
    invalid.conditions.push(Condition {
        type_: kind::VALID.into(),
        status: "False".into(),
        reason: "ValidationFailed".into(),
        message: "1 problem: spec.members[1]: mismatch".into(),
        observed_generation: None,
        last_transition_time: Time(ts("2026-06-01T01:00:00Z")),
    });
    let out = evaluate(&spec, &healthy(), &mut invalid, ts("2026-06-01T02:00:00Z"));
    assert!(out.start.is_none());
    let skip = invalid.rotation.unwrap().last_skip.unwrap();
    assert_eq!(skip.reason.as_deref(), Some("TopologyInvalid"));
    assert!(skip.message.contains("spec.members[1]"), "{}", skip.message);
}

#[test]
fn an_invalid_policy_names_the_field_and_the_fix_and_changes_nothing() {
    let invalid = spec(json!({"schedule": "0 2 * *", "timeZone": "Europe/Nowhere"}));
    let mut problems = None;
    add_problems(&invalid, &mut problems);
    let problems = problems.expect("problems");
    assert!(
        problems.starts_with("spec.rotation: 2 problems:"),
        "{problems}"
    );
    assert!(problems.contains("spec.rotation.schedule:"), "{problems}");
    assert!(problems.contains("spec.rotation.timeZone:"), "{problems}");
    assert!(problems.contains("fix:"), "{problems}");

    let mut status = idle();
    let out = evaluate(
        &invalid,
        &healthy(),
        &mut status,
        ts("2026-06-01T02:00:00Z"),
    );
    assert_eq!(out, Evaluated::default());
    assert_eq!(status, idle());

    // A valid policy adds nothing; other problems are kept.
    let mut other = Some("1 problem: x".to_owned());
    add_problems(&spec(json!({})), &mut other);
    assert_eq!(other.as_deref(), Some("1 problem: x"));
}

#[test]
fn a_changed_schedule_starts_over_and_does_not_act_on_the_past() {
    let mut spec = spec(json!({}));
    let mut status = idle();
    evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T01:00:00Z"));
    spec.rotation.as_mut().unwrap().schedule = "30 1 * * *".into();
    // 01:30 already passed when the new schedule was first seen at 01:45: not due.
    let out = evaluate(&spec, &healthy(), &mut status, ts("2026-06-01T01:45:00Z"));
    assert!(out.start.is_none());
    let rotation = status.rotation.unwrap();
    assert_eq!(rotation.active_since, Time(ts("2026-06-01T01:45:00Z")));
    assert_eq!(
        rotation.next_rotation_time,
        Some(Time(ts("2026-06-02T01:30:00Z")))
    );
}

#[test]
fn a_ring_rotates_in_ring_order_and_removing_the_policy_clears_its_status() {
    let mut spec: DistributedTopologySpec = serde_json::from_value(json!({
        "members": [
            {"name": "a", "cluster": "r1", "namespace": "db"},
            {"name": "b", "cluster": "r2", "namespace": "db"},
            {"name": "c", "cluster": "r3", "namespace": "db"},
        ],
        "shape": {"ring": ["a", "c", "b"]},
        "primary": "a",
        "rotation": {"schedule": "0 2 * * *", "timeZone": "UTC"},
    }))
    .unwrap();
    let all = observation(&[("a", true), ("b", true), ("c", true)]);
    let mut status = idle();
    evaluate(&spec, &all, &mut status, ts("2026-06-01T01:00:00Z"));
    let out = evaluate(&spec, &all, &mut status, ts("2026-06-01T02:00:00Z"));
    assert_eq!(out.start.map(|s| s.to), Some("c".to_owned()));

    spec.rotation = None;
    evaluate(&spec, &all, &mut status, ts("2026-06-01T02:00:05Z"));
    assert_eq!(status.rotation, None);
}

#[test]
fn the_digest_is_stable_and_tells_schedules_apart() {
    assert_eq!(digest("0 2 * * *", "UTC"), digest("0 2 * * *", "UTC"));
    assert_ne!(
        digest("0 2 * * *", "UTC"),
        digest("0 2 * * *", "Europe/Berlin")
    );
    assert_ne!(digest("0 2 * * *x", "UTC"), digest("0 2 * * *", "xUTC"));
    // FNV-1a of the single separator byte, computed independently.
    assert_eq!(digest("", ""), "af63bd4c8601b7df");
}

/// Through the whole pure pipeline: a typo in `spec.rotation` makes `Valid` False with the field
/// and the fix, and a switchover asked for at the same time does not start.
#[test]
fn an_invalid_policy_makes_the_topology_invalid_and_starts_no_switchover() {
    let mut invalid = spec(json!({"timeZone": "Mars/Olympus"}));
    invalid.primary = "b".into();
    let topo = DistributedTopology {
        metadata: kube::api::ObjectMeta {
            name: Some("pg".into()),
            namespace: Some("db".into()),
            generation: Some(3),
            ..Default::default()
        },
        spec: invalid,
        status: Some(idle()),
    };
    let decided =
        crate::controller::decide::decide_status(&topo, &healthy(), ts("2026-06-01T02:00:00Z"));
    let valid = decided
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == kind::VALID)
        .expect("a Valid condition");
    assert_eq!(valid.status, "False");
    assert!(
        valid
            .message
            .contains("spec.rotation.timeZone: unknown time zone \"Mars/Olympus\"")
            && valid.message.contains("fix: use an IANA name"),
        "{}",
        valid.message
    );
    assert!(decided.status.operation.is_none());
    assert!(decided.effect.is_none());
}
