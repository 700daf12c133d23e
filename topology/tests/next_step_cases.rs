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
        automatic_failover: None,
        hooks: Default::default(),
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
        hooks: &topology::plan::NO_HOOKS,
        hook: None,
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
    // Decided again later (a member change), the hold is the same, text included: announced once.
    let later = decide(&topology, &observed, &progress, limit.as_secs() as i64 + 40);
    assert_eq!(later, late);
    // A token that comes after the hold (the runbook's nudge) is used: the held step is decided
    // again at every reconcile, and the deadline does not outlive the wait it bounds.
    let mut nudged = observed.clone();
    nudged.members.get_mut("a").unwrap().status.demotion_token = Some(token(3, "42"));
    let resumed = decide(&topology, &nudged, &progress, 10 * limit.as_secs() as i64);
    assert_eq!(
        resumed,
        Decision::Advance(Transition {
            next: StepKind::CheckToken,
            token: Some(token(3, "42")),
            rollback: false
        })
    );
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

/// Archive-only target: CheckToken leads to AwaitReplay, which promotes only once the target's
/// replay position is past the token's REDO location (never at it, never when unknown), polls
/// while it waits, and holds `ReplayTimeout` at the promotion deadline.
#[test]
fn an_archive_only_target_is_promoted_only_after_replaying_past_the_token() {
    use topology::Replay;
    let topology = pair();
    let mut observed = demoted(&topology);
    let b = observed.members.get_mut("b").unwrap();
    b.status.system_id = Some("42".into());
    b.status.timeline_id = Some(3);
    b.source = topology::cnpg::SourceChannel::ArchiveOnly;
    let advance = |next| {
        Decision::Advance(Transition {
            next,
            token: None,
            rollback: false,
        })
    };
    let checked = decide(
        &topology,
        &observed,
        &at(StepKind::CheckToken, Some(token(3, "42"))),
        1,
    );
    assert_eq!(checked, advance(StepKind::AwaitReplay));

    let waiting = at(StepKind::AwaitReplay, Some(token(3, "42")));
    let replay = |observed: &mut Observed, r: Option<Replay>| {
        observed.members.get_mut("b").unwrap().status.replay = r;
    };
    // The token's REDO location is 0/4000028: behind it, at it, unknown, unread — wait.
    for r in [
        Some(Replay::At("0/3FFFFF0".parse().unwrap())),
        Some(Replay::At("0/4000028".parse().unwrap())),
        Some(Replay::Unknown("forbidden: pods/proxy".into())),
        None,
    ] {
        replay(&mut observed, r.clone());
        match decide(&topology, &observed, &waiting, 5) {
            Decision::Wait(WaitFor {
                reason,
                recheck_after: Some(after),
            }) => {
                assert!(reason.contains("0/4000028"), "{reason}");
                assert!(after <= topology::plan::REPLAY_RECHECK, "{r:?}: {after:?}");
            }
            other => panic!("{r:?}: expected a polling wait, got {other:?}"),
        }
    }
    replay(
        &mut observed,
        Some(Replay::At("0/40000A0".parse().unwrap())),
    );
    assert_eq!(
        decide(&topology, &observed, &waiting, 5),
        advance(StepKind::Promote)
    );

    replay(
        &mut observed,
        Some(Replay::At("0/3000000".parse().unwrap())),
    );
    let limit = topology.policies().timeouts.promotion_wait.as_std();
    let late = decide(&topology, &observed, &waiting, limit.as_secs() as i64 + 1);
    assert_eq!(held(&late), reason::REPLAY_TIMEOUT);

    // A streaming target goes straight to Promote, as before.
    observed.members.get_mut("b").unwrap().source = topology::cnpg::SourceChannel::Streaming;
    let streaming = decide(
        &topology,
        &observed,
        &at(StepKind::CheckToken, Some(token(3, "42"))),
        1,
    );
    assert_eq!(streaming, advance(StepKind::Promote));

    // Streaming beside the archive: the same wait (the target may not have been streaming when
    // the old primary shut down), polled sooner, and no wait once the replay is past the LSN.
    observed.members.get_mut("b").unwrap().source =
        topology::cnpg::SourceChannel::StreamingAndArchive;
    let mixed = decide(
        &topology,
        &observed,
        &at(StepKind::CheckToken, Some(token(3, "42"))),
        1,
    );
    assert_eq!(mixed, advance(StepKind::AwaitReplay));
    replay(
        &mut observed,
        Some(Replay::At("0/3FFFFF0".parse().unwrap())),
    );
    match decide(&topology, &observed, &waiting, 1) {
        Decision::Wait(WaitFor {
            reason,
            recheck_after: Some(after),
        }) => {
            assert!(reason.contains("streaming and archive"), "{reason}");
            assert_eq!(after, topology::plan::REPLAY_RECHECK_STREAMING);
        }
        other => panic!("expected a polling wait, got {other:?}"),
    }
    replay(
        &mut observed,
        Some(Replay::At("0/40000A0".parse().unwrap())),
    );
    assert_eq!(
        decide(&topology, &observed, &waiting, 1),
        advance(StepKind::Promote)
    );
}

