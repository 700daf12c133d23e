#![forbid(unsafe_code)]
//! An explicit failover on real CloudNativePG (the real lab tier, docs/lab-real.md): a pair
//! streaming across regions with `verify-full`, a writer on the primary A, then A's whole region
//! lost at once (`lab stop`: its apiserver and node, and every container on it — SIGKILL, a power
//! cut), and `federator failover --accept-data-loss` promotes B without a demotion token.
//! A sampler asks every instance pod `pg_is_in_recovery()` about every 100 ms throughout.
//!
//! Proven: without the acknowledgement nothing is promoted; with it B becomes writable and the
//! writes resume there, the report states the data-loss window; A's region returns control plane
//! first (`lab start --control-plane`: the node runs its operator, whose webhook must answer,
//! but no PostgreSQL), the hub fences A into a replica of B before its database runs, then the
//! whole region returns and A's PostgreSQL never accepts writes; never two writable primaries;
//! every row B acknowledged is kept, and the rows lost are a tail of A's writes.
//!
//! Needs root and `make deps-real`; `make test-real` runs it (not `make test`'s subset).

mod real_support;

use std::time::{Duration, Instant};

use e2e::harness::controller::{failover_cli, status_now};
use e2e::harness::region::RegionDown;
use e2e::lab::health::wait_for;
use kube::Api;
use real_support::{A, B, CLUSTER_WITHIN, instance_container, rows, writable};
use topology::api::{OperationKind, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_failover_from_a_lost_region_then_the_old_primary_returns_fenced() {
    let (lab, test_ns) = real_support::lab_and_namespace("real-failover").await;
    let ns = test_ns.name().to_owned();
    let ns = ns.as_str();
    let (hub, _controller, load) = real_support::pair_under_writes(lab, ns).await;

    // A's region is lost at once: apiserver, node, every container.
    let (mut region, stopped) = RegionDown::stop(lab, A.region).await;
    let stopped_at = Instant::now();
    println!("lab stop {}: {stopped:?}", A.region);
    assert!(
        stopped.iter().any(|s| s.contains("shims and containers")),
        "the node's containers are killed with the region: {stopped:?}"
    );
    assert_eq!(
        writable(lab, ns, A).await,
        None,
        "A's PostgreSQL is gone with its region"
    );
    real_support::wait_unreachable(&hub, A).await;

    // Without the acknowledgement nothing is promoted.
    let (code, _) = failover_cli(lab, ns, B.name, &[]).await;
    assert_eq!(code, 3, "the CLI refuses without --accept-data-loss");
    assert_eq!(
        writable(lab, ns, B).await,
        Some(false),
        "B was not promoted"
    );

    // With it: B is promoted without a token by real CloudNativePG.
    let cli = Instant::now();
    let (code, stdout) = failover_cli(lab, ns, B.name, &["--accept-data-loss", "--wait"]).await;
    assert_eq!(code, 0, "the failover succeeds");
    assert!(stdout.contains("possible data loss:"), "{stdout}");
    let failover_took = cli.elapsed();
    real_support::wait_writable(lab, ns, B).await;
    println!(
        "failover: {:.1}s from the CLI call (--wait), B writable {:.1}s after the region was lost",
        failover_took.as_secs_f64(),
        stopped_at.elapsed().as_secs_f64()
    );
    let status = status_now(&hub).await;
    let op = status.history.last().expect("the failover in history");
    assert_eq!(op.kind, OperationKind::Failover);
    assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
    println!("failover steps: [{}]", op.step_timings);
    let report = status.last_failover.clone().expect("status.lastFailover");
    let window = report.data_loss.clone().expect("the data-loss window");
    println!("data-loss window: {}", window.summary);
    assert!(
        window.new_primary_timeline > window.old_primary_timeline,
        "{window:?}"
    );
    let fenced = status
        .fenced_members
        .iter()
        .find(|f| f.name == A.name)
        .expect("A listed as fenced");
    assert!(fenced.fenced_at.is_none(), "A cannot be fenced while away");
    let on_b_at_failover = rows(lab, ns, B).await.expect("rows on B");
    let mark = on_b_at_failover.iter().copied().max().unwrap_or(0);
    wait_for("writes acknowledged by B", CLUSTER_WITHIN, || async {
        let on_b = rows(lab, ns, B).await?;
        (on_b.iter().filter(|x| **x > mark).count() > 40).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // A's region returns control plane first: its node runs the operator (CloudNativePG's
    // webhook answers the hub's patch) but no PostgreSQL; the hub fences A.
    let control = e2e::lab::start_control_plane(&region.dir, A.region)
        .await
        .expect("lab start --control-plane");
    println!("lab start {} --control-plane: {control:?}", A.region);
    real_support::wait_fenced(&hub, A).await;
    let clusters: Api<kube::api::DynamicObject> = Api::namespaced_with(
        lab.admin(A.region).await,
        ns,
        &e2e::lab::real::cluster_resource(),
    );
    let a_cluster = clusters.get(A.name).await.expect("A's Cluster");
    assert_eq!(
        a_cluster.data["spec"]["replica"]["primary"], B.name,
        "A's Cluster is a replica of B: {}",
        a_cluster.data["spec"]["replica"]
    );
    println!(
        "A fenced {:.1}s after the region was lost",
        stopped_at.elapsed().as_secs_f64()
    );

    // The whole region returns: A's PostgreSQL starts as its Cluster now says, never writable.
    let restored_at = Instant::now();
    let restored = region.restore().await;
    println!("lab start {}: {restored:?}", A.region);
    let before = instance_container(lab, ns, A).await;
    let outcome = wait_for("A's PostgreSQL started again", CLUSTER_WITHIN, || async {
        if let Some(w) = writable(lab, ns, A).await {
            assert!(!w, "the fenced A accepts writes");
            return Some("in recovery".to_owned());
        }
        let now = instance_container(lab, ns, A).await?;
        // Restarted at least once since the region returned and not coming up: it refuses B's
        // timeline (it wrote past the fork): the reason it is listed for re-clone.
        (now.1 > before.as_ref().map_or(0, |b| b.1) + 1 && !now.0).then(|| {
            format!(
                "not serving: postgres container {}, {} restarts",
                now.2, now.1
            )
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "the returned A: {outcome} ({:.1}s after `lab start`)",
        restored_at.elapsed().as_secs_f64()
    );
    // The sampler keeps watching a while longer.
    tokio::time::sleep(Duration::from_secs(15)).await;

    let acked = load.finish().await;
    let on_b = rows(lab, ns, B).await.expect("rows on B");
    let lost: Vec<i32> = acked
        .iter()
        .copied()
        .filter(|x| !on_b.contains(x))
        .collect();
    // The writer moves to B only after A is gone, so rows A acknowledged come first: the lost
    // ones must be a tail of A's writes, and everything acknowledged after them is on B.
    if let Some(last_lost) = lost.iter().max() {
        let after: Vec<i32> = acked.iter().copied().filter(|x| x > last_lost).collect();
        assert!(
            after.iter().all(|x| on_b.contains(x)),
            "rows acknowledged after the loss window are missing on B"
        );
        let first_lost = lost.iter().min().expect("non-empty");
        let window: Vec<i32> = acked
            .iter()
            .copied()
            .filter(|x| x >= first_lost && x <= last_lost)
            .collect();
        assert_eq!(
            window, lost,
            "the lost rows are one contiguous tail of A's writes"
        );
    }
    println!(
        "measured: {} rows acknowledged, {} lost (A's writes not streamed to B before the loss); {} on B",
        acked.len(),
        lost.len(),
        on_b.len()
    );
    real_support::assert_listed_for_reclone(&hub, A).await;
}
