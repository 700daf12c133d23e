#![forbid(unsafe_code)]
//! A disaster-recovery drill on real CloudNativePG (the real lab tier, docs/lab-real.md): a pair
//! streaming across regions with `verify-full`, the topology Ready under a controller, the
//! two-primaries sampler running, then `federator drill --return` from the host with each
//! member's libpq URI from `lab dsn` (its `-rw` Service exposed on the host's loopback, TLS
//! `sslmode=require`, the application credentials).
//!
//! Proven: the drill succeeds end to end on real CNPG — the canary written on the primary is
//! found on the new primary and again after the return, both switchovers report their
//! write-unavailability with no acknowledged write lost (RPO 0), the original primary is primary
//! again; `federator drill report` renders it; never two primaries.
//!
//! Needs root and `make deps-real`; `make test-real` runs it (not `make test`'s subset).

mod real_support;

use std::time::Instant;

use e2e::harness::controller::{
    Controller, Load, deploy, federator_cli as federator, wait_condition, wide_timeouts,
};
use kube::Api;
use real_support::{A, B};
use serde_json::json;
use topology::conditions::kind;
use topology::drill_api::DisasterRecoveryDrill;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_drill_there_and_back_reports_canary_unavailability_and_rpo() {
    let (lab, test_ns) = real_support::lab_and_namespace("real-drill").await;
    let ns = test_ns.name();
    real_support::create_members(lab, ns, &[(A, B), (B, A)], real_support::Channel::Streaming)
        .await;
    let members = [A, B];
    let topologies = deploy(lab, ns, &members, json!({"star": {}}), wide_timeouts()).await;
    let _controller = Controller::start(lab, ns);
    wait_condition(&topologies, kind::READY).await;
    let load = Load::start(lab, ns, &members, false);

    // Each member's URI as `federator-lab dsn` prints it.
    let mut dsns = Vec::new();
    for m in members {
        let uri = e2e::lab::real::postgres::dsn(&lab.layout, m.region, ns, m.name)
            .await
            .unwrap_or_else(|e| panic!("lab dsn {} {ns}/{}: {e}", m.region, m.name));
        assert!(uri.contains("sslmode=require"), "{uri}");
        dsns.push(format!("{}={uri}", m.name));
    }
    let started = Instant::now();
    let (code, stdout) = federator(
        lab,
        &[
            "drill",
            "pg",
            "-n",
            ns,
            "--to",
            B.name,
            "--return",
            "--dsn",
            &dsns[0],
            "--dsn",
            &dsns[1],
            "--timeout",
            "5m",
        ],
    )
    .await;
    println!(
        "drill took {:.1}s wall clock",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "the drill failed");
    assert!(stdout.contains("✓ VerifyReturn"), "{stdout}");
    load.finish().await;

    let drills: Api<DisasterRecoveryDrill> = Api::namespaced(lab.admin("hub").await, ns);
    let status = drills
        .get("pg")
        .await
        .expect("the drill object")
        .status
        .expect("a report");
    e2e::harness::drill::assert_there_and_back(&status, A, B);
    let topo = wait_condition(&topologies, kind::READY).await;
    assert_eq!(topo.spec.primary, A.name);

    let (code, md) = federator(lab, &["drill", "report", "pg", "-n", ns]).await;
    assert_eq!(code, 0);
    assert!(
        md.starts_with(&format!("# Drill `{ns}/pg`: Succeeded\n")),
        "{md}"
    );
}
