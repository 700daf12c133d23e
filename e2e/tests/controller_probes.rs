#![forbid(unsafe_code)]
//! What the kubelet and a rollout rely on: `/healthz` answers, `/readyz` turns 200 once the
//! member watches answered and the Lease was read, and SIGTERM releases the Lease at once (its
//! holder is cleared when the process has exited), so the other replica need not wait for it
//! to expire.

use std::time::Duration;

use e2e::harness::TestNamespace;
use e2e::harness::controller::{Controller, http_get};
use e2e::harness::testkit::DEADLINE;
use e2e::lab::health::wait_for;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_and_sigterm_releases_the_lease_at_once() {
    let ns = TestNamespace::create("controller-probes").await;
    let lab = ns.lab;
    let mut controller = Controller::start_with(lab, ns.name(), "", &["--lease-seconds", "60"]);

    // The port is random (`--metrics-addr 127.0.0.1:0`); the controller logs where it listens.
    let addr = controller.probe_addr().await;

    let (code, body) = http_get(&addr, "/healthz").await.expect("/healthz answers");
    assert_eq!((code, body.trim()), (200, "ok"));
    let readyz = wait_for("/readyz 200", DEADLINE, || async {
        http_get(&addr, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    if let Err(e) = readyz {
        let last = http_get(&addr, "/readyz").await;
        panic!("{e}: {last:?}\n{}", controller.log());
    }

    let leases: Api<Lease> = Api::namespaced(lab.admin("hub").await, "federator-system");
    let lease = format!("federator-{}", ns.name());
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    wait_for("the controller holding its Lease", DEADLINE, || async {
        holder(leases.get(&lease).await.ok()?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));

    // With a 60 s Lease, a holder still named after exit would keep a successor waiting ~60 s.
    let status = tokio::time::timeout(Duration::from_secs(20), controller.terminate())
        .await
        .expect("the controller exits within 20 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status}\n{}",
        controller.log()
    );
    let after = leases.get(&lease).await.expect("the Lease");
    assert_eq!(
        holder(after),
        None,
        "the Lease still has a holder after a graceful stop\n{}",
        controller.log()
    );
    assert!(
        controller.log().contains("Lease released"),
        "{}",
        controller.log()
    );
}
