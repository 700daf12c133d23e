//! The controller's error type: each variant names the action that failed.

/// Why a reconcile failed; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {topology}: {source}")]
    WriteStatus {
        topology: String,
        #[source]
        source: kube::Error,
    },
    /// Someone wrote the topology since we read it: our view is stale, so we must not act on it.
    #[error("the status of {0} changed since it was read (resourceVersion precondition)")]
    Conflict(String),
    #[error("this controller is not the leader; nothing is written")]
    NotLeader,
    #[error("{action} timed out after {seconds}s")]
    Timeout { action: String, seconds: u64 },
    #[error("no client for member cluster {cluster}: {reason}")]
    MemberClient { cluster: String, reason: String },
    #[error("member {0} is not in spec.members")]
    UnknownMember(String),
    #[error("refusing to send a patch outside spec.replica to {0}")]
    PatchOutsideReplica(String),
    /// Setting `spec.primary` for a due rotation failed; its scheduled time stays recorded as
    /// handled, so it is not retried (never started twice).
    #[error("starting the rotation of {topology} to {to} (setting spec.primary): {source}")]
    StartRotation {
        topology: String,
        to: String,
        #[source]
        source: kube::Error,
    },
    /// Setting `spec.primary`/`spec.failover` for an automatic failover failed; the decision
    /// stays in status and the next reconcile sets them again.
    #[error(
        "starting the automatic failover of {topology} to {to} (setting spec.primary and spec.failover): {source}"
    )]
    StartFailover {
        topology: String,
        to: String,
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the topology's finalizer failed (a 409: the object changed since it
    /// was read; the reconcile runs again).
    #[error("{action} the finalizer of {topology}: {source}")]
    Finalizer {
        action: &'static str,
        topology: String,
        #[source]
        source: kube::Error,
    },
    /// The text is redacted of credentials before it gets here.
    #[error("patching Cluster {namespace}/{name} on {cluster}: {message}")]
    PatchMember {
        cluster: String,
        namespace: String,
        name: String,
        message: String,
    },
}

impl Error {
    /// A label for the reconcile error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::WriteStatus { .. } => "write_status",
            Error::Conflict(_) => "conflict",
            Error::NotLeader => "not_leader",
            Error::Timeout { .. } => "timeout",
            Error::MemberClient { .. } => "member_client",
            Error::UnknownMember(_) => "unknown_member",
            Error::PatchOutsideReplica(_) => "patch_outside_replica",
            Error::PatchMember { .. } => "patch_member",
            Error::StartRotation { .. } => "start_rotation",
            Error::StartFailover { .. } => "start_failover",
            Error::Finalizer { .. } => "finalizer",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
