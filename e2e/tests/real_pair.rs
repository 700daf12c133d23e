#![forbid(unsafe_code)]
//! Federator on the real CloudNativePG operator (the real lab tier, docs/lab-real.md): a pair
//! of Clusters in two regions, streaming across regions with `connectionParameters` and
//! `sslmode: verify-full`, a DistributedTopology on the hub, and `federator switchover --wait`
//! there and back while a writer inserts rows and a sampler asks every instance pod
//! `pg_is_in_recovery()` about every 100 ms (through the regions' netns proxies).
//!
//! Proven: both switchovers succeed; never two pods accept writes at once; every acknowledged row
//! is on the final primary; the old primary follows the new timeline without a re-clone.
//!
//! Needs root and `make deps-real`; `make test-real` runs it.

mod controller_support;
mod real_support;

use std::time::Duration;

use controller_support::{pg, rotate};
use e2e::emulator::testkit::Member;
use e2e::harness::{self, TestNamespace};
use serde_json::json;

const A: Member<'static> = Member {
    name: "pg-a",
    region: "eu-central",
};
const B: Member<'static> = Member {
    name: "pg-b",
    region: "eu-western",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_pair_streaming_verify_full_switchover_and_back_under_writes() {
    let lab = harness::real_lab().await;
    let test_ns = TestNamespace::create_on(lab, "real-pair").await;
    test_ns.grant_federator().await;
    let ns = test_ns.name();
    let members = [A, B];
    real_support::create_superuser_secret(lab, ns, &members).await;

    let started = std::time::Instant::now();
    real_support::create_and_wait_healthy(
        lab,
        ns,
        A,
        real_support::streaming_cluster(ns, A, A.name, B.name, &members),
    )
    .await;
    println!(
        "{} healthy after {:.1}s",
        A.name,
        started.elapsed().as_secs_f64()
    );
    pg(lab, ns, A, Duration::from_secs(5))
        .await
        .expect("a connection to pg-a's pod")
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
        .await
        .expect("writes on A");
    real_support::share_secrets(lab, ns, A, &members).await;
    real_support::create_and_wait_healthy(
        lab,
        ns,
        B,
        real_support::streaming_cluster(ns, B, A.name, A.name, &members),
    )
    .await;
    println!(
        "{} healthy after {:.1}s",
        B.name,
        started.elapsed().as_secs_f64()
    );
    // B streams from A across regions over verify-full TLS.
    real_support::wait_rows(lab, ns, B, &[1, 2]).await;
    let b = pg(lab, ns, B, Duration::from_secs(5)).await.expect("pg-b");
    let row = b
        .query_one(
            "SELECT status, sender_host, conninfo LIKE '%sslmode=verify-full%' FROM pg_stat_wal_receiver",
            &[],
        )
        .await
        .expect("pg_stat_wal_receiver on pg-b");
    assert_eq!(row.get::<_, String>(0), "streaming");
    assert_eq!(row.get::<_, String>(1), real_support::rw_host(ns, A));
    assert!(
        row.get::<_, bool>(2),
        "the replica connects with sslmode=verify-full"
    );
    // The switch back needs B's certificates in A's region.
    real_support::share_secrets(lab, ns, B, &members).await;

    rotate(
        lab,
        ns,
        &members,
        json!({"star": {}}),
        &[B.name, A.name],
        real_support::CLUSTER_WITHIN,
    )
    .await;
}
