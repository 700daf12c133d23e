//! One region's node (a member's or the hub's): its files (containerd, kubelet, CNI, CoreDNS configuration and a
//! kubeconfig) and its components, each a lab [`Component`] started inside the region's network
//! namespace with `nsenter --net=` (the netns proxy, which enters the namespace itself, runs on
//! the host).

use std::path::{Path, PathBuf};

use super::artifacts::{Artifacts, CNI_BIN_DIR};
use super::plan::{CLUSTER_DOMAIN, RealPlan, RegionPlan};
use crate::lab::error::{LabError, Result};
use crate::lab::kubeconfig::{self, Entry};
use crate::lab::layout::LabLayout;
use crate::lab::state::{Component, HealthCheck};

/// The kinds of the node components, in start order. `down` stops them in reverse.
pub const NODE_KINDS: [&str; 7] = [
    "netns-proxy",
    "containerd",
    "kubelet",
    "kube-proxy",
    "controller-manager",
    "scheduler",
    "coredns",
];

pub fn component_name(member: &str, kind: &str) -> String {
    format!("{member}-{kind}")
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(LabError::io("creating", parent))?;
    }
    std::fs::write(path, text).map_err(LabError::io("writing", path))
}

fn d(path: &Path) -> String {
    path.display().to_string()
}

/// The apiserver of `region` as its node sees it: the netns proxy's forward on the node IP.
fn apiserver_url(region: &RegionPlan, port: u16) -> String {
    format!("https://{}:{port}", region.node_ip())
}

/// Writes the region's configuration files.
pub fn write_files(
    plan: &RealPlan,
    region: &RegionPlan,
    artifacts: &Artifacts,
    apiserver_port: u16,
    ca: &str,
    token: &str,
) -> Result<()> {
    let dir = region.dir();
    let run = region.run_dir();
    for sub in [
        dir.join("cni"),
        dir.join("kubelet"),
        dir.join("pod-logs"),
        run.clone(),
    ] {
        std::fs::create_dir_all(&sub).map_err(LabError::io("creating", &sub))?;
    }
    kubeconfig::write(
        &region.kubeconfig(),
        &[Entry {
            context: &region.member,
            server: apiserver_url(region, apiserver_port),
            ca_pem: ca,
            user: "admin",
            token,
            namespace: None,
        }],
    )?;
    write(
        &dir.join("containerd.toml"),
        &containerd_config(region, artifacts),
    )?;
    let cni = cni_config_path(region);
    if withholds_cni(&region.member) {
        // The test of a node that never gets Ready for a real cause: no CNI network.
        match std::fs::remove_file(&cni) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LabError::io("removing", &cni)(e));
            }
            _ => {}
        }
    } else {
        write(&cni, &cni_config(region))?;
    }
    write(&dir.join("resolv.conf"), "# the lab has no upstream DNS\n")?;
    write(&dir.join("kubelet.yaml"), &kubelet_config(region))?;
    write(&dir.join("Corefile"), &corefile(plan, region))?;
    Ok(())
}

fn containerd_config(region: &RegionPlan, artifacts: &Artifacts) -> String {
    let dir = region.dir();
    let run = region.run_dir();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
# Snapshotters and tracing the lab does not use (fewer warnings, faster start).
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # No CAP_SYS_RESOURCE in this VM: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#,
        root = d(&dir.join("containerd")),
        state = d(&run.join("containerd")),
        socket = d(&region.containerd_socket()),
        opt = d(&dir.join("containerd-opt")),
        pause = artifacts.pause_image,
        runc = d(&run.join("runc")),
        cni_bin = CNI_BIN_DIR,
        cni_conf = d(&dir.join("cni")),
    )
}

/// Names a region whose node gets no CNI configuration, so its kubelet reports the network not
/// ready and the node never gets Ready (lab only: the test of `up`'s failure path).
pub const WITHHOLD_CNI_VAR: &str = "FEDERATOR_LAB_WITHHOLD_CNI";

/// Whether [`WITHHOLD_CNI_VAR`] names this region.
pub fn withholds_cni(member: &str) -> bool {
    std::env::var(WITHHOLD_CNI_VAR).is_ok_and(|v| v == member)
}

/// Where the node's container runtime reads its pod network from.
pub fn cni_config_path(region: &RegionPlan) -> PathBuf {
    region.dir().join("cni/10-lab.conflist")
}

