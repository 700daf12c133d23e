//! Member credentials from hub Secrets, against the real lab: the lab's own Secrets give
//! least-privilege clients; Secrets in a test namespace (both formats) load, reload on change,
//! and are refused when they carry a plugin — without a restart and without a credential ever
//! reaching a formatted message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use e2e::harness::{self, TestNamespace};
use e2e::lab::{
    CLUSTER_NAME_LABEL, DATABASES_NAMESPACE, HUB, HUB_NAMESPACE, MEMBER_SECRET_LABEL, MEMBERS,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubeconfigs::{CredentialOptions, CredentialSet, Snapshot, Timeouts};
use tokio::sync::watch;
use topology::cnpg::Cluster;

/// Far above what a watch needs to deliver an event on the loaded 2-core lab.
const WITHIN: Duration = Duration::from_secs(30);

/// Waits until the published snapshot satisfies `check`; panics naming `what` after [`WITHIN`].
async fn wait_snapshot(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    what: &str,
    check: impl FnMut(&Arc<Snapshot>) -> bool,
) -> Arc<Snapshot> {
    let result = tokio::time::timeout(WITHIN, rx.wait_for(check))
        .await
        .map(|r| r.map(|s| s.clone()));
    match result {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(_)) => panic!("the credential set was dropped while waiting for {what}"),
        Err(_) => panic!(
            "no snapshot with {what} within {WITHIN:?}; last: {:?}",
            rx.borrow()
        ),
    }
}

/// A credential set watching Secrets in `namespace` on the hub, driven by a task of this test.
async fn watch_hub(options: CredentialOptions) -> (CredentialSet, tokio::task::JoinHandle<()>) {
    let hub = harness::lab().await.admin(HUB).await;
    let set = CredentialSet::new(options);
    let task = tokio::spawn({
        let set = set.clone();
        async move { set.watch_secrets(hub).await }
    });
    (set, task)
}

fn lab_kubeconfig(member: &str) -> String {
    let path = harness::lab_dir().join(format!("{member}.federator.kubeconfig"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(kubeconfig: &str) -> serde_json::Value {
    serde_saphyr::from_str(kubeconfig).expect("the lab writes valid kubeconfigs")
}

/// The bearer token of a lab member kubeconfig, to prove it never shows up in messages.
fn token_of(kubeconfig: &str) -> String {
    yaml(kubeconfig)["users"][0]["user"]["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// `kubeconfig` with `edit` applied to its parsed form.
fn edited(kubeconfig: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut doc = yaml(kubeconfig);
    edit(&mut doc);
    serde_saphyr::to_string(&doc).unwrap()
}

fn secret(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    );
    s.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).into(), ByteString(v.as_bytes().to_vec())))
            .collect::<BTreeMap<_, _>>(),
    );
    s
}

fn federator_secret(name: &str, member: &str, kubeconfig: &str) -> Secret {
    secret(
        name,
        &[(MEMBER_SECRET_LABEL, "true"), (CLUSTER_NAME_LABEL, member)],
        &[("kubeconfig", kubeconfig)],
    )
}

#[tokio::test]
async fn the_lab_secrets_give_working_least_privilege_clients() {
    let (set, task) = watch_hub(CredentialOptions {
        secret_namespace: Some(HUB_NAMESPACE.into()),
        ..CredentialOptions::default()
    })
    .await;
    let mut rx = set.subscribe();
    let snapshot = wait_snapshot(&mut rx, "every lab member", |s| {
        s.complete && MEMBERS.iter().all(|m| s.get(m).is_some())
    })
    .await;
    assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);

    for member in MEMBERS {
        let credential = snapshot.get(member).unwrap();
        let client = credential.client(Timeouts::REQUESTS).unwrap();
        let clusters: Api<Cluster> = Api::namespaced(client.clone(), DATABASES_NAMESPACE);
        clusters
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("{member}: listing Clusters in databases: {e}"));
        let secrets: Api<Secret> = Api::namespaced(client, DATABASES_NAMESPACE);
        match secrets.list(&ListParams::default()).await {
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            other => panic!("{member}: listing Secrets must be forbidden, got {other:?}"),
        }
        let token = token_of(&lab_kubeconfig(member));
        for text in [
            format!("{credential:?}"),
            format!("{snapshot:?}"),
            format!("{set:?}"),
        ] {
            assert!(
                !text.contains(&token),
                "{member}: the token leaked into {text}"
            );
        }
    }
    task.abort();
}

