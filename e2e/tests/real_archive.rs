#![forbid(unsafe_code)]
//! The WAL-archive channel on the real CloudNativePG operator (docs/lab-real.md): a pair that
//! replicates only through object stores (the CloudNativePG blog's setup; in-tree
//! `barmanObjectStore`, `barman-cli-cloud` in the image, the lab's S3 endpoint moto in the lab
//! namespace): the replica is recovered from a base backup of the primary and follows it through
//! the primary's bucket.
//!
//! Then Federator switches the pair over and back through the archive alone. On CNPG 1.28.1 the
//! promote patch makes the target a primary Cluster, and from then on its `wal-restore` reads its
//! own bucket, not its source's: promoted before it replayed the token's LSN, it would wait for
//! that LSN forever (docs/lab-real.md, fidelity). Federator therefore waits at `AwaitReplay` —
//! the target's `replayLsn` from its instance manager's `/pg/status`, read through the member
//! API server's pods/proxy — and only then sends the promote patch. Asserted: both switchovers
//! succeed, the condition showed the wait, the step log has `AwaitReplay` before `Promote`, rows
//! written (each with a WAL switch) just before the demotion are on the new primary, never two
//! primaries, and the old primary follows the new timeline through the new primary's bucket.
//!
//! Needs root and `make deps-real`; `make test-real` runs it.

mod real_support;

use std::time::Duration;

use e2e::harness::controller::{
    Controller, Load, archive_switchover, assert_followers_replay, deploy, pg, wide_timeouts,
};
use real_support::{A, B};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_archive_only_pair_follows_then_switches_over_and_back() {
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
    drop(b);

    let hub = deploy(lab, ns, &[A, B], json!({"star": {}}), wide_timeouts()).await;
    let _controller = Controller::start(lab, ns);
    let load = Load::start(lab, ns, &[A, B], false);
    archive_switchover(lab, ns, &hub, (A, B), &[4, 5]).await;
    archive_switchover(lab, ns, &hub, (B, A), &[6, 7]).await;
    load.finish().await;
    let primary = pg(lab, ns, A, Duration::from_secs(10))
        .await
        .expect("the final primary");
    assert_followers_replay(lab, ns, &primary, &[B], real_support::CLUSTER_WITHIN).await;
}
