#![forbid(unsafe_code)]
//! The hub's control plane failing during a switchover: the hub apiserver frozen (SIGSTOP) at
//! its step boundaries (the controller can neither record a step nor renew its Lease), and the
//! lab's etcd (behind the hub and every member apiserver) restarted between the demotion and the
//! token. The switchover must still end Succeeded once they are back, under the
//! never-two-primaries sampler and a writer whose acknowledged rows must all be on the new
//! primary. And the leader's own hub connection blackholed while a second replica waits: the
//! leader must stop writing before its Lease could pass, and the other finishes the switchover.
//! Outcomes are in docs/faults.md ("The hub and the control plane"). The tests of this file run
//! one at a time: each freezes or cuts a part all of them share.

mod faults_support;

use std::time::{Duration, Instant};

use e2e::emulator::faults;
use e2e::faults::Fault;
use e2e::faults::pause;
use e2e::harness::controller::{Controller, Load, assert_rows_kept, reach, wait_condition};
use e2e::lab::health::wait_for;
use faults_support::{Routed, finished, one_at_a_time};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use topology::StepKind;
use topology::api::Outcome;
use topology::conditions::kind;

/// How long the hub stays frozen each time: the 30 s by default, longer than the
/// controller's Lease (15 s), so it loses leadership every time. `FEDERATOR_E2E_HUB_PAUSE_SECS`
/// shortens it for a quick run.
fn pause_length() -> Duration {
    let secs = std::env::var("FEDERATOR_E2E_HUB_PAUSE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_apiserver_frozen_at_each_step_boundary() {
    let _one = one_at_a_time().await;
    // Slow shutdown and promotion (1.5 s each) keep the switchover at its await steps long
    // enough for the freeze to land there.
    let s = Routed::start(
        "flt-hub-freeze",
        &[
            (faults::SLOW_SHUTDOWN, "1500ms"),
            (faults::SLOW_PROMOTION, "1500ms"),
        ],
        &[],
    )
    .await;
    let load = Load::start(s.lab, s.ns.name(), &[s.pair.a, s.pair.b], true);
    let generation = s.switch_to(s.pair.b.name).await;
    let started = Instant::now();
    let length = pause_length();
    let mut frozen_at = Vec::new();
    for boundary in [
        StepKind::AwaitDemotionStarted,
        StepKind::AwaitToken,
        StepKind::AwaitPromotion,
    ] {
        let Some(step) = reach(&s.hub, generation, boundary).await else {
            break; // finished before this boundary
        };
        let frozen = pause(&s.lab.layout, "hub").expect("SIGSTOP to the hub apiserver");
        tokio::time::sleep(length).await;
        frozen.resume().expect("SIGCONT to the hub apiserver");
        println!(
            "hub frozen {length:?} at {step:?} (asked for {boundary:?}), {:?} into the switchover",
            started.elapsed()
        );
        frozen_at.push(step);
    }
    assert!(
        !frozen_at.is_empty(),
        "the switchover finished before the first freeze"
    );
    let op = finished(&s.hub, generation, Duration::from_secs(300)).await;
    println!(
        "outcome {:?} after {:?}, frozen at {frozen_at:?}",
        op.outcome,
        started.elapsed()
    );
    assert_eq!(
        op.outcome,
        Some(Outcome::Succeeded),
        "{op:#?}\ncontroller log:\n{}",
        s.controller.log()
    );
    let topo = wait_condition(&s.hub, kind::READY).await;
    assert_eq!(
        topo.status.and_then(|st| st.observed_primary).as_deref(),
        Some(s.pair.b.name)
    );
    let acked = load.finish().await;
    println!("{} acknowledged rows", acked.len());
    assert_rows_kept(s.lab, s.ns.name(), s.pair.b, &acked).await;
    let log = s.controller.log();
    assert!(!log.contains("panicked"), "{log}");
    // A freeze longer than the Lease: the controller stopped writing before its Lease could
    // have passed to another replica, and led again once the hub answered.
    assert!(
        log.contains("stopping all writes"),
        "the controller never stepped down while the hub was frozen:\n{log}"
    );
    s.pair.delete().await;
}

/// How long etcd stays down: several request timeouts of the controller and the emulators.
const ETCD_DOWN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarted_between_the_demotion_and_the_token() {
    let _one = one_at_a_time().await;
    let s = Routed::start("flt-etcd", &[(faults::SLOW_SHUTDOWN, "1500ms")], &[]).await;
    let load = Load::start(s.lab, s.ns.name(), &[s.pair.a, s.pair.b], true);
    let generation = s.switch_to(s.pair.b.name).await;
    let started = Instant::now();
    let step = reach(&s.hub, generation, StepKind::AwaitDemotionStarted)
        .await
        .expect("the switchover finished before etcd was stopped");
    let dir = s.lab.layout.root();
    let stopped = e2e::lab::stop(dir, e2e::lab::ETCD)
        .await
        .expect("stopping etcd");
    println!("etcd stopped at {step:?} ({stopped:?})");
    tokio::time::sleep(ETCD_DOWN).await;
    e2e::lab::start(dir, e2e::lab::ETCD)
        .await
        .expect("starting etcd again");
    println!("etcd back after {ETCD_DOWN:?}");
    let op = finished(&s.hub, generation, Duration::from_secs(300)).await;
    println!("outcome {:?} after {:?}", op.outcome, started.elapsed());
    assert_eq!(
        op.outcome,
        Some(Outcome::Succeeded),
        "{op:#?}\ncontroller log:\n{}",
        s.controller.log()
    );
    let topo = wait_condition(&s.hub, kind::READY).await;
    assert_eq!(
        topo.status.and_then(|st| st.observed_primary).as_deref(),
        Some(s.pair.b.name)
    );
    let acked = load.finish().await;
    assert_rows_kept(s.lab, s.ns.name(), s.pair.b, &acked).await;
    assert!(!s.controller.log().contains("panicked"));
    s.pair.delete().await;
}

/// When `log` (plain text) first has a line containing `needle`: the timestamp it starts with.
fn first_time(log: &str, needle: &str) -> Option<Timestamp> {
    log.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_hub_connection_blackholed_mid_switchover() {
    let _one = one_at_a_time().await;
    let s = Routed::start(
        "flt-leader",
        &[(faults::SLOW_SHUTDOWN, "1500ms")],
        &["--identity", "ctl-a"],
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(s.lab.admin("hub").await, "federator-system");
    let lease = format!("federator-{}", s.ns.name());
    let holder = || async { leases.get(&lease).await.ok()?.spec?.holder_identity };
    assert_eq!(holder().await.as_deref(), Some("ctl-a"));
    // The standby reaches the hub directly and the members through the same proxies.
    let mut args = s.routes.controller_args();
    args.extend(["--identity".to_owned(), "ctl-b".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let standby = Controller::start_with(s.lab, s.ns.name(), "-b", &args);

    let load = Load::start(s.lab, s.ns.name(), &[s.pair.a, s.pair.b], true);
    let generation = s.switch_to(s.pair.b.name).await;
    let step = reach(&s.hub, generation, StepKind::AwaitDemotionStarted)
        .await
        .expect("the switchover finished before the blackhole");
    s.routes.hub.set(Fault::Blackhole);
    let cut = Instant::now();
    println!("ctl-a's hub connection blackholed at {step:?}");
    wait_for(
        "ctl-b to hold the Lease",
        Duration::from_secs(120),
        || async { (holder().await.as_deref() == Some("ctl-b")).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nctl-b log:\n{}", standby.log()));
    println!("ctl-b holds the Lease {:?} after the cut", cut.elapsed());
    let op = finished(&s.hub, generation, Duration::from_secs(300)).await;
    println!("outcome {:?} {:?} after the cut", op.outcome, cut.elapsed());
    assert_eq!(
        op.outcome,
        Some(Outcome::Succeeded),
        "{op:#?}\nctl-b log:\n{}",
        standby.log()
    );
    wait_condition(&s.hub, kind::READY).await;

    // ctl-a stopped writing before ctl-b could lead.
    let (a_log, b_log) = (s.controller.log(), standby.log());
    let stepped_down = first_time(&a_log, "stopping all writes")
        .unwrap_or_else(|| panic!("ctl-a never stepped down:\n{a_log}"));
    let b_leads =
        first_time(&b_log, "leading=true").unwrap_or_else(|| panic!("ctl-b never led:\n{b_log}"));
    println!("ctl-a stepped down at {stepped_down}, ctl-b led at {b_leads}");
    assert!(
        stepped_down < b_leads,
        "ctl-a stepped down at {stepped_down}, after ctl-b led at {b_leads}"
    );
    let acked = load.finish().await;
    assert_rows_kept(s.lab, s.ns.name(), s.pair.b, &acked).await;
    s.routes.hub.set(Fault::Pass);
    for log in [&a_log, &b_log] {
        assert!(!log.contains("panicked"), "{log}");
    }
    s.pair.delete().await;
}
