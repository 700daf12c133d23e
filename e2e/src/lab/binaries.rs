//! Finding the kube-apiserver and etcd binaries.
//!
//! kube-apiserver: `$KUBEBUILDER_ASSETS/kube-apiserver`, else `$KUBE_APISERVER`, else built by
//! `hack/build-kube.sh`. The script is embedded in the binary (`include_str!`), so
//! `federator-lab up` works outside a checkout too; it caches the build under
//! `~/.cache/federator/<version>/`, so only the first run pays for it.
//! etcd: `$KUBEBUILDER_ASSETS/etcd`, else `etcd` on `PATH` (Debian `etcd-server`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{LabError, Result};

const BUILD_SCRIPT: &str = include_str!("../../../hack/build-kube.sh");

fn assets_dir() -> Option<PathBuf> {
    std::env::var_os("KUBEBUILDER_ASSETS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `path` if it is an executable file, else the error `make` builds, naming where the path came
/// from (the fix is to correct or unset that).
fn checked(path: PathBuf, source: &str, make: fn(String) -> LabError) -> Result<PathBuf> {
    if executable(&path) {
        Ok(path)
    } else {
        Err(make(format!(
            "{} (from {source}) is not an executable file; fix or unset {source}",
            path.display()
        )))
    }
}

/// Resolves (and if needed builds) kube-apiserver. The build's progress goes to stderr.
pub fn kube_apiserver() -> Result<PathBuf> {
    if let Some(dir) = assets_dir() {
        return checked(
            dir.join("kube-apiserver"),
            "KUBEBUILDER_ASSETS",
            LabError::ApiserverBinary,
        );
    }
    if let Some(path) = std::env::var_os("KUBE_APISERVER").filter(|v| !v.is_empty()) {
        return checked(
            PathBuf::from(path),
            "KUBE_APISERVER",
            LabError::ApiserverBinary,
        );
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(BUILD_SCRIPT)
        .arg("build-kube.sh")
        .arg("apiserver")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            LabError::ApiserverBinary(format!("cannot run bash for the build script: {e}"))
        })?;
    if !output.status.success() {
        return Err(LabError::ApiserverBinary(format!(
            "hack/build-kube.sh failed ({}); see its output above. Install Go, or set \
             KUBE_APISERVER to a kube-apiserver binary (1.33-1.37)",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    checked(
        path,
        "the output of hack/build-kube.sh",
        LabError::ApiserverBinary,
    )
}

/// Resolves etcd.
pub fn etcd() -> Result<PathBuf> {
    if let Some(dir) = assets_dir() {
        return checked(dir.join("etcd"), "KUBEBUILDER_ASSETS", LabError::EtcdBinary);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|p| executable(p))
        .ok_or_else(|| LabError::EtcdBinary("no etcd on PATH".into()))
}

/// A workspace binary the lab starts: `$<env>` when set, else `file` next to the running binary
/// (or one level up, for test binaries in `target/<profile>/deps/`). `action` says how to build it.
pub fn sibling(env: &str, file: &str, action: &'static str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(LabError::io("locating", "the current binary"))?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(file))
        .find(|p| p.is_file())
        .ok_or_else(|| LabError::Io {
            action,
            path: exe.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}
