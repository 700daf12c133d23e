#![forbid(unsafe_code)]
//! The controller against the emulator's CNPG faults (contract §6): a stuck demotion and a
//! skipped demotion hold the switchover with a condition and a Warning Event and never promote;
//! a demotion token wiped after clean-up (#11074) does not stop the switchover, because the
//! controller persisted it when it first appeared.

mod controller_support;

use controller_support::{Controller, Load, deploy, switchover, wait_condition};
use e2e::emulator::faults;
use e2e::emulator::testkit::{self, Pair};
use e2e::harness::TestNamespace;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use topology::DistributedTopology;
use topology::cnpg::Role;
use topology::conditions::{kind, reason};

/// A healthy pair with `fault` annotated on A, a topology with short deadlines and a
/// controller; switches over to B with `--wait` under the two-primaries sampler. Returns the
/// CLI's exit code and output, and the topology afterwards.
async fn switchover_with_fault(
    test: &str,
    fault: &str,
) -> (TestNamespace, Pair, i32, String, DistributedTopology) {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create(test).await;
    ns.grant_federator().await;
    let pair = Pair::create(lab, ns.name()).await;
    testkit::annotate(&pair.api_a, pair.a.name, fault, Some("true")).await;
    let members = [pair.a, pair.b];
    let timeouts = json!({"demotionStart": "5s", "tokenWait": "6s", "promotionWait": "2m"});
    let hub = deploy(lab, ns.name(), &members, json!({"star": {}}), timeouts).await;
    let _controller = Controller::start(lab, ns.name());
    wait_condition(&hub, kind::READY).await;

    let load = Load::start(lab, ns.name(), &members, false);
    let (code, out, _) = switchover(lab, ns.name(), pair.b.name).await;
    load.finish().await;
    let topo = hub.get("pg").await.expect("the topology");
    (ns, pair, code, out, topo)
}

/// The switchover holds with `hold_reason` in status, condition and a Warning Event, and B
/// was never promoted: not by spec, not in PostgreSQL.
async fn assert_held_without_promotion(
    ns: &TestNamespace,
    pair: &Pair,
    code: i32,
    out: &str,
    topo: &DistributedTopology,
    hold_reason: &str,
) {
    assert_eq!(code, 2, "the CLI exits 2 on a hold; output:\n{out}");
    assert!(out.contains(hold_reason), "{out}");
    let status = topo.status.clone().expect("status");
    let op = status.operation.expect("the operation stays, holding");
    assert_eq!(
        op.hold.as_ref().map(|h| h.reason.as_str()),
        Some(hold_reason),
        "{op:#?}"
    );
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == kind::SWITCHOVER_IN_PROGRESS)
        .expect("SwitchoverInProgress");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", hold_reason)
    );

    let events: Api<Event> = Api::namespaced(ns.lab.admin("hub").await, ns.name());
    let events = events.list(&ListParams::default()).await.expect("events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some(hold_reason)
                && e.type_.as_deref() == Some("Warning")),
        "no Warning Event {hold_reason}: {:#?}",
        events
            .items
            .iter()
            .map(|e| (&e.reason, &e.note))
            .collect::<Vec<_>>()
    );

    let b = pair.api_b.get(pair.b.name).await.expect("B");
    assert_eq!(
        b.role(),
        Role::Replica,
        "B's spec was promoted: {:?}",
        b.spec.replica
    );
    assert!(pair.b_in_recovery().await, "B accepts writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_demotion_holds_on_the_token_deadline_and_never_promotes() {
    let (ns, pair, code, out, topo) =
        switchover_with_fault("ctl-stuck", faults::HANG_BEFORE_TRANSITION).await;
    assert_held_without_promotion(&ns, &pair, code, &out, &topo, reason::TOKEN_TIMEOUT).await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_demotion_holds_and_never_promotes() {
    let (ns, pair, code, out, topo) =
        switchover_with_fault("ctl-skip", faults::SKIP_DEMOTION).await;
    assert_held_without_promotion(&ns, &pair, code, &out, &topo, reason::DEMOTION_NOT_STARTED)
        .await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_demotion_token_was_persisted_and_the_switchover_completes() {
    let (_ns, pair, code, out, topo) =
        switchover_with_fault("ctl-wipe", faults::WIPE_DEMOTION_TOKEN).await;
    assert_eq!(code, 0, "{out}");
    let status = topo.status.expect("status");
    assert!(status.operation.is_none());
    assert!(!pair.b_in_recovery().await, "B is the primary");
    pair.delete().await;
}
