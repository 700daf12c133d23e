//! The member Role really grants Federator's ServiceAccount only get/list/watch/patch on
//! Clusters in `databases`, on a real kube-apiserver with RBAC.

use e2e::harness::{self, TestNamespace, cnpg_cluster, sample_cluster};
use e2e::lab::{DATABASES_NAMESPACE, MEMBERS};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchParams,
};

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(&result, Err(kube::Error::Api(status)) if status.code == 403)
}

/// A Cluster the admin created in `databases` on a member; deleted on drop, so the CNPG
/// emulator stops its PostgreSQL (test namespaces clean up themselves; `databases` is shared).
struct DatabasesCluster {
    member: &'static str,
    name: String,
}

impl DatabasesCluster {
    async fn create(member: &'static str, ns: &TestNamespace) -> Self {
        let name = format!("rbac-{}", &ns.name()[ns.name().len() - 6..]);
        let api = Self::api(member).await;
        api.create(
            &PostParams::default(),
            &sample_cluster(&name, member, member),
        )
        .await
        .expect("admin creates a Cluster");
        Self { member, name }
    }

    async fn api(member: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            harness::lab().await.admin(member).await,
            DATABASES_NAMESPACE,
            &cnpg_cluster(),
        )
    }
}

impl Drop for DatabasesCluster {
    fn drop(&mut self) {
        let (member, name) = (self.member, self.name.clone());
        harness::block_on_detached(async move {
            let _ = Self::api(member)
                .await
                .delete(&name, &DeleteParams::default())
                .await;
        });
    }
}

#[tokio::test]
async fn federator_may_get_list_watch_and_patch_clusters_in_databases() {
    let ns = TestNamespace::create("rbac-allows").await;
    let member = MEMBERS[1];
    let cluster = DatabasesCluster::create(member, &ns).await;
    let name = cluster.name.clone();
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.lab.federator(member).await,
        DATABASES_NAMESPACE,
        &cnpg_cluster(),
    );

    api.get(&name).await.expect("get is allowed");
    let list = api
        .list(&ListParams::default())
        .await
        .expect("list is allowed");
    assert!(
        list.items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name.as_str()))
    );
    let mut events = api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .expect("watch is allowed")
        .boxed();
    assert!(
        events.next().await.is_some(),
        "a watch from resourceVersion 0 replays at least our Cluster"
    );
    let patch = serde_json::json!({"spec": {"replica": {"primary": "eu-south"}}});
    let patched = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch is allowed");
    assert_eq!(patched.data["spec"]["replica"]["primary"], "eu-south");
    api.get_status(&name)
        .await
        .expect("reading clusters/status is allowed");
}

#[tokio::test]
async fn federator_may_not_read_secrets_delete_create_or_write_status() {
    let ns = TestNamespace::create("rbac-forbids").await;
    let member = MEMBERS[2];
    let cluster = DatabasesCluster::create(member, &ns).await;
    let name = cluster.name.clone();
    let client = ns.lab.federator(member).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), DATABASES_NAMESPACE);
    assert!(
        is_forbidden(secrets.list(&ListParams::default()).await),
        "listing Secrets must be forbidden"
    );
    assert!(
        is_forbidden(secrets.get("anything").await),
        "reading a Secret must be forbidden"
    );

    let clusters: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), DATABASES_NAMESPACE, &cnpg_cluster());
    assert!(
        is_forbidden(clusters.delete(&name, &DeleteParams::default()).await),
        "deleting a Cluster must be forbidden"
    );
    let other = sample_cluster("not-mine", member, member);
    assert!(
        is_forbidden(clusters.create(&PostParams::default(), &other).await),
        "creating a Cluster must be forbidden"
    );
    let status = serde_json::json!({"status": {"phase": "forged"}});
    assert!(
        is_forbidden(
            clusters
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
        ),
        "writing Cluster status is CNPG's job and must be forbidden"
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(client, DATABASES_NAMESPACE);
    assert!(
        is_forbidden(accounts.list(&ListParams::default()).await),
        "other resources must be forbidden"
    );
}

#[tokio::test]
async fn federator_may_not_touch_clusters_in_other_namespaces() {
    let ns = TestNamespace::create("rbac-namespaces").await;
    let member = MEMBERS[0];
    let admin: Api<DynamicObject> =
        Api::namespaced_with(ns.lab.admin(member).await, ns.name(), &cnpg_cluster());
    admin
        .create(
            &PostParams::default(),
            &sample_cluster("elsewhere", member, member),
        )
        .await
        .expect("admin creates");

    let client = ns.lab.federator(member).await;
    let here: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &cnpg_cluster());
    assert!(
        is_forbidden(here.get("elsewhere").await),
        "get outside databases must be forbidden"
    );
    assert!(
        is_forbidden(here.list(&ListParams::default()).await),
        "list outside databases must be forbidden"
    );
    let everywhere: Api<DynamicObject> = Api::all_with(client, &cnpg_cluster());
    assert!(
        is_forbidden(everywhere.list(&ListParams::default()).await),
        "cluster-wide list must be forbidden"
    );

    // The same Role granted in the test namespace makes it work there: what tests use.
    ns.grant_federator().await;
    harness::wait_until(
        "the federator Role to apply in the test namespace",
        || async { here.get("elsewhere").await.ok() },
    )
    .await;
}
