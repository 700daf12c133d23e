//! `lab stop REGION` / `lab start REGION` on the shared lab: the region goes away alone and comes
//! back with the same credentials. Its own test binary, because it briefly takes eu-south down.

use e2e::harness::{self, cnpg_cluster};
use e2e::lab::{self, DATABASES_NAMESPACE, MEMBERS};
use kube::api::{Api, DynamicObject, ListParams};

#[tokio::test]
async fn a_stopped_region_restarts_with_the_same_credentials() {
    let shared = harness::lab().await;
    let dir = shared.layout.root();
    let region = MEMBERS[2];

    let stopped = lab::stop(dir, region).await.expect("stop");
    // The region's apiserver and whatever else runs there (its CNPG emulator).
    assert!(stopped.contains(&region.to_owned()), "{stopped:?}");
    let status = lab::status(dir).await.expect("status");
    for component in &status.components {
        let expect_running = component.region.as_deref() != Some(region);
        assert_eq!(
            component.running, expect_running,
            "{}: {status}",
            component.name
        );
    }
    assert!(!status.healthy);

    let started = lab::start(dir, region).await.expect("start");
    // Its PostgreSQL instances are listed too; the emulator starts them again on its own.
    let components: Vec<String> = stopped
        .into_iter()
        .filter(|s| !s.starts_with(lab::POSTGRES_PREFIX))
        .collect();
    assert_eq!(
        started, components,
        "start brings back exactly what stop stopped"
    );
    let status = lab::status(dir).await.expect("status");
    assert!(status.healthy, "{status}");

    // The least-privilege token issued before the restart still works: same signing key.
    let clusters: Api<DynamicObject> = Api::namespaced_with(
        shared.federator(region).await,
        DATABASES_NAMESPACE,
        &cnpg_cluster(),
    );
    clusters
        .list(&ListParams::default())
        .await
        .expect("the old token works after a restart");
}
