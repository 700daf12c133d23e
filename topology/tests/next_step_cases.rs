//! Deterministic cases of `next_step` the property tests reach only by chance: deadlines, a
//! token that cannot be used, a reverted demotion, and the #9273 guard.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use topology::api::{DistributedTopologySpec, Member, Operation, ShapeSpec, StarShape};
use topology::conditions::reason;
use topology::plan::{Context, Decision, Progress, Transition, WaitFor, next_step};
use topology::token::PromotionToken;
use topology::{Observed, OperationKind, StepKind, Topology};

fn pair() -> Topology {
    let member = |name: &str| Member {
        name: name.into(),
        cluster: format!("k-{name}"),
        namespace: "db".into(),
        cluster_name: None,
    };
    Topology::from_spec(&DistributedTopologySpec {
        members: vec![member("a"), member("b")],
        shape: ShapeSpec {
            star: Some(StarShape {}),
            ..ShapeSpec::default()
        },
        primary: "a".into(),
        policies: Default::default(),
        rotation: None,
        failover: None,
    })
    .unwrap()
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn token(timeline: u32, sysid: &str) -> String {
    PromotionToken {
        latest_checkpoint_timeline_id: timeline.to_string(),
        redo_wal_file: "000000030000000000000004".into(),
        database_system_identifier: sysid.into(),
        latest_checkpoint_redo_location: "0/4000028".into(),
        time_of_latest_checkpoint: "Mon 23 Nov 2026 06:00:00 AM UTC".into(),
        operator_version: "1.27.1".into(),
    }
    .encode()
}

fn at(step: StepKind, token: Option<String>) -> Progress {
    let mut p = Progress::start(OperationKind::Switchover, "a", "b", t0());
    p.step = step;
    p.token = token;
    p.demote_started_at = Some(t0());
    p
}

fn decide(
    topology: &Topology,
    observed: &Observed,
    progress: &Progress,
    after_secs: i64,
) -> Decision {
    let ctx = Context {
        topology,
        now: t0() + SignedDuration::from_secs(after_secs),
    };
    next_step(observed, progress, &ctx)
}

/// `a` demoted by spec (primary: b), as after the Demote step.
fn demoted(topology: &Topology) -> Observed {
    let mut observed = Observed::conforming(topology);
    let a = observed.members.get_mut("a").unwrap();
    a.replica.as_mut().unwrap().primary = Some("b".into());
    a.replica.as_mut().unwrap().source = "b".into();
    observed
}

fn held(decision: &Decision) -> &'static str {
    match decision {
        Decision::Hold { reason, .. } => reason,
        other => panic!("expected a hold, got {other:?}"),
    }
}

#[test]
fn await_token_waits_until_its_deadline_then_holds() {
    let topology = pair();
    let observed = demoted(&topology);
    let progress = at(StepKind::AwaitToken, None);
    let limit = topology.policies().timeouts.token_wait.as_std();
    match decide(&topology, &observed, &progress, 60) {
        Decision::Wait(WaitFor {
            recheck_after: Some(left),
            ..
        }) => assert_eq!(left.as_secs(), limit.as_secs() - 60),
        other => panic!("expected a wait with a timer, got {other:?}"),
    }
    let late = decide(&topology, &observed, &progress, limit.as_secs() as i64 + 1);
    assert_eq!(held(&late), reason::TOKEN_TIMEOUT);
}

#[test]
fn the_first_token_seen_is_persisted_in_the_transition() {
    let topology = pair();
    let mut observed = demoted(&topology);
    observed.members.get_mut("a").unwrap().status.demotion_token = Some(token(3, "42"));
    let d = decide(&topology, &observed, &at(StepKind::AwaitToken, None), 1);
    assert_eq!(
        d,
        Decision::Advance(Transition {
            next: StepKind::CheckToken,
            token: Some(token(3, "42")),
            rollback: false
        })
    );
}

#[test]
fn check_token_refuses_a_foreign_or_stale_token() {
    let topology = pair();
    let mut observed = demoted(&topology);
    let b = observed.members.get_mut("b").unwrap();
    b.status.system_id = Some("42".into());
    b.status.timeline_id = Some(4);
    for bad in [token(4, "7"), token(3, "42"), "not-a-token".to_owned()] {
        let d = decide(
            &topology,
            &observed,
            &at(StepKind::CheckToken, Some(bad)),
            1,
        );
        assert_eq!(held(&d), reason::TOKEN_INVALID);
    }
    let ok = decide(
        &topology,
        &observed,
        &at(StepKind::CheckToken, Some(token(4, "42"))),
        1,
    );
    assert_eq!(
        ok,
        Decision::Advance(Transition {
            next: StepKind::Promote,
            token: None,
            rollback: false
        })
    );
}

#[test]
fn promote_never_happens_without_token_or_while_the_old_primary_is_primary() {
    let topology = pair();
    let d = decide(
        &topology,
        &demoted(&topology),
        &at(StepKind::Promote, None),
        1,
    );
    assert_eq!(held(&d), reason::TOKEN_LOST);
    // Someone put `a` back to primary by spec: promoting `b` would make two.
    let reverted = Observed::conforming(&topology);
    let d = decide(
        &topology,
        &reverted,
        &at(StepKind::Promote, Some(token(3, "42"))),
        1,
    );
    assert_eq!(held(&d), reason::UNEXPECTED_SPEC);
}

#[test]
fn clear_token_waits_for_last_promotion_token() {
    let topology = pair();
    let mut observed = demoted(&topology);
    let b = observed.members.get_mut("b").unwrap();
    b.replica.as_mut().unwrap().primary = Some("b".into());
    b.replica.as_mut().unwrap().promotion_token = Some(token(3, "42"));
    let progress = at(StepKind::ClearToken, Some(token(3, "42")));
    assert!(matches!(
        decide(&topology, &observed, &progress, 1),
        Decision::Wait(_)
    ));
    observed
        .members
        .get_mut("b")
        .unwrap()
        .status
        .last_promotion_token = Some(token(3, "42"));
    match decide(&topology, &observed, &progress, 1) {
        Decision::Act(action) => {
            assert_eq!(action.member, "b");
            assert!(action.patch["spec"]["replica"]["promotionToken"].is_null());
        }
        other => panic!("expected the clear-token patch, got {other:?}"),
    }
}

#[test]
fn the_status_log_round_trips_to_progress() {
    let mut op = Operation::new("1-a-to-b".into(), OperationKind::Switchover, "a", "b", t0());
    let later = t0() + SignedDuration::from_secs(30);
    op.record(
        &Transition {
            next: StepKind::Demote,
            token: None,
            rollback: false,
        },
        Some("a".into()),
        later,
    );
    let progress = Progress::from_operation(&op);
    assert_eq!(progress.step, StepKind::Demote);
    assert_eq!(progress.step_started_at, later);
    assert_eq!(progress.demote_started_at, Some(later));
    assert_eq!(op.steps[0].finished_at.as_ref().map(|t| t.0), Some(later));
    let same = Progress::start(OperationKind::Switchover, "a", "b", t0()).advance(
        &Transition {
            next: StepKind::Demote,
            token: None,
            rollback: false,
        },
        later,
    );
    assert_eq!(progress, same);
}
