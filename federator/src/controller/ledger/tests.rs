//! The ledger on an injected clock: held status changes, the patch gate, delivery times, and
//! failed reconciles.

use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use serde_json::json;
use topology::api::{Hold, Operation};
use topology::{DistributedTopologySpec, OperationKind, StepKind};

use super::*;
use crate::controller::runtime::clock::ManualClock;

fn ledger() -> (Arc<ManualClock>, Ledger) {
    let clock = Arc::new(ManualClock::new());
    (clock.clone(), Ledger::new(clock))
}

fn at(
    version: &str,
    primary: &str,
    status: Option<DistributedTopologyStatus>,
) -> DistributedTopology {
    let spec: DistributedTopologySpec = serde_json::from_value(json!({
        "primary": primary,
        "members": [{"name": "pg-b", "cluster": "eu-west", "namespace": "db"}],
        "shape": {"star": {}},
    }))
    .expect("a spec");
    DistributedTopology {
        metadata: ObjectMeta {
            name: Some("pg".into()),
            namespace: Some("db".into()),
            uid: Some("uid-1".into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        },
        spec,
        status,
    }
}

fn plain(version: &str, primary: &str) -> DistributedTopology {
    at(version, primary, None)
}

fn stored(version: &str, status: DistributedTopologyStatus) -> DistributedTopology {
    at(version, "a", Some(status))
}

/// One reconcile's choice for `decided`, recorded as the executor records it.
fn hold_or_write(
    l: &Ledger,
    hub: &DistributedTopology,
    decided: &DistributedTopologyStatus,
    patch_follows: bool,
) -> Write {
    let write = l.view(hub).write(hub, decided, patch_follows);
    let held = match &write {
        Write::Later(held) => Some(held.as_ref().clone()),
        Write::Now(_) | Write::Nothing => None,
    };
    l.hold(hub, held);
    write
}

fn on_top(l: &Ledger, hub: &DistributedTopology) -> Option<DistributedTopology> {
    l.view(hub).on_top(hub)
}

/// Whether the patch gate is shut for `action` of `operation` on topology `uid`.
fn gate(l: &Ledger, uid: &str, operation: &str, action: &Action) -> bool {
    let mut topo = plain("10", "a");
    topo.metadata.uid = Some(uid.into());
    l.view(&topo)
        .awaiting_watch(Some(operation), action, &cluster())
}

fn later(write: &Write) -> Option<Duration> {
    match write {
        Write::Later(held) => Some(held.after),
        Write::Now(_) | Write::Nothing => None,
    }
}

fn now(write: &Write) -> bool {
    matches!(write, Write::Now(_))
}

fn t0() -> Timestamp {
    "2026-12-04T18:00:00Z".parse().expect("timestamp")
}

fn running(step: StepKind) -> DistributedTopologyStatus {
    let mut op = Operation::new("3-a-to-b".into(), OperationKind::Switchover, "a", "b", t0());
    op.step = step;
    DistributedTopologyStatus {
        operation: Some(op),
        ..Default::default()
    }
}

fn holding_at(step: StepKind) -> DistributedTopologyStatus {
    let mut status = running(step);
    if let Some(op) = status.operation.as_mut() {
        op.hold = Some(Hold {
            reason: "TokenTimeout".into(),
            message: "no token".into(),
        });
    }
    status
}

fn seen_primary(mut status: DistributedTopologyStatus, primary: &str) -> DistributedTopologyStatus {
    status.observed_primary = Some(primary.into());
    status
}

fn promote(token: &str) -> Action {
    Action {
        step: StepKind::Promote,
        member: "pg-b".into(),
        patch: json!({"spec": {"replica": {"primary": "pg-b", "promotionToken": token}}}),
    }
}

fn cluster() -> ClusterKey {
    ClusterKey {
        member: "eu-west".into(),
        namespace: "db".into(),
        name: "pg-b".into(),
    }
}

// --- held status changes ------------------------------------------------------------------

#[test]
fn a_change_inside_a_running_operation_waits_and_the_next_reconcile_builds_on_it() {
    let (clock, l) = ledger();
    let hub = stored("10", running(StepKind::AwaitToken));
    let decided = seen_primary(running(StepKind::AwaitToken), "none");
    assert_eq!(
        later(&hold_or_write(&l, &hub, &decided, false)),
        Some(MAX_DELAY)
    );
    let next = on_top(&l, &hub).expect("held status");
    assert_eq!(next.status.as_ref(), Some(&decided));
    assert_eq!(next.metadata.resource_version.as_deref(), Some("10"));
    // Still held 100 ms later: the timer shrinks to what is left.
    clock.advance(Duration::from_millis(100));
    assert_eq!(
        later(&hold_or_write(&l, &hub, &decided, false)),
        Some(MAX_DELAY - Duration::from_millis(100))
    );
    // And written once MAX_DELAY has passed since it was first held.
    clock.advance(MAX_DELAY - Duration::from_millis(100));
    assert!(now(&hold_or_write(&l, &hub, &decided, false)));
    assert!(on_top(&l, &hub).is_none(), "a write forgets what was held");
}

#[test]
fn a_patch_a_hold_or_an_end_writes_at_once() {
    let (_, l) = ledger();
    let hub = stored("10", running(StepKind::AwaitToken));
    let decided = seen_primary(running(StepKind::AwaitToken), "none");
    assert!(later(&hold_or_write(&l, &hub, &decided, false)).is_some());
    // Before a patch: always written (the step log precedes every side effect), and what was
    // held is carried by that write.
    assert!(now(&hold_or_write(
        &l,
        &hub,
        &running(StepKind::Promote),
        true
    )));
    assert!(on_top(&l, &hub).is_none());
    // A hold, and an end.
    assert!(now(&hold_or_write(
        &l,
        &hub,
        &holding_at(StepKind::AwaitToken),
        false
    )));
    let mut ended = running(StepKind::Done);
    ended.operation = None;
    assert!(now(&hold_or_write(&l, &hub, &ended, false)));
}

#[test]
fn outside_a_running_operation_every_change_is_written() {
    let (_, l) = ledger();
    let idle = stored("10", DistributedTopologyStatus::default());
    let changed = seen_primary(DistributedTopologyStatus::default(), "a");
    assert!(now(&hold_or_write(&l, &idle, &changed, false)));
    // The first write of an operation records it as running before anything waits.
    assert!(now(&hold_or_write(
        &l,
        &idle,
        &running(StepKind::Validate),
        false
    )));
    // An operation that holds on the hub: its changes are written.
    let holding = holding_at(StepKind::AwaitToken);
    let hub = stored("11", holding.clone());
    assert!(now(&hold_or_write(
        &l,
        &hub,
        &seen_primary(holding, "none"),
        false
    )));
}

#[test]
fn nothing_is_written_when_the_hub_holds_it_already() {
    let (_, l) = ledger();
    let hub = stored("10", running(StepKind::AwaitToken));
    assert_eq!(
        hold_or_write(&l, &hub, &running(StepKind::AwaitToken), false),
        Write::Nothing
    );
}

#[test]
fn a_held_status_on_another_version_is_dropped() {
    let (_, l) = ledger();
    let hub = stored("10", running(StepKind::AwaitToken));
    let decided = seen_primary(running(StepKind::AwaitToken), "none");
    assert!(later(&hold_or_write(&l, &hub, &decided, false)).is_some());
    // Somebody wrote the object (a spec edit, another controller): what was held is stale.
    assert!(on_top(&l, &stored("11", running(StepKind::AwaitToken))).is_none());
    assert!(on_top(&l, &hub).is_none(), "dropped, not kept for later");
}

// --- the patch gate -----------------------------------------------------------------------

#[test]
fn the_same_patch_waits_for_the_members_watch_or_settle() {
    let (clock, l) = ledger();
    l.accepted("uid-1", Some("op-1"), &promote("T"), cluster());
    let waits = || gate(&l, "uid-1", "op-1", &promote("T"));
    // Nothing delivered since the answer: the store is behind our own patch, however long.
    assert!(waits());
    clock.advance(SETTLE * 5);
    assert!(waits());
    // A change delivered after the answer may have been on its way before it: the gate stays
    // shut until SETTLE has passed since the answer...
    let (clock, l) = ledger();
    l.accepted("uid-1", Some("op-1"), &promote("T"), cluster());
    clock.advance(Duration::from_millis(1));
    l.delivered(&cluster());
    assert!(gate(&l, "uid-1", "op-1", &promote("T")));
    // ... then the reconcile decides on the store, and sends again if it says so.
    clock.advance(SETTLE);
    assert!(!gate(&l, "uid-1", "op-1", &promote("T")));
}

#[test]
fn a_delivery_before_the_answer_does_not_open_the_gate() {
    let (clock, l) = ledger();
    l.delivered(&cluster());
    clock.advance(Duration::from_millis(5));
    l.accepted("uid-1", Some("op-1"), &promote("T"), cluster());
    clock.advance(SETTLE * 2);
    assert!(gate(&l, "uid-1", "op-1", &promote("T")));
}

#[test]
fn another_patch_operation_or_topology_is_sent() {
    let (_, l) = ledger();
    l.accepted("uid-1", Some("op-1"), &promote("T"), cluster());
    for (uid, op, action) in [
        ("uid-1", "op-1", promote("U")),
        ("uid-1", "op-2", promote("T")),
        ("other", "op-1", promote("T")),
    ] {
        assert!(!gate(&l, uid, op, &action));
    }
}

#[test]
fn delivery_times_come_from_the_injected_clock() {
    let (clock, l) = ledger();
    assert_eq!(l.last_delivered(&cluster()), None, "never delivered");
    clock.advance(Duration::from_secs(3));
    l.delivered(&cluster());
    assert_eq!(l.last_delivered(&cluster()), Some(l.now()));
    clock.advance(Duration::from_millis(40));
    let reaction = l
        .now()
        .saturating_duration_since(l.last_delivered(&cluster()).unwrap());
    assert_eq!(reaction, Duration::from_millis(40));
}

// --- a held change and the hub's version --------------------------------------------------

#[test]
fn a_held_change_is_dropped_once_the_hub_version_moves_even_by_our_own_write() {
    let (_, l) = ledger();
    let seen = stored("10", running(StepKind::AwaitToken));
    // A change with no patch after it is held on top of version 10.
    let decided = seen_primary(running(StepKind::AwaitToken), "none");
    assert!(later(&hold_or_write(&l, &seen, &decided, false)).is_some());
    assert_eq!(on_top(&l, &seen).and_then(|t| t.status), Some(decided));
    // Version 11 (any writer's, ours included): the held change was decided on an older step
    // log and is dropped; the next reconcile decides it again from the members.
    let moved = stored("11", running(StepKind::AwaitToken));
    assert!(on_top(&l, &moved).is_none());
    assert!(on_top(&l, &seen).is_none(), "forgotten, not kept for 10");
}

#[test]
fn failed_reconciles_back_off_per_topology_and_a_success_starts_over() {
    let (_, l) = ledger();
    let a = plain("1", "a");
    let mut b = plain("1", "a");
    b.metadata.uid = Some("uid-2".into());
    let delays: Vec<Duration> = (1..=8)
        .map(|n| {
            let (failures, delay) = l.failed(&a);
            assert_eq!(failures, n);
            delay
        })
        .collect();
    for (n, delay) in delays.iter().enumerate() {
        // RETRY_FIRST doubled per failure, capped, minus at most a quarter.
        let base = (RETRY_FIRST * (1 << n)).min(RETRY_MAX);
        assert!(
            *delay <= base && *delay >= base - base / 4,
            "failure {}: {delay:?}",
            n + 1
        );
    }
    assert!(delays[7] > RETRY_MAX / 2, "{delays:?}");
    // Another topology is not slowed by this one's failures.
    let (failures, delay) = l.failed(&b);
    assert_eq!(failures, 1);
    assert!(delay <= RETRY_FIRST, "{delay:?}");
    // One reconcile that did not fail: the next failure is a first one again.
    l.reconciled(&a);
    assert_eq!(l.failed(&a).0, 1);
}

#[test]
fn topologies_failing_together_spread_their_retries() {
    let (_, l) = ledger();
    let mut delays: Vec<Duration> = (0..50)
        .map(|i| {
            let mut t = plain("1", "a");
            t.metadata.uid = Some(format!("uid-{i}"));
            l.failed(&t).1
        })
        .collect();
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 25, "{delays:?}");
}
