#![forbid(unsafe_code)]
//! The hub controller on the lab, against the CNPG emulator on real PostgreSQL: planned
//! switchovers asked for with `federator switchover --wait`, while a writer inserts rows and a
//! sampler asks every instance `pg_is_in_recovery()` about every 100 ms.
//!
//! Proven per test: every switchover succeeds; never two instances accept writes at once; every
//! acknowledged row is on the final primary; every old primary follows the new timeline.
//!
//! The controller runs as a child process of the built `federator` binary (`cargo build -p
//! federator` first, or set `FEDERATOR_BIN`), scoped to the test's namespace and Lease.

mod controller_support;

use std::time::Duration;

use controller_support::{
    Controller, Load, assert_rows_kept, deploy, pg, switchover, wait_condition, wide_timeouts,
};
use e2e::emulator::testkit::{self, DEADLINE, Member};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use serde_json::json;
use topology::StepKind;
use topology::api::Outcome;
use topology::conditions::kind;

/// Runs `targets` as switchovers in turn under a writer and a sampler, then checks the data.
async fn rotate(
    lab: &'static SharedLab,
    ns: &str,
    members: &[Member<'static>],
    shape: serde_json::Value,
    targets: &[&str],
) {
    let hub = deploy(lab, ns, members, shape, wide_timeouts()).await;
    let _controller = Controller::start(lab, ns);
    wait_condition(&hub, kind::READY).await;

    let load = Load::start(lab, ns, members, true);
    for to in targets {
        let (code, _, took) = switchover(lab, ns, to).await;
        assert_eq!(code, 0, "switchover to {to} did not succeed");
        println!(
            "switchover to {to}: {:.2}s wall clock (CLI)",
            took.as_secs_f64()
        );
        // Let the writer land a few rows on the new primary before the next move.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let acked = load.finish().await;
    let last = members
        .iter()
        .find(|m| m.name == *targets.last().unwrap())
        .copied()
        .unwrap();
    let primary = assert_rows_kept(lab, ns, last, &acked).await;

    // Every other instance follows the final primary's timeline: it replays a row written now.
    primary
        .batch_execute("INSERT INTO t VALUES (-1); SELECT pg_switch_wal()")
        .await
        .expect("marker row");
    for m in members.iter().filter(|m| m.name != last.name) {
        let what = format!("{} replaying the marker row in recovery", m.name);
        wait_for(&what, DEADLINE, || async move {
            let c = pg(lab, ns, *m, Duration::from_secs(1)).await?;
            let row = c
                .query_one(
                    "SELECT pg_is_in_recovery(), count(*) FROM t WHERE x = -1",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, bool>(0) && row.get::<_, i64>(1) == 1).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    let topo = wait_condition(&hub, kind::READY).await;
    let status = topo.status.expect("status");
    assert!(status.operation.is_none());
    assert_eq!(status.history.len(), targets.len());
    for op in &status.history {
        assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
        let total = op
            .finished_at
            .as_ref()
            .unwrap()
            .0
            .duration_since(op.started_at.0);
        // Every step of a finished operation has its timing, and they parse.
        let steps = op.steps().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            steps.iter().all(|s| s.took.is_some()),
            "{}",
            op.step_timings
        );
        assert_eq!(
            steps.last().map(|s| s.step),
            Some(StepKind::Done),
            "{}",
            op.step_timings
        );
        println!(
            "{} → {}: {:.2}s [{}]",
            op.from,
            op.to,
            total.as_secs_f64(),
            op.step_timings
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_switchover_and_back_under_writes() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-pair").await;
    ns.grant_federator().await;
    let pair = testkit::Pair::create(lab, ns.name()).await;
    let members = [pair.a, pair.b];
    rotate(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        &[pair.b.name, pair.a.name],
    )
    .await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_three_full_rotation_under_writes() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-ring").await;
    ns.grant_federator().await;
    let name = ns.name().to_owned();
    let members = [
        Member {
            name: "pg-a",
            region: "eu-central",
        },
        Member {
            name: "pg-b",
            region: "eu-western",
        },
        Member {
            name: "pg-c",
            region: "eu-south",
        },
    ];
    let [a, b, c] = members;
    // A ring: each member's source is the previous one (A follows C). A is created first and
    // gets the table; each replica then copies its source.
    for (m, source) in [(a, c), (b, a), (c, b)] {
        let api = testkit::clusters(lab, m.region, &name).await;
        let cluster = testkit::blog_cluster(&name, m.name, a.name, source.name, &members, true);
        testkit::create(&api, &cluster).await;
        testkit::wait_cluster(&api, m.name, "healthy", testkit::healthy).await;
        if m.name == a.name {
            testkit::connect(lab, a.region, &name, a.name)
                .await
                .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
                .await
                .expect("writes on A");
        }
        testkit::wait_rows(lab, m.region, &name, m.name, &[1, 2]).await;
    }
    rotate(
        lab,
        &name,
        &members,
        json!({"ring": [a.name, b.name, c.name]}),
        &[b.name, c.name, a.name],
    )
    .await;
    testkit::delete_all(lab, &name, &members).await;
}
