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
use super::topology::MEMBERS;

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

/// The real tier's choice at `up`: which member regions get a node.
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

    /// Every member region: a ring of three.
    pub fn all() -> Self {
        Self {
            members: MEMBERS.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    /// Rejects an unknown or repeated member name.
    pub fn validate(&self) -> Result<()> {
        if self.members.is_empty() {
            return Err(LabError::Config(
                "the real tier needs at least one member region".into(),
            ));
        }
        for (i, member) in self.members.iter().enumerate() {
            if !MEMBERS.contains(&member.as_str()) {
                return Err(LabError::Config(format!(
                    "{member:?} is not a lab member region; choose from {}",
                    MEMBERS.join(", ")
                )));
            }
            if self.members[..i].contains(member) {
                return Err(LabError::Config(format!("{member} is named twice")));
            }
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

/// Before etcd starts. If no node component of this lab runs, whatever a killed lab left is swept
/// and the namespaces are created afresh; the VM-wide sysctls are recorded before any kubelet
/// of this lab runs.
pub async fn prepare(layout: &LabLayout, state: &LabState, plan: &RealPlan) -> Result<()> {
    let names = component_names(plan);
    let any_runs = state
        .components
        .iter()
        .any(|c| names.contains(&c.name) && is_running(layout, c));
    let namespaces_exist =
        netns::exists(&plan.lab_netns()) && plan.regions.iter().all(|r| netns::exists(&r.netns()));
    if any_runs && namespaces_exist {
        return Ok(());
    }
    let swept = sweep::sweep(layout.root(), &plan.id, &plan.sysctl_record()).await?;
    if !swept.is_empty() {
        tracing::warn!(%swept, "cleaned up what an earlier lab left behind");
    }
    sysctls::record(&plan.sysctl_record())?;
    netns::create(plan)?;
    for region in &plan.regions {
        std::fs::create_dir_all(region.run_dir())
            .map_err(LabError::io("creating", region.run_dir()))?;
    }
    Ok(())
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

/// After the bootstrap: every region's node up and Ready, its images, storage and the operator.
/// Regions come up concurrently.
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
        for component in node::components(layout, region, artifacts, port) {
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
        let imported = tokio::task::spawn_blocking({
            let region = region.clone();
            let images = artifacts.images.clone();
            move || images::ensure(&region, &images)
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
        wait_node_ready(layout, &client, region).await?;
        tracing::info!(member = %region.member, elapsed = ?started.elapsed(), "node Ready");
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

async fn wait_node_ready(
    layout: &LabLayout,
    client: &kube::Client,
    region: &RegionPlan,
) -> Result<()> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let name = region.node_name();
    let kubelet_log = layout.log_file(&node::component_name(&region.member, "kubelet"));
    wait_for(&format!("node {name} Ready"), NODE_READY_WITHIN, || {
        let nodes = nodes.clone();
        let name = name.clone();
        async move {
            let node = nodes.get_opt(&name).await.ok()??;
            node.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await
    .map_err(|e| {
        LabError::Config(format!(
            "{e}; last lines of {}:\n{}",
            kubelet_log.display(),
            super::process::log_tail(&kubelet_log, 15)
        ))
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
