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

use std::time::Duration;

use e2e::emulator::faults::{SLOW_WAL_RESTORE, STREAMING_DOWN};
use e2e::harness::TestNamespace;
use e2e::harness::controller::{
    Controller, Load, archive_switchover, assert_followers_replay, deploy, pg, rotate,
};
use e2e::harness::setup::Setup;
use e2e::harness::testkit::{self, DEADLINE, Member};
use serde_json::json;

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
        DEADLINE,
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
        DEADLINE,
    )
    .await;
    testkit::delete_all(lab, &name, &members).await;
}

/// An archive-only pair (no streaming): each replica restores its source's WAL from the source's
/// object store, 2 s per file (fault `slow-wal-restore`, as barman-cloud on a loaded machine), so
/// at the demotion the target is several files behind the token. CNPG restores from the source's
/// store only while the Cluster is a replica by spec: a promote patch sent before the target
/// replayed the token's LSN makes it restore from its own store, which never gets that WAL, and
/// the promotion waits forever (real CNPG 1.28.1; docs/lab-real.md). Federator waits at
/// `AwaitReplay` (the target's `/pg/status` through pods/proxy) and promotes after. Both ways;
/// never two primaries; the old primary follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_only_pair_switchover_waits_for_the_targets_replay_and_back() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-archive").await;
    ns.grant_federator().await;
    let name = ns.name().to_owned();
    let a = Member {
        name: "pg-a",
        region: "eu-central",
    };
    let b = Member {
        name: "pg-b",
        region: "eu-western",
    };
    let members = [a, b];
    for (m, source) in [(a, b), (b, a)] {
        let api = testkit::clusters(lab, m.region, &name).await;
        let mut cluster =
            testkit::blog_cluster(&name, m.name, a.name, source.name, &members, false);
        cluster.metadata.annotations = Some(
            [(SLOW_WAL_RESTORE.to_owned(), "2s".to_owned())]
                .into_iter()
                .collect(),
        );
        testkit::create(&api, &cluster).await;
        testkit::wait_cluster(&api, m.name, "healthy", testkit::healthy).await;
        if m.name == a.name {
            testkit::connect(lab, a.region, &name, a.name)
                .await
                .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
                .await
                .expect("writes on A");
        }
    }
    testkit::wait_rows(lab, b.region, &name, b.name, &[1, 2]).await;
    // Without the wait the promotion never completes: the hold comes at promotionWait.
    let timeouts = json!({"demotionStart": "1m", "tokenWait": "1m", "promotionWait": "90s"});
    let hub = deploy(lab, &name, &members, json!({"star": {}}), timeouts).await;
    let _controller = Controller::start(lab, &name);
    let load = Load::start(lab, &name, &members, false);
    archive_switchover(lab, &name, &hub, (a, b), &[3, 4, 5]).await;
    archive_switchover(lab, &name, &hub, (b, a), &[6, 7, 8]).await;
    load.finish().await;
    let primary = pg(lab, &name, a, Duration::from_secs(10))
        .await
        .expect("the final primary");
    assert_followers_replay(lab, &name, &primary, &[b], DEADLINE).await;
    testkit::delete_all(lab, &name, &members).await;
}

/// Streaming and archive, but the target's streaming is down when the old primary shuts down
/// (a cut link, a refused replication user): the shutdown does not wait for it, so the last WAL
/// reaches it only through the old primary's object store, slowly. Promoted before replaying
/// it, CNPG would restore from the target's own store and wait forever; Federator waits at
/// `AwaitReplay` as for an archive-only channel, then promotes. Never two primaries; every row
/// written before the switchover is on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_not_streaming_when_the_primary_shuts_down_is_promoted_after_its_replay() {
    // B's link to A's PostgreSQL is down; its object store stays (2 s per WAL file).
    let t = Setup::pair("ctl-mixed")
        .fault_on_b(SLOW_WAL_RESTORE, "2s")
        .fault_on_b(STREAMING_DOWN, "true")
        .timeouts(json!({"demotionStart": "1m", "tokenWait": "1m", "promotionWait": "90s"}))
        .ready()
        .await;
    let (lab, ns, hub) = (t.lab, t.ns(), &t.hub);
    let (a, b) = (t.pair.a, t.pair.b);
    let on_a = testkit::connect(lab, a.region, ns, a.name).await;
    let on_a = &on_a;
    e2e::lab::health::wait_for("B no longer streaming from A", DEADLINE, || async move {
        let rows = on_a
            .query("SELECT 1 FROM pg_stat_replication", &[])
            .await
            .ok()?;
        rows.is_empty().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let load = Load::start(lab, ns, &t.members(), false);
    archive_switchover(lab, ns, hub, (a, b), &[3, 4, 5]).await;
    load.finish().await;
    t.finish().await;
}
