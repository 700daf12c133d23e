#![forbid(unsafe_code)]
//! The hub's control plane failing during a switchover: the hub apiserver frozen (SIGSTOP) at
//! its step boundaries (the controller can neither record a step nor renew its Lease), and the
//! lab's etcd (behind the hub and every member apiserver) restarted between the demotion and the
//! token. The switchover must still end Succeeded once they are back, under the
//! never-two-primaries sampler and a writer whose acknowledged rows must all be on the new
//! primary. Outcomes are in docs/faults.md ("The hub and the control plane").

mod controller_support;
mod faults_support;

use std::time::{Duration, Instant};

use controller_support::{Load, assert_rows_kept, reach, wait_condition};
use e2e::emulator::faults;
use e2e::faults::pause;
use faults_support::{Routed, finished};
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
