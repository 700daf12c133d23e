//! The CloudNativePG `Cluster` CRD installed on every member.
//!
//! Preferred: the upstream CRD of a pinned CNPG release, taken from its Go module
//! (`go mod download`), so the member apiservers validate and prune exactly as a real CNPG
//! install does. It is cached under `~/.cache/federator/cnpg-<version>/`; nothing is committed.
//! Fallback, when Go or the module proxy is unavailable: the minimal CRD of contract §8,
//! committed at `e2e/crds/cnpg-cluster-minimal.yaml` and embedded in the binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::error::{LabError, Result};

/// CNPG release whose CRD the lab installs.
pub const CNPG_VERSION: &str = "v1.27.1";
const MODULE: &str = "github.com/cloudnative-pg/cloudnative-pg";
const CRD_PATH: &str = "config/crd/bases/postgresql.cnpg.io_clusters.yaml";
const MINIMAL_CRD: &str = include_str!("../../crds/cnpg-cluster-minimal.yaml");

/// The CRD and a description of where it came from.
pub fn load() -> Result<(CustomResourceDefinition, String)> {
    let (yaml, source) = match upstream_yaml() {
        Ok(found) => found,
        Err(why) => {
            tracing::warn!("using the minimal CNPG CRD of contract §8: {why}");
            (
                MINIMAL_CRD.to_owned(),
                "e2e/crds/cnpg-cluster-minimal.yaml (fallback)".to_owned(),
            )
        }
    };
    let crd =
        serde_saphyr::from_str(&yaml).map_err(|e| LabError::CnpgCrd(format!("{source}: {e}")))?;
    Ok((crd, source))
}

/// The embedded minimal CRD (contract §8).
pub fn minimal() -> Result<CustomResourceDefinition> {
    serde_saphyr::from_str(MINIMAL_CRD).map_err(|e| LabError::CnpgCrd(format!("minimal CRD: {e}")))
}

fn cache_file() -> Option<PathBuf> {
    let root = std::env::var_os("FEDERATOR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/federator")))?;
    Some(
        root.join(format!("cnpg-{CNPG_VERSION}"))
            .join("postgresql.cnpg.io_clusters.yaml"),
    )
}

fn upstream_yaml() -> std::result::Result<(String, String), String> {
    let source = format!("{MODULE}@{CNPG_VERSION}/{CRD_PATH}");
    let cache = cache_file().ok_or("neither FEDERATOR_CACHE nor HOME is set")?;
    if let Ok(yaml) = std::fs::read_to_string(&cache) {
        return Ok((yaml, source));
    }
    // Run outside any module so a go.mod in the current directory cannot interfere.
    let output = Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            &format!("{MODULE}@{CNPG_VERSION}"),
        ])
        .current_dir(std::env::temp_dir())
        .env("GOFLAGS", "-mod=mod")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run go: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "go mod download failed: {}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("go mod download -json output: {e}"))?;
    let dir = info["Dir"]
        .as_str()
        .ok_or("go mod download -json printed no Dir")?;
    let yaml = std::fs::read_to_string(PathBuf::from(dir).join(CRD_PATH))
        .map_err(|e| format!("{dir}/{CRD_PATH}: {e}"))?;
    if let Some(parent) = cache.parent() {
        let _ = std::fs::create_dir_all(parent);
        let _ = std::fs::write(&cache, &yaml);
    }
    Ok((yaml, source))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_minimal_crd_parses_and_has_both_subresources() {
        let crd = super::minimal().unwrap();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("clusters.postgresql.cnpg.io")
        );
        let version = &crd.spec.versions[0];
        let sub = version.subresources.as_ref().unwrap();
        assert!(sub.status.is_some());
        assert_eq!(
            sub.scale.as_ref().unwrap().spec_replicas_path,
            ".spec.instances"
        );
    }
}