fn cni_config(region: &RegionPlan) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                // No NAT: cross-region traffic keeps pod source addresses, and there is no uplink.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": region.pod_cidr()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": d(&region.run_dir().join("cni-ipam")),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    }))
    .expect("JSON serializes")
}

fn kubelet_config(region: &RegionPlan) -> String {
    let dir = region.dir();
    serde_json::to_string_pretty(&serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": region.node_ip().to_string(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        // The apiserver reaches the kubelet (logs, exec) through the netns proxy; nothing else
        // can reach the namespace.
        "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": format!("/{}", region.cgroup_root()),
        "cgroupsPerQOS": true,
        "failCgroupV1": false,
        "failSwapOn": false,
        "protectKernelDefaults": false,
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [region.node_ip().to_string()],
        "resolvConf": d(&dir.join("resolv.conf")),
        // Memory only: a full shared disk must not evict pods or their images (there is no
        // registry to pull an image again).
        "evictionHard": {"memory.available": "100Mi"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "containerRuntimeEndpoint": format!("unix://{}", d(&region.containerd_socket())),
        "serializeImagePulls": false,
        "volumePluginDir": d(&dir.join("kubelet-plugins")),
        "podLogsDir": d(&dir.join("pod-logs")),
        "enforceNodeAllocatable": ["pods"],
        "syncFrequency": "10s",
    }))
    .expect("JSON serializes")
}

/// CoreDNS listens on every address of the region's namespace (the node IP is the pods'
/// nameserver); the namespace has no other addresses than the lab's.
fn corefile(plan: &RealPlan, region: &RegionPlan) -> String {
    let ip = region.node_ip();
    let kubeconfig = d(&region.kubeconfig());
    let mut text = format!(
        "{CLUSTER_DOMAIN}:53 {zone}:53 in-addr.arpa:53 {{\n    errors\n    \
         health {ip}:8080\n    ready {ip}:8181\n    kubernetes {CLUSTER_DOMAIN} {zone} \
         in-addr.arpa {{\n        kubeconfig {kubeconfig}\n        pods insecure\n    }}\n    \
         cache 5\n}}\n",
        zone = region.zone(),
    );
    // Every other member's zone, answered by that member's CoreDNS.
    for index in 0..crate::lab::topology::MEMBERS.len() {
        if index == region.index {
            continue;
        }
        let member = crate::lab::topology::MEMBERS[index];
        let other = super::plan::node_ip(index);
        // A member that runs no node has no DNS server: its zone is simply not served.
        if plan.region(member).is_some() {
            text.push_str(&format!(
                "{member}.lab:53 {{\n    errors\n    forward . {other}:53\n    cache 5\n}}\n"
            ));
        }
    }
    text
}

