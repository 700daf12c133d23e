//! The real-CNPG lab tier (docs/lab-real.md): real nodes (containerd, kubelet, controller-manager,
//! scheduler, kube-proxy, CoreDNS) in network namespaces the lab creates, running the real
//! CloudNativePG operator, next to the emulator tier's apiservers on loopback.
//!
//! `lifecycle::up` calls [`prepare`] before etcd starts (sweep what a killed lab left, create the
//! namespaces), [`apiserver_args`] for each member apiserver, and [`start_nodes`] after the
//! bootstrap instead of starting the emulators; `lifecycle::down` calls [`down`] first.

pub mod addons;
pub mod artifacts;
pub mod cgroups;
pub mod cmd;
pub mod images;
pub mod netns;
pub mod netns_proxy;
pub mod node;
pub mod plan;
pub mod postgres;
pub mod status;
pub mod sweep;
pub mod sysctls;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::artifacts::Artifacts;
use self::plan::{RealPlan, RegionPlan};
use super::error::{LabError, Result};
use super::health::wait_for;
use super::kubeconfig;
use super::layout::LabLayout;
use super::running::{ensure_running, is_running};
use super::state::{Component, LabState};
use super::topology::{HUB, MEMBERS};

/// CloudNativePG's `Cluster`, for dynamic clients.
pub fn cluster_resource() -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: "postgresql.cnpg.io".into(),
        version: "v1".into(),
        api_version: "postgresql.cnpg.io/v1".into(),
        kind: "Cluster".into(),
        plural: "clusters".into(),
    }
}

/// Containerd and the proxy start in a second; a kubelet registers its node in a few.
const COMPONENT_WITHIN: Duration = Duration::from_secs(60);
/// From the kubelet's start to its node Ready (CNI configured, runtime ready).
const NODE_READY_WITHIN: Duration = Duration::from_secs(180);
/// The operator's pod: image present, webhook certificates generated, webhook answering.
const OPERATOR_WITHIN: Duration = Duration::from_secs(300);

/// The real tier's choice at `up`: which regions get a node — member regions (each with the
/// CloudNativePG operator) and optionally the hub (no operator: Federator runs there as a pod,
/// docs/install.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealOptions {
    pub members: Vec<String>,
}

