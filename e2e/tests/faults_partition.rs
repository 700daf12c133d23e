#![forbid(unsafe_code)]
//! Member apiservers behind fault proxies (`e2e::faults`) during a switchover: the old
//! primary's region unreachable after its demotion but before its token is read, and after the
//! promotion but before bookkeeping; the new primary's region unreachable before its promotion;
//! the new primary's apiserver answering every request 5 s late. Each under the
//! never-two-primaries sampler and a writer whose acknowledged rows must all be on the final
//! primary. A blackholed member (accepts TCP, never answers) must be reported unreachable by
//! name with what to check, hold the step that needs it, and the switchover must resume when it
//! answers again. Outcomes are in docs/faults.md.

mod faults_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::emulator::faults;
use e2e::faults::Fault;
use e2e::harness::controller::{
    Load, assert_rows_kept, reach, switchover, wait_condition, wait_metric,
};
use e2e::harness::testkit::DEADLINE;
use e2e::lab::health::wait_for;
use faults_support::{Observed, Routed, finished, observe_until};
use topology::StepKind;
use topology::api::Outcome;
use topology::conditions::{kind, reason};

/// How long a region stays unreachable at least: longer than the controller takes to notice a
/// silent member (a liveness probe every 3 s, 10 s to answer) and than a switchover's whole happy
/// path (~2 s), far shorter than the token deadline (3 min here), so the outcome is decided by
/// what the controller does while it cannot see the member, not by a deadline.
const OUTAGE: Duration = Duration::from_secs(25);

/// The longest the controller may take to report a silent member: a probe interval, the probe
/// deadline, and slack for a loaded machine.
const NOTICED_WITHIN: Duration = Duration::from_secs(40);

/// The topology reports `region` (member `member`) unreachable by name, with what to check.
fn reports_unreachable(seen: &Observed, member: &str, region: &str) -> bool {
    seen.now_has(
        kind::DEGRADED,
        "True",
        reason::MEMBER_UNREACHABLE,
        &[member, region, "did not answer", "federator member list"],
    )
}

/// Waits until the partition has lasted [`OUTAGE`] (counted from `since`), checking on the way
/// that the topology keeps reporting it and, with `held`, that the operation keeps holding with
/// one and the same hold.
async fn ride_out(s: &Routed, since: Instant, member: &str, region: &str, held: bool) -> Observed {
    let seen = observe_until(&s.hub, "the end of the outage", OUTAGE * 2, |seen| {
        assert!(
            reports_unreachable(seen, member, region),
            "no longer reported unreachable during the outage: {}",
            seen.summary()
        );
        if held {
            assert!(
                seen.now_held(reason::MEMBER_UNREACHABLE_HOLD, &[member]),
                "no longer held during the outage: {}",
                seen.summary()
            );
        }
        since.elapsed() >= OUTAGE
    })
    .await;
    if held {
        assert_eq!(seen.holds.len(), 1, "the hold changed: {}", seen.summary());
    }
    seen
}

