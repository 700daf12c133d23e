//! [`CredentialSet`]: every member credential from every configured source, merged into one
//! [`Snapshot`] that is republished whenever a source changes — without a restart.
//!
//! Reload triggers, none of them a polling loop:
//! - hub Secrets: a kube-runtime watcher per format, so an edit is seen within the watch latency;
//! - the directory: [`CredentialSet::refresh_directory`], a `stat` of the directory that re-reads
//!   only when a file's size, mtime or inode changed (the controller calls it on every
//!   reconcile), and SIGHUP ([`CredentialSet::reload_on_sighup`]), which always re-reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::argocd;
use crate::credential::MemberCredential;
use crate::directory::{self, Fingerprint};
use crate::error::{CredentialError, Result};
use crate::kubeconfig::Trust;
use crate::origin::SecretFormat;
use crate::secrets;

/// Where member credentials come from.
#[derive(Debug, Clone, Default)]
pub struct CredentialOptions {
    /// A directory of kubeconfig files, one per member (see [`crate::directory`]).
    pub directory: Option<PathBuf>,
    /// Hub namespace whose Federator-format Secrets are read (`federator-system`).
    pub secret_namespace: Option<String>,
    /// Hub namespace whose Argo CD cluster Secrets are read (Argo CD's own, usually `argocd`).
    pub argocd_namespace: Option<String>,
    /// What the operator trusts beyond the safe default (auth plugins, insecure TLS): off
    /// unless opted in.
    pub trust: Trust,
}

/// A credential, or why a source yielded none. Shared, because snapshots are cloned per change.
type Entry = std::result::Result<MemberCredential, Arc<CredentialError>>;

/// The merged view of all sources at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Usable credentials by member name.
    pub members: BTreeMap<String, MemberCredential>,
    /// Everything that is wrong: refused or unreadable credentials, conflicts, failing watches.
    /// The messages hold no credential content and may go to logs, Events and status.
    pub problems: Vec<Arc<CredentialError>>,
    /// Every configured Secret source has completed its first full list, so a member missing
    /// from `members` is really absent (not just not seen yet).
    pub complete: bool,
}

impl Snapshot {
    pub fn get(&self, member: &str) -> Option<&MemberCredential> {
        self.members.get(member)
    }

    /// Problems about `member` (why it has no credential, or a conflict).
    pub fn problems_of<'a>(&'a self, member: &'a str) -> impl Iterator<Item = &'a CredentialError> {
        self.problems
            .iter()
            .map(Arc::as_ref)
            .filter(move |p| p.member() == Some(member))
    }

    /// Same credentials, problems and completeness: nothing to republish.
    fn same_as(&self, other: &Self) -> bool {
        self.complete == other.complete
            && self.members.len() == other.members.len()
            && self
                .members
                .values()
                .zip(other.members.values())
                .all(|(a, b)| a.same_as(b))
            && self.problems.len() == other.problems.len()
            && self
                .problems
                .iter()
                .zip(&other.problems)
                .all(|(a, b)| a.to_string() == b.to_string())
    }
}

/// Merges every source's entries. A member defined by two sources is a conflict and gets no
/// credential: picking one would be a guess about which the operator meant.
fn merge<'a>(entries: impl Iterator<Item = &'a Entry>, complete: bool) -> Snapshot {
    let mut by_member: BTreeMap<&str, Vec<&MemberCredential>> = BTreeMap::new();
    let mut problems = Vec::new();
    for entry in entries {
        match entry {
            Ok(credential) => by_member
                .entry(credential.name())
                .or_default()
                .push(credential),
            Err(problem) => problems.push(problem.clone()),
        }
    }
    let mut members = BTreeMap::new();
    for (name, found) in by_member {
        match found.as_slice() {
            [only] => {
                members.insert(name.to_owned(), (*only).clone());
            }
            [first, second, ..] => problems.push(Arc::new(CredentialError::Conflict {
                member: name.to_owned(),
                origins: Box::new([first.origin().clone(), second.origin().clone()]),
            })),
            [] => {}
        }
    }
    Snapshot {
        members,
        problems,
        complete,
    }
}

/// Where and how one kind of hub Secret is watched.
#[derive(Debug, Clone)]
struct SecretSourceSpec {
    namespace: String,
    format: SecretFormat,
    selector: &'static str,
    what: &'static str,
}

/// What one watched kind of hub Secret holds now.
#[derive(Default)]
struct SecretSource {
    synced: bool,
    entries: BTreeMap<(String, String), Entry>,
    watch_error: Option<Arc<CredentialError>>,
}

#[derive(Default)]
struct State {
    directory: Option<(Fingerprint, Vec<Entry>)>,
    directory_error: Option<Arc<CredentialError>>,
    /// Indexed like [`CredentialSet::secret_sources`].
    secrets: Vec<SecretSource>,
}