/// The region's components in start order. `member_ports`: other apiservers the region's pods
/// reach on its node IP (the hub's: every member's).
pub fn components(
    layout: &LabLayout,
    region: &RegionPlan,
    artifacts: &Artifacts,
    apiserver_port: u16,
    member_ports: &[u16],
) -> Vec<Component> {
    let dir = region.dir();
    let netns = region.netns_path();
    let kubeconfig = format!("--kubeconfig={}", d(&region.kubeconfig()));
    let node = region.node_name();
    let member = region.member.clone();
    let in_netns = |kind: &str, program: &Path, args: Vec<String>, health: HealthCheck| {
        let mut all = vec![format!("--net={}", d(&netns)), "--".into(), d(program)];
        all.extend(args);
        Component {
            name: component_name(&member, kind),
            kind: kind.into(),
            region: Some(member.clone()),
            ports: Vec::new(),
            program: PathBuf::from("nsenter"),
            args: all,
            log: layout.log_file(&component_name(&member, kind)),
            health,
            pid: None,
        }
    };
    let forwards = std::iter::once(apiserver_port)
        .chain(member_ports.iter().copied())
        .map(|port| format!("--forward={}:{port}=127.0.0.1:{port}", region.node_ip()));
    let proxy = Component {
        name: component_name(&member, "netns-proxy"),
        kind: "netns-proxy".into(),
        region: Some(member.clone()),
        ports: Vec::new(),
        program: artifacts.netns_proxy.clone(),
        args: std::iter::once(format!("--netns={}", d(&netns)))
            .chain(forwards)
            .chain([
                format!("--connect-proxy={}", d(&region.egress_socket())),
                // Marks the process as this lab's (its other arguments name no lab path).
                format!("--label={}", d(&dir)),
            ])
            .collect(),
        log: layout.log_file(&component_name(&member, "netns-proxy")),
        health: HealthCheck::UnixSocket {
            path: region.egress_socket(),
        },
        pid: None,
    };
    let containerd = in_netns(
        "containerd",
        Path::new("containerd"),
        vec![format!("--config={}", d(&dir.join("containerd.toml")))],
        HealthCheck::UnixSocket {
            path: region.containerd_socket(),
        },
    );
    let kubelet = in_netns(
        "kubelet",
        &artifacts.kubelet,
        vec![
            format!("--config={}", d(&dir.join("kubelet.yaml"))),
            kubeconfig.clone(),
            format!("--root-dir={}", d(&dir.join("kubelet"))),
            format!("--cert-dir={}", d(&dir.join("kubelet/pki"))),
            format!("--hostname-override={node}"),
            format!("--node-ip={}", region.node_ip()),
        ],
        HealthCheck::Alive,
    );
    let kube_proxy = in_netns(
        "kube-proxy",
        &artifacts.kube_proxy,
        vec![
            kubeconfig.clone(),
            format!("--hostname-override={node}"),
            format!("--cluster-cidr={}", region.pod_cidr()),
            "--proxy-mode=iptables".into(),
            // Leave the VM-wide conntrack table and timeouts alone.
            "--conntrack-max-per-core=0".into(),
            "--conntrack-tcp-timeout-established=0".into(),
            "--conntrack-tcp-timeout-close-wait=0".into(),
            "--metrics-bind-address=127.0.0.1:10249".into(),
            "--healthz-bind-address=127.0.0.1:10256".into(),
        ],
        HealthCheck::Alive,
    );
    let controller_manager = in_netns(
        "controller-manager",
        &artifacts.controller_manager,
        vec![
            kubeconfig.clone(),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--cluster-name={member}"),
            format!("--root-ca-file={}", d(&layout.ca_cert())),
            format!("--service-account-private-key-file={}", d(&layout.sa_key())),
            "--use-service-account-credentials=false".into(),
            // Pods of a deleted node are removed quickly (a region restarted by the tests).
            "--node-monitor-grace-period=20s".into(),
        ],
        HealthCheck::Alive,
    );
    let scheduler = in_netns(
        "scheduler",
        &artifacts.scheduler,
        vec![
            kubeconfig.clone(),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
        ],
        HealthCheck::Alive,
    );
    let coredns = in_netns(
        "coredns",
        &artifacts.coredns,
        vec!["-conf".into(), d(&dir.join("Corefile"))],
        HealthCheck::Alive,
    );
    vec![
        proxy,
        containerd,
        kubelet,
        kube_proxy,
        controller_manager,
        scheduler,
        coredns,
    ]
}

/// The component name of the lab's S3 endpoint.
pub const S3: &str = "s3";

/// moto's server in the lab namespace, listening on the lab bridge. Started as
/// `python DIR/real/s3/moto_server.py`, so its command line names the lab (moto's own entry
/// point takes no argument to mark it with).
pub fn s3_component(
    layout: &LabLayout,
    plan: &RealPlan,
    artifacts: &Artifacts,
) -> Result<Component> {
    let script = plan.dir().join("s3").join("moto_server.py");
    write(
        &script,
        &format!(
            "# The lab's S3 endpoint (e2e::lab::real::node::s3_component).\n\
             import sys\nfrom moto.server import main\n\
             sys.exit(main([\"-H\", \"{}\", \"-p\", \"{}\"]))\n",
            super::plan::S3_ADDRESS,
            super::plan::S3_PORT
        ),
    )?;
    Ok(Component {
        name: S3.into(),
        kind: "s3".into(),
        region: None,
        ports: Vec::new(),
        program: PathBuf::from("nsenter"),
        args: vec![
            format!("--net={}", d(&plan.lab_netns_path())),
            "--".into(),
            d(&artifacts.moto_python),
            d(&script),
        ],
        log: layout.log_file(S3),
        health: HealthCheck::Alive,
        pid: None,
    })
}
