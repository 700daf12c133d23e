//! The fixed shape of the lab: which regions exist, which ports they take, and the names of the
//! objects the lab creates. Public so the harness, the emulator and docs share one truth.

/// The hub apiserver, where Federator's own objects live.
pub const HUB: &str = "hub";
/// The member clusters, each a region running CloudNativePG.
pub const MEMBERS: [&str; 3] = ["eu-central", "eu-western", "eu-south"];
/// All apiservers, hub first; the index is the port offset from `--apiserver-port`.
pub const REGIONS: [&str; 4] = [HUB, MEMBERS[0], MEMBERS[1], MEMBERS[2]];

/// Component name of the shared etcd.
pub const ETCD: &str = "etcd";

/// Default etcd client port (the peer port is the next one) of `federator-lab up`.
pub const DEFAULT_ETCD_PORT: u16 = 23790;
/// Default port of the hub apiserver; members take the next three.
pub const DEFAULT_APISERVER_PORT: u16 = 26443;

/// Namespace on every member holding the CNPG Clusters Federator manages.
pub const DATABASES_NAMESPACE: &str = "databases";
/// Least-privilege ServiceAccount (and its Role and RoleBinding) on every member.
pub const FEDERATOR_SERVICE_ACCOUNT: &str = "federator";
/// Namespace on the hub holding Federator's objects and the member Secrets.
pub const HUB_NAMESPACE: &str = "federator-system";

/// Label on a hub Secret that marks it as a member-cluster credential (value `"true"`).
pub const MEMBER_SECRET_LABEL: &str = "federator.dev/member-cluster";
/// Label on a hub Secret naming the member cluster it reaches.
pub const CLUSTER_NAME_LABEL: &str = "federator.dev/cluster-name";
/// Data key of a hub member Secret that holds the kubeconfig.
pub const KUBECONFIG_SECRET_KEY: &str = "kubeconfig";
/// Field manager of every server-side apply the lab does.
pub const FIELD_MANAGER: &str = "federator-lab";

/// Name of the hub Secret for a member.
pub fn member_secret_name(member: &str) -> String {
    format!("member-{member}")
}

/// Ports of one lab instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    /// etcd client port; the peer port is `etcd + 1`.
    pub etcd: u16,
    /// Hub apiserver port; member `i` (0-based) listens on `apiserver + 1 + i`.
    pub apiserver: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            etcd: DEFAULT_ETCD_PORT,
            apiserver: DEFAULT_APISERVER_PORT,
        }
    }
}

impl Ports {
    pub fn etcd_peer(&self) -> u16 {
        self.etcd + 1
    }

    /// Port of the apiserver of `region`, or `None` for an unknown region.
    pub fn apiserver_of(&self, region: &str) -> Option<u16> {
        let index = REGIONS.iter().position(|r| *r == region)?;
        Some(self.apiserver + index as u16)
    }
}
