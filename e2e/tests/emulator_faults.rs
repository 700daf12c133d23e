#![forbid(unsafe_code)]
//! The emulator's fault annotations (contract §6, §9) and its own restarts: each fault shows
//! the symptom an orchestrator must survive, and a killed emulator continues from what the
//! Cluster's status and PostgreSQL show.

use std::time::{Duration, Instant};

use e2e::emulator::faults;
use e2e::harness::TestNamespace;
use e2e::harness::testkit::{self, Pair};
use topology::cnpg::{Cluster, FENCED_INSTANCES_ANNOTATION, condition};

fn in_progress(c: &Cluster) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.switch_replica_cluster_status.as_ref())
        .is_some_and(|s| s.in_progress)
}

fn fenced(c: &Cluster) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(FENCED_INSTANCES_ANNOTATION))
}

fn condition_is(c: &Cluster, type_: &str, status: &str, reason: &str) -> bool {
    c.condition(type_)
        .is_some_and(|x| x.status == status && x.reason == reason)
}

/// Demotion finished: clean-up done (`ReplicaClusterSwitch` True, not in progress, unfenced).
fn demotion_cleaned_up(c: &Cluster) -> bool {
    condition_is(
        c,
        condition::REPLICA_CLUSTER_SWITCH,
        "True",
        "ReplicaEnabledSetTrue",
    ) && !in_progress(c)
        && !fenced(c)
        && c.condition(condition::DESIGNATED_PRIMARY_TRANSITION)
            .is_none()
}

async fn demote(pair: &Pair) {
    testkit::patch_replica(
        &pair.api_a,
        pair.a.name,
        serde_json::json!({"primary": pair.b.name}),
    )
    .await
    .expect("demote A");
}

/// Holds `check` on A for `span`, polling.
async fn a_stays(pair: &Pair, what: &str, span: Duration, check: impl Fn(&Cluster) -> bool) {
    let until = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < until {
        let c = pair.api_a.get(pair.a.name).await.expect("get A");
        assert!(check(&c), "{what}: {:#?}", c.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn wiped_token_completes_the_demotion_without_a_token() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-wipe").await;
    let pair = Pair::create(lab, ns.name()).await;
    testkit::annotate(
        &pair.api_a,
        pair.a.name,
        faults::WIPE_DEMOTION_TOKEN,
        Some("true"),
    )
    .await;
    demote(&pair).await;
    let done =
        testkit::wait_cluster(&pair.api_a, pair.a.name, "clean-up", demotion_cleaned_up).await;
    assert_eq!(
        testkit::demotion_token(&done),
        None,
        "#11074: the token is lost"
    );
    pair.delete().await;
}

#[tokio::test]
async fn hung_demotion_survives_an_emulator_restart_and_completes_once_released() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-hang").await;
    let pair = Pair::create(lab, ns.name()).await;
    testkit::annotate(
        &pair.api_a,
        pair.a.name,
        faults::HANG_BEFORE_TRANSITION,
        Some("true"),
    )
    .await;
    demote(&pair).await;
    let hung = |c: &Cluster| {
        fenced(c)
            && in_progress(c)
            && condition_is(
                c,
                condition::DESIGNATED_PRIMARY_TRANSITION,
                "False",
                "ReplicaClusterAfterCreation",
            )
            && c.status.as_ref().and_then(|s| s.ready_instances) == Some(0)
            && testkit::demotion_token(c).is_none()
    };
    testkit::wait_cluster(&pair.api_a, pair.a.name, "the hung demotion", hung).await;
    a_stays(
        &pair,
        "hung: fenced, no token",
        Duration::from_secs(2),
        hung,
    )
    .await;

    // Kill the emulator mid-demotion and start it again: it picks up where status says.
    let dir = lab.layout.root();
    let component = format!("{}-emulator", pair.a.region);
    e2e::lab::stop(dir, &component)
        .await
        .expect("stop the emulator");
    e2e::lab::start(dir, &component)
        .await
        .expect("start the emulator");
    a_stays(
        &pair,
        "still hung after the restart",
        Duration::from_secs(1),
        hung,
    )
    .await;

    testkit::annotate(
        &pair.api_a,
        pair.a.name,
        faults::HANG_BEFORE_TRANSITION,
        None,
    )
    .await;
    let done =
        testkit::wait_cluster(&pair.api_a, pair.a.name, "clean-up", demotion_cleaned_up).await;
    let token = testkit::demotion_token(&done).expect("the token after release");
    pair.promote_b(Some(&token)).await.expect("promote B");
    testkit::wait_cluster(&pair.api_b, pair.b.name, "B promoted", |c| {
        testkit::last_promotion_token(c) == Some(token.as_str()) && testkit::healthy(c)
    })
    .await;
    pair.delete().await;
}

#[tokio::test]
async fn skipped_demotion_leaves_a_writable_primary_behind_a_replica_spec() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-skip").await;
    let pair = Pair::create(lab, ns.name()).await;
    testkit::annotate(
        &pair.api_a,
        pair.a.name,
        faults::SKIP_DEMOTION,
        Some("true"),
    )
    .await;
    demote(&pair).await;
    a_stays(&pair, "no demotion started", Duration::from_secs(2), |c| {
        c.role() == topology::cnpg::Role::Replica && !in_progress(c) && !fenced(c)
    })
    .await;
    let client = testkit::connect(lab, pair.a.region, &pair.namespace, pair.a.name).await;
    client
        .batch_execute("INSERT INTO t VALUES (3)")
        .await
        .expect("PR 11268: the replica-on-paper still takes writes");
    pair.delete().await;
}

#[tokio::test]
async fn slow_shutdown_checkpoint_delays_the_token() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-slow").await;
    let pair = Pair::create(lab, ns.name()).await;
    testkit::annotate(&pair.api_a, pair.a.name, faults::SLOW_SHUTDOWN, Some("2s")).await;
    let started = Instant::now();
    let token = pair.demote_a().await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    pair.promote_b(Some(&token)).await.expect("promote B");
    testkit::wait_cluster(&pair.api_b, pair.b.name, "B promoted", |c| {
        testkit::last_promotion_token(c) == Some(token.as_str())
    })
    .await;
    pair.delete().await;
}

#[tokio::test]
async fn waiting_promotion_survives_an_emulator_restart() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-restart").await;
    let pair = Pair::create(lab, ns.name()).await;
    let token = pair.demote_a().await;
    let mut future = topology::token::PromotionToken::parse(&token).expect("token");
    future.latest_checkpoint_timeline_id = "99".into();
    pair.promote_b(Some(&future.encode()))
        .await
        .expect("admitted");
    testkit::wait_cluster(&pair.api_b, pair.b.name, "promoting", |c| {
        testkit::phase(c) == topology::cnpg::phase::PROMOTING
    })
    .await;

    let dir = lab.layout.root();
    let component = format!("{}-emulator", pair.b.region);
    e2e::lab::stop(dir, &component)
        .await
        .expect("stop the emulator");
    e2e::lab::start(dir, &component)
        .await
        .expect("start the emulator");
    assert!(
        pair.b_in_recovery().await,
        "still waiting after the restart"
    );

    pair.promote_b(Some(&token)).await.expect("the right token");
    testkit::wait_cluster(&pair.api_b, pair.b.name, "B promoted", |c| {
        testkit::last_promotion_token(c) == Some(token.as_str()) && testkit::healthy(c)
    })
    .await;
    pair.delete().await;
}
