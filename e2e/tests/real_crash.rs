#![forbid(unsafe_code)]
//! A controller killed with -9 mid-switchover on the real CloudNativePG operator
//! (docs/lab-real.md): a new controller takes the Lease over and finishes the operation from the
//! hub's record. Killed once while the old primary's token is awaited, once while the promotion
//! is awaited (the two steps real CNPG spends seconds in), under a writer and the two-primaries
//! sampler.
//!
//! Needs root and `make deps-real`; `make test-real` runs it.

mod real_support;

use real_support::{A, B};

use e2e::harness::controller::{
    Controller, Load, assert_rows_kept, deploy, finished_operation, reach, wait_condition,
    wide_timeouts,
};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use topology::StepKind;
use topology::api::Outcome;
use topology::conditions::kind;

const LEASE: [&str; 2] = ["--lease-seconds", "3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_kill_9_mid_switchover_then_a_new_controller_finishes() {
    let (lab, test_ns) = real_support::lab_and_namespace("real-crash").await;
    let ns = test_ns.name();
    real_support::create_members(lab, ns, &[(A, B), (B, A)], real_support::Channel::Streaming)
        .await;
    let members = [A, B];
    let hub = deploy(lab, ns, &members, json!({"star": {}}), wide_timeouts()).await;
    let mut controller = Controller::start_with(lab, ns, "-0", &LEASE);
    wait_condition(&hub, kind::READY).await;
    let load = Load::start(lab, ns, &members, true);

    for (i, (to, kill_at)) in [(B, StepKind::AwaitToken), (A, StepKind::AwaitPromotion)]
        .into_iter()
        .enumerate()
    {
        let patched = hub
            .patch(
                "pg",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"primary": to.name}})),
            )
            .await
            .expect("setting spec.primary");
        let generation = patched.metadata.generation.unwrap_or_default();
        let seen = reach(&hub, generation, kill_at).await;
        controller.kill().await;
        println!(
            "switchover to {}: kill -9 at {kill_at} (saw {seen:?})",
            to.name
        );
        assert_eq!(
            seen,
            Some(kill_at),
            "the kill was meant to land while the hub records {kill_at}"
        );
        controller = Controller::start_with(lab, ns, &format!("-{}", i + 1), &LEASE);
        let done = finished_operation(&hub, generation, real_support::CLUSTER_WITHIN).await;
        assert_eq!(done.outcome, Some(Outcome::Succeeded), "{done:#?}");
        println!("{} → {}: [{}]", done.from, done.to, done.step_timings);
    }
    wait_condition(&hub, kind::READY).await;
    let acked = load.finish().await;
    assert_rows_kept(lab, ns, A, &acked).await;
    drop(controller);
}
