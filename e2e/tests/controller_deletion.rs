#![forbid(unsafe_code)]
//! Deleting a `DistributedTopology`: the controller's finalizer (`federator.dev/topology`) makes
//! the deletion wait for the switchover in flight to finish, records it (an Event), then lets the
//! object go; an idle topology goes at once. The members are left as the topology last had them.

use e2e::emulator::faults;
use e2e::harness::SharedLab;
use e2e::harness::controller::{Load, assert_rows_kept, reach, set_primary};
use e2e::harness::setup::Setup;
use e2e::harness::testkit::DEADLINE;
use e2e::lab::health::wait_for;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use topology::DistributedTopology;
use topology::StepKind;

const FINALIZER: &str = "federator.dev/topology";

/// Deletes the topology `pg`; returns it as the API server answered (still there: finalizers).
async fn delete(hub: &Api<DistributedTopology>) -> DistributedTopology {
    hub.delete("pg", &DeleteParams::default())
        .await
        .expect("deleting the topology")
        .left()
        .expect("the topology is kept until its finalizer is removed")
}

async fn wait_gone(hub: &Api<DistributedTopology>) {
    wait_for("the topology to be gone", DEADLINE, || async move {
        hub.get_opt("pg").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The message of the controller's `Released` Event on `pg` in `ns` (waits for it: Events are
/// published off the reconcile's path).
async fn released(lab: &SharedLab, ns: &str) -> String {
    let events: Api<Event> = Api::namespaced(lab.admin("hub").await, ns);
    let events = &events;
    wait_for("the Released Event", DEADLINE, || async move {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let about_pg = e.regarding.as_ref()?.name.as_deref() == Some("pg");
            (about_pg && e.reason.as_deref() == Some("Released"))
                .then(|| e.note.unwrap_or_default())
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_idle_topology_is_immediate_and_changes_no_member() {
    let t = Setup::pair("ctl-delete-idle").ready().await;
    assert_eq!(
        t.ready.metadata.finalizers,
        Some(vec![FINALIZER.to_owned()]),
        "the controller adds its finalizer"
    );
    let (pair, hub) = (&t.pair, &t.hub);
    let a_before = pair.api_a.get(pair.a.name).await.expect("A").spec.replica;
    let b_before = pair.api_b.get(pair.b.name).await.expect("B").spec.replica;

    delete(hub).await;
    wait_gone(hub).await;
    let note = released(t.lab, t.ns()).await;
    assert!(note.contains("primary now: pg-a"), "{note}");
    let log = t.controller.log();
    assert!(!log.contains("reconcile failed"), "{log}");
    assert_eq!(
        pair.api_a.get(pair.a.name).await.expect("A").spec.replica,
        a_before
    );
    assert_eq!(
        pair.api_b.get(pair.b.name).await.expect("B").spec.replica,
        b_before
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topology_mid_switchover_lets_the_switchover_finish_first() {
    // A slower shutdown checkpoint widens AwaitToken, so the deletion lands inside it.
    let t = Setup::pair("ctl-delete-busy")
        .fault(faults::SLOW_SHUTDOWN, "1500ms")
        .ready()
        .await;
    let (lab, pair, hub) = (t.lab, &t.pair, &t.hub);
    let load = Load::start(lab, t.ns(), &t.members(), true);

    let generation = set_primary(hub, pair.b.name).await;
    let seen = reach(hub, generation, StepKind::AwaitToken).await;
    assert_eq!(
        seen,
        Some(StepKind::AwaitToken),
        "the switchover is in flight"
    );
    let deleting = delete(hub).await;
    let op = deleting.status.as_ref().and_then(|s| s.operation.as_ref());
    assert!(
        op.is_some_and(|op| op.outcome.is_none()),
        "deleted while the switchover runs: {op:#?}"
    );

    wait_gone(hub).await;
    let note = released(lab, t.ns()).await;
    assert!(note.contains("primary now: pg-b"), "{note}");
    let log = t.controller.log();
    assert!(!log.contains("reconcile failed"), "{log}");
    // Finished, not stopped: B promoted and its token cleared, A follows B.
    let b = pair.api_b.get(pair.b.name).await.expect("B");
    let b_replica = b.spec.replica.expect("B's replica section");
    assert_eq!(b_replica.primary.as_deref(), Some(pair.b.name));
    assert_eq!(b_replica.promotion_token, None, "ClearToken ran");
    let a = pair.api_a.get(pair.a.name).await.expect("A");
    assert_eq!(
        a.spec.replica.and_then(|r| r.primary).as_deref(),
        Some(pair.b.name)
    );
    let acked = load.finish().await;
    assert_rows_kept(lab, t.ns(), pair.b, &acked).await;
    t.finish().await;
}
