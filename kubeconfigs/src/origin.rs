//! Where a credential came from, for messages: a file, or a Secret on the hub in one of the two
//! accepted formats. Holds names only, never content.

use std::fmt;
use std::path::PathBuf;

/// The format of a hub Secret holding a member credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretFormat {
    /// Federator's own: label `federator.dev/member-cluster: "true"`, data key `kubeconfig`.
    Federator,
    /// Argo CD's declarative cluster Secret: label `argocd.argoproj.io/secret-type: cluster`.
    ArgoCd,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A kubeconfig file in the credentials directory.
    File(PathBuf),
    /// A Secret on the hub.
    Secret {
        format: SecretFormat,
        namespace: String,
        name: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Secret {
                format: SecretFormat::Federator,
                namespace,
                name,
            } => write!(f, "Secret {namespace}/{name}"),
            Self::Secret {
                format: SecretFormat::ArgoCd,
                namespace,
                name,
            } => write!(f, "Argo CD cluster Secret {namespace}/{name}"),
        }
    }
}
