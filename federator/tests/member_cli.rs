//! `federator member join | list | rotate | remove` on the lab, with the controller's own
//! credential path (hub Secrets → `CredentialSet` → `MemberPool`) following along:
//! join → the pool reaches the member and sees its Clusters → rotate → the old token is refused
//! and the pool keeps working with the new one, without a restart → remove → the member's
//! objects and the hub Secret are gone and the last token is refused.

use std::process::Output;
use std::time::Duration;

use e2e::harness::{self, TestNamespace, sample_cluster};
use federator::members::{Lookup, MemberPool};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kubeconfigs::{CredentialOptions, CredentialSet};
use topology::cnpg::Cluster;

/// Far above what a watch or a token cache needs on the loaded 2-core lab.
const WITHIN: Duration = Duration::from_secs(45);
const SECRET_NAMESPACE: &str = "federator-system";

async fn federator(args: &[&str]) -> Output {
    let lab = harness::lab().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_federator"))
        .arg("--kubeconfig")
        .arg(lab.layout.lab_kubeconfig())
        .args(["--context", "hub"])
        .args(args)
        .output()
        .await
        .expect("running federator");
    println!(
        "$ federator {}\n{}{}(exit {:?})",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until `check` returns Some, polling every 200 ms; panics naming `what` after [`WITHIN`].
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn client_of(kubeconfig: &str) -> kube::Client {
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The API server's answer to listing Clusters in `namespace` with `client`: Ok or the code.
async fn list_code(client: &kube::Client, namespace: &str) -> Result<usize, u16> {
    match Api::<Cluster>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items.len()),
        Err(kube::Error::Api(e)) => Err(e.code),
        Err(e) => panic!("listing Clusters: {e}"),
    }
}

async fn hub_secret(name: &str) -> Option<Secret> {
    let hub = harness::lab().await.admin("hub").await;
    Api::<Secret>::namespaced(hub, SECRET_NAMESPACE)
        .get_opt(name)
        .await
        .unwrap()
}

fn kubeconfig_in(secret: &Secret) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()["kubeconfig"].0.clone()).unwrap()
}

