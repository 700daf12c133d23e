#![forbid(unsafe_code)]
//! Leader election with real `federator controller` processes on the lab's hub: of two
//! controllers only the Lease holder writes (its identity is on every Event), a kill -9 of the
//! leader hands the Lease to the other within the lease duration and it serves the next
//! switchover; and a leader whose Lease is handed to another holder stops writing at once —
//! neither status nor member patches — until it holds the Lease again.

use std::time::{Duration, Instant};

use e2e::harness::controller::{
    Controller, Load, assert_rows_kept, deploy, http_get, sample, set_primary, switchover,
    wait_condition, wait_metric, wide_timeouts,
};
use e2e::harness::testkit::{self, DEADLINE, Pair};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use topology::api::Outcome;
use topology::conditions::kind;

/// Where `Controller::start_with` puts its Lease (the controller's default namespace).
const LEASE_NAMESPACE: &str = "federator-system";

fn lease_name(ns: &str) -> String {
    format!("federator-{ns}")
}

async fn leases(lab: &SharedLab) -> Api<Lease> {
    Api::namespaced(lab.admin("hub").await, LEASE_NAMESPACE)
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get(name).await.ok()?.spec?.holder_identity
}

/// Waits until the Lease names one of `identities`; returns it and how long that took.
async fn wait_holder(leases: &Api<Lease>, name: &str, identities: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let who = wait_for(
        &format!("one of {identities:?} to hold the Lease {name}"),
        DEADLINE,
        || async move {
            holder(leases, name)
                .await
                .filter(|h| identities.contains(&h.as_str()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (who, started.elapsed())
}

/// The `reportingInstance` of every Event federator published in `ns` whose note mentions
/// `operation` (an operation id prefix), once there is one: Events are published by a background
/// task after the status the CLI follows, so they are waited for (deadline).
async fn reporters(lab: &SharedLab, ns: &str, operation: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(lab.admin("hub").await, ns);
    let events = &events;
    wait_for(
        &format!("Events of operation {operation}*"),
        DEADLINE,
        || async move {
            let found: Vec<String> = events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|e| e.reporting_controller.as_deref() == Some("federator"))
                .filter(|e| e.note.as_deref().is_some_and(|n| n.contains(operation)))
                .map(|e| e.reporting_instance.unwrap_or_default())
                .collect();
            (!found.is_empty()).then_some(found)
        },
    )
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_only_the_leader_writes_and_a_kill_9_hands_over_within_the_lease() {
    const LEASE_SECONDS: u64 = 3;
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-leaders").await;
    ns.grant_federator().await;
    let pair = Pair::create(lab, ns.name()).await;
    let members = [pair.a, pair.b];
    let hub = deploy(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        wide_timeouts(),
    )
    .await;
    let seconds = LEASE_SECONDS.to_string();
    let start = |id: &str| {
        let flags = ["--identity", id, "--lease-seconds", &seconds];
        Controller::start_with(lab, ns.name(), &format!("-{id}"), &flags)
    };
    let mut one = start("ctl-one");
    let mut two = start("ctl-two");
    let leases = leases(lab).await;
    let lease = lease_name(ns.name());
    let (leader, _) = wait_holder(&leases, &lease, &["ctl-one", "ctl-two"]).await;
    wait_condition(&hub, kind::READY).await;
    let load = Load::start(lab, ns.name(), &members, true);

    // A switchover with both running: every Event of it comes from the Lease holder, and the
    // other controller never patched a member.
    let generation = set_primary(&hub, pair.b.name).await;
    let (code, out, _) = switchover(lab, ns.name(), pair.b.name).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        holder(&leases, &lease).await.as_deref(),
        Some(leader.as_str())
    );
    let first = format!("{generation}-");
    let seen = reporters(lab, ns.name(), &first).await;
    assert!(!seen.is_empty(), "no Events of switchover {first}*");
    assert!(seen.iter().all(|r| *r == leader), "{seen:?} ≠ {leader}");
    let (leading, following) = if leader == "ctl-one" {
        (&mut one, &mut two)
    } else {
        (&mut two, &mut one)
    };
    assert!(leading.log().contains("patching member"));
    assert!(
        !following.log().contains("patching member"),
        "the follower patched a member:\n{}",
        following.log()
    );
    // Metrics: the leader reports itself and the topology; the follower says it does not lead
    // and reports no topology state (the leader's series are the ones to alert on).
    let ready = format!(
        r#"namespace="{}",topology="pg",reason="AsDesired""#,
        ns.name()
    );
    let leading_addr = leading.probe_addr().await;
    wait_metric(&leading_addr, "federator_leader", "", 1.0).await;
    wait_metric(&leading_addr, "federator_topology_ready", &ready, 1.0).await;
    let following_addr = following.probe_addr().await;
    let (_, text) = http_get(&following_addr, "/metrics")
        .await
        .expect("the follower's /metrics");
    assert_eq!(sample(&text, "federator_leader", ""), Some(0.0), "{text}");
    assert!(!text.contains(r#"topology="pg""#), "{text}");

    // kill -9 of the leader: the follower takes the Lease once it expires.
    let survivor = if leader == "ctl-one" {
        "ctl-two"
    } else {
        "ctl-one"
    };
    leading.kill().await;
    let (new_leader, took) = wait_holder(&leases, &lease, &[survivor]).await;
    println!(
        "kill -9 of {leader}: {new_leader} holds the Lease after {took:.2?} ({LEASE_SECONDS} s lease)"
    );
    // The Lease expires at most LEASE_SECONDS after the kill; the contender then waits up to
    // 1 s (kube-lease-manager's random back-off) and takes it with two requests.
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 2),
        "the takeover took {took:?}"
    );
    // The new leader's metrics follow at once, without a restart.
    wait_metric(&following_addr, "federator_leader", "", 1.0).await;
    wait_metric(&following_addr, "federator_topology_ready", &ready, 1.0).await;

    // The survivor serves the next switchover.
    let generation = set_primary(&hub, pair.a.name).await;
    let (code, out, _) = switchover(lab, ns.name(), pair.a.name).await;
    assert_eq!(code, 0, "{out}");
    let seen = reporters(lab, ns.name(), &format!("{generation}-")).await;
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r == survivor), "{seen:?} ≠ {survivor}");
    let acked = load.finish().await;
    assert_rows_kept(lab, ns.name(), pair.a, &acked).await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_handed_away_stops_writing_until_it_holds_it_again() {
    // Renewed every 4 s: without the Lease watch the loss would only be noticed then.
    const LEASE_SECONDS: u64 = 6;
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-lease-lost").await;
    ns.grant_federator().await;
    let pair = Pair::create(lab, ns.name()).await;
    let members = [pair.a, pair.b];
    let hub = deploy(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        wide_timeouts(),
    )
    .await;
    let seconds = LEASE_SECONDS.to_string();
    let flags = ["--identity", "ctl-old", "--lease-seconds", &seconds];
    let controller = Controller::start_with(lab, ns.name(), "-old", &flags);
    let leases = leases(lab).await;
    let lease = lease_name(ns.name());
    wait_holder(&leases, &lease, &["ctl-old"]).await;
    wait_condition(&hub, kind::READY).await;
    let before = hub.get("pg").await.expect("the topology");
    let generations = |c: &topology::cnpg::Cluster| c.metadata.generation;
    let a_before = generations(&pair.api_a.get(pair.a.name).await.expect("A"));
    let b_before = generations(&pair.api_b.get(pair.b.name).await.expect("B"));

    // Someone else takes the Lease (it never renews it: it expires 4 s later).
    let handed = Instant::now();
    leases
        .patch(
            &lease,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": "fake-holder",
                "acquireTime": MicroTime(Timestamp::now()),
                "renewTime": MicroTime(Timestamp::now()),
                "leaseDurationSeconds": 4,
            }})),
        )
        .await
        .expect("handing the Lease to fake-holder");
    let controller = &controller;
    wait_for(
        "the old leader to say it stopped leading",
        Duration::from_secs(2),
        || async move {
            controller
                .log()
                .contains("leadership changed leading=false")
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));
    println!(
        "the old leader stopped {:.2?} after the handover",
        handed.elapsed()
    );
    // Its gauge says so at once (it used to keep 1 until its next reconcile).
    let addr = controller.probe_addr().await;
    let (_, text) = http_get(&addr, "/metrics").await.expect("/metrics");
    assert_eq!(sample(&text, "federator_leader", ""), Some(0.0), "{text}");
    assert!(!text.contains(r#"topology="pg""#), "{text}");

    // A switchover is asked for while another identity holds the Lease: nothing may be written
    // until the old controller holds the Lease again.
    let generation = set_primary(&hub, pair.b.name).await;
    let (hub_ref, leases_ref, lease_ref, pair_ref) = (&hub, &leases, &lease, &pair);
    let before_ref = &before;
    let mut checks = 0;
    let checks_ref = &mut checks;
    let back = tokio::time::timeout(DEADLINE, async move {
        loop {
            let topo = hub_ref.get("pg").await.expect("the topology");
            let a = generations(&pair_ref.api_a.get(pair_ref.a.name).await.expect("A"));
            let b = generations(&pair_ref.api_b.get(pair_ref.b.name).await.expect("B"));
            // Read after the objects: a write seen above came from a controller that already
            // held the Lease, so the Lease must show it now.
            let lease = leases_ref.get(lease_ref).await.expect("the Lease");
            let holder = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref());
            if holder == Some("ctl-old") {
                return lease;
            }
            assert_eq!(
                topo.status, before_ref.status,
                "the status was written while {holder:?} held the Lease"
            );
            assert_eq!(
                (a, b),
                (a_before, b_before),
                "a member was patched while {holder:?} held the Lease"
            );
            *checks_ref += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the old controller to take the expired Lease back");
    let reacquired = back
        .spec
        .and_then(|s| s.acquire_time)
        .expect("acquireTime")
        .0;
    println!(
        "{checks} checks, no write; ctl-old holds the Lease again {:.2?} after the handover",
        handed.elapsed()
    );
    assert!(checks > 10, "{checks} checks");

    // Leading again, it runs the switchover asked for meanwhile; it started only after the
    // Lease was back.
    let prefix = format!("{generation}-");
    let prefix_ref = &prefix;
    let done = wait_for("the switchover to finish", DEADLINE, || async move {
        hub_ref
            .get("pg")
            .await
            .ok()?
            .status?
            .history
            .into_iter()
            .find(|op| op.id.starts_with(prefix_ref))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.outcome, Some(Outcome::Succeeded), "{done:#?}");
    assert!(
        done.started_at.0 >= reacquired,
        "started {} before the Lease was back at {reacquired}",
        done.started_at.0
    );
    assert!(!pair.b_in_recovery().await, "B is the primary");
    pair.delete().await;
}
