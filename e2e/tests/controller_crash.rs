#![forbid(unsafe_code)]
//! kill -9 of the controller during a switchover, then a fresh controller: it waits out the dead
//! one's Lease, reads the step log from the hub and finishes the switchover — with the same
//! invariants (never two primaries, every acknowledged row kept). One switchover per kill point,
//! alternating direction.

use e2e::emulator::faults;
use e2e::harness::controller::{
    Controller, Load, assert_rows_kept, finished_operation, reach, set_primary, wait_condition,
};
use e2e::harness::setup::Setup;
use e2e::harness::testkit::DEADLINE;
use e2e::harness::testkit::{healthy, wait_cluster, wait_until_writable};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use topology::StepKind;
use topology::api::Outcome;
use topology::conditions::kind;

/// A short Lease, so the replacement takes over within seconds of the kill.
const LEASE: [&str; 2] = ["--lease-seconds", "3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_each_step_then_a_new_controller_finishes() {
    // A slower shutdown checkpoint and a slower promotion widen AwaitToken and AwaitPromotion
    // past the 1 s a status change may be held back during an operation, so each reaches the
    // hub on its own and a kill lands inside it.
    let mut t = Setup::pair("ctl-crash")
        .fault(faults::SLOW_SHUTDOWN, "1500ms")
        .fault(faults::SLOW_PROMOTION, "1500ms")
        .controller_args(&LEASE)
        .ready()
        .await;
    let (lab, pair, hub) = (t.lab, &t.pair, &t.hub);
    let members = t.members();
    let ns = t.ns().to_owned();

    let load = Load::start(lab, &ns, &members, true);

    let kill_points = [
        StepKind::Demote,
        StepKind::AwaitToken,
        StepKind::AwaitPromotion,
        StepKind::Bookkeeping,
        StepKind::ClearToken,
    ];
    let mut to = pair.b.name;
    for (i, kill_at) in kill_points.into_iter().enumerate() {
        let patched = hub
            .patch(
                "pg",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"primary": to}})),
            )
            .await
            .expect("setting spec.primary");
        let generation = patched.metadata.generation.unwrap_or_default();
        let seen = reach(hub, generation, kill_at).await;
        t.controller.kill().await;
        println!("switchover to {to}: kill -9 at {kill_at} (saw {seen:?})");
        // A pair has no other member to tell: Bookkeeping and ClearToken are one reconcile.
        if kill_at != StepKind::Bookkeeping {
            assert_eq!(
                seen,
                Some(kill_at),
                "the kill was meant to land while the hub records {kill_at}"
            );
        }
        t.controller = Controller::start_with(lab, &ns, &format!("-{}", i + 1), &LEASE);
        let done = finished_operation(hub, generation, DEADLINE).await;
        assert_eq!(done.outcome, Some(Outcome::Succeeded), "{done:#?}");
        to = if to == pair.a.name {
            pair.b.name
        } else {
            pair.a.name
        };
    }
    wait_condition(hub, kind::READY).await;
    let acked = load.finish().await;
    // Five switchovers from A end on B.
    assert_rows_kept(lab, &ns, pair.b, &acked).await;
    t.finish().await;
}

/// The killed controller's promotion completes while no controller runs: the replacement sees
/// no member change after it takes the Lease, only the finished promotion in its first list,
/// and must still finish the switchover (a wake-up by gaining the Lease, not by a watch event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_finished_while_no_controller_ran_is_picked_up() {
    let mut t = Setup::pair("ctl-quiet")
        .fault(faults::SLOW_PROMOTION, "1500ms")
        .controller_args(&LEASE)
        .ready()
        .await;
    let (lab, pair, hub) = (t.lab, &t.pair, &t.hub);
    let ns = t.ns().to_owned();
    let generation = set_primary(hub, pair.b.name).await;
    let seen = reach(hub, generation, StepKind::AwaitPromotion).await;
    t.controller.kill().await;
    assert_eq!(seen, Some(StepKind::AwaitPromotion));
    wait_until_writable(lab, pair.b.region, &ns, pair.b.name).await;
    wait_cluster(&pair.api_b, pair.b.name, "B healthy as primary", healthy).await;
    t.controller = Controller::start_with(lab, &ns, "-1", &LEASE);
    let done = finished_operation(hub, generation, DEADLINE).await;
    assert_eq!(done.outcome, Some(Outcome::Succeeded), "{done:#?}");
    t.finish().await;
}
