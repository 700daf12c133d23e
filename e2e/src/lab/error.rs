//! The one error type of the lab library: every variant names the file, port or component that
//! failed and, where there is one, the fix.

use std::path::PathBuf;

/// Result alias used throughout `e2e::lab`.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A real-tier `up` that failed after it started processes: it stopped them all again.
    /// (The cause is part of the message, not an error source: callers that print only the
    /// outermost message, like the e2e harness, still show it.)
    #[error(
        "{cause}\n`lab up` stopped what it had started ({stopped}): nothing of the lab is left \
         running; fix the cause above and run `up` again"
    )]
    UpFailed {
        cause: Box<LabError>,
        stopped: String,
    },

    #[error(
        "port {port} (for {component}) is already in use on 127.0.0.1; stop whatever listens there \
         or move the lab with --etcd-port / --apiserver-port"
    )]
    PortInUse { port: u16, component: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("kube-apiserver binary: {0}")]
    ApiserverBinary(String),

    #[error(
        "etcd binary not found ({0}); install it with `apt-get install -y etcd-server` or set \
         KUBEBUILDER_ASSETS to a folder holding etcd"
    )]
    EtcdBinary(String),

    #[error("lab PKI: {action}: {source}")]
    Pki {
        action: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("{component} exited during startup; last lines of {log}:\n{tail}")]
    Exited {
        component: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{component} was not ready within {seconds} s (last error: {last}); see {log}")]
    NotReady {
        component: String,
        seconds: u64,
        last: String,
        log: PathBuf,
    },

    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error("{what} is not valid YAML/JSON: {message}")]
    Parse { what: String, message: String },

    #[error("CNPG Cluster CRD: {0}")]
    CnpgCrd(String),

    #[error("{0} did not happen within {1} s")]
    Timeout(String, u64),

    #[error("no lab region or component named {0:?}; known: {1}")]
    UnknownComponent(String, String),

    #[error(
        "the lab directory {dir} cannot hold PostgreSQL data: the lab runs as root, so the \
         emulators run PostgreSQL as the OS user {user:?}, and {user:?} cannot enter {blocked} \
         (mode {mode:04o}, owner uid {owner}; entering a directory needs its search (x) \
         permission). Fix: `chmod o+x {blocked}` (`mktemp -d` makes 0700 directories), or \
         pass a --dir {user:?} can reach (the default .lab/ of the repository is fine)"
    )]
    DirNotEnterable {
        dir: PathBuf,
        blocked: PathBuf,
        user: String,
        mode: u32,
        owner: u32,
    },

    #[error("lab configuration: {0}")]
    Config(String),

    #[error("the lab in {0} is not running (no state file); run `federator-lab up --dir {0}`")]
    NotRunning(PathBuf),
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LabError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| LabError::Kube { action, source }
    }
}
