//! Names, addresses and paths of the real tier, derived from the lab directory and the member
//! regions that get a node. One place, so `up`, `down`, the sweep after a `kill -9` and the
//! tests agree.
//!
//! Every non-loopback address lives in network namespaces the lab creates:
//! - `<lab id>-lab` holds the lab bridge `labbr` and nothing else (no address, no uplink);
//! - `<lab id>-<member>` holds the member's node: `eth0` on the lab bridge with the node IP
//!   `10.250.0.<11 + i>/24`, the pod bridge `cni0` (pods in `10.24<i>.0.0/16`), the Service
//!   range `10.23<i>.0.0/16`, and static routes to the other members' pod and Service ranges.
//!   There is no default route.
//! - `<lab id>-hub` (when the hub gets a node) is laid out the same with `i = 3`
//!   (`10.250.0.14`, pods `10.243.0.0/16`, Services `10.233.0.0/16`) but has no route to the
//!   members' pods or Services: its pods reach the member apiservers only, each on the hub node's
//!   own IP at the member apiserver's port (the hub's netns proxy forwards those ports to the
//!   apiservers on the host's loopback), as a real hub reaches its members' API endpoints.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::lab::layout::LabLayout;
use crate::lab::topology::{HUB, MEMBERS};

/// The lab's short id: `fedlab-` and 8 hex digits of a stable hash (FNV-1a) of the lab
/// directory, so two labs (CI's and a developer's) never share a namespace, cgroup or socket.
pub fn lab_id(root: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in root.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fedlab-{:08x}", hash >> 32)
}

/// The subnet of the lab bridge (node IPs).
pub const NODE_PREFIX_LEN: u8 = 24;
/// The S3 endpoint (moto) of the WAL-archive channel: on the lab bridge, in the lab namespace,
/// reached by every region's pods through their node (`http://10.250.0.1:9000`).
pub const S3_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
pub const S3_PORT: u16 = 9000;

/// Name of the lab bridge in the lab namespace.
pub const LAB_BRIDGE: &str = "labbr";
/// Cluster domain of every member (plain manifests keep working); each member's Services are
/// also served under its own zone `<member>.lab`, which the other members forward to it.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The default StorageClass of every member region.
pub const STORAGE_CLASS: &str = "lab-local";
/// hostPath PersistentVolumes kept available per member region.
pub const PERSISTENT_VOLUMES: usize = 8;

/// Where a region's addresses come from: a member's position in [`MEMBERS`], and the next one
/// for the hub, so member addresses stay the same whether the hub has a node or not.
pub fn region_index(region: &str) -> Option<usize> {
    if region == HUB {
        return Some(MEMBERS.len());
    }
    MEMBERS.iter().position(|m| *m == region)
}

/// How many regions can get a node (the members and the hub).
pub const NODE_REGIONS: usize = MEMBERS.len() + 1;

/// The whole real tier of one lab.
#[derive(Debug, Clone)]
pub struct RealPlan {
    pub id: String,
    root: PathBuf,
    pub regions: Vec<RegionPlan>,
}

impl RealPlan {
    /// `members` (the regions that get a node) must be lab members or the hub (checked by the
    /// caller); order does not matter. The member regions come first, the hub last.
    pub fn new(layout: &LabLayout, members: &[String]) -> Self {
        let id = lab_id(layout.root());
        let regions = MEMBERS
            .iter()
            .chain(std::iter::once(&HUB))
            .filter(|m| members.iter().any(|x| x == *m))
            .map(|member| RegionPlan {
                member: (*member).to_owned(),
                index: region_index(member).expect("a lab region"),
                id: id.clone(),
                root: layout.root().to_path_buf(),
            })
            .collect();
        Self {
            id,
            root: layout.root().to_path_buf(),
            regions,
        }
    }

    pub fn region(&self, member: &str) -> Option<&RegionPlan> {
        self.regions.iter().find(|r| r.member == member)
    }

    /// The member regions' nodes (not the hub's).
    pub fn member_regions(&self) -> impl Iterator<Item = &RegionPlan> {
        self.regions.iter().filter(|r| !r.is_hub())
    }

    /// The hub's node, if it has one.
    pub fn hub(&self) -> Option<&RegionPlan> {
        self.region(HUB)
    }

    /// The namespace holding the lab bridge.
    pub fn lab_netns(&self) -> String {
        format!("{}-lab", self.id)
    }

    /// `DIR/real/`: configuration, containerd's images, kubelet's directory, volumes.
    pub fn dir(&self) -> PathBuf {
        self.root.join("real")
    }

