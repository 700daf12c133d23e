//! What `emulator.conf` should hold for a Cluster, from its spec and the instance's state:
//! its own object store for archiving, and on a standby its source's object store for
//! `restore_command` plus streaming when the source has `connectionParameters`.

use std::path::PathBuf;

use topology::cnpg::{ExternalCluster, Role};

use super::error::Result;
use super::layout::{EmulatorLayout, InstanceRecord};
use super::pass::Pass;
use super::postgres::Settings;
use super::postgres::conf::is_fixed;

/// The external cluster `name` of this Cluster's spec.
pub fn external<'a>(pass: &'a Pass<'_>, name: &str) -> Option<&'a ExternalCluster> {
    pass.cluster
        .spec
        .external_clusters
        .iter()
        .find(|e| e.name == name)
}

/// The lab instance an external cluster stands for. The lab has no DNS, so the host of
/// `connectionParameters` (`pg16-eu-south-rw.databases.svc`) is read as a Cluster name with
/// CNPG's service suffix; the entry's own name is the fallback (the blog names entries after
/// their Clusters).
pub fn resolve(
    layout: &EmulatorLayout,
    entry: &ExternalCluster,
    namespace: &str,
) -> Option<InstanceRecord> {
    let host = entry
        .connection_parameters
        .as_ref()
        .and_then(|p| p.get("host"));
    let mut labels = host.map(|h| h.split('.')).into_iter().flatten();
    let service = labels.next();
    // `<service>.<namespace>.svc…` names the namespace; a bare service name means our own.
    let host_namespace = labels.next().unwrap_or(namespace);
    let from_host = service.map(|first| {
        ["-rw", "-ro", "-r"]
            .iter()
            .find_map(|suffix| first.strip_suffix(suffix))
            .unwrap_or(first)
            .to_owned()
    });
    from_host
        .map(|name| (name, host_namespace))
        .into_iter()
        .chain(std::iter::once((entry.name.clone(), namespace)))
        .find_map(|(name, ns)| layout.find_by_cluster_name(&name, Some(ns)))
}

/// The object store of an external cluster: its in-tree `barmanObjectStore.destinationPath`, or,
/// for the barman-cloud plugin, `s3://<parameters.barmanObjectName>/` (the lab has no
/// `ObjectStore` objects, so the object's name stands for its bucket).
pub fn destination(entry: &ExternalCluster) -> Option<String> {
    entry.destination_path().map(str::to_owned).or_else(|| {
        let name = entry
            .plugin
            .as_ref()?
            .get("parameters")?
            .get("barmanObjectName")?
            .as_str()?;
        Some(format!("s3://{name}/"))
    })
}

/// This Cluster's own object store: `spec.backup.barmanObjectStore.destinationPath`, else the
/// WAL-archiver plugin's object, else the destination of the external cluster named after
/// itself, else `s3://<name>/`.
pub fn own_archive(pass: &Pass<'_>) -> PathBuf {
    let backup = pass
        .cluster
        .spec
        .other
        .get("backup")
        .and_then(|b| b.get("barmanObjectStore"))
        .and_then(|s| s.get("destinationPath"))
        .and_then(|d| d.as_str())
        .map(str::to_owned);
    let plugin = pass
        .cluster
        .spec
        .other
        .get("plugins")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .find(|p| p.get("isWALArchiver").and_then(|w| w.as_bool()) == Some(true))
        .and_then(|p| p.get("parameters")?.get("barmanObjectName")?.as_str())
        .map(|name| format!("s3://{name}/"));
    let own_entry = external(pass, pass.cluster.topology_name()).and_then(destination);
    let destination = backup
        .or(plugin)
        .or(own_entry)
        .unwrap_or_else(|| format!("s3://{}/", pass.name));
    pass.layout.object_store(&destination)
}

/// Whether the Cluster has a backup object store of its own (`spec.backup.barmanObjectStore`,
/// or a WAL-archiver plugin): what CNPG's wal-restore reads once the Cluster is no longer a
/// replica by spec.
fn has_own_backup_store(pass: &Pass<'_>) -> bool {
    let spec = &pass.cluster.spec.other;
    let backup = spec
        .get("backup")
        .and_then(|b| b.get("barmanObjectStore"))
        .is_some();
    let plugin = spec
        .get("plugins")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .any(|p| p.get("isWALArchiver").and_then(|w| w.as_bool()) == Some(true));
    backup || plugin
}

/// The settings for the instance as it is now: a standby gets the replica configuration
/// (archive_mode=always, restore and stream from `source`), a primary the primary one.
pub fn desired(pass: &Pass<'_>, standby: bool) -> Result<Settings> {
    let archive_dir = own_archive(pass);
    super::postgres::run::create_owned_dir(&archive_dir)?;
    // CNPG (1.28 `walrestore.GetRecoverConfiguration`, `RefreshReplicaConfiguration`) restores
    // from the source's object store and streams from the source only while the Cluster is a
    // replica by spec. A standby whose spec names it primary — a promotion waiting for its
    // token's LSN — restores from its own backup store instead and has no upstream: WAL it had
    // not restored before the promote patch never arrives (the FINDING of docs/lab-real.md).
    let replica_by_spec = pass.cluster.role() == Role::Replica;
    let source = (standby && replica_by_spec)
        .then(|| pass.replica_spec().map(|r| r.source.as_str()))
        .flatten()
        .and_then(|name| external(pass, name));
    let restore_dir = match source {
        Some(entry) => destination(entry).map(|d| pass.layout.object_store(&d)),
        None if standby && !replica_by_spec && has_own_backup_store(pass) => {
            Some(archive_dir.clone())
        }
        None => None,
    };
    if let Some(dir) = &restore_dir {
        super::postgres::run::create_owned_dir(dir)?;
    }
    let primary_conninfo = source
        .filter(|e| e.connection_parameters.is_some() && !pass.faults.streaming_down)
        .and_then(|e| resolve(&pass.layout, e, pass.namespace()))
        .filter(|r| r.port != pass.record.port)
        .map(|r| {
            format!(
                "host=127.0.0.1 port={} user=postgres application_name={}",
                r.port,
                pass.primary_pod()
            )
        });
    Ok(Settings {
        port: pass.record.port,
        archive_always: standby,
        archive_dir,
        restore_delay: pass.faults.slow_wal_restore,
        restore_dir,
        primary_conninfo,
        wal_retrieve_retry_interval: pass.config.wal_retrieve_retry_interval,
        parameters: parameters(pass),
    })
}

/// `spec.postgresql.parameters`, fixed ones dropped (with a warning: CNPG's webhook would have
/// refused the Cluster). Values are strings in CNPG's schema; numbers and booleans are taken as
/// written.
pub fn parameters(pass: &Pass<'_>) -> Vec<(String, String)> {
    let Some(map) = pass
        .cluster
        .spec
        .other
        .get("postgresql")
        .and_then(|p| p.get("parameters"))
        .and_then(|p| p.as_object())
    else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = map
        .iter()
        .filter_map(|(name, value)| {
            if is_fixed(name) {
                tracing::warn!(cluster = %pass.name, parameter = %name, "fixed parameter ignored (CNPG controls it)");
                return None;
            }
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect();
    found.sort();
    found
}
