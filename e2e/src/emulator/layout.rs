//! Where the emulator keeps things inside the lab directory, and the per-Cluster instance record
//! that `dsn` and other emulators read:
//!
//! - `regions/<member>/clusters/<namespace>/<name>/instance.json` — port, Cluster uid
//! - `regions/<member>/clusters/<namespace>/<name>/pgdata/`, `postgres.log`, `promoting.token`
//! - `object-stores/<bucket>/<path>` — the "object store" `s3://<bucket>/<path>`

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{EmulatorError, Result};

/// Ports per member for PostgreSQL: `pg_port_base + slot`, slot in `0..PORTS_PER_MEMBER`.
pub const PORTS_PER_MEMBER: u16 = 100;

/// Serialises port allocation within one emulator (each member has its own port range).
static ALLOCATION: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What the emulator records about the instance of one Cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    pub member: String,
    pub namespace: String,
    pub name: String,
    /// `metadata.uid` of the Cluster the instance belongs to: a Cluster deleted and created
    /// again under the same name gets a fresh instance.
    pub uid: String,
    pub port: u16,
}

#[derive(Clone, Debug)]
pub struct EmulatorLayout {
    lab_dir: PathBuf,
}

impl EmulatorLayout {
    pub fn new(lab_dir: impl Into<PathBuf>) -> Self {
        Self {
            lab_dir: lab_dir.into(),
        }
    }

    pub fn lab_dir(&self) -> &Path {
        &self.lab_dir
    }

    pub fn member_dir(&self, member: &str) -> PathBuf {
        self.lab_dir.join("regions").join(member).join("clusters")
    }

    /// The unix socket on which the member's emulator serves its API server's egress (HTTP
    /// CONNECT to instance pods: `pods/proxy` to `/pg/status`).
    pub fn egress_socket(&self, member: &str) -> PathBuf {
        self.lab_dir
            .join("regions")
            .join(member)
            .join("egress.sock")
    }

    /// While this file exists the member's emulator serves its admission webhook but starts,
    /// stops and changes no PostgreSQL: the region's control plane is back, its data plane not
    /// yet (`lab start REGION --control-plane`).
    pub fn data_plane_hold(&self, member: &str) -> PathBuf {
        self.lab_dir
            .join("regions")
            .join(member)
            .join("data-plane-held")
    }

    pub fn cluster_dir(&self, member: &str, namespace: &str, name: &str) -> PathBuf {
        self.member_dir(member).join(namespace).join(name)
    }

    fn record_file(&self, member: &str, namespace: &str, name: &str) -> PathBuf {
        self.cluster_dir(member, namespace, name)
            .join("instance.json")
    }

    /// Maps `s3://bucket/path/` (barman's `destinationPath`) to a folder of the lab. Any other
    /// scheme is kept as a relative path too, so a manifest never escapes the lab directory.
    pub fn object_store(&self, destination_path: &str) -> PathBuf {
        let rest = destination_path
            .split_once("://")
            .map_or(destination_path, |(_, rest)| rest);
        let mut dir = self.lab_dir.join("object-stores");
        for part in rest.split('/').filter(|p| !p.is_empty() && *p != "..") {
            dir.push(part);
        }
        dir
    }