impl RealOptions {
    /// The members of a pair switchover: the first two.
    pub fn pair() -> Self {
        Self {
            members: MEMBERS[..2].iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    /// Every member region (a ring of three) and the hub.
    pub fn all() -> Self {
        Self {
            members: std::iter::once(HUB)
                .chain(MEMBERS)
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Rejects an unknown or repeated region name, and a tier without a member region.
    pub fn validate(&self) -> Result<()> {
        for (i, member) in self.members.iter().enumerate() {
            if member != HUB && !MEMBERS.contains(&member.as_str()) {
                return Err(LabError::Config(format!(
                    "--nodes: {member:?} is not a lab region; choose from {HUB}, {}",
                    MEMBERS.join(", ")
                )));
            }
            if self.members[..i].contains(member) {
                return Err(LabError::Config(format!(
                    "--nodes: {member} is named twice"
                )));
            }
        }
        if !self.members.iter().any(|m| MEMBERS.contains(&m.as_str())) {
            return Err(LabError::Config(format!(
                "--nodes: the real tier needs at least one member region among its nodes ({}); \
                 add one of {}",
                self.members.join(", "),
                MEMBERS.join(", ")
            )));
        }
        Ok(())
    }
}

/// Names of every node component of the plan, in start order.
pub fn component_names(plan: &RealPlan) -> Vec<String> {
    std::iter::once(node::S3.to_owned())
        .chain(
            plan.regions
                .iter()
                .flat_map(|r| node::NODE_KINDS.map(|k| node::component_name(&r.member, k))),
        )
        .collect()
}

/// What [`prepare`] does with the nodes before etcd starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePreparation {
    /// Node components of this lab run in their namespaces against the etcd data they know:
    /// left as they are.
    Keep,
    /// Nothing of the nodes runs (a clean `down`, or a lab killed with -9): whatever is left is
    /// swept, the namespaces made afresh; the nodes' state (images, kubelet and containerd
    /// state, volumes) is kept for a quick `up`.
    Sweep,
    /// etcd starts without data: the nodes' state belongs to objects that no longer exist (their
    /// Node, pods, PersistentVolumes). A kubelet that registered its Node never registers it
    /// again, and a restarted containerd and kubelet recover sandboxes and pods nobody knows
    /// (seen: a re-`up` after CI's clean-up emptied `/dev/shm` had the hub's node never
    /// registered). So even running node components are swept, and each node's directory
    /// removed: its images are imported again (≈ 10 s per region).
    SweepAndPurge,
}

/// The decision of [`prepare`], from what runs and whether etcd starts empty.
pub fn node_preparation(
    nodes_run: bool,
    namespaces_exist: bool,
    etcd_starts_empty: bool,
) -> NodePreparation {
    if etcd_starts_empty {
        NodePreparation::SweepAndPurge
    } else if nodes_run && namespaces_exist {
        NodePreparation::Keep
    } else {
        NodePreparation::Sweep
    }
}

/// Before etcd starts. If no node component of this lab runs, whatever a killed lab left is swept
/// and the namespaces are created afresh; the VM-wide sysctls are recorded before any kubelet
/// of this lab runs. If etcd starts empty, the nodes' directories are removed too
/// ([`NodePreparation::SweepAndPurge`]).
pub async fn prepare(
    layout: &LabLayout,
    state: &LabState,
    plan: &RealPlan,
    etcd_starts_empty: bool,
) -> Result<()> {
    let names = component_names(plan);
    let any_runs = state
        .components
        .iter()
        .any(|c| names.contains(&c.name) && is_running(layout, c));
    let namespaces_exist =
        netns::exists(&plan.lab_netns()) && plan.regions.iter().all(|r| netns::exists(&r.netns()));
    let decision = node_preparation(any_runs, namespaces_exist, etcd_starts_empty);
    if decision == NodePreparation::Keep {
        return Ok(());
    }
    let swept = sweep::sweep(layout.root(), &plan.id, &plan.sysctl_record()).await?;
    if !swept.is_empty() {
        tracing::warn!(%swept, "cleaned up what an earlier lab left behind");
    }
    if decision == NodePreparation::SweepAndPurge {
        let purged = purge_nodes(layout)?;
        if !purged.is_empty() {
            tracing::warn!(
                ?purged,
                "etcd starts empty: removed the nodes' state (kubelet, containerd, volumes) of \
                 objects that no longer exist"
            );
        }
    }
    sysctls::record(&plan.sysctl_record())?;
    netns::create(plan)?;
    for region in &plan.regions {
        std::fs::create_dir_all(region.run_dir())
            .map_err(LabError::io("creating", region.run_dir()))?;
    }
    Ok(())
}

/// Removes every region's node directory `DIR/real/<region>/` (any region, not only the plan's);
/// keeps the rest of `DIR/real/` (the sysctl record). Needs the tier swept first. Returns the
/// regions whose directory was removed.
fn purge_nodes(layout: &LabLayout) -> Result<Vec<String>> {
    let mut purged = Vec::new();
    for region in std::iter::once(HUB).chain(MEMBERS) {
        let dir = layout.root().join("real").join(region);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => purged.push(region.to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io("removing", &dir)(e)),
        }
    }
    Ok(purged)
}

/// Adapts a member apiserver's flags to a node in `region`: the `kubernetes` Service's endpoint is
/// the node IP (the netns proxy forwards it to loopback), the Service range is the region's own,
/// and calls to webhooks and kubelets go through the proxy's CONNECT socket to pod and node IPs.
pub fn apiserver_args(plan: &RealPlan, region: &RegionPlan, args: &mut Vec<String>) -> Result<()> {
    let egress = plan.egress_config(&region.member);
    if let Some(parent) = egress.parent() {
        std::fs::create_dir_all(parent).map_err(LabError::io("creating", parent))?;
    }
    let config = format!(
        "apiVersion: apiserver.k8s.io/v1beta1\nkind: EgressSelectorConfiguration\n\
         egressSelections:\n- name: cluster\n  connection:\n    proxyProtocol: HTTPConnect\n    \
         transport:\n      uds:\n        udsName: {}\n",
        region.egress_socket().display()
    );
    std::fs::write(&egress, config).map_err(LabError::io("writing", &egress))?;
    for arg in args.iter_mut() {
        if arg.starts_with("--advertise-address=") {
            *arg = format!("--advertise-address={}", region.node_ip());
        } else if arg.starts_with("--endpoint-reconciler-type=") {
            *arg = "--endpoint-reconciler-type=lease".into();
        } else if arg.starts_with("--service-cluster-ip-range=") {
            *arg = format!("--service-cluster-ip-range={}", region.service_cidr());
        }
    }
    args.extend([
        format!("--egress-selector-config-file={}", egress.display()),
        "--kubelet-preferred-address-types=InternalIP".into(),
        // Webhooks by endpoint (pod IP), not by ClusterIP: the apiserver is not on a node.
        "--enable-aggregator-routing=true".into(),
    ]);
    Ok(())
}

/// After the bootstrap: every region's node up and Ready, its images, and in member regions
/// storage and the operator. Regions come up concurrently.
pub async fn start_nodes(
    layout: &LabLayout,
    state: &mut LabState,
    plan: &RealPlan,
    artifacts: &Artifacts,
    ca: &str,
    token: &str,
) -> Result<()> {
    let started = Instant::now();
    for region in &plan.regions {
        let port = state
            .ports
            .apiserver_of(&region.member)
            .expect("members are regions");
        node::write_files(plan, region, artifacts, port, ca, token)?;
        cgroups::create(&region.cgroup_root())?;
        // The hub's pods reach every member apiserver on the hub node's IP.
        let member_ports: Vec<u16> = if region.is_hub() {
            MEMBERS
                .iter()
                .filter_map(|m| state.ports.apiserver_of(m))
                .collect()
        } else {
            Vec::new()
        };
        for component in node::components(layout, region, artifacts, port, &member_ports) {
            state.upsert(component);
        }
    }
    state.upsert(node::s3_component(layout, plan, artifacts)?);
    state.save(layout)?;
    // The proxies and containerds first (the images go in before a kubelet asks for them).
    let names = |kinds: &[&str]| -> Vec<String> {
        plan.regions
            .iter()
            .flat_map(|r| kinds.iter().map(|k| node::component_name(&r.member, k)))
            .collect()
    };
    let mut first = names(&["netns-proxy", "containerd"]);
    first.push(node::S3.to_owned());
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    ensure_running(layout, state, &first, COMPONENT_WITHIN).await?;
    for region in &plan.regions {
        let wanted = artifacts.images_for(region);
        let imported = tokio::task::spawn_blocking({
            let region = region.clone();
            move || images::ensure(&region, &wanted)
        })
        .await
        .expect("the import does not panic")?;
        if !imported.is_empty() {
            tracing::info!(member = %region.member, ?imported, "images imported");
        }
    }
    tracing::info!(elapsed = ?started.elapsed(), "containerd up, images present");
    let rest = names(&node::NODE_KINDS[2..]);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    ensure_running(layout, state, &rest, COMPONENT_WITHIN).await?;
    let regions = plan.regions.iter().map(|region| async move {
        let client = kubeconfig::client_from_file(&layout.kubeconfig(&region.member)).await?;
        wait_node_ready(layout, &client, region, None).await?;
        tracing::info!(member = %region.member, elapsed = ?started.elapsed(), "node Ready");
        if region.is_hub() {
            return Ok(());
        }
        addons::storage(&client, region).await?;
        addons::install_operator(
            &client,
            &artifacts.cnpg_manifest,
            &artifacts.postgres_image,
            OPERATOR_WITHIN,
        )
        .await?;
        tracing::info!(member = %region.member, elapsed = ?started.elapsed(), "operator ready");
        Ok::<_, LabError>(())
    });
    futures::future::try_join_all(regions).await?;
    // A component checked only for being alive may have exited since it started.
    for name in component_names(plan) {
        if let Some(c) = state.component(&name)
            && !is_running(layout, c)
        {
            return Err(LabError::Exited {
                component: name,
                log: c.log.clone(),
                tail: super::process::log_tail(&c.log, 20),
            });
        }
    }
    Ok(())
}

/// `lab stop REGION` on the real tier, after the region's components were stopped: what is left
/// of its node (shims, containers) is killed, as a power cut would. Returns a line for the report.
pub async fn stop_region(plan: &RealPlan, member: &str) -> Result<Option<String>> {
    let Some(region) = plan.region(member) else {
        return Ok(None);
    };
    let killed = sweep::kill_region(region).await?;
    Ok(Some(format!(
        "{member} node: shims and containers ({killed} processes)"
    )))
}

/// `lab start REGION` on the real tier, after its apiserver is up: the node's components in
/// order (the netns proxy and containerd, then the kubelet and the rest), until the node is
/// Ready; its kubelet restarts the pods it ran. `hold_postgres` (`--control-plane`): the
/// PostgreSQL image is removed from the node first, so the operator (and its webhook) runs but no
/// instance's `postgres` container can start until a plain `start` imports it again.
pub async fn start_region(
    layout: &LabLayout,
    state: &mut LabState,
    plan: &RealPlan,
    member: &str,
    hold_postgres: bool,
) -> Result<Vec<String>> {
    let Some(region) = plan.region(member) else {
        return Ok(Vec::new());
    };
    let artifacts = artifacts::find()?;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    cgroups::create(&region.cgroup_root())?;
    let names = |kinds: &[&str]| -> Vec<String> {
        kinds
            .iter()
            .map(|k| node::component_name(member, k))
            .collect()
    };
    let first = names(&node::NODE_KINDS[..2]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let mut started = ensure_running(layout, state, &first, COMPONENT_WITHIN).await?;
    let images = tokio::task::spawn_blocking({
        let region = region.clone();
        let artifacts = artifacts.clone();
        move || {
            if hold_postgres {
                images::remove(&region, &artifacts.postgres_image).map(|removed| {
                    removed
                        .then(|| format!("held: {} removed", artifacts.postgres_image))
                        .into_iter()
                        .collect::<Vec<_>>()
                })
            } else {
                images::ensure(&region, &artifacts.images_for(&region)).map(|imported| {
                    imported
                        .into_iter()
                        .map(|i| format!("imported {i}"))
                        .collect()
                })
            }
        }
    })
    .await
    .expect("the images do not panic")?;
    let rest = names(&node::NODE_KINDS[2..]);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    started.extend(ensure_running(layout, state, &rest, COMPONENT_WITHIN).await?);
    let client = kubeconfig::client_from_file(&layout.kubeconfig(member)).await?;
    wait_node_ready(layout, &client, region, Some(since)).await?;
    started.extend(images);
    Ok(started)
}

/// How long `up` waits for a node to be Ready: [`NODE_READY_WITHIN`], or
/// `FEDERATOR_LAB_NODE_READY_WITHIN` seconds (a slower machine; the tests of the failure path).
fn node_ready_within() -> Result<Duration> {
    const VAR: &str = "FEDERATOR_LAB_NODE_READY_WITHIN";
    match std::env::var(VAR) {
        Err(_) => Ok(NODE_READY_WITHIN),
        Ok(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                LabError::Config(format!(
                    "{VAR}={v:?} is not a number of seconds above 0; unset it for the default \
                     ({} s)",
                    NODE_READY_WITHIN.as_secs()
                ))
            }),
    }
}

/// Waits until the region's node is Ready; with `since` (Unix seconds), Ready as its kubelet
/// reported at or after then (a node restarted quickly still shows its old Ready condition).
async fn wait_node_ready(
    layout: &LabLayout,
    client: &kube::Client,
    region: &RegionPlan,
    since: Option<i64>,
) -> Result<()> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let name = region.node_name();
    let kubelet_log = layout.log_file(&node::component_name(&region.member, "kubelet"));
    // What the node last said about being Ready: the cause when it never is.
    let last = std::sync::Mutex::new("the kubelet never registered the node".to_owned());
    let within = node_ready_within()?;
    wait_for(&format!("node {name} Ready"), within, || {
        let nodes = nodes.clone();
        let name = name.clone();
        let last = &last;
        async move {
            let node = nodes.get_opt(&name).await.ok()??;
            let ready = node
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            let fresh = since.is_none_or(|since| {
                ready
                    .last_heartbeat_time
                    .as_ref()
                    .is_some_and(|t| t.0.as_second() >= since)
            });
            if ready.status == "True" && fresh {
                return Some(());
            }
            *last.lock().expect("not poisoned") = format!(
                "Ready={} {}: {}",
                ready.status,
                ready.reason.unwrap_or_default(),
                ready.message.unwrap_or_default()
            );
            None
        }
    })
    .await
    .map_err(|e| {
        let last = last.lock().expect("not poisoned").clone();
        let log = kubelet_log.display();
        // A cause the lab can name replaces the list of usual ones.
        let advice = match no_network_cause(region, &last) {
            Some(cause) => format!("{cause} The kubelet's log: {log} (last lines below)."),
            None => format!(
                "Fix: read the kubelet's log {log} (last lines below). Usual causes: the CNI \
                 plugins missing from {cni} (`make deps-real` installs Debian's \
                 containernetworking-plugins), a cgroup hierarchy the kubelet cannot use, or a \
                 machine too loaded to start the node in time \
                 (FEDERATOR_LAB_NODE_READY_WITHIN=<seconds> waits longer).",
                cni = artifacts::CNI_BIN_DIR
            ),
        };
        LabError::Config(format!(
            "{e}; the node said: {last}. {advice}\n{tail}",
            tail = super::process::log_tail(&kubelet_log, 15)
        ))
    })
}

/// When the node says its pod network is not ready: what the lab knows of why (the CNI
/// configuration it wrote, or withheld) and the fix; `None` otherwise.
fn no_network_cause(region: &RegionPlan, last: &str) -> Option<String> {
    if !last.contains("NetworkReady=false") {
        return None;
    }
    let conf = node::cni_config_path(region);
    Some(if node::withholds_cni(&region.member) {
        format!(
            "Cause: {var}={member} withheld the node's CNI configuration ({conf} was not \
             written). Fix: unset {var}.",
            var = node::WITHHOLD_CNI_VAR,
            member = region.member,
            conf = conf.display()
        )
    } else if !conf.exists() {
        format!(
            "Cause: the node's CNI configuration {} is missing. Fix: `federator-lab down`, then \
             `up` again (it writes it).",
            conf.display()
        )
    } else {
        format!(
            "Cause: the container runtime did not load {} or its plugins from {}. Fix: check \
             that {} holds the bridge, host-local and portmap plugins (`make deps-real`).",
            conf.display(),
            artifacts::CNI_BIN_DIR,
            artifacts::CNI_BIN_DIR
        )
    })
}

/// Stops the node components (kubelets first, so they restart nothing) and sweeps the rest:
/// containers, shims, mounts, cgroups, namespaces, sysctls. Returns what it stopped.
pub async fn down(
    layout: &LabLayout,
    state: &mut LabState,
    plan: &RealPlan,
) -> Result<Vec<String>> {
    let names = component_names(plan);
    let kubelets: Vec<&Component> = state
        .components
        .iter()
        .filter(|c| c.kind == "kubelet" && names.contains(&c.name) && is_running(layout, c))
        .collect();
    let stops = kubelets
        .iter()
        .map(|c| super::process::stop(c.pid.unwrap_or_default(), layout.root(), &c.ports));
    futures::future::join_all(stops).await;
    let stopped: Vec<String> = state
        .components
        .iter()
        .filter(|c| names.contains(&c.name) && is_running(layout, c))
        .map(|c| c.name.clone())
        .chain(kubelets.iter().map(|c| c.name.clone()))
        .collect();
    let swept = sweep::sweep(layout.root(), &plan.id, &plan.sysctl_record()).await?;
    tracing::info!(%swept, "real tier swept");
    for name in &names {
        state.set_pid(name, None);
    }
    state.save(layout)?;
    Ok(stopped)
}

/// Removes what the real tier keeps between `down` and `up` (images, volumes) for `down --purge`;
/// needs the tier swept first.
pub fn purge(layout: &LabLayout) -> Result<()> {
    let dir = layout.root().join("real");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(LabError::io("removing", &dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[&str]) -> Result<()> {
        RealOptions {
            members: list.iter().map(|m| (*m).to_owned()).collect(),
        }
        .validate()
    }

    #[test]
    fn nodes_are_kept_swept_or_purged_by_what_runs_and_whether_etcd_starts_empty() {
        use NodePreparation::*;
        // (nodes run, namespaces exist, etcd starts empty) -> decision
        let cases = [
            ((true, true, false), Keep),
            ((true, false, false), Sweep),
            ((false, true, false), Sweep),
            ((false, false, false), Sweep),
            // etcd's data gone (CI's clean-up after `down`, a reboot): the nodes' state goes too,
            // whether or not anything of them still runs.
            ((false, false, true), SweepAndPurge),
            ((false, true, true), SweepAndPurge),
            ((true, true, true), SweepAndPurge),
        ];
        for ((runs, namespaces, empty), want) in cases {
            assert_eq!(
                node_preparation(runs, namespaces, empty),
                want,
                "runs={runs} namespaces={namespaces} etcd empty={empty}"
            );
        }
    }

    #[test]
    fn purging_the_nodes_removes_every_region_directory_and_keeps_the_sysctl_record() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LabLayout::create(tmp.path()).unwrap();
        let real = layout.root().join("real");
        for region in ["hub", "eu-central", "eu-south"] {
            std::fs::create_dir_all(real.join(region).join("kubelet/pods/x")).unwrap();
        }
        std::fs::write(real.join("sysctls.json"), b"{}").unwrap();
        let mut purged = purge_nodes(&layout).unwrap();
        purged.sort();
        assert_eq!(purged, ["eu-central", "eu-south", "hub"]);
        for region in ["hub", "eu-central", "eu-south"] {
            assert!(!real.join(region).exists(), "{region}");
        }
        assert!(real.join("sysctls.json").exists());
        assert!(
            purge_nodes(&layout).unwrap().is_empty(),
            "nothing left: no error"
        );
    }

    #[test]
    fn node_lists_are_checked_naming_the_flag_and_the_choices() {
        assert!(nodes(&["hub", "eu-central"]).is_ok());
        assert!(nodes(&["eu-south"]).is_ok());
        assert!(RealOptions::all().validate().is_ok());
        let error = |list: &[&str]| nodes(list).unwrap_err().to_string();
        let unknown = error(&["hub", "eu-nowhere"]);
        assert!(
            unknown.contains("--nodes: \"eu-nowhere\" is not a lab region"),
            "{unknown}"
        );
        assert!(
            unknown.contains("hub, eu-central, eu-western, eu-south"),
            "{unknown}"
        );
        assert!(error(&["eu-central", "eu-central"]).contains("named twice"));
        let hub_only = error(&["hub"]);
        assert!(
            hub_only.contains("at least one member region"),
            "{hub_only}"
        );
    }
}
