#![forbid(unsafe_code)]
//! Federator installed on a hub as a platform team would (docs/install.md), on the real lab tier
//! where the hub region has a node of its own (containerd, kubelet, docs/lab-real.md):
//!
//! 1. the image built from Debian packages by `hack/build-federator-image.sh` (no registry) is
//!    imported into the hub node's containerd;
//! 2. from a shell on the hub's network (the hub node's network namespace: there the member
//!    apiservers answer on the hub node's address, as a real hub reaches its members' API
//!    endpoints), `federator member join` onboards two members — ServiceAccount and Role on the
//!    member, a hub Secret with a token-based kubeconfig — and `federator member list` sees both
//!    reachable with every permission; `helm install` installs the chart (CRDs, Deployment with
//!    2 replicas and leader election, the chart's ServiceAccount and hub RBAC, not admin);
//!
//! Proven: both pods become Ready (readiness = member stores synced, leader known), one holds
//! the Lease, each logs that the chart's RBAC grants every hub permission it uses; a switchover
//! of a real CloudNativePG pair (streaming, `verify-full`) requested on the hub completes, its
//! Events reported by the leader pod; the leader pod deleted, the other replica takes the Lease
//! and a second switchover completes, reported by it.
//!
//! Needs root and `make deps-real`; `make test-real` runs it.

mod real_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::harness::SharedLab;
use e2e::harness::controller::{
    deploy, federator_binary, switchover, wait_condition, wide_timeouts,
};
use e2e::harness::testkit::Member;
use e2e::lab::health::wait_for;
use e2e::lab::real::plan::{RealPlan, RegionPlan};
use e2e::lab::{HUB, MEMBERS};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams};
use real_support::{A, B};
use serde_json::json;
use topology::api::Outcome;
use topology::conditions::kind;

/// Image built and imported, chart installed, both pods Ready: ~1 min on an idle machine.
const INSTALL_WITHIN: Duration = Duration::from_secs(300);
/// A new leader after the old one's pod is deleted: at once on a clean shutdown (the Lease is
/// released), at most the Lease's 15 s plus a renewal period otherwise.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(60);
/// What the controller logs once its start-up check found every hub permission granted.
const ALL_GRANTED: &str = "hub permissions: every one the controller uses is granted";
/// The member ServiceAccount `member join` creates (its Role has the same name).
const MEMBER_SA: &str = "federator-install";
const IMAGE: &str = "localhost/federator";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `command`, printing what it printed; panics naming `what` if it fails.
async fn run(what: &str, command: &mut tokio::process::Command) -> String {
    let started = Instant::now();
    let out = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "$ {what} ({:.1}s, {})\n{stdout}{stderr}",
        started.elapsed().as_secs_f64(),
        out.status
    );
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stderr}",
        out.status
    );
    stdout
}

/// A command run in the hub node's network namespace (a shell on the hub's network).
fn on_hub_network(hub: &RegionPlan, program: impl AsRef<Path>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("nsenter");
    command
        .arg(format!("--net={}", hub.netns_path().display()))
        .arg("--")
        .arg(program.as_ref());
    command
}

/// The lab's admin kubeconfig as seen from the hub's network: every apiserver at the hub node's
/// IP (where the hub node's netns proxy forwards each apiserver's port).
fn hub_network_kubeconfig(lab: &SharedLab, hub: &RegionPlan, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(lab.layout.lab_kubeconfig()).expect("lab.kubeconfig");
    let path = dir.join("hub-network.kubeconfig");
    std::fs::write(
        &path,
        text.replace("https://127.0.0.1:", &format!("https://{}:", hub.node_ip())),
    )
    .expect("writing the hub-network kubeconfig");
    path
}

/// `hack/build-federator-image.sh` with the test's federator binary (stripped: the debug build's
/// symbols are most of its size), imported into the hub node's containerd. Returns the tag.
async fn build_and_import_image(hub: &RegionPlan, dir: &Path) -> String {
    let binary = dir.join("federator");
    run(
        "strip the federator binary",
        tokio::process::Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&binary)
            .arg(federator_binary()),
    )
    .await;
    let out = run(
        "hack/build-federator-image.sh",
        tokio::process::Command::new("bash")
            .arg(repo_root().join("hack/build-federator-image.sh"))
            .arg("--binary")
            .arg(&binary)
            .env("FEDERATOR_IMAGE_DIR", dir)
            .current_dir(repo_root()),
    )
    .await;
    let archive = PathBuf::from(out.lines().last().expect("the archive's path").trim());
    let version = archive
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("federator-"))
        .and_then(|n| n.strip_suffix(".oci.tar"))
        .unwrap_or_else(|| panic!("an archive named federator-<version>.oci.tar: {archive:?}"))
        .to_owned();
    let started = Instant::now();
    let region = hub.clone();
    tokio::task::spawn_blocking(move || e2e::lab::real::images::import(&region, &archive, IMAGE))
        .await
        .expect("the import does not panic")
        .unwrap_or_else(|e| panic!("importing the image into the hub node: {e}"));
    println!(
        "image {IMAGE}:{version} imported into the hub node in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    version
}

