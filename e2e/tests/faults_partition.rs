#![forbid(unsafe_code)]
//! Member apiservers behind fault proxies (`e2e::faults`) during a switchover: the old
//! primary's region unreachable after its demotion but before its token is read, and after the
//! promotion but before bookkeeping; the new primary's apiserver answering every request 5 s
//! late. Each under the never-two-primaries sampler and a writer whose acknowledged rows must
//! all be on the final primary. Outcomes are in docs/faults.md.

mod controller_support;
mod faults_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use controller_support::{Load, assert_rows_kept, reach, wait_condition};
use e2e::emulator::faults;
use e2e::faults::Fault;
use faults_support::{Routed, finished, observe_for};
use topology::StepKind;
use topology::api::Outcome;
use topology::conditions::kind;

/// How long a region stays unreachable: longer than a switchover's whole happy path (~2 s), far
/// shorter than the token deadline (3 min here), so the outcome is decided by what the controller
/// does while it cannot see the member, not by a deadline.
const OUTAGE: Duration = Duration::from_secs(8);

/// Switches the pair to B; once the hub records `at`, blackholes A's region for [`OUTAGE`]
/// (B must stay a replica while the fault holds when `b_stays_replica`), lifts it, and expects
/// the switchover to succeed with every acknowledged row on B.
async fn blackhole_the_old_primary_at(s: Routed, at: StepKind, b_stays_replica: bool) {
    let load = Load::start(s.lab, s.ns.name(), &[s.pair.a, s.pair.b], true);
    let generation = s.switch_to(s.pair.b.name).await;
    let reached = reach(&s.hub, generation, at).await;
    assert!(
        reached.is_some(),
        "the switchover finished before the fault"
    );
    let a = s.routes.member(s.pair.a.region);
    a.set(Fault::Blackhole);
    let seen = observe_for(&s.hub, OUTAGE).await;
    println!(
        "while {} was blackholed: {}",
        s.pair.a.region,
        seen.summary()
    );
    if b_stays_replica {
        // Nothing can be promoted without A's token, which the controller could not read.
        assert!(
            s.pair.b_in_recovery().await,
            "B was promoted without the token"
        );
    }
    a.set(Fault::Pass);
    let op = finished(&s.hub, generation, Duration::from_secs(120)).await;
    assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
    wait_condition(&s.hub, kind::READY).await;
    let acked = load.finish().await;
    assert_rows_kept(s.lab, s.ns.name(), s.pair.b, &acked).await;
    assert!(a.stats().accepted.load(Ordering::Relaxed) > 0);
    s.pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_primarys_region_unreachable_before_its_token_is_read() {
    // A slow shutdown checkpoint keeps A between its Demote and its token for 1.5 s, so the
    // blackhole lands inside that window.
    let s = Routed::start("flt-token", &[(faults::SLOW_SHUTDOWN, "1500ms")], &[]).await;
    blackhole_the_old_primary_at(s, StepKind::AwaitDemotionStarted, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_primarys_region_unreachable_after_the_promotion() {
    // A slow promotion keeps B in AwaitPromotion for 1.5 s.
    let s = Routed::start("flt-book", &[(faults::SLOW_PROMOTION, "1500ms")], &[]).await;
    blackhole_the_old_primary_at(s, StepKind::AwaitPromotion, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_primarys_apiserver_slowed_to_5s_per_request() {
    let s = Routed::start("flt-slow", &[], &[]).await;
    let load = Load::start(s.lab, s.ns.name(), &[s.pair.a, s.pair.b], true);
    let generation = s.switch_to(s.pair.b.name).await;
    // From the Demote on, every request to B's apiserver (the dry run, the Promote, the token
    // clean-up; the watch's reads) waits 5 s.
    s.routes
        .member(s.pair.b.region)
        .set(Fault::Delay(Duration::from_secs(5)));
    let op = finished(&s.hub, generation, Duration::from_secs(150)).await;
    s.routes.member(s.pair.b.region).set(Fault::Pass);
    println!("{op:#?}");
    assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
    wait_condition(&s.hub, kind::READY).await;
    let acked = load.finish().await;
    assert_rows_kept(s.lab, s.ns.name(), s.pair.b, &acked).await;
    s.pair.delete().await;
}