/// Switches the pair to B; once the hub records `at`, blackholes A's region until the topology
/// reports it by name (and, when `held`, the operation holds on it) and for at least
/// [`OUTAGE`]; lifts it, and expects the switchover to succeed with every acknowledged row on B
/// and the topology Ready again.
async fn blackhole_the_old_primary_at(s: Routed, at: StepKind, held: bool) {
    let (member, region) = (s.pair.a.name, s.pair.a.region);
    // What an alert sees (`/metrics`), before, during and after the outage.
    let metrics = s.controller.probe_addr().await;
    let reachable = format!(r#"member="{region}""#);
    let topology = format!(r#"namespace="{}",topology="pg""#, s.ns.name());
    let held_on = |reason: &str| format!(r#"{topology},reason="{reason}""#);
    wait_metric(&metrics, "federator_member_reachable", &reachable, 1.0).await;
    wait_metric(&metrics, "federator_operation_held", &held_on("none"), 0.0).await;
    let load = Load::start(s.lab, s.ns.name(), &[s.pair.a, s.pair.b], true);
    let generation = s.switch_to(s.pair.b.name).await;
    let reached = reach(&s.hub, generation, at).await;
    assert!(
        reached.is_some(),
        "the switchover finished before the fault"
    );
    let a = s.routes.member(region);
    a.set(Fault::Blackhole);
    let since = Instant::now();
    let seen = observe_until(
        &s.hub,
        "the silent member reported",
        NOTICED_WITHIN,
        |seen| {
            let held_on_a = seen.now_held(
                reason::MEMBER_UNREACHABLE_HOLD,
                &[
                    &format!("{member} cannot be read"),
                    region,
                    "did not answer",
                ],
            );
            reports_unreachable(seen, member, region) && (held_on_a || !held)
        },
    )
    .await;
    println!(
        "{region} blackholed, noticed after {:?}: {}",
        since.elapsed(),
        seen.summary()
    );
    if !held {
        // The switchover may have finished meanwhile; Ready must not claim every member healthy.
        assert!(
            seen.current
                .iter()
                .any(|(t, st, _, _)| t == kind::READY && st == "False"),
            "{}",
            seen.summary()
        );
    }
    wait_metric(&metrics, "federator_member_reachable", &reachable, 0.0).await;
    let degraded = held_on("MemberUnreachable");
    wait_metric(&metrics, "federator_topology_degraded", &degraded, 1.0).await;
    if held {
        let hold = held_on("StepMemberUnreachable");
        wait_metric(&metrics, "federator_operation_held", &hold, 1.0).await;
    }
    ride_out(&s, since, member, region, held).await;
    if held {
        // Nothing can be promoted without A's token, which the controller could not read.
        assert!(
            s.pair.b_in_recovery().await,
            "B was promoted without the token"
        );
    }
    a.set(Fault::Pass);
    let op = finished(&s.hub, generation, Duration::from_secs(120)).await;
    assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
    // Ready again: every member reachable, the hold gone.
    wait_condition(&s.hub, kind::READY).await;
    wait_metric(&metrics, "federator_member_reachable", &reachable, 1.0).await;
    wait_metric(&metrics, "federator_operation_held", &held_on("none"), 0.0).await;
    wait_metric(
        &metrics,
        "federator_topology_ready",
        &held_on("AsDesired"),
        1.0,
    )
    .await;
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
async fn the_new_primarys_region_unreachable_before_its_promotion() {
    // A's slow shutdown keeps the switchover before its token for 1.5 s: B's region is cut off
    // before anything needs it.
    let s = Routed::start("flt-promo", &[(faults::SLOW_SHUTDOWN, "1500ms")], &[]).await;
    let (member, region) = (s.pair.b.name, s.pair.b.region);
    let load = Load::start(s.lab, s.ns.name(), &[s.pair.a, s.pair.b], true);
    // Asked the way a user does, following it: the hold below ends by itself, so the CLI must
    // keep following it rather than exit "held".
    let cli = tokio::spawn({
        let (lab, ns) = (s.lab, s.ns.name().to_owned());
        async move { switchover(lab, &ns, member).await }
    });
    let hub = &s.hub;
    let generation = wait_for("spec.primary set by the CLI", DEADLINE, || async move {
        let t = hub.get("pg").await.ok()?;
        (t.spec.primary == member).then(|| t.metadata.generation.unwrap_or_default())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let reached = reach(&s.hub, generation, StepKind::AwaitDemotionStarted).await;
    assert!(
        reached.is_some(),
        "the switchover finished before the fault"
    );
    let b = s.routes.member(region);
    b.set(Fault::Blackhole);
    let since = Instant::now();
    let seen = observe_until(
        &s.hub,
        "the hold on the silent target",
        NOTICED_WITHIN,
        |seen| {
            reports_unreachable(seen, member, region)
                && seen.now_held(
                    reason::MEMBER_UNREACHABLE_HOLD,
                    &[&format!("{member} cannot be read"), region],
                )
        },
    )
    .await;
    println!(
        "{region} blackholed, held after {:?}: {}",
        since.elapsed(),
        seen.summary()
    );
    let patched_before = promote_patches(&s);
    ride_out(&s, since, member, region, true).await;
    // Held, not retried: no Promote patch was sent while the hold lasted.
    assert_eq!(
        promote_patches(&s),
        patched_before,
        "Promote patches sent during the hold"
    );
    assert!(s.pair.b_in_recovery().await, "B promoted while cut off");
    b.set(Fault::Pass);
    let op = finished(&s.hub, generation, Duration::from_secs(120)).await;
    assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
    let (code, out, _) = cli.await.expect("the CLI task");
    assert_eq!(
        code, 0,
        "the CLI did not follow the switchover to its end:\n{out}"
    );
    assert!(out.contains("StepMemberUnreachable"), "{out}");
    wait_condition(&s.hub, kind::READY).await;
    let acked = load.finish().await;
    assert_rows_kept(s.lab, s.ns.name(), s.pair.b, &acked).await;
    s.pair.delete().await;
}

/// How many Promote patches the controller has sent (or tried to) so far.
fn promote_patches(s: &Routed) -> usize {
    s.controller
        .log()
        .lines()
        .filter(|l| l.contains("patching member") && l.contains("step=Promote"))
        .count()
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