/// What `install` made.
struct Installed {
    release: String,
    helm: String,
    kubeconfig: PathBuf,
}

/// Onboards the members with `federator member join`, checks them with `member list`, and
/// installs the chart with `helm install`, all from the hub's network.
async fn install(lab: &'static SharedLab, ns: &str, hub: &RegionPlan) -> Installed {
    let dir = lab.layout.root().join("install").join(ns);
    std::fs::create_dir_all(&dir).expect("the install directory");
    let version = build_and_import_image(hub, &dir).await;
    let kubeconfig = hub_network_kubeconfig(lab, hub, &dir);
    for m in [A, B] {
        run(
            &format!("federator member join {}", m.region),
            on_hub_network(hub, federator_binary())
                .args(["member", "join", m.region, "--kubeconfig"])
                .arg(&kubeconfig)
                .args(["--context", HUB, "--member-kubeconfig"])
                .arg(&kubeconfig)
                .args(["--member-context", m.region, "--namespaces", ns])
                .args(["--secret-namespace", ns, "--service-account", MEMBER_SA])
                .args(["--service-account-namespace", ns]),
        )
        .await;
    }
    let listed = run(
        "federator member list",
        on_hub_network(hub, federator_binary())
            .args(["member", "list", "-o", "json", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--context", HUB, "--secret-namespace", ns]),
    )
    .await;
    let rows: serde_json::Value = serde_json::from_str(&listed).expect("member list -o json");
    let members: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["reachable"] == true && r["error"].is_null())
        .filter_map(|r| r["member"].as_str())
        .collect();
    assert_eq!(members.len(), 2, "both members reachable: {rows:#}");

    let helm = run(
        "hack/install-helm.sh",
        tokio::process::Command::new("bash")
            .arg(repo_root().join("hack/install-helm.sh"))
            .current_dir(repo_root()),
    )
    .await;
    let release = format!("fed-{}", &ns[ns.len() - 6..]);
    let chart = repo_root().join("charts/federator");
    run(
        "helm install",
        on_hub_network(hub, helm.trim())
            .args(["install", &release])
            .arg(&chart)
            .args(["--namespace", ns, "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--kube-context", HUB, "-f"])
            .arg(chart.join("values-lab.yaml"))
            .args(["--set", &format!("image.tag={version}")])
            .args(["--set", &format!("topologyNamespace={ns}")])
            .args(["--set", &format!("members.watchNamespaces={{{ns}}}")])
            .args(["--set", "logging.level=info\\,federator=debug"]),
    )
    .await;
    Installed {
        release,
        helm: helm.trim().to_owned(),
        kubeconfig,
    }
}

/// The release's pods, by name.
async fn pods(lab: &SharedLab, ns: &str, release: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(lab.admin(HUB).await, ns);
    let selector = format!("app.kubernetes.io/instance={release}");
    api.list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the Deployment has 2 Ready pods; returns their names.
async fn wait_ready_pods(lab: &SharedLab, ns: &str, release: &str) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(lab.admin(HUB).await, ns);
    let found = wait_for(
        "2 Federator pods Ready on the hub node",
        INSTALL_WITHIN,
        || async {
            let d = deployments
                .list(
                    &ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")),
                )
                .await
                .ok()?
                .items
                .pop()?;
            (d.status?.ready_replicas? == 2).then_some(())?;
            let names: Vec<String> = pods(lab, ns, release)
                .await
                .iter()
                .filter(|p| ready(p))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            (names.len() == 2).then_some(names)
        },
    )
    .await;
    match found {
        Ok(names) => names,
        Err(e) => panic!("{e}\n{}", describe_pods(lab, ns, release).await),
    }
}

/// Each pod's phase, conditions and container states, for a failure message.
async fn describe_pods(lab: &SharedLab, ns: &str, release: &str) -> String {
    pods(lab, ns, release)
        .await
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            format!(
                "pod {}: {:?} conditions {:?} containers {:?}",
                p.metadata.name.as_deref().unwrap_or_default(),
                status.phase,
                status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .map(|c| format!("{}={} {:?}", c.type_, c.status, c.message))
                    .collect::<Vec<_>>(),
                status
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .map(|c| format!("{:?}", c.state))
                    .collect::<Vec<_>>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pod of `release` (other than `not`) whose controller holds the Lease (identity
/// `<hostname>-<pid>`, the hostname being the pod's name).
async fn wait_leader(lab: &SharedLab, ns: &str, release: &str, not: Option<&str>) -> String {
    let leases: Api<Lease> = Api::namespaced(lab.admin(HUB).await, ns);
    wait_for(
        "a Federator pod holding the Lease",
        TAKEOVER_WITHIN,
        || async {
            let lease = leases.get_opt("federator-controller").await.ok()??;
            let holder = lease.spec?.holder_identity?;
            let pod = pods(lab, ns, release)
                .await
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .find(|p| {
                    holder
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('-'))
                })?;
            (Some(pod.as_str()) != not).then_some(pod)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The pod's log, through the hub apiserver and the kubelet on the hub node.
async fn pod_log(lab: &SharedLab, ns: &str, pod: &str) -> String {
    let api: Api<Pod> = Api::namespaced(lab.admin(HUB).await, ns);
    api.logs(pod, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("the log of pod {pod}: {e}"))
}

/// The controller identities that reported a `SwitchoverSucceeded` Event on topology `pg`.
async fn succeeded_reporters(lab: &SharedLab, ns: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(lab.admin(HUB).await, ns);
    api.list(&ListParams::default())
        .await
        .expect("listing Events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("SwitchoverSucceeded")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("pg")
        })
        .filter_map(|e| e.reporting_instance)
        .collect()
}

/// Whether the hub lets the pod's ServiceAccount `verb` `resource` (`group/resource[/sub]`, the
/// core group empty) in `namespace` (a SubjectAccessReview asked by the admin).
async fn sa_may(lab: &SharedLab, pod: &Pod, verb: &str, resource: &str, namespace: &str) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let mut parts = resource.splitn(3, '/');
    let (group, plural, subresource) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next(),
    );
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{ns}:{sa}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(plural.into()),
                subresource: subresource.map(str::to_owned),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(lab.admin(HUB).await);
    api.create(&Default::default(), &review)
        .await
        .expect("a SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// `federator-lab dsn REGION NS/NAME`: the Cluster's libpq URI on the real tier.
async fn lab_dsn(lab: &SharedLab, ns: &str, m: Member<'_>) -> String {
    let out = run(
        &format!("federator-lab dsn {} {ns}/{}", m.region, m.name),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_federator-lab"))
            .arg("--dir")
            .arg(lab.layout.root())
            .args(["dsn", m.region, &format!("{ns}/{}", m.name)]),
    )
    .await;
    out.trim().to_owned()
}

/// `psql URI -Atc SQL`, as a user of `lab dsn` would run it, until it answers `want`: the Service
/// behind the URI may be between two pods for a moment (a replica's first restart after it joined,
/// a promoted primary's in-place restart), when the connection is closed before any answer.
async fn psql_until(uri: &str, sql: &str, want: &str) {
    let answered = wait_for(
        &format!("psql -Atc {sql:?} to answer {want:?}"),
        Duration::from_secs(90),
        || async {
            let out = tokio::process::Command::new("psql")
                .args([uri, "-Atc", sql])
                .output()
                .await
                .ok()?;
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            println!(
                "$ psql -Atc {sql:?} ({}): {got} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            (out.status.success() && got == want).then_some(())
        },
    )
    .await;
    answered.unwrap_or_else(|e| panic!("{e}"));
}

/// One switchover requested on the hub with `federator switchover --wait`; asserts it succeeded
/// and that `leader`'s controller reported it.
async fn switch_to(lab: &SharedLab, ns: &str, to: &str, leader: &str) {
    let (code, _, took) = switchover(lab, ns, to).await;
    assert_eq!(code, 0, "switchover to {to} did not succeed");
    println!("switchover to {to}: {:.1}s (CLI)", took.as_secs_f64());
    let prefix = format!("{leader}-");
    let reported = wait_for(
        &format!("a SwitchoverSucceeded Event reported by pod {leader}"),
        Duration::from_secs(30),
        || async {
            succeeded_reporters(lab, ns)
                .await
                .iter()
                .any(|r| r.starts_with(&prefix))
                .then_some(())
        },
    )
    .await;
    if let Err(e) = reported {
        panic!("{e}: reporters {:?}", succeeded_reporters(lab, ns).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn federator_installed_from_its_chart_on_the_hub_node_switches_over_and_survives_its_leader_pod()
 {
    let (lab, test_ns) = real_support::lab_and_namespace("real-install").await;
    let ns = test_ns.name();
    let started = Instant::now();
    let plan = RealPlan::new(&lab.layout, &[HUB.to_owned()]);
    let hub = plan.hub().expect("the hub region has a node").clone();
    assert!(MEMBERS.contains(&A.region) && MEMBERS.contains(&B.region));

    // The Clusters (the slow part) while the image is built and the chart installed.
    let (installed, ()) = tokio::join!(
        install(lab, ns, &hub),
        real_support::create_members(lab, ns, &[(A, B), (B, A)], real_support::Channel::Streaming)
    );
    println!(
        "installed and Clusters healthy after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let release = installed.release.as_str();
    let replicas = wait_ready_pods(lab, ns, release).await;
    println!(
        "pods {replicas:?} Ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let first = wait_leader(lab, ns, release, None).await;
    assert!(
        replicas.contains(&first),
        "{first} is not one of {replicas:?}"
    );
    println!("{first} holds the Lease");
    // The pods run as the chart's ServiceAccount, which is not an admin: it may update a
    // topology's status in its namespace, and nothing like reading Secrets elsewhere or creating
    // pods.
    let pod = Api::<Pod>::namespaced(lab.admin(HUB).await, ns)
        .get(&first)
        .await
        .expect("the leader's pod");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone());
    assert_eq!(sa.as_deref(), Some(format!("{release}-federator").as_str()));
    let status = "federator.dev/distributedtopologies/status";
    assert!(sa_may(lab, &pod, "update", status, ns).await);
    for (verb, resource, namespace) in [
        ("list", "/secrets", "kube-system"),
        ("create", "/pods", ns),
        ("delete", "/namespaces", ""),
        ("update", status, "default"),
    ] {
        assert!(
            !sa_may(lab, &pod, verb, resource, namespace).await,
            "the chart's ServiceAccount may {verb} {resource} in {namespace:?}"
        );
    }
    for pod in &replicas {
        let log = pod_log(lab, ns, pod).await;
        assert!(
            log.contains(ALL_GRANTED) && !log.contains("missing hub permission"),
            "pod {pod} with the chart's ServiceAccount:\n{log}"
        );
    }

    // `lab dsn` on real nodes: psql reaches each Cluster's -rw Service from the host.
    let (dsn_a, dsn_b) = (lab_dsn(lab, ns, A).await, lab_dsn(lab, ns, B).await);
    psql_until(&dsn_a, "SELECT pg_is_in_recovery()", "f").await;
    psql_until(&dsn_b, "SELECT pg_is_in_recovery()", "t").await;

    let hub_api = deploy(lab, ns, &[A, B], json!({"star": {}}), wide_timeouts()).await;
    wait_condition(&hub_api, kind::READY).await;
    switch_to(lab, ns, B.name, &first).await;
    // The same URIs after the switchover: B's Service now reaches a primary.
    psql_until(&dsn_b, "SELECT pg_is_in_recovery()", "f").await;

    // The leader's pod goes (as in a node drain): the other replica takes over.
    let pods_api: Api<Pod> = Api::namespaced(lab.admin(HUB).await, ns);
    let deleted_at = Instant::now();
    pods_api
        .delete(&first, &DeleteParams::default())
        .await
        .expect("deleting the leader's pod");
    let second = wait_leader(lab, ns, release, Some(&first)).await;
    println!(
        "{second} holds the Lease {:.1}s after {first} was deleted",
        deleted_at.elapsed().as_secs_f64()
    );
    switch_to(lab, ns, A.name, &second).await;

    let topo = wait_condition(&hub_api, kind::READY).await;
    let status = topo.status.expect("status");
    assert_eq!(status.history.len(), 2, "{:#?}", status.history);
    for op in &status.history {
        assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
        println!("{} → {}: [{}]", op.from, op.to, op.step_timings);
    }
    // The Deployment replaced the deleted pod.
    let now = wait_ready_pods(lab, ns, release).await;
    assert!(!now.contains(&first), "{now:?}");
    run(
        "helm uninstall",
        on_hub_network(&hub, &installed.helm)
            .args(["uninstall", release, "--namespace", ns, "--kubeconfig"])
            .arg(&installed.kubeconfig)
            .args(["--kube-context", HUB]),
    )
    .await;
    println!("test took {:.1}s", started.elapsed().as_secs_f64());
}
