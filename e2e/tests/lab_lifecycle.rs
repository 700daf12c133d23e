//! The lab itself: healthy, idempotent, and its hub Secrets really reach the members with least
//! privilege.

use std::time::{Duration, Instant};

use e2e::harness::{self, cnpg_cluster};
use e2e::lab::{
    self, CLUSTER_NAME_LABEL, DATABASES_NAMESPACE, HUB, HUB_NAMESPACE, KUBECONFIG_SECRET_KEY,
    MEMBER_SECRET_LABEL, MEMBERS,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};

#[tokio::test]
async fn status_reports_every_component_healthy() {
    let shared = harness::lab().await;
    let status = lab::status(shared.layout.root()).await.expect("status");
    assert!(status.healthy, "lab not healthy:\n{status}");
    let names: Vec<&str> = status.components.iter().map(|c| c.name.as_str()).collect();
    for expected in ["etcd", HUB, MEMBERS[0], MEMBERS[1], MEMBERS[2]] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let json = serde_json::to_value(&status).expect("status serializes");
    assert_eq!(json["healthy"], true);
}

/// etcd shares no disk with PostgreSQL unless asked to: its WAL fsyncs stalled behind the
/// regions' checkpoints (see `lab::etcd_storage`).
#[tokio::test]
async fn etcd_keeps_its_data_on_the_storage_the_setting_names() {
    use e2e::lab::etcd_storage::{self, MEMORY_ROOT, STORAGE_ENV, Storage};
    let shared = harness::lab().await;
    let status = lab::status(shared.layout.root()).await.expect("status");
    let etcd = status
        .components
        .iter()
        .find(|c| c.name == "etcd")
        .expect("etcd in status");
    let pid = etcd.pid.expect("etcd runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("etcd's command line");
    let link = shared.layout.etcd_data_dir();
    let arg = format!("--data-dir={}", link.display());
    assert!(
        cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()),
        "etcd does not run with {arg}"
    );
    let meta = std::fs::symlink_metadata(&link).expect("etcd-data exists");
    let wanted = etcd_storage::wanted().expect("storage setting");
    let restart = format!(
        "the running lab predates {STORAGE_ENV}={wanted}; restart it with \
         `federator-lab down --dir {}`",
        shared.layout.root().display()
    );
    match wanted {
        Storage::Memory => {
            assert!(meta.file_type().is_symlink(), "{restart}");
            let target = std::fs::read_link(&link).expect("link target");
            assert!(target.starts_with(MEMORY_ROOT), "{}", target.display());
            // etcd really writes there: its member directory (WAL, snapshots) is in memory.
            assert!(
                target.join("member").join("wal").is_dir(),
                "no WAL in {}",
                target.display()
            );
        }
        Storage::Disk => assert!(meta.is_dir(), "{restart}"),
    }
}

#[tokio::test]
async fn up_on_a_running_lab_returns_at_once() {
    let shared = harness::lab().await;
    let started = Instant::now();
    let report = lab::up(&lab::UpOptions {
        dir: shared.layout.root().to_path_buf(),
        ports: shared.ports,
        real: None,
    })
    .await
    .expect("up");
    assert!(
        report.already_running,
        "a second up must find the lab running"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a second up took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hub_secrets_hold_working_least_privilege_kubeconfigs() {
    let shared = harness::lab().await;
    let secrets: Api<Secret> = Api::namespaced(shared.admin(HUB).await, HUB_NAMESPACE);
    let selector = format!("{MEMBER_SECRET_LABEL}=true");
    let list = secrets
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list member Secrets");
    let mut members: Vec<String> = list
        .items
        .iter()
        .filter_map(|s| s.metadata.labels.as_ref()?.get(CLUSTER_NAME_LABEL).cloned())
        .collect();
    members.sort();
    let mut expected: Vec<String> = MEMBERS.iter().map(|m| (*m).to_owned()).collect();
    expected.sort();
    assert_eq!(members, expected);

    for secret in list.items {
        let member = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CLUSTER_NAME_LABEL))
            .cloned()
            .unwrap_or_default();
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KUBECONFIG_SECRET_KEY))
            .expect("kubeconfig key");
        let yaml = String::from_utf8(data.0.clone()).expect("UTF-8 kubeconfig");
        let client = lab::kubeconfig::client_from_yaml(&yaml, std::path::Path::new(&member))
            .await
            .expect("client");
        let clusters: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), DATABASES_NAMESPACE, &cnpg_cluster());
        clusters
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("{member}: listing Clusters: {e}"));
        let member_secrets: Api<Secret> = Api::namespaced(client, DATABASES_NAMESPACE);
        let denied = member_secrets.list(&ListParams::default()).await;
        assert!(
            matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
            "{member}: Secrets readable: {denied:?}"
        );
    }
}

#[tokio::test]
async fn the_fallback_minimal_crd_is_accepted_by_a_real_apiserver() {
    let shared = harness::lab().await;
    let crd = lab::cnpg_crd::minimal().expect("minimal CRD parses");
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(shared.admin(MEMBERS[0]).await);
    // Dry run: the apiserver validates it (structural schema, printer columns, subresources)
    // without replacing the upstream CRD the other tests use.
    let params = PatchParams::apply(lab::FIELD_MANAGER).force().dry_run();
    api.patch("clusters.postgresql.cnpg.io", &params, &Patch::Apply(&crd))
        .await
        .expect("minimal CRD is valid");
}

#[tokio::test]
async fn a_taken_port_fails_up_naming_it_and_starts_nothing() {
    // Ensure the binaries are resolved (and the shared lab is up) before timing anything else.
    harness::lab().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("a free port");
    let taken = blocker.local_addr().expect("address").port();
    // etcd's client port is checked first, so the neighbouring ports (which another process on
    // a busy machine may hold) cannot change which error comes out.
    let ports = lab::Ports {
        etcd: taken,
        apiserver: lab::DEFAULT_APISERVER_PORT + 1000,
    };
    let error = lab::up(&lab::UpOptions {
        dir: dir.path().to_path_buf(),
        ports,
        real: None,
    })
    .await
    .expect_err("up must fail on a taken port");
    let message = error.to_string();
    assert!(
        message.contains(&format!("port {taken} (for etcd)")),
        "{message}"
    );
    let status = lab::status(dir.path()).await;
    assert!(
        status.is_err() || status.is_ok_and(|s| s.components.iter().all(|c| !c.running)),
        "nothing may run"
    );
}

#[tokio::test]
async fn the_hub_serves_federators_crds() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let shared = harness::lab().await;
    let api: Api<CustomResourceDefinition> = Api::all(shared.admin(HUB).await);
    for crd in lab::hub_crds::all() {
        let name = crd.metadata.name.unwrap_or_default();
        let served = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("CRD {name} on the hub: {e}"));
        let conditions = served.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            "CRD {name} is not Established: {conditions:?}"
        );
    }
}
