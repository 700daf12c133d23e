//! Federator's own CRDs, installed on the hub.
//!
//! Until the Rust types generate them (`topology::api::DistributedTopology::crd()`), the lab
//! applies the committed `deploy/crds/*.yaml` of the checkout this binary was built from. A
//! binary run outside that checkout installs none and says so.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::error::{LabError, Result};

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds")
}

/// Every CRD in `deploy/crds/*.yaml` (files may hold several YAML documents).
pub fn load() -> Result<Vec<CustomResourceDefinition>> {
    let dir = crds_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        tracing::warn!(
            "{} not found: no Federator CRDs installed on the hub",
            dir.display()
        );
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(LabError::io("reading", &file))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| LabError::parse(file.display().to_string())(e.to_string()))?;
        for doc in docs
            .into_iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
        {
            crds.push(
                serde_json::from_value(doc)
                    .map_err(|e| LabError::parse(file.display().to_string())(e.to_string()))?,
            );
        }
    }
    Ok(crds)
}
