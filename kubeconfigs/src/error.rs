//! The one error type of the crate. Every variant names the member (when known) and where the
//! credential came from, and none of them ever carries credential content: parse errors keep only
//! a line and column, because YAML and JSON error messages quote the offending text.

use std::path::PathBuf;

use crate::origin::Origin;

/// Result alias used throughout the crate.
pub type Result<T, E = CredentialError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "member {member} ({origin}): {field} is an authentication plugin, which would run a program \
         or call an identity provider from the controller; refused. Fix: give the member a \
         ServiceAccount token or a client certificate inline, or start the controller with \
         --allow-auth-plugins if this plugin is trusted and installed"
    )]
    PluginRefused {
        member: String,
        origin: Origin,
        /// Path of the offending field, e.g. `users[0].user.exec`.
        field: String,
    },

    #[error(
        "member {member} ({origin}): {field} refers to a file on the controller's filesystem; a \
         credential stored in a Secret must carry its data inline (token, \
         certificate-authority-data, client-certificate-data, client-key-data)"
    )]
    FileReference {
        member: String,
        origin: Origin,
        field: String,
    },

    /// A setting that would weaken how the member is reached (clear text, unverified TLS, a
    /// proxy): named with the reason and the fix, never with its value.
    #[error("member {member} ({origin}): {field} {}; refused. Fix: {}", .why[0], .why[1])]
    Unsafe {
        member: String,
        origin: Origin,
        field: String,
        /// What the setting would do, and the fix (one static pair: keeps the error small).
        why: &'static [&'static str; 2],
    },

    #[error("{origin}: not a valid {format}{at}")]
    Parse {
        member: Option<String>,
        origin: Origin,
        format: &'static str,
        /// ` at line L column C`, or empty. Never the message of the parser (it quotes input).
        at: String,
    },

    #[error("{}{origin}: {message}", member_prefix(.member))]
    Invalid {
        member: Option<String>,
        origin: Origin,
        message: String,
    },

    #[error(
        "member {member} is defined twice, by {} and by {}; neither is used until one is removed",
        .origins[0], .origins[1]
    )]
    Conflict {
        member: String,
        /// Boxed: two origins inline would make every `Result` of the crate large.
        origins: Box<[Origin; 2]>,
    },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("watching {what} on the hub: {message}")]
    HubWatch { what: String, message: String },

    #[error("member {member} ({origin}): building a client: {message}")]
    Client {
        member: String,
        origin: Origin,
        /// Already redacted.
        message: String,
    },
}

fn member_prefix(member: &Option<String>) -> String {
    member
        .as_deref()
        .map(|m| format!("member {m}, "))
        .unwrap_or_default()
}

impl CredentialError {
    /// The member this error is about, when it is known.
    pub fn member(&self) -> Option<&str> {
        match self {
            Self::PluginRefused { member, .. }
            | Self::FileReference { member, .. }
            | Self::Unsafe { member, .. }
            | Self::Conflict { member, .. }
            | Self::Client { member, .. } => Some(member),
            Self::Parse { member, .. } | Self::Invalid { member, .. } => member.as_deref(),
            Self::Io { .. } | Self::HubWatch { .. } => None,
        }
    }

    pub(crate) fn io(
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
