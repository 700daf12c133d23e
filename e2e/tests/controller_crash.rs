#![forbid(unsafe_code)]
//! kill -9 of the controller during a switchover, then a fresh controller: it waits out the dead
//! one's Lease, reads the step log from the hub and finishes the switchover — with the same
//! invariants (never two primaries, every acknowledged row kept). One switchover per kill point,
//! alternating direction.

mod controller_support;

use controller_support::{
    Controller, Load, assert_rows_kept, deploy, finished_operation, reach, wait_condition,
    wide_timeouts,
};
use e2e::emulator::faults;
use e2e::emulator::testkit::{self, DEADLINE, Pair};
use e2e::harness::TestNamespace;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use topology::StepKind;
use topology::api::Outcome;
use topology::conditions::kind;

/// A short Lease, so the replacement takes over within seconds of the kill.
const LEASE: [&str; 2] = ["--lease-seconds", "3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_each_step_then_a_new_controller_finishes() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-crash").await;
    ns.grant_federator().await;
    let pair = Pair::create(lab, ns.name()).await;
    // A slower shutdown checkpoint and a slower promotion widen AwaitToken and AwaitPromotion
    // past the 1 s a status change may be held back during an operation, so each reaches the
    // hub on its own and a kill lands inside it.
    for (api, name) in [(&pair.api_a, pair.a.name), (&pair.api_b, pair.b.name)] {
        testkit::annotate(api, name, faults::SLOW_SHUTDOWN, Some("1500ms")).await;
        testkit::annotate(api, name, faults::SLOW_PROMOTION, Some("1500ms")).await;
    }
    let members = [pair.a, pair.b];
    let hub = deploy(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        wide_timeouts(),
    )
    .await;
    let mut controller = Controller::start_with(lab, ns.name(), "-0", &LEASE);
    wait_condition(&hub, kind::READY).await;

    let load = Load::start(lab, ns.name(), &members, true);

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
        let seen = reach(&hub, generation, kill_at).await;
        controller.kill().await;
        println!("switchover to {to}: kill -9 at {kill_at} (saw {seen:?})");
        // A pair has no other member to tell: Bookkeeping and ClearToken are one reconcile.
        if kill_at != StepKind::Bookkeeping {
            assert_eq!(
                seen,
                Some(kill_at),
                "the kill was meant to land while the hub records {kill_at}"
            );
        }
        controller = Controller::start_with(lab, ns.name(), &format!("-{}", i + 1), &LEASE);
        let done = finished_operation(&hub, generation, DEADLINE).await;
        assert_eq!(done.outcome, Some(Outcome::Succeeded), "{done:#?}");
        to = if to == pair.a.name {
            pair.b.name
        } else {
            pair.a.name
        };
    }
    wait_condition(&hub, kind::READY).await;
    let acked = load.finish().await;
    // Five switchovers from A end on B.
    assert_rows_kept(lab, ns.name(), pair.b, &acked).await;
    drop(controller);
    pair.delete().await;
}
