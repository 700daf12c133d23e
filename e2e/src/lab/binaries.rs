//! Finding the kube-apiserver and etcd binaries.
//!
//! kube-apiserver: `$KUBEBUILDER_ASSETS/kube-apiserver`, else `$KUBE_APISERVER`, else built by
//! `hack/build-kube-apiserver.sh`. The script is embedded in the binary (`include_str!`), so
//! `federator lab up` works outside a checkout too; it caches the build under
//! `~/.cache/federator/<version>/`, so only the first run pays for it.
//! etcd: `$KUBEBUILDER_ASSETS/etcd`, else `etcd` on `PATH` (Debian `etcd-server`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{LabError, Result};

const BUILD_SCRIPT: &str = include_str!("../../../hack/build-kube-apiserver.sh");

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

/// Resolves (and if needed builds) kube-apiserver. The build's progress goes to stderr.
pub fn kube_apiserver() -> Result<PathBuf> {
    if let Some(dir) = assets_dir() {
        let path = dir.join("kube-apiserver");
        return if executable(&path) {
            Ok(path)
        } else {
            Err(LabError::ApiserverBinary(format!(
                "KUBEBUILDER_ASSETS is set but {} is not an executable file; fix or unset KUBEBUILDER_ASSETS",
                path.display()
            )))
        };
    }
    if let Some(path) = std::env::var_os("KUBE_APISERVER").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if executable(&path) {
            Ok(path)
        } else {
            Err(LabError::ApiserverBinary(format!(
                "KUBE_APISERVER={} is not an executable file; fix or unset KUBE_APISERVER",
                path.display()
            )))
        };
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(BUILD_SCRIPT)
        .arg("build-kube-apiserver.sh")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            LabError::ApiserverBinary(format!("cannot run bash for the build script: {e}"))
        })?;
    if !output.status.success() {
        return Err(LabError::ApiserverBinary(format!(
            "hack/build-kube-apiserver.sh failed ({}); see its output above. Install Go, or set \
             KUBE_APISERVER to a kube-apiserver binary (1.33-1.37)",
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if executable(&path) {
        Ok(path)
    } else {
        Err(LabError::ApiserverBinary(format!(
            "the build script printed {:?}, which is not an executable file",
            path.display()
        )))
    }
}

/// Resolves etcd.
pub fn etcd() -> Result<PathBuf> {
    if let Some(dir) = assets_dir() {
        let path = dir.join("etcd");
        return if executable(&path) {
            Ok(path)
        } else {
            Err(LabError::EtcdBinary(format!(
                "KUBEBUILDER_ASSETS is set but {} is missing",
                path.display()
            )))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|p| executable(p))
        .ok_or_else(|| LabError::EtcdBinary("no etcd on PATH".into()))
}
