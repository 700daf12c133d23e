//! Garbage collection of what earlier test runs left in the shared lab.
//!
//! A passing test deletes its namespace's Clusters (the CNPG emulator then stops their
//! PostgreSQL) and its WAL archives. A failing test keeps its namespace for inspection, and a
//! killed test binary cleans nothing, so without this the lab directory grows without bound (it
//! once reached 22 GB and filled the disk). Each test binary runs [`collect`] once, when it first
//! attaches to the lab.

use std::path::Path;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};

use super::fixture::{SharedLab, cnpg_cluster};
use crate::lab::topology::REGIONS;

/// Label on every test namespace, valued with the test's name.
pub const TEST_LABEL: &str = "federator.dev/e2e-test";

/// How long a failed test's namespace is kept for inspection. Longer than any test runs, so a
/// namespace this old belongs to no running test.
pub const KEEP_FAILED: Duration = Duration::from_secs(30 * 60);

/// An archive folder untouched for this long, whose namespace is gone, is removed. Long enough
/// for a stopping instance's last `archive_command` to have finished.
const ARCHIVE_QUIET: Duration = Duration::from_secs(10 * 60);

/// Suffix the test namespaces' names end with: `-` and 6 hex digits (see `TestNamespace`).
fn has_test_suffix(name: &str) -> bool {
    name.rsplit_once('-')
        .is_some_and(|(_, tail)| tail.len() == 6 && tail.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What [`collect`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub namespaces: Vec<String>,
    pub archives: Vec<String>,
}

/// Deletes test namespaces older than [`KEEP_FAILED`] (with their Clusters, so the emulator stops
/// their PostgreSQL) and archive folders of test namespaces that no longer exist.
pub async fn collect(lab: &SharedLab) -> Collected {
    let hub = lab.admin(REGIONS[0]).await;
    let namespaces: Api<Namespace> = Api::all(hub);
    let Ok(list) = namespaces
        .list(&ListParams::default().labels(TEST_LABEL))
        .await
    else {
        return Collected::default();
    };
    let mut live = Vec::new();
    let mut stale = Vec::new();
    for ns in list.items {
        let Some(name) = ns.metadata.name.clone() else {
            continue;
        };
        if ns.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let age = ns
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| SystemTime::from(t.0).elapsed().ok())
            .unwrap_or_default();
        if age > KEEP_FAILED {
            stale.push(name);
        } else {
            live.push(name);
        }
    }
    for name in &stale {
        delete_namespace(lab, name).await;
    }
    let archives = remove_orphan_archives(&lab.layout.root().join("object-stores"), &live);
    Collected {
        namespaces: stale,
        archives,
    }
}

/// Deletes the namespace's Clusters, then the namespace, on every apiserver of the lab. The lab
/// has no namespace controller to cascade the deletion; the emulator sweeps the instances of
/// Clusters that are gone or in a Terminating namespace.
pub async fn delete_namespace(lab: &SharedLab, name: &str) {
    for region in REGIONS {
        let client = lab.admin(region).await;
        let clusters: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), name, &cnpg_cluster());
        let _ = clusters
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let namespaces: Api<Namespace> = Api::all(client);
        let _ = namespaces.delete(name, &DeleteParams::default()).await;
    }
}

/// Removes the archive folders (`object-stores/<cluster>-<namespace>`) of `namespace`. The test
/// kit names every bucket so.
pub fn remove_archives_of(object_stores: &Path, namespace: &str) -> Vec<String> {
    remove_buckets(object_stores, |bucket, _| {
        bucket.ends_with(&format!("-{namespace}"))
    })
}

/// Removes archive folders that belong to a test namespace (by their suffix) not in `live`, and
/// that nothing has written for [`ARCHIVE_QUIET`].
fn remove_orphan_archives(object_stores: &Path, live: &[String]) -> Vec<String> {
    remove_buckets(object_stores, |bucket, modified| {
        has_test_suffix(bucket)
            && !live.iter().any(|ns| bucket.ends_with(&format!("-{ns}")))
            && modified
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > ARCHIVE_QUIET)
    })
}

fn remove_buckets(
    object_stores: &Path,
    doomed: impl Fn(&str, Option<SystemTime>) -> bool,
) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(object_stores) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        if doomed(&name, modified) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_suffix_is_six_hex_digits() {
        assert!(has_test_suffix("pg-a-ring-rotation-0a9f3c"));
        assert!(!has_test_suffix("pg16-eu-south"));
        assert!(!has_test_suffix("pg-a-databases"));
        assert!(!has_test_suffix("pg-a-0a9f3"));
    }

    #[test]
    fn archives_of_live_or_recent_namespaces_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for bucket in ["pg-a-live-abc123", "pg-a-gone-def456", "pg16-eu-south"] {
            std::fs::create_dir_all(root.join(bucket).join("wals")).unwrap();
        }
        // Recently written: nothing is old enough to be an orphan yet.
        let removed = remove_orphan_archives(root, &["live-abc123".to_owned()]);
        assert!(removed.is_empty(), "{removed:?}");

        let removed = remove_archives_of(root, "gone-def456");
        assert_eq!(removed, ["pg-a-gone-def456"]);
        assert!(root.join("pg-a-live-abc123").exists());
        assert!(root.join("pg16-eu-south").exists());
    }
}
