//! The member pool against the real lab: credentials from a directory of kubeconfig files,
//! watches that see Clusters created and deleted on a member, and reachability that follows a
//! member's credential from a closed port to the real apiserver.

use std::path::Path;
use std::time::Duration;

use e2e::harness::{self, TestNamespace, sample_cluster};
use federator::members::{Lookup, MemberEvent, MemberPool, Reachability};
use futures::{Stream, StreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kubeconfigs::{CredentialOptions, CredentialSet};
use topology::cnpg::Cluster;

/// Far above what a watch needs to deliver an event on the loaded 2-core lab.
const WITHIN: Duration = Duration::from_secs(30);

/// Waits, event by event, until `check` holds for the pool; panics naming `what` after [`WITHIN`].
async fn wait_pool(
    pool: &MemberPool,
    events: &mut (impl Stream<Item = MemberEvent> + Unpin),
    what: &str,
    mut check: impl FnMut(&MemberPool) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check(pool) {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the pool's event stream ended while waiting for {what}"),
            Err(_) => panic!("{what}: not within {WITHIN:?}; pool: {pool:?}"),
        }
    }
}

fn reachable(pool: &MemberPool, member: &str) -> bool {
    pool.reachability()
        .get(member)
        .is_some_and(|h| h.reachability.is_reachable())
}