/// An Argo CD cluster Secret (`argocd.argoproj.io/secret-type: cluster`) named `name` in `ns` on
/// the hub, holding the server, CA and token of `kubeconfig`.
async fn create_argocd_secret(ns: &str, name: &str, kubeconfig: &str) {
    let parsed: serde_json::Value = serde_saphyr::from_str(kubeconfig).expect("a kubeconfig");
    let cluster = &parsed["clusters"][0]["cluster"];
    let config = serde_json::json!({
        "bearerToken": parsed["users"][0]["user"]["token"],
        "tlsClientConfig": {"caData": cluster["certificate-authority-data"]},
    });
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(
                [(
                    "argocd.argoproj.io/secret-type".to_owned(),
                    "cluster".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        string_data: Some(
            [
                ("name".to_owned(), name.to_owned()),
                (
                    "server".to_owned(),
                    cluster["server"].as_str().unwrap().to_owned(),
                ),
                ("config".to_owned(), config.to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let hub = harness::lab().await.admin("hub").await;
    Api::<Secret>::namespaced(hub, ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the Argo CD cluster Secret");
}

/// Deletes the hub Secret if the test left it (a failed run must not leave a member behind for
/// every later controller to watch).
struct HubSecretGuard(String);

impl Drop for HubSecretGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        harness::block_on_detached(async move {
            let hub = harness::lab().await.admin("hub").await;
            let _ = Api::<Secret>::namespaced(hub, SECRET_NAMESPACE)
                .delete(&name, &DeleteParams::default())
                .await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_rotate_and_remove_a_member_while_the_controllers_pool_follows() {
    let ns = TestNamespace::create("member-cli").await;
    let suffix = &ns.name()[ns.name().len() - 6..];
    let member = format!("joined-{suffix}");
    let account = format!("fed-{suffix}");
    let secret_name = format!("member-{member}");
    let _guard = HubSecretGuard(secret_name.clone());
    let member_side = [
        "--member-context",
        "eu-south",
        "--service-account",
        &account,
        "--service-account-namespace",
        ns.name(),
    ];

    // A namespace that does not exist: refused, nothing written on either side.
    let mut args = vec![
        "member",
        "join",
        &member,
        "--namespaces",
        "no-such-namespace-x",
    ];
    args.extend(member_side);
    let refused = federator(&args).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("namespace no-such-namespace-x does not exist"),
        "{}",
        text(&refused)
    );
    assert!(hub_secret(&secret_name).await.is_none());

    // Join.
    let mut args = vec!["member", "join", &member, "--namespaces", ns.name()];
    args.extend(member_side);
    let joined = federator(&args).await;
    assert_eq!(joined.status.code(), Some(0), "{}", text(&joined));
    assert!(text(&joined).contains("every permission Federator needs"));
    let secret = hub_secret(&secret_name).await.expect("the hub Secret");
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(labels["federator.dev/member-cluster"], "true");
    assert_eq!(labels["federator.dev/cluster-name"], member);
    let first_kubeconfig = kubeconfig_in(&secret);

    // The credential is least privilege: Clusters in the namespace yes, elsewhere and Secrets no.
    let first = client_of(&first_kubeconfig).await;
    assert_eq!(list_code(&first, ns.name()).await, Ok(0));
    assert_eq!(list_code(&first, "databases").await, Err(403));
    let secrets = Api::<Secret>::namespaced(first.clone(), ns.name())
        .list(&ListParams::default())
        .await;
    assert!(matches!(secrets, Err(kube::Error::Api(e)) if e.code == 403));

    // The controller's credential path picks the member up from the hub Secret.
    let hub = harness::lab().await.admin("hub").await;
    let set = CredentialSet::new(CredentialOptions {
        secret_namespace: Some(SECRET_NAMESPACE.into()),
        ..CredentialOptions::default()
    });
    let pool = MemberPool::new([ns.name()]);
    let tasks = [
        tokio::spawn({
            let set = set.clone();
            async move { set.watch_secrets(hub).await }
        }),
        tokio::spawn({
            let (pool, credentials) = (pool.clone(), set.subscribe());
            async move { pool.run(credentials).await }
        }),
    ];
    let admin_south = harness::lab().await.admin("eu-south").await;
    let clusters: Api<DynamicObject> =
        Api::namespaced_with(admin_south.clone(), ns.name(), &harness::cnpg_cluster());
    clusters
        .create(
            &PostParams::default(),
            &sample_cluster("db", "eu-south", "eu-south"),
        )
        .await
        .expect("admin creates a Cluster");
    eventually(
        "the pool sees the Cluster through the joined member",
        || async { matches!(pool.read(&member, ns.name(), "db"), Lookup::Seen(_)).then_some(()) },
    )
    .await;

    // `member list` shows it reachable with every permission.
    let listed = federator(&["member", "list", "-o", "json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["member"] == member.as_str())
        .expect("the member in `member list`");
    assert_eq!(row["reachable"], true, "{row}");
    assert_eq!(row["namespaces"][0]["namespace"], ns.name());
    let access = row["namespaces"][0]["access"].as_array().unwrap();
    assert_eq!(
        access.len(),
        7,
        "get/list/watch/patch clusters, get clusters/status, get pods and pods/proxy"
    );
    assert!(access.iter().all(|a| a["allowed"] == true), "{row}");

    // The same credential as an Argo CD cluster Secret (the controller's --argocd-namespace):
    // `member list --argocd-namespace` lists it too, as the controller would use it.
    let argo = format!("argo-{suffix}");
    create_argocd_secret(ns.name(), &argo, &first_kubeconfig).await;
    let listed = federator(&[
        "member",
        "list",
        "-o",
        "json",
        "--argocd-namespace",
        ns.name(),
        "--namespaces",
        ns.name(),
    ])
    .await;
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["member"] == argo.as_str())
        .unwrap_or_else(|| panic!("the Argo CD cluster Secret in `member list`: {rows:#}"));
    assert_eq!(row["source"], "argocd", "{row}");
    assert_eq!(row["secret"], format!("{}/{argo}", ns.name()), "{row}");
    assert_eq!(row["reachable"], true, "{row}");
    let access = row["namespaces"][0]["access"].as_array().unwrap();
    assert!(access.iter().all(|a| a["allowed"] == true), "{row}");
    let table = text(&federator(&["member", "list", "--argocd-namespace", ns.name()]).await);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&argo) && l.contains("argocd")),
        "{table}"
    );

    // Rotate: a new token on the hub, the old one refused by the member.
    let mut args = vec!["member", "rotate", &member];
    args.extend(&member_side[..2]);
    let rotated = federator(&args).await;
    assert_eq!(rotated.status.code(), Some(0), "{}", text(&rotated));
    assert!(text(&rotated).contains("old token revoked"));
    let second_kubeconfig = kubeconfig_in(&hub_secret(&secret_name).await.unwrap());
    assert_ne!(first_kubeconfig, second_kubeconfig);
    assert_eq!(
        list_code(&first, ns.name()).await,
        Err(401),
        "the old token is refused"
    );
    // The pool's request client now uses the new token: it lists where the old one is refused.
    eventually("the pool's client lists with the new token", || async {
        let client = pool.client(&member).ok()?;
        (list_code(&client, ns.name()).await == Ok(1)).then_some(())
    })
    .await;

    // Remove: refused without the member context (usage error), then done.
    let remove_usage = federator(&["member", "remove", &member]).await;
    assert_eq!(remove_usage.status.code(), Some(2));
    let removed = federator(&["member", "remove", &member, "--member-context", "eu-south"]).await;
    assert_eq!(removed.status.code(), Some(0), "{}", text(&removed));
    assert!(hub_secret(&secret_name).await.is_none());
    let on_south = |kind| format!("{kind} of {member} left on eu-south");
    let roles = Api::<Role>::namespaced(admin_south.clone(), ns.name());
    assert!(
        roles.get_opt(&account).await.unwrap().is_none(),
        "{}",
        on_south("Role")
    );
    let bindings = Api::<RoleBinding>::namespaced(admin_south.clone(), ns.name());
    assert!(
        bindings.get_opt(&account).await.unwrap().is_none(),
        "{}",
        on_south("RoleBinding")
    );
    let accounts = Api::<ServiceAccount>::namespaced(admin_south.clone(), ns.name());
    assert!(
        accounts.get_opt(&account).await.unwrap().is_none(),
        "{}",
        on_south("ServiceAccount")
    );
    let second = client_of(&second_kubeconfig).await;
    eventually("the last token refused after remove", || async {
        (list_code(&second, ns.name()).await == Err(401)).then_some(())
    })
    .await;
    eventually("the pool drops the removed member", || async {
        pool.client(&member).is_err().then_some(())
    })
    .await;

    clusters
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    for task in tasks {
        task.abort();
    }
}
