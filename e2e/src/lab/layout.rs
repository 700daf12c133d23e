//! Where every file of a lab lives inside its directory. One place, so `up`, `down`, `status`,
//! the harness and the emulator agree on paths.

use std::path::{Path, PathBuf};

use super::error::{LabError, Result};

/// The lab directory (`.lab/` by default). Always absolute: paths in it are passed to processes
/// that outlive the CLI and are matched against `/proc/<pid>/cmdline` to recognise our processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabLayout {
    root: PathBuf,
}

impl LabLayout {
    /// Creates the directory (and `pki/`, `logs/`) if needed and makes the path absolute.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        for sub in ["", "pki", "logs"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(LabError::io("creating directory", &path))?;
        }
        let root = dir.canonicalize().map_err(LabError::io("resolving", dir))?;
        Ok(Self { root })
    }

    /// An existing lab directory; does not create anything.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let root = dir
            .canonicalize()
            .map_err(|_| LabError::NotRunning(dir.to_path_buf()))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lab.lock")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }
    pub fn etcd_data_dir(&self) -> PathBuf {
        self.root.join("etcd-data")
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.pki_dir().join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.pki_dir().join("ca.key")
    }
    /// Serving certificate shared by the four apiservers (all on 127.0.0.1).
    pub fn apiserver_cert(&self) -> PathBuf {
        self.pki_dir().join("apiserver.crt")
    }
    pub fn apiserver_key(&self) -> PathBuf {
        self.pki_dir().join("apiserver.key")
    }
    /// ServiceAccount token signing key pair, shared by the four apiservers.
    pub fn sa_key(&self) -> PathBuf {
        self.pki_dir().join("sa.key")
    }
    pub fn sa_pub(&self) -> PathBuf {
        self.pki_dir().join("sa.pub")
    }
    /// `--token-auth-file` holding the admin token.
    pub fn tokens_csv(&self) -> PathBuf {
        self.pki_dir().join("tokens.csv")
    }
    /// Admin kubeconfig of one apiserver.
    pub fn kubeconfig(&self, region: &str) -> PathBuf {
        self.root.join(format!("{region}.kubeconfig"))
    }
    /// Admin kubeconfig with one context per region.
    pub fn lab_kubeconfig(&self) -> PathBuf {
        self.root.join("lab.kubeconfig")
    }
    /// Kubeconfig of a member's least-privilege `databases/federator` ServiceAccount (the same
    /// content as the hub Secret for that member).
    pub fn federator_kubeconfig(&self, member: &str) -> PathBuf {
        self.root.join(format!("{member}.federator.kubeconfig"))
    }
}