/// As the controller records a hook's end: its run, then the transition it names.
fn record_end(op: &mut Operation, end: &topology::plan::HookEnd, at: Timestamp) {
    op.end_hook(end.ok, end.detail.clone(), at);
    op.record(
        &Transition {
            next: end.next,
            token: None,
            rollback: false,
        },
        None,
        at,
    );
}

/// The hook steps as the controller records them (a crash anywhere reads back the same
/// progress): a record per hook naming it, the index of the running hook, each run's end; a hook
/// before the demotion that failed makes the operation end `Aborted`, with nothing demoted.
#[test]
fn hook_steps_round_trip_through_the_status_log_and_a_failed_one_aborts() {
    use topology::api::{OperationHooks, Outcome};
    use topology::plan::{HookEnd, HookLook, HookState};
    use topology::region_api::Hooks;
    let topology = pair();
    let hooks: Hooks = serde_json::from_value(serde_json::json!({
        "beforeDemotion": [
            {"name": "stop-web", "scale": {"region": "From", "namespace": "shop", "replicas": 0}},
            {"name": "cut-dns", "timeout": "30s", "scale": {"region": "From", "namespace": "shop", "replicas": 0}}
        ],
        "afterPromotion": [{"name": "start-web", "scale": {"region": "To", "namespace": "shop", "replicas": 2}}]
    }))
    .unwrap();
    let observed = Observed::conforming(&topology);
    let mut op = Operation::new("1-a-to-b".into(), OperationKind::Switchover, "a", "b", t0());
    op.hooks = Some(OperationHooks {
        declared: hooks.clone(),
        ..OperationHooks::default()
    });
    let now = |s: i64| t0() + SignedDuration::from_secs(s);
    let ask = |op: &Operation, look: Option<&HookLook>, at: i64| {
        let ctx = Context {
            topology: &topology,
            now: now(at),
            hooks: &hooks,
            hook: look,
        };
        next_step(&observed, &Progress::from_operation(op), &ctx)
    };
    // Validate leads to the hooks, not to the demotion.
    let Decision::Advance(t) = ask(&op, None, 0) else {
        panic!("Validate should advance");
    };
    assert_eq!(t.next, StepKind::HooksBeforeDemotion);
    op.record(&t, None, now(1));
    assert_eq!(op.steps.last().unwrap().member.as_deref(), Some("stop-web"));
    assert_eq!(op.hooks.as_ref().unwrap().running, Some(0));
    // Not run yet (the step log is not on the hub): wait, looking again within a second.
    match ask(&op, None, 2) {
        Decision::Wait(WaitFor {
            recheck_after: Some(left),
            ..
        }) => assert!(left <= topology::plan::HOOK_RECHECK),
        other => panic!("expected a wait, got {other:?}"),
    }
    // A look at another hook (stale) does not count.
    let stale = HookLook {
        step: StepKind::HooksBeforeDemotion,
        index: 1,
        state: HookState::Done("x".into()),
    };
    assert!(matches!(ask(&op, Some(&stale), 2), Decision::Wait(_)));
    let done = HookLook {
        step: StepKind::HooksBeforeDemotion,
        index: 0,
        state: HookState::Done("web scaled to 0".into()),
    };
    let Decision::HookEnded(end) = ask(&op, Some(&done), 3) else {
        panic!("the hook is done");
    };
    assert_eq!(
        end,
        HookEnd {
            ok: true,
            detail: "web scaled to 0".into(),
            next: StepKind::HooksBeforeDemotion
        }
    );
    record_end(&mut op, &end, now(3));
    let progress = Progress::from_operation(&op);
    assert_eq!(
        (progress.step, progress.hook),
        (StepKind::HooksBeforeDemotion, 1)
    );
    assert_eq!(progress.step_started_at, now(3));
    assert_eq!(op.steps.last().unwrap().member.as_deref(), Some("cut-dns"));
    // The second hook's own timeout (30 s) from when it started: then it failed, and the
    // operation ends Aborted without a demotion.
    let waiting = HookLook {
        step: StepKind::HooksBeforeDemotion,
        index: 1,
        state: HookState::Waiting("dns not withdrawn".into()),
    };
    assert!(matches!(ask(&op, Some(&waiting), 32), Decision::Wait(_)));
    let Decision::HookEnded(end) = ask(&op, Some(&waiting), 34) else {
        panic!("the hook timed out");
    };
    assert!(
        !end.ok && end.detail.contains("timed out after 30s"),
        "{end:?}"
    );
    assert_eq!(end.next, StepKind::Done);
    record_end(&mut op, &end, now(34));
    assert!(Progress::from_operation(&op).aborted);
    assert_eq!(ask(&op, None, 35), Decision::Done(Outcome::Aborted));
    let runs = &op.hooks.as_ref().unwrap().runs;
    let summary: Vec<(&str, bool)> = runs.iter().map(|r| (r.hook.as_str(), r.ok)).collect();
    assert_eq!(
        summary,
        [
            ("beforeDemotion/stop-web", true),
            ("beforeDemotion/cut-dns", false)
        ]
    );
    assert_eq!(
        (runs[1].started_at.0, runs[1].finished_at.0),
        (now(3), now(34))
    );
    assert!(op.steps.iter().all(|s| s.step != StepKind::Demote));
}