    pub fn record(&self, member: &str, namespace: &str, name: &str) -> Option<InstanceRecord> {
        let text = std::fs::read_to_string(self.record_file(member, namespace, name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Every record of one member.
    pub fn records(&self, member: &str) -> Vec<InstanceRecord> {
        let mut found = Vec::new();
        let Ok(namespaces) = std::fs::read_dir(self.member_dir(member)) else {
            return found;
        };
        for ns in namespaces.flatten() {
            let Ok(clusters) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for cluster in clusters.flatten() {
                let text = std::fs::read_to_string(cluster.path().join("instance.json"));
                if let Some(record) = text.ok().and_then(|t| serde_json::from_str(&t).ok()) {
                    found.push(record);
                }
            }
        }
        found
    }

    /// The instance of a Cluster named `name`, on any member, preferring one in `namespace`: how
    /// a replica finds the instance its `source` stands for (the lab has no DNS for
    /// `<name>-rw.<namespace>.svc`).
    pub fn find_by_cluster_name(
        &self,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<InstanceRecord> {
        let regions = std::fs::read_dir(self.lab_dir.join("regions")).ok()?;
        let candidates: Vec<InstanceRecord> = regions
            .flatten()
            .filter_map(|r| r.file_name().into_string().ok())
            .flat_map(|member| self.records(&member))
            .filter(|r| r.name == name)
            .collect();
        candidates
            .iter()
            .find(|r| Some(r.namespace.as_str()) == namespace)
            .or_else(|| candidates.first())
            .cloned()
    }

    /// The record of a Cluster, allocating its port on first sight. The slot is a stable hash
    /// of `namespace/name`, probed past ports other records or other programs hold, so the same
    /// Cluster gets the same port on every lab.
    pub fn ensure_record(
        &self,
        member: &str,
        namespace: &str,
        name: &str,
        uid: &str,
        pg_port_base: u16,
    ) -> Result<InstanceRecord> {
        if let Some(record) = self.record(member, namespace, name)
            && record.uid == uid
        {
            return Ok(record);
        }
        // Reconciles of new Clusters run concurrently: without this, two could both find the
        // same port free before either records it.
        let _allocating = ALLOCATION
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(record) = self.record(member, namespace, name)
            && record.uid == uid
        {
            return Ok(record);
        }
        let taken: Vec<u16> = self
            .records(member)
            .iter()
            .filter(|r| !(r.namespace == namespace && r.name == name))
            .map(|r| r.port)
            .collect();
        let start = stable_hash(&format!("{namespace}/{name}")) % u64::from(PORTS_PER_MEMBER);
        let port = (0..u64::from(PORTS_PER_MEMBER))
            .map(|i| pg_port_base + ((start + i) % u64::from(PORTS_PER_MEMBER)) as u16)
            .find(|p| !taken.contains(p) && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .ok_or_else(|| {
                EmulatorError::Config(format!(
                    "no free PostgreSQL port in {pg_port_base}..{} for {member}",
                    pg_port_base + PORTS_PER_MEMBER
                ))
            })?;
        let record = InstanceRecord {
            member: member.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            port,
        };
        let dir = self.cluster_dir(member, namespace, name);
        std::fs::create_dir_all(&dir).map_err(EmulatorError::io("creating directory", &dir))?;
        let path = self.record_file(member, namespace, name);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&record).expect("record serializes");
        std::fs::write(&tmp, text).map_err(EmulatorError::io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(EmulatorError::io("renaming into place", &path))?;
        Ok(record)
    }
}

/// FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_maps_s3_buckets_into_the_lab() {
        let layout = EmulatorLayout::new("/lab");
        assert_eq!(
            layout.object_store("s3://pg16-eu-south/"),
            PathBuf::from("/lab/object-stores/pg16-eu-south")
        );
        assert_eq!(
            layout.object_store("s3://b/../x/"),
            PathBuf::from("/lab/object-stores/b/x")
        );
    }

    #[test]
    fn ports_are_stable_and_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = EmulatorLayout::new(dir.path());
        let a = layout
            .ensure_record("eu-central", "databases", "a", "u1", 41000)
            .expect("allocates");
        let again = layout
            .ensure_record("eu-central", "databases", "a", "u1", 41000)
            .expect("reads");
        assert_eq!(a, again);
        let b = layout
            .ensure_record("eu-central", "databases", "b", "u2", 41000)
            .expect("allocates");
        assert_ne!(a.port, b.port);
        assert_eq!(layout.find_by_cluster_name("b", Some("databases")), Some(b));
    }
}
