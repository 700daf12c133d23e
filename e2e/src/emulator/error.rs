//! The emulator's error type: one enum, each variant named for what failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("pg_controldata output lacks {0:?}")]
    ControlData(String),
    #[error("SQL on port {port}: {source}")]
    Sql {
        port: u16,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Config(String),
    #[error("no instance record for {namespace}/{name} on {member} (is the emulator running?)")]
    NoInstance {
        member: String,
        namespace: String,
        name: String,
    },
}

impl EmulatorError {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T, E = EmulatorError> = std::result::Result<T, E>;