fn lab_kubeconfig(member: &str) -> String {
    let path = harness::lab_dir().join(format!("{member}.federator.kubeconfig"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The API server URL of a kubeconfig.
fn server_of(kubeconfig: &str) -> String {
    serde_saphyr::from_str::<serde_json::Value>(kubeconfig).unwrap()["clusters"][0]["cluster"]
        ["server"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Writes `text` as the credential file of `member`, atomically (as a Secret volume does).
fn write_credential(dir: &Path, member: &str, text: &str) {
    let tmp = dir.join(".tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{member}.kubeconfig"))).unwrap();
}

/// A pool following the credentials in `dir`, its event stream, and the task driving it.
async fn pool_over(
    dir: &Path,
    namespace: &str,
) -> (
    CredentialSet,
    MemberPool,
    impl Stream<Item = MemberEvent> + Unpin,
    tokio::task::JoinHandle<()>,
) {
    let set = CredentialSet::new(CredentialOptions {
        directory: Some(dir.to_path_buf()),
        ..CredentialOptions::default()
    });
    set.refresh_directory().await.unwrap();
    let pool = MemberPool::new([namespace]);
    let events = Box::pin(pool.events());
    let task = tokio::spawn({
        let (pool, credentials) = (pool.clone(), set.subscribe());
        async move { pool.run(credentials).await }
    });
    (set, pool, events, task)
}

/// Deletes the Cluster on drop, so the CNPG emulator stops its PostgreSQL even if the test fails
/// (a deleted test namespace is never emptied: the lab has no namespace controller).
struct CreatedCluster {
    member: &'static str,
    namespace: String,
    name: String,
}

impl CreatedCluster {
    async fn create(member: &'static str, namespace: &str, name: &str) -> Self {
        Self::api(member, namespace)
            .await
            .create(
                &PostParams::default(),
                &sample_cluster(name, member, member),
            )
            .await
            .expect("admin creates a Cluster");
        Self {
            member,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    async fn api(member: &str, namespace: &str) -> Api<DynamicObject> {
        let admin = harness::lab().await.admin(member).await;
        Api::namespaced_with(admin, namespace, &harness::cnpg_cluster())
    }
}

impl Drop for CreatedCluster {
    fn drop(&mut self) {
        let (member, namespace, name) = (self.member, self.namespace.clone(), self.name.clone());
        // A client belongs to the runtime that built it, and the test's runtime is blocked here:
        // build one on a runtime of our own.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let api = Self::api(member, &namespace).await;
                let _ = api.delete(&name, &DeleteParams::default()).await;
            })
        });
        let _ = worker.join();
    }
}

#[tokio::test]
async fn the_pool_sees_clusters_created_and_deleted_on_a_member() {
    let ns = TestNamespace::create("members-watch").await;
    ns.grant_federator().await;
    let dir = tempfile::tempdir().unwrap();
    for member in e2e::lab::MEMBERS {
        write_credential(dir.path(), member, &lab_kubeconfig(member));
    }
    let (_set, pool, mut events, task) = pool_over(dir.path(), ns.name()).await;
    wait_pool(&pool, &mut events, "every member reachable", |p| {
        e2e::lab::MEMBERS.iter().all(|m| reachable(p, m))
    })
    .await;
    assert!(matches!(
        pool.read("eu-central", ns.name(), "db"),
        Lookup::Missing
    ));

    let created = CreatedCluster::create("eu-central", ns.name(), "db").await;
    wait_pool(&pool, &mut events, "the new Cluster in the pool", |p| {
        matches!(p.read("eu-central", ns.name(), "db"), Lookup::Seen(_))
    })
    .await;
    let Lookup::Seen(cluster) = pool.read("eu-central", ns.name(), "db") else {
        unreachable!()
    };
    assert_eq!(
        cluster.spec.replica.as_ref().unwrap().primary.as_deref(),
        Some("eu-central")
    );
    assert!(matches!(
        pool.read("eu-western", ns.name(), "db"),
        Lookup::Missing
    ));

    // The client for requests works with the member's least privilege.
    let client = pool.client("eu-central").unwrap();
    let listed = Api::<Cluster>::namespaced(client, ns.name())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    drop(created);
    wait_pool(&pool, &mut events, "the deleted Cluster gone", |p| {
        matches!(p.read("eu-central", ns.name(), "db"), Lookup::Missing)
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn a_member_behind_a_closed_port_is_unreachable_until_its_credential_is_fixed() {
    let ns = TestNamespace::create("members-reach").await;
    ns.grant_federator().await;
    let south = lab_kubeconfig("eu-south");
    let server = server_of(&south);
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_server = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);

    let dir = tempfile::tempdir().unwrap();
    write_credential(
        dir.path(),
        "eu-south",
        &south.replace(&server, &closed_server),
    );
    write_credential(dir.path(), "eu-western", &lab_kubeconfig("eu-western"));
    let (set, pool, mut events, task) = pool_over(dir.path(), ns.name()).await;
    wait_pool(
        &pool,
        &mut events,
        "eu-south unreachable, eu-western reachable",
        |p| {
            let health = p.reachability();
            matches!(
                health.get("eu-south").map(|h| &h.reachability),
                Some(Reachability::Unreachable { .. })
            ) && reachable(p, "eu-western")
        },
    )
    .await;
    let health = pool.reachability();
    let error = health["eu-south"].reachability.error().unwrap().to_owned();
    let token =
        serde_saphyr::from_str::<serde_json::Value>(&south).unwrap()["users"][0]["user"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(!error.contains(&token), "{error}");
    assert!(!format!("{pool:?}").contains(&token));
    assert!(matches!(
        pool.read("eu-south", ns.name(), "db"),
        Lookup::Unreachable(_)
    ));

    // A request fails fast rather than hanging.
    let started = std::time::Instant::now();
    let client = pool.client("eu-south").unwrap();
    let result = Api::<Cluster>::namespaced(client, ns.name())
        .list(&ListParams::default())
        .await;
    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The fixed credential is picked up by the cheap directory check, and the member recovers.
    write_credential(dir.path(), "eu-south", &south);
    assert!(set.refresh_directory().await.unwrap());
    wait_pool(&pool, &mut events, "eu-south reachable again", |p| {
        reachable(p, "eu-south")
    })
    .await;

    // A member whose file disappears has no credential any more.
    std::fs::remove_file(dir.path().join("eu-western.kubeconfig")).unwrap();
    assert!(set.refresh_directory().await.unwrap());
    wait_pool(&pool, &mut events, "eu-western forgotten", |p| {
        !p.reachability().contains_key("eu-western")
    })
    .await;
    assert!(pool.client("eu-western").is_err());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_accepts_connections_and_never_answers_is_unreachable_until_it_answers() {
    use e2e::faults::{Fault, FaultProxy};

    let ns = TestNamespace::create("members-silent").await;
    ns.grant_federator().await;
    let central = lab_kubeconfig("eu-central");
    let server = server_of(&central)
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .expect("the lab's apiserver address");
    let proxy = FaultProxy::start(server).await.expect("a fault proxy");
    let routed = e2e::faults::redirect_kubeconfig(&central, proxy.addr()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_credential(dir.path(), "eu-central", &routed);
    let (_set, pool, mut events, task) = pool_over(dir.path(), ns.name()).await;
    wait_pool(&pool, &mut events, "eu-central reachable", |p| {
        reachable(p, "eu-central")
    })
    .await;
    assert!(matches!(
        pool.read("eu-central", ns.name(), "db"),
        Lookup::Missing
    ));

    // Accepts TCP, never answers: the watch does not fail, the liveness probe does.
    proxy.set(Fault::Blackhole);
    let silent = std::time::Instant::now();
    wait_pool(&pool, &mut events, "eu-central unreachable", |p| {
        !reachable(p, "eu-central")
    })
    .await;
    let noticed = silent.elapsed();
    println!("a silent member was noticed after {noticed:.1?}");
    assert!(
        noticed <= federator::members::PROBE_INTERVAL + federator::members::PROBE_DEADLINE * 2,
        "{noticed:?}"
    );
    let health = pool.reachability()["eu-central"].clone();
    let Reachability::Unreachable { error } = &health.reachability else {
        panic!("{health:?}");
    };
    assert!(error.contains("did not answer"), "{error}");
    // Reads no longer serve what the watch held before the outage; readiness does not wait.
    assert!(
        matches!(pool.read("eu-central", ns.name(), "db"), Lookup::Unreachable(ref why) if why.contains("did not answer")),
        "{:?}",
        pool.read("eu-central", ns.name(), "db")
    );
    assert!(pool.unanswered().is_empty(), "{:?}", pool.unanswered());

    // A Cluster created meanwhile is seen once the member answers: its watch was restarted.
    let created = CreatedCluster::create("eu-central", ns.name(), "db").await;
    proxy.set(Fault::Pass);
    wait_pool(
        &pool,
        &mut events,
        "eu-central back with the new Cluster",
        |p| {
            reachable(p, "eu-central")
                && matches!(p.read("eu-central", ns.name(), "db"), Lookup::Seen(_))
        },
    )
    .await;
    drop(created);
    task.abort();
}
