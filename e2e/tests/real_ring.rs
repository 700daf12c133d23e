#![forbid(unsafe_code)]
//! The ring of three on the real CloudNativePG operator (docs/lab-real.md): each member streams
//! from the previous one across regions (`verify-full`), and Federator rotates the primary all
//! the way round under a writer and the two-primaries sampler.
//!
//! Proven: every switchover succeeds; never two pods accept writes at once; every acknowledged
//! row is on the final primary; every old primary follows the new timeline without a re-clone.
//!
//! Needs root and `make deps-real`; `make test-real` runs it.

mod real_support;

use real_support::{A, B, C};

use e2e::harness::controller::rotate;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_ring_of_three_full_rotation_under_writes() {
    let (lab, test_ns) = real_support::lab_and_namespace("real-ring").await;
    let ns = test_ns.name();
    // A ring: each member's source is the previous one (A follows C once it is demoted).
    real_support::create_members(
        lab,
        ns,
        &[(A, C), (B, A), (C, B)],
        real_support::Channel::Streaming,
    )
    .await;
    real_support::assert_streams_verify_full(lab, ns, C, B).await;
    rotate(
        lab,
        ns,
        &[A, B, C],
        json!({"ring": [A.name, B.name, C.name]}),
        &[B.name, C.name, A.name],
        real_support::CLUSTER_WITHIN,
    )
    .await;
}
