//! Importing the lab's images into a region's containerd (`ctr image import`), only those it
//! lacks: there is no registry, so an image lost (e.g. to a garbage collection) is imported
//! again by the next `up`.

use std::path::Path;

use super::artifacts::Image;
use super::cmd::run;
use super::plan::RegionPlan;
use crate::lab::error::Result;

/// The CRI's containerd namespace.
const CRI_NAMESPACE: &str = "k8s.io";

/// Imports the images the region's containerd does not have. Returns the references imported.
pub fn ensure(region: &RegionPlan, images: &[Image]) -> Result<Vec<String>> {
    let present = list(region)?;
    let mut imported = Vec::new();
    for image in images {
        if present.contains(&image.reference) {
            continue;
        }
        import(region, &image.archive, image.base_name())?;
        imported.push(image.reference.clone());
    }
    Ok(imported)
}

/// Imports the OCI archive `archive` into the region's containerd as `<base_name>:<tag>` (the
/// tag from the archive's `org.opencontainers.image.ref.name`), replacing an image of that name.
pub fn import(region: &RegionPlan, archive: &Path, base_name: &str) -> Result<()> {
    let archive = archive.display().to_string();
    ctr(region, &["import", "--base-name", base_name, &archive]).map(drop)
}

/// Removes the image `reference` from the region's containerd (nothing if it is absent): a
/// returning region's PostgreSQL held back (`lab start --control-plane`); [`ensure`] imports it
/// again.
pub fn remove(region: &RegionPlan, reference: &str) -> Result<bool> {
    if !list(region)?.iter().any(|r| r == reference) {
        return Ok(false);
    }
    ctr(region, &["rm", reference]).map(|_| true)
}

/// The references of the images in the region's containerd.
fn list(region: &RegionPlan) -> Result<Vec<String>> {
    let listed = ctr(region, &["list", "-q"])?;
    Ok(listed.lines().map(|l| l.trim().to_owned()).collect())
}

/// `ctr images <args>` on the region's containerd, in the CRI's namespace; its output.
fn ctr(region: &RegionPlan, args: &[&str]) -> Result<String> {
    let socket = region.containerd_socket().display().to_string();
    let mut all = vec!["-a", &socket, "-n", CRI_NAMESPACE, "images"];
    all.extend_from_slice(args);
    run("ctr", &all)
}
