#![forbid(unsafe_code)]
//! The WAL-archive channel on the real CloudNativePG operator (docs/lab-real.md): a pair that
//! replicates only through object stores (the CloudNativePG blog's setup; in-tree
//! `barmanObjectStore`, `barman-cli-cloud` in the image, the lab's S3 endpoint moto in the lab
//! namespace): the replica is recovered from a base backup of the primary and follows it through
//! the primary's bucket.
//!
//! A switchover over this channel alone does not finish on CNPG 1.28.1 with one bucket per
//! Cluster: the promote patch makes the target a primary Cluster, and from then on its
//! `wal-restore` reads its own bucket, not its source's, so it never replays the token's LSN
//! (docs/lab-real.md, fidelity). This test proves the channel; the switchover is an open item.
//!
//! Needs root and `make deps-real`; `make test-real` runs it.

mod real_support;

use std::time::Duration;

use e2e::harness::controller::pg;
use real_support::{A, B};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_replica_follows_through_the_wal_archive_only() {
    let (lab, test_ns) = real_support::lab_and_namespace("real-archive").await;
    let ns = test_ns.name();
    real_support::create_members(lab, ns, &[(A, B), (B, A)], real_support::Channel::Archive).await;
    // No streaming: B has no connection parameters for A, so the row and the segment switch
    // reach it only through A's bucket.
    pg(lab, ns, A, Duration::from_secs(5))
        .await
        .expect("pg-a")
        .batch_execute("INSERT INTO t VALUES (3); SELECT pg_switch_wal()")
        .await
        .expect("a row and a WAL switch on pg-a");
    real_support::wait_rows(lab, ns, B, &[1, 2, 3]).await;
    let b = pg(lab, ns, B, Duration::from_secs(5)).await.expect("pg-b");
    let row = b
        .query_one(
            "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_wal_receiver)",
            &[],
        )
        .await
        .expect("pg-b's recovery state");
    assert!(row.get::<_, bool>(0), "pg-b is a replica");
    assert_eq!(row.get::<_, i64>(1), 0, "pg-b does not stream");
}
