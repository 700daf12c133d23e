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

use e2e::harness::TestNamespace;
use e2e::harness::controller::rotate;
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
