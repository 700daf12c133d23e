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

mod real_support;

use real_support::{A, B};

use e2e::harness::controller::rotate;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_pair_streaming_verify_full_switchover_and_back_under_writes() {
    let (lab, test_ns) = real_support::lab_and_namespace("real-pair").await;
    let ns = test_ns.name();
    real_support::create_members(lab, ns, &[(A, B), (B, A)], real_support::Channel::Streaming)
        .await;
    real_support::assert_streams_verify_full(lab, ns, B, A).await;
    rotate(
        lab,
        ns,
        &[A, B],
        json!({"star": {}}),
        &[B.name, A.name],
        real_support::CLUSTER_WITHIN,
    )
    .await;
}