#[tokio::test]
async fn secrets_of_both_formats_load_reload_and_go_away_without_a_restart() {
    let ns = TestNamespace::create("credentials-reload").await;
    let hub = ns.lab.admin(HUB).await;
    let secrets: Api<Secret> = Api::namespaced(hub, ns.name());
    let (set, task) = watch_hub(CredentialOptions {
        secret_namespace: Some(ns.name().into()),
        argocd_namespace: Some(ns.name().into()),
        ..CredentialOptions::default()
    })
    .await;
    let mut rx = set.subscribe();
    wait_snapshot(&mut rx, "the first (empty) list", |s| s.complete).await;

    // Federator format, for eu-south.
    let south = lab_kubeconfig("eu-south");
    secrets
        .create(
            &PostParams::default(),
            &federator_secret("south", "eu-south", &south),
        )
        .await
        .unwrap();
    // Argo CD format, for eu-western: the same ServiceAccount token, CA and server.
    let western = lab_kubeconfig("eu-western");
    let cluster = &yaml(&western)["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().unwrap().to_owned();
    let config = serde_json::json!({
        "bearerToken": token_of(&western),
        "tlsClientConfig": {"caData": cluster["certificate-authority-data"]},
    });
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "argo-western",
                // Both labels: read once, as Argo CD's format, not reported as a conflict.
                &[
                    ("argocd.argoproj.io/secret-type", "cluster"),
                    (MEMBER_SECRET_LABEL, "true"),
                ],
                &[
                    ("name", "eu-western"),
                    ("server", &server),
                    ("config", &config.to_string()),
                ],
            ),
        )
        .await
        .unwrap();
    let loaded = wait_snapshot(&mut rx, "eu-south and eu-western", |s| {
        s.get("eu-south").is_some() && s.get("eu-western").is_some()
    })
    .await;
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let western_client = loaded
        .get("eu-western")
        .unwrap()
        .client(Timeouts::REQUESTS)
        .unwrap();
    Api::<Cluster>::namespaced(western_client, DATABASES_NAMESPACE)
        .list(&ListParams::default())
        .await
        .expect("the Argo CD credential reaches eu-western with the Federator Role");

    // An edit (new server) is picked up by the watch.
    let revision = loaded.get("eu-south").unwrap().revision();
    let moved = edited(&south, |k| {
        k["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1".into()
    });
    let patch = serde_json::json!({"stringData": {"kubeconfig": moved}});
    secrets
        .patch("south", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let reloaded = wait_snapshot(&mut rx, "the edited eu-south", |s| {
        s.get("eu-south").is_some_and(|c| c.revision() != revision)
    })
    .await;
    assert_eq!(
        reloaded.get("eu-south").unwrap().server(),
        "https://127.0.0.1:1/"
    );

    // A plugin is refused, naming the Secret and the field; the member then has no credential.
    let exec = edited(&south, |k| {
        k["users"][0]["user"]["exec"] = serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/bin/true",
        });
    });
    let patch = serde_json::json!({"stringData": {"kubeconfig": exec}});
    secrets
        .patch("south", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let refused = wait_snapshot(&mut rx, "eu-south refused", |s| s.get("eu-south").is_none()).await;
    let problem = refused
        .problems_of("eu-south")
        .next()
        .expect("a problem for eu-south")
        .to_string();
    assert!(
        problem.contains(&format!("Secret {}/south", ns.name())),
        "{problem}"
    );
    assert!(problem.contains(".user.exec"), "{problem}");
    assert!(!problem.contains(&token_of(&south)), "{problem}");

    // Deleting the Secrets removes the members.
    for name in ["south", "argo-western"] {
        secrets
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_snapshot(&mut rx, "no members", |s| {
        s.members.is_empty() && s.problems.is_empty()
    })
    .await;
    task.abort();
}
