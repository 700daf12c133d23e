//! Importing the lab's images into a region's containerd (`ctr image import`), only those it
//! lacks: there is no registry, so an image lost (e.g. to a garbage collection) is imported
//! again by the next `up`.

use super::artifacts::Image;
use super::cmd::run;
use super::plan::RegionPlan;
use crate::lab::error::Result;

/// The CRI's containerd namespace.
const CRI_NAMESPACE: &str = "k8s.io";

/// Imports the images the region's containerd does not have. Returns the references imported.
pub fn ensure(region: &RegionPlan, images: &[Image]) -> Result<Vec<String>> {
    let socket = region.containerd_socket().display().to_string();
    let listed = run(
        "ctr",
        &["-a", &socket, "-n", CRI_NAMESPACE, "images", "list", "-q"],
    )?;
    let present: Vec<&str> = listed.lines().map(str::trim).collect();
    let mut imported = Vec::new();
    for image in images {
        if present.contains(&image.reference.as_str()) {
            continue;
        }
        let archive = image.archive.display().to_string();
        run(
            "ctr",
            &[
                "-a",
                &socket,
                "-n",
                CRI_NAMESPACE,
                "images",
                "import",
                "--base-name",
                image.base_name(),
                &archive,
            ],
        )?;
        imported.push(image.reference.clone());
    }
    Ok(imported)
}