    pub fn lab_netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(self.lab_netns())
    }

    /// The S3 endpoint's URL as pods use it.
    pub fn s3_endpoint(&self) -> String {
        format!("http://{S3_ADDRESS}:{S3_PORT}")
    }

    /// `/run/<lab id>/`: sockets and runtime state (short paths: a unix socket path has at most
    /// 107 bytes).
    pub fn run_dir(&self) -> PathBuf {
        run_dir(&self.id)
    }

    /// Where the VM-wide sysctls are recorded before the first kubelet starts.
    pub fn sysctl_record(&self) -> PathBuf {
        self.dir().join("sysctls.json")
    }

    /// The apiservers' egress selector configurations (outside `real/`: the sweep kills every
    /// process whose command line mentions `real/`, and the apiservers are not its to kill).
    pub fn egress_config(&self, member: &str) -> PathBuf {
        self.root.join("egress").join(format!("{member}.yaml"))
    }
}

/// `/run/<lab id>`.
pub fn run_dir(id: &str) -> PathBuf {
    Path::new("/run").join(id)
}

/// One region's node: a member's or the hub's.
#[derive(Debug, Clone)]
pub struct RegionPlan {
    /// The region: a member, or [`HUB`].
    pub member: String,
    /// [`region_index`]: fixes addresses whatever subset runs.
    pub index: usize,
    id: String,
    root: PathBuf,
}

impl RegionPlan {
    pub fn is_hub(&self) -> bool {
        self.member == HUB
    }
    pub fn node_ip(&self) -> Ipv4Addr {
        node_ip(self.index)
    }
    pub fn pod_cidr(&self) -> String {
        pod_cidr(self.index)
    }
    pub fn service_cidr(&self) -> String {
        service_cidr(self.index)
    }
    /// The `kubernetes` Service's ClusterIP (first address of the Service range).
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 230 + self.index as u8, 0, 1)
    }
    pub fn netns(&self) -> String {
        format!("{}-{}", self.id, self.member)
    }
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(self.netns())
    }
    pub fn node_name(&self) -> String {
        format!("{}-node", self.member)
    }
    /// The member's own DNS zone, served by its CoreDNS and forwarded to by the others.
    pub fn zone(&self) -> String {
        format!("{}.lab", self.member)
    }
    /// Name of the lab-bridge end of this node's veth pair (in the lab namespace).
    pub fn bridge_port(&self) -> String {
        format!("node{}", self.index)
    }
    /// `DIR/real/<member>/`.
    pub fn dir(&self) -> PathBuf {
        self.root.join("real").join(&self.member)
    }
    /// `/run/<lab id>/<member>/`.
    pub fn run_dir(&self) -> PathBuf {
        run_dir(&self.id).join(&self.member)
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.run_dir().join("containerd.sock")
    }
    /// The HTTP CONNECT socket the member's apiserver sends webhook and kubelet traffic to.
    pub fn egress_socket(&self) -> PathBuf {
        self.run_dir().join("egress.sock")
    }
    /// The kubelet's cgroup root, created in every cgroup v1 hierarchy.
    pub fn cgroup_root(&self) -> String {
        format!("{}-{}", self.id, self.member)
    }
    /// The directory of hostPath PersistentVolume `i`.
    pub fn volume_dir(&self, i: usize) -> PathBuf {
        self.dir().join("volumes").join(format!("pv{i}"))
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("node.kubeconfig")
    }
}

pub fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, 0, 11 + index as u8)
}
pub fn pod_cidr(index: usize) -> String {
    format!("10.{}.0.0/16", 240 + index)
}
pub fn service_cidr(index: usize) -> String {
    format!("10.{}.0.0/16", 230 + index)
}

/// Every address the apiservers' serving certificate must name for the real tier: node IPs
/// (node components, the `kubernetes` Service endpoints, and the hub's pods reaching member
/// apiservers on the hub node's IP) and each region's `kubernetes` ClusterIP (pods).
pub fn apiserver_addresses() -> Vec<String> {
    (0..NODE_REGIONS)
        .flat_map(|i| {
            [
                node_ip(i).to_string(),
                Ipv4Addr::new(10, 230 + i as u8, 0, 1).to_string(),
            ]
        })
        .chain(
            [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .map(String::from),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_differ_per_directory() {
        let a = lab_id(Path::new("/work/main/target/e2e-lab-real"));
        assert_eq!(a, lab_id(Path::new("/work/main/target/e2e-lab-real")));
        assert_ne!(a, lab_id(Path::new("/work/wt/real/target/e2e-lab-real")));
        assert_eq!(a.len(), "fedlab-".len() + 8);
    }

    #[test]
    fn ranges_do_not_overlap_across_regions() {
        let all: Vec<String> = (0..NODE_REGIONS)
            .flat_map(|i| [pod_cidr(i), service_cidr(i)])
            .collect();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        assert!(!all.contains(&"10.96.0.0/16".to_owned()));
        // The hub takes the index after the members: member addresses do not move with it.
        assert_eq!(region_index(HUB), Some(MEMBERS.len()));
        assert_eq!(
            node_ip(region_index(HUB).unwrap()),
            Ipv4Addr::new(10, 250, 0, 14)
        );
        assert!(apiserver_addresses().contains(&"10.233.0.1".to_owned()));
    }
}
