//! One member's credential: its name, where it came from, and the `kube::Config` to reach it.
//!
//! `Debug` is written by hand and shows no secret; `kube::Config` itself is never exposed, because
//! its derived `Debug` prints auth-provider settings and exec environment variables verbatim.

use std::fmt;
use std::time::Duration;

use crate::error::{CredentialError, Result};
use crate::origin::Origin;

/// How a credential authenticates, for messages and status. Carries no secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    BearerToken,
    TokenFile,
    ClientCertificate,
    BasicAuth,
    /// An `exec` or `auth-provider` plugin (only when plugins were allowed).
    Plugin,
    Anonymous,
}

/// Timeouts of a client built from a credential.
///
/// Two presets, because one client cannot serve both: a read timeout short enough to make a hung
/// member fail fast would also cut every quiet watch (kube-runtime's watcher bounds those itself,
/// with the server-side watch timeout plus an idle margin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// `None`: no read timeout (watches).
    pub read: Option<Duration>,
    pub write: Duration,
}

impl Timeouts {
    /// For gets, lists and patches: an unreachable or hung member fails within seconds.
    pub const REQUESTS: Self = Self {
        connect: Duration::from_secs(5),
        read: Some(Duration::from_secs(15)),
        write: Duration::from_secs(10),
    };
    /// For long-lived watches: fast connect failure, no read timeout.
    pub const WATCHES: Self = Self {
        connect: Duration::from_secs(5),
        read: None,
        write: Duration::from_secs(10),
    };
}

/// A credential for one member cluster.
#[derive(Clone)]
pub struct MemberCredential {
    name: String,
    origin: Origin,
    config: kube::Config,
    auth: AuthMethod,
    /// Hash of the bytes the credential was built from; equal revisions mean an unchanged
    /// credential, so a reload that changes nothing rebuilds no client.
    revision: u64,
    /// Secret strings of this credential, only to scrub them from error texts.
    secrets: Vec<String>,
}

/// Secrets shorter than this are not scrubbed from messages: replacing every `a` of a text would
/// make it unreadable, and such values are not credentials worth the name.
const MIN_REDACTED_LEN: usize = 6;
const REDACTED: &str = "<redacted>";

impl MemberCredential {
    pub(crate) fn new(
        name: String,
        origin: Origin,
        config: kube::Config,
        auth: AuthMethod,
        revision: u64,
        secrets: Vec<String>,
    ) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_REDACTED_LEN)
            .collect();
        Self {
            name,
            origin,
            config,
            auth,
            revision,
            secrets,
        }
    }

    /// The member cluster's name (as topologies refer to it).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The API server URL.
    pub fn server(&self) -> String {
        self.config.cluster_url.to_string()
    }

    pub fn auth_method(&self) -> AuthMethod {
        self.auth
    }

    /// Changes whenever the credential's source bytes change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Same member, same source, same content.
    pub fn same_as(&self, other: &Self) -> bool {
        self.name == other.name && self.origin == other.origin && self.revision == other.revision
    }

    /// A client with the given timeouts. Building does no I/O; an unreachable member shows up on
    /// the first request, within `timeouts.connect`. Must be called within a tokio runtime (kube
    /// spawns the client's request buffer), or it panics.
    pub fn client(&self, timeouts: Timeouts) -> Result<kube::Client> {
        let mut config = self.config.clone();
        config.connect_timeout = Some(timeouts.connect);
        config.read_timeout = timeouts.read;
        config.write_timeout = Some(timeouts.write);
        // Count the read timeout from when a request is sent, not from when its pooled connection
        // went idle.
        config.reset_reader_on_write = timeouts.read.is_some();
        kube::Client::try_from(config).map_err(|e| CredentialError::Client {
            member: self.name.clone(),
            origin: self.origin.clone(),
            message: self.redact(&e.to_string()),
        })
    }

    /// `text` with every secret of this credential replaced by `<redacted>`. For error texts of
    /// requests made with it before they reach logs, Events or status.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }
}

/// `text` with every secret at least [`MIN_REDACTED_LEN`] long replaced by `<redacted>`.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= MIN_REDACTED_LEN)
        .fold(text.to_owned(), |acc, secret| {
            acc.replace(secret.as_str(), REDACTED)
        })
}

impl fmt::Debug for MemberCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberCredential")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("server", &self.config.cluster_url)
            .field("auth", &self.auth)
            .field("revision", &format_args!("{:016x}", self.revision))
            .finish_non_exhaustive()
    }
}