struct Inner {
    options: CredentialOptions,
    state: Mutex<State>,
    /// Serialises directory reloads (SIGHUP and a reconcile at once read it once each, in turn).
    directory_reload: tokio::sync::Mutex<()>,
    tx: watch::Sender<Arc<Snapshot>>,
}

/// Member credentials from all sources, kept current. Cheap to clone (shared).
#[derive(Clone)]
pub struct CredentialSet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CredentialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSet")
            .field("options", &self.inner.options)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl CredentialSet {
    /// An empty set; nothing is read until [`run`](Self::run) or a reload is called.
    pub fn new(options: CredentialOptions) -> Self {
        let sources = Self::secret_sources(&options).len();
        let state = State {
            secrets: (0..sources).map(|_| SecretSource::default()).collect(),
            ..State::default()
        };
        let (tx, _) = watch::channel(Arc::new(Snapshot {
            complete: sources == 0,
            ..Snapshot::default()
        }));
        Self {
            inner: Arc::new(Inner {
                options,
                state: Mutex::new(state),
                directory_reload: tokio::sync::Mutex::new(()),
                tx,
            }),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.tx.borrow().clone()
    }

    /// Notified with every snapshot that differs from the previous one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.tx.subscribe()
    }

    /// The configured Secret sources.
    fn secret_sources(options: &CredentialOptions) -> Vec<SecretSourceSpec> {
        let mut sources = Vec::new();
        if let Some(ns) = &options.secret_namespace {
            sources.push(SecretSourceSpec {
                namespace: ns.clone(),
                format: SecretFormat::Federator,
                selector: secrets::MEMBER_SECRET_SELECTOR,
                what: "member Secrets",
            });
        }
        if let Some(ns) = &options.argocd_namespace {
            sources.push(SecretSourceSpec {
                namespace: ns.clone(),
                format: SecretFormat::ArgoCd,
                selector: argocd::CLUSTER_SECRET_SELECTOR,
                what: "Argo CD cluster Secrets",
            });
        }
        sources
    }

    /// Re-reads the directory if a `stat` shows a change; returns whether it did. Cheap enough for
    /// every reconcile. Without a configured directory, does nothing.
    pub async fn refresh_directory(&self) -> Result<bool> {
        self.load_directory(false).await
    }

    /// Re-reads the directory unconditionally (SIGHUP; mtime granularity can hide a same-size
    /// rewrite within one tick).
    pub async fn reload_directory(&self) -> Result<()> {
        self.load_directory(true).await.map(drop)
    }

    async fn load_directory(&self, force: bool) -> Result<bool> {
        let Some(dir) = &self.inner.options.directory else {
            return Ok(false);
        };
        let _one_at_a_time = self.inner.directory_reload.lock().await;
        let outcome = async {
            if !force {
                let now = directory::fingerprint(dir)?;
                let state = self.inner.state.lock().expect("credential state lock");
                if state
                    .directory
                    .as_ref()
                    .is_some_and(|(seen, _)| *seen == now)
                {
                    return Ok(None);
                }
            }
            directory::load(dir, self.inner.options.trust)
                .await
                .map(Some)
        }
        .await;
        let mut state = self.inner.state.lock().expect("credential state lock");
        let changed = match outcome {
            Ok(None) => false,
            Ok(Some(load)) => {
                let entries = load
                    .results
                    .into_iter()
                    .map(|r| r.map_err(Arc::new))
                    .collect();
                state.directory = Some((load.fingerprint, entries));
                state.directory_error = None;
                true
            }
            Err(e) => {
                // Keep the last credentials read: a directory briefly missing (a volume being
                // remounted) must not cut every member off.
                let e = Arc::new(e);
                state.directory_error = Some(e.clone());
                self.publish(&state);
                return Err(CredentialError::Invalid {
                    member: None,
                    origin: crate::Origin::File(dir.clone()),
                    message: e.to_string(),
                });
            }
        };
        if changed {
            self.publish(&state);
        }
        Ok(changed)
    }

    /// Installs the SIGHUP handler at once (from then on SIGHUP no longer terminates the
    /// process) and returns the task that re-reads the directory on every SIGHUP, forever.
    /// Must be called within a tokio runtime.
    pub fn reload_on_sighup(&self) -> Result<impl Future<Output = ()> + Send + use<>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).map_err(|source| CredentialError::Io {
            action: "installing the SIGHUP handler for",
            path: self.inner.options.directory.clone().unwrap_or_default(),
            source,
        })?;
        let set = self.clone();
        Ok(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: re-reading member credentials");
                if let Err(e) = set.reload_directory().await {
                    tracing::warn!(error = %e, "re-reading member credentials");
                }
            }
        })
    }

    /// Watches the configured Secret sources on the hub until dropped.
    pub async fn watch_secrets(&self, hub: Client) {
        let sources = Self::secret_sources(&self.inner.options);
        let watches = sources
            .into_iter()
            .enumerate()
            .map(|(index, source)| self.watch_source(index, hub.clone(), source));
        futures::future::join_all(watches).await;
    }

    /// Reads the directory once, then follows every source (Secrets on `hub`, SIGHUP) until
    /// dropped. The first read's problems are in the snapshot; an error is returned only if the
    /// SIGHUP handler cannot be installed.
    pub async fn run(&self, hub: Option<Client>) -> Result<()> {
        // Before the first read, so that a SIGHUP sent right after start-up reloads rather than
        // kills.
        let hangups = self.reload_on_sighup()?;
        if let Err(e) = self.reload_directory().await {
            tracing::warn!(error = %e, "reading member credentials");
        }
        let secrets = async {
            if let Some(hub) = hub {
                self.watch_secrets(hub).await;
            }
        };
        tokio::join!(hangups, secrets);
        Ok(())
    }

    async fn watch_source(&self, index: usize, hub: Client, source: SecretSourceSpec) {
        let trust = self.inner.options.trust;
        let api: Api<Secret> = Api::namespaced(hub, &source.namespace);
        let what = format!("{} in namespace {}", source.what, source.namespace);
        let config = watcher::Config::default().labels(source.selector);
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut buffer: Option<BTreeMap<(String, String), Entry>> = None;
        while let Some(event) = events.next().await {
            let key = |s: &Secret| (s.namespace().unwrap_or_default(), s.name_any());
            // A Secret carrying both labels is read only by the source of the format it declares
            // (Argo CD's wins, see `secrets::format_of`); otherwise two sources watching one
            // namespace would each load it and report a conflict with itself.
            let convert = |s: Secret| async move {
                if secrets::format_of(&s) != Some(source.format) {
                    return None;
                }
                secrets::from_secret(&s, trust)
                    .await
                    .map(|r| r.map_err(Arc::new))
            };
            let state = match event {
                Ok(Event::Init) => {
                    buffer = Some(BTreeMap::new());
                    continue;
                }
                Ok(Event::InitApply(secret)) => {
                    let k = key(&secret);
                    if let (Some(entry), Some(buffer)) = (convert(secret).await, buffer.as_mut()) {
                        buffer.insert(k, entry);
                    }
                    continue;
                }
                Ok(Event::InitDone) => {
                    let mut state = self.inner.state.lock().expect("credential state lock");
                    let source = &mut state.secrets[index];
                    source.entries = buffer.take().unwrap_or_default();
                    source.synced = true;
                    source.watch_error = None;
                    state
                }
                Ok(Event::Apply(secret)) => {
                    let k = key(&secret);
                    let entry = convert(secret).await;
                    let mut state = self.inner.state.lock().expect("credential state lock");
                    let source = &mut state.secrets[index];
                    match entry {
                        Some(entry) => source.entries.insert(k, entry),
                        None => source.entries.remove(&k),
                    };
                    source.watch_error = None;
                    state
                }
                Ok(Event::Delete(secret)) => {
                    let mut state = self.inner.state.lock().expect("credential state lock");
                    state.secrets[index].entries.remove(&key(&secret));
                    state
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watching {what} on the hub");
                    let mut state = self.inner.state.lock().expect("credential state lock");
                    // Keep the credentials last seen: the hub being unreachable says nothing
                    // about the members.
                    state.secrets[index].watch_error = Some(Arc::new(CredentialError::HubWatch {
                        what: what.clone(),
                        message: e.to_string(),
                    }));
                    state
                }
            };
            self.publish(&state);
        }
    }

    /// Merges `state` and sends the snapshot if it differs from the current one.
    fn publish(&self, state: &State) {
        let directory = state.directory.iter().flat_map(|(_, entries)| entries);
        let secrets = state.secrets.iter().flat_map(|s| s.entries.values());
        let complete = state.secrets.iter().all(|s| s.synced);
        let mut snapshot = merge(directory.chain(secrets), complete);
        let source_errors = state
            .directory_error
            .iter()
            .chain(state.secrets.iter().filter_map(|s| s.watch_error.as_ref()));
        snapshot.problems.extend(source_errors.cloned());
        self.inner.tx.send_if_modified(|current| {
            if current.same_as(&snapshot) {
                return false;
            }
            tracing::info!(
                members = ?snapshot.members.values().map(|c| format!("{} ({})", c.name(), c.origin())).collect::<Vec<_>>(),
                problems = snapshot.problems.len(),
                "member credentials changed"
            );
            for problem in &snapshot.problems {
                tracing::warn!(%problem, "member credential problem");
            }
            *current = Arc::new(std::mem::take(&mut snapshot));
            true
        });
    }
}

#[cfg(test)]
mod tests;
