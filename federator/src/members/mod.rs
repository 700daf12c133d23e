//! The member pool: one client per member cluster (rebuilt when its credential changes) and, per
//! member and watched namespace, a kube-runtime watcher on CNPG `Cluster`s feeding one shared
//! store. Every real change is announced as a [`MemberEvent`], so the controller reacts to
//! members without polling, and each member's [`Reachability`] is tracked for status and metrics.
//!
//! ```no_run
//! # async fn f(credentials: kubeconfigs::CredentialSet) {
//! use federator::members::MemberPool;
//! let pool = MemberPool::new(["databases"]);
//! tokio::spawn({ let pool = pool.clone(); async move { pool.run(credentials.subscribe()).await } });
//! let events = pool.events(); // -> map to DistributedTopology refs -> Controller::reconcile_on
//! # }
//! ```

mod events;
mod key;
mod liveness;
mod reachability;
mod store;
mod tokens;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::Stream;
use kube::Client;
use kube::runtime::watcher;
use kubeconfigs::{MemberCredential, Snapshot, Timeouts};
use tokio::sync::broadcast;
use topology::cnpg::Cluster;

pub use events::MemberEvent;
pub use key::ClusterKey;
pub use liveness::{DEADLINE as PROBE_DEADLINE, INTERVAL as PROBE_INTERVAL, Liveness};
pub use reachability::{MemberHealth, Reachability};
pub use tokens::RetainedToken;

use liveness::{Probe, ProbeTarget};
use reachability::WatchHealth;
use store::ClusterStore;
use watch::{AbortOnDrop, Target};

/// Room for bursts (a relist of a big namespace); a consumer further behind gets `Resync`.
const EVENT_BUFFER: usize = 1024;

/// What the pool knows about one Cluster.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The watcher has the object, and the member is reachable.
    Seen(Arc<Cluster>),
    /// The member is reachable and listed the namespace: there is no such Cluster.
    Missing,
    /// The namespace's first list on that member has not completed yet (just started watching).
    Syncing,
    /// The member cannot be read; the text says why and holds no credential.
    Unreachable(String),
}

/// Member clients, watches and the Clusters they saw. Cheap to clone (shared).
#[derive(Clone)]
pub struct MemberPool {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    runtime: tokio::runtime::Handle,
    liveness: Liveness,
    state: Mutex<State>,
    events: broadcast::Sender<MemberEvent>,
}

#[derive(Default)]
struct State {
    /// Watched on every member.
    namespaces: BTreeSet<String>,
    members: BTreeMap<String, Member>,
    /// Members named by a credential problem and without a usable credential: why.
    no_credential: BTreeMap<String, String>,
    clusters: ClusterStore,
    health: BTreeMap<String, MemberHealth>,
    /// Member entries and watch tasks are numbered from here.
    next_generation: u64,
    /// Watch attempts the member's API server refused, by member and status (401, 403).
    refusals: BTreeMap<(String, u16), u64>,
}

struct Member {
    credential: MemberCredential,
    /// Tells this entry's watch tasks from those of a replaced one.
    generation: u64,
    /// For gets and patches: a hung member fails within [`Timeouts::REQUESTS`].
    requests: Result<Client, String>,
    /// For watches: no read timeout (the watcher has its own idle timeout).
    watches_client: Result<Client, String>,
    watches: BTreeMap<String, Watch>,
    /// Why its API server does not answer the liveness probe (redacted); `None` while it
    /// answers or before the first probe ended. Overrides what the watches say: a blackholed
    /// watch never fails (`liveness.rs`).
    silent: Option<String>,
    _probe: Option<AbortOnDrop>,
}

struct Watch {
    /// Tells this watch's events from those of the task it replaced (a restart).
    id: u64,
    health: WatchHealth,
    _task: Option<AbortOnDrop>,
}

impl std::fmt::Debug for MemberPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberPool")
            .field("reachability", &self.reachability())
            .finish_non_exhaustive()
    }
}

impl MemberPool {
    /// A pool watching `namespaces` on every member (more can be added with
    /// [`watch_namespace`](Self::watch_namespace), or implicitly by [`read`](Self::read)).
    /// Must be called within a tokio runtime: watch tasks are spawned on it.
    pub fn new<S: Into<String>>(namespaces: impl IntoIterator<Item = S>) -> Self {
        Self::with_liveness(namespaces, Liveness::default())
    }

    /// As [`new`](Self::new), probing each member's API server with `liveness`'s timing.
    pub fn with_liveness<S: Into<String>>(
        namespaces: impl IntoIterator<Item = S>,
        liveness: Liveness,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let state = State {
            namespaces: namespaces.into_iter().map(Into::into).collect(),
            ..State::default()
        };
        Self {
            inner: Arc::new(Inner {
                runtime: tokio::runtime::Handle::current(),
                liveness,
                state: Mutex::new(state),
                events,
            }),
        }
    }

    /// Follows credential snapshots until the sender is dropped: members are added, rebuilt when
    /// their credential changes, and removed when it goes away.
    pub async fn run(&self, mut credentials: tokio::sync::watch::Receiver<Arc<Snapshot>>) {
        loop {
            let snapshot = credentials.borrow_and_update().clone();
            self.apply_credentials(&snapshot);
            if credentials.changed().await.is_err() {
                return;
            }
        }
    }

    /// Brings the members in line with `snapshot`. Unchanged credentials keep their clients and
    /// watches.
    pub fn apply_credentials(&self, snapshot: &Snapshot) {
        let mut state = self.inner.lock();
        let mut touched = BTreeSet::new();
        let gone: Vec<String> = state
            .members
            .keys()
            .filter(|m| !snapshot.members.contains_key(*m))
            .cloned()
            .collect();
        for member in gone {
            state.members.remove(&member);
            let removed = state.clusters.replace(&member, None, Vec::new());
            self.inner
                .announce(removed.into_iter().map(MemberEvent::Cluster));
            touched.insert(member);
        }
        for (name, credential) in &snapshot.members {
            if state
                .members
                .get(name)
                .is_some_and(|m| m.credential.same_as(credential))
            {
                continue;
            }
            state.next_generation += 1;
            let generation = state.next_generation;
            let build = |timeouts| credential.client(timeouts).map_err(|e| e.to_string());
            let requests = build(Timeouts::REQUESTS);
            let probe = requests.as_ref().ok().map(|client| {
                let target = ProbeTarget {
                    member: name.clone(),
                    generation,
                };
                liveness::spawn(
                    &self.inner.runtime,
                    Arc::downgrade(&self.inner),
                    target,
                    client.clone(),
                    self.inner.liveness,
                )
            });
            let member = Member {
                credential: credential.clone(),
                generation,
                requests,
                watches_client: build(Timeouts::WATCHES),
                watches: BTreeMap::new(),
                silent: None,
                _probe: probe,
            };
            // Replacing the entry drops (aborts) the old watches.
            state.members.insert(name.clone(), member);
            let namespaces: Vec<String> = state.namespaces.iter().cloned().collect();
            for namespace in namespaces {
                self.inner.start_watch(&mut state, name, &namespace);
            }
            touched.insert(name.clone());
        }
        state.no_credential = snapshot
            .problems
            .iter()
            .filter_map(|p| Some((p.member()?.to_owned(), p.to_string())))
            .filter(|(member, _)| !snapshot.members.contains_key(member))
            .collect();
        // Members that lost their credential are in `health` still: refresh_health drops them
        // and announces it.
        touched.extend(state.health.keys().cloned());
        touched.extend(state.no_credential.keys().cloned());
        for member in touched {
            self.inner.refresh_health(&mut state, &member);
        }
    }

    /// Watches `namespace` on every member from now on.
    pub fn watch_namespace(&self, namespace: &str) {
        let mut state = self.inner.lock();
        if !state.namespaces.insert(namespace.to_owned()) {
            return;
        }
        let members: Vec<String> = state.members.keys().cloned().collect();
        for member in members {
            self.inner.start_watch(&mut state, &member, namespace);
            self.inner.refresh_health(&mut state, &member);
        }
    }

    /// The Cluster `namespace/name` on `member`, as last seen. Starts watching `namespace` on
    /// every member if it was not watched yet (then [`Lookup::Syncing`] until the first list; a
    /// [`MemberEvent`] follows).
    pub fn read(&self, member: &str, namespace: &str, name: &str) -> Lookup {
        if !self.inner.lock().namespaces.contains(namespace) {
            self.watch_namespace(namespace);
        }
        let state = self.inner.lock();
        let Some(entry) = state.members.get(member) else {
            return Lookup::Unreachable(state.no_credential_text(member));
        };
        if let Some(silent) = &entry.silent {
            // What the watch holds is the state before the member went silent.
            return Lookup::Unreachable(format!("member {member}: {silent}"));
        }
        let Some(watch) = entry.watches.get(namespace) else {
            return Lookup::Syncing;
        };
        if let Some(error) = &watch.health.error {
            return Lookup::Unreachable(format!("member {member}: {error}"));
        }
        if !watch.health.synced {
            return Lookup::Syncing;
        }
        let key = ClusterKey {
            member: member.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        match state.clusters.get(&key) {
            Some(cluster) => Lookup::Seen(cluster),
            None => Lookup::Missing,
        }
    }

    /// The last non-empty `status.demotionToken` the Cluster `namespace/name` on `member` showed
    /// to this pool's watcher, even if a later update wiped it (CNPG #11074). Whether it belongs
    /// to the demotion at hand is for the caller to decide from its uid, timeline and `seen_at`.
    pub fn retained_demotion_token(
        &self,
        member: &str,
        namespace: &str,
        name: &str,
    ) -> Option<RetainedToken> {
        let key = ClusterKey {
            member: member.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.inner.lock().clusters.retained_token(&key)
    }

    /// A client for requests (gets, patches) to `member`, or why there is none. Its timeouts are
    /// [`Timeouts::REQUESTS`], so an unreachable member fails within seconds.
    pub fn client(&self, member: &str) -> Result<Client, String> {
        let state = self.inner.lock();
        match state.members.get(member) {
            Some(entry) => entry.requests.clone(),
            None => Err(state.no_credential_text(member)),
        }
    }

    /// Redacts `text` with the credential of `member` (for errors of requests made with
    /// [`client`](Self::client) before they go to status or Events).
    pub fn redact(&self, member: &str, text: &str) -> String {
        match self.inner.lock().members.get(member) {
            Some(entry) => entry.credential.redact(text),
            None => text.to_owned(),
        }
    }

    /// Every known member's reachability (members with a credential, and members named by a
    /// credential problem).
    pub fn reachability(&self) -> BTreeMap<String, MemberHealth> {
        self.inner.lock().health.clone()
    }

    /// The watches (`member/namespace`) that have not answered yet: neither finished their
    /// first list nor failed, on a member that answers the liveness probe. Empty once the pool
    /// has a picture of every member, reachable or not (`/readyz`: an unreachable member is a
    /// fact to report, not a reason to be unready).
    pub fn unanswered(&self) -> Vec<String> {
        let state = self.inner.lock();
        state
            .members
            .iter()
            .filter(|(_, entry)| entry.silent.is_none())
            .flat_map(|(member, entry)| {
                entry
                    .watches
                    .iter()
                    .filter(|(_, w)| !w.health.synced && w.health.error.is_none())
                    .map(move |(ns, _)| format!("{member}/{ns}"))
            })
            .collect()
    }

    /// Per member, how many credential problems it has now: 1 when it has no usable credential
    /// (refused, unreadable, conflicting), else one per watched namespace whose list or watch
    /// the API server refuses (401/403). Members without a problem are absent.
    pub fn credential_problems(&self) -> BTreeMap<String, usize> {
        let state = self.inner.lock();
        let mut problems: BTreeMap<String, usize> = state
            .no_credential
            .keys()
            .map(|member| (member.clone(), 1))
            .collect();
        for (member, entry) in &state.members {
            let refused = entry
                .watches
                .values()
                .filter(|w| w.health.error.as_deref().is_some_and(refused))
                .count();
            if refused > 0 {
                problems.insert(member.clone(), refused);
            }
        }
        problems
    }

    /// Watch attempts refused by a member's API server since the start, by member and HTTP
    /// status (401: the credential is not accepted; 403: it lacks a permission).
    pub fn refusals(&self) -> BTreeMap<(String, u16), u64> {
        self.inner.lock().refusals.clone()
    }

    /// Cluster changes and member state changes, from now on.
    pub fn events(&self) -> impl Stream<Item = MemberEvent> + Send + use<> {
        events::stream(self.inner.events.subscribe())
    }
}

impl State {
    fn no_credential_text(&self, member: &str) -> String {
        match self.no_credential.get(member) {
            Some(problem) => format!("{} {problem}", NO_CREDENTIAL_MARKS[0]),
            None => format!("{} {member}", NO_CREDENTIAL_MARKS[1]),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; carry on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `namespace` on `member`, unless it is watched already.
    fn start_watch(self: &Arc<Self>, state: &mut State, member: &str, namespace: &str) {
        state.next_generation += 1;
        let id = state.next_generation;
        let Some(entry) = state.members.get_mut(member) else {
            return;
        };
        if entry.watches.contains_key(namespace) {
            return;
        }
        let (health, task) = match &entry.watches_client {
            Ok(client) => {
                let target = Target {
                    member: member.to_owned(),
                    generation: entry.generation,
                    watch: id,
                    namespace: namespace.to_owned(),
                };
                let task =
                    watch::spawn(&self.runtime, Arc::downgrade(self), target, client.clone());
                (WatchHealth::default(), Some(task))
            }
            Err(error) => (
                WatchHealth {
                    synced: false,
                    error: Some(error.clone()),
                },
                None,
            ),
        };
        entry.watches.insert(
            namespace.to_owned(),
            Watch {
                id,
                health,
                _task: task,
            },
        );
    }

    /// Applies one liveness probe's result: a member that stops answering is unreachable at once
    /// (whatever its watches say); one that answers again gets new watches, which relist.
    fn on_probe(self: &Arc<Self>, target: &ProbeTarget, found: Probe) {
        let deadline = self.liveness.deadline;
        let mut state = self.lock();
        let member = target.member.as_str();
        let Some(entry) = state
            .members
            .get_mut(member)
            .filter(|m| m.generation == target.generation)
        else {
            return;
        };
        let silent = found
            .unreachable_text(member, &entry.credential.server(), deadline)
            .map(|text| entry.credential.redact(&text));
        if silent == entry.silent {
            return;
        }
        let recovered = silent.is_none();
        match &silent {
            Some(why) => tracing::warn!(member, error = %why, "member API server does not answer"),
            None => tracing::info!(
                member,
                "member API server answers again; restarting its watches"
            ),
        }
        entry.silent = silent;
        if recovered {
            // A watch connection that lived through the outage may be dead without knowing it
            // (no reset ever arrives): replace every watch; their first list brings the store
            // up to date.
            let namespaces: Vec<String> = std::mem::take(&mut entry.watches).into_keys().collect();
            for namespace in namespaces {
                self.start_watch(&mut state, member, &namespace);
            }
        }
        self.announce([MemberEvent::Member(member.to_owned())]);
        self.refresh_health(&mut state, member);
    }

    fn announce(&self, events: impl IntoIterator<Item = MemberEvent>) {
        for event in events {
            // No receiver is not an error: nobody listens yet.
            let _ = self.events.send(event);
        }
    }

    /// Recomputes `member`'s reachability; announces a change.
    fn refresh_health(&self, state: &mut State, member: &str) {
        let (reachability, origin) = match state.members.get(member) {
            Some(entry) => (
                match &entry.silent {
                    Some(error) => Reachability::Unreachable {
                        error: error.clone(),
                    },
                    None => reachability::of_watches(entry.watches.values().map(|w| &w.health)),
                },
                Some(entry.credential.origin().to_string()),
            ),
            None => match state.no_credential.get(member) {
                Some(error) => (
                    Reachability::NoCredential {
                        error: error.clone(),
                    },
                    None,
                ),
                None => {
                    if state.health.remove(member).is_some() {
                        self.announce([MemberEvent::Member(member.to_owned())]);
                    }
                    return;
                }
            },
        };
        if reachability::update(&mut state.health, member, reachability, origin) {
            tracing::info!(member, health = ?state.health[member].reachability, "member reachability");
            self.announce([MemberEvent::Member(member.to_owned())]);
        }
    }

    /// Applies one event of a watch task.
    fn on_watch_event(
        &self,
        target: &Target,
        event: Result<watcher::Event<Cluster>, watcher::Error>,
        listing: &mut Vec<Cluster>,
    ) {
        let mut state = self.lock();
        let State {
            members,
            clusters,
            refusals,
            ..
        } = &mut *state;
        let Some(entry) = members
            .get_mut(&target.member)
            .filter(|m| m.generation == target.generation)
        else {
            return;
        };
        let Some(watch) = entry
            .watches
            .get_mut(&target.namespace)
            .filter(|w| w.id == target.watch)
        else {
            return;
        };
        let member = target.member.as_str();
        let error_before = watch.health.error.clone();
        let changed: Vec<ClusterKey> = match event {
            // Emitted before the list request: proves nothing about reachability yet.
            Ok(watcher::Event::Init) => {
                listing.clear();
                Vec::new()
            }
            Ok(watcher::Event::InitApply(cluster)) => {
                listing.push(cluster);
                watch.health.error = None;
                Vec::new()
            }
            Ok(watcher::Event::InitDone) => {
                watch.health.synced = true;
                watch.health.error = None;
                clusters.replace(member, Some(&target.namespace), std::mem::take(listing))
            }
            Ok(watcher::Event::Apply(cluster)) => {
                watch.health.error = None;
                clusters.apply(member, cluster).into_iter().collect()
            }
            Ok(watcher::Event::Delete(cluster)) => {
                watch.health.error = None;
                clusters
                    .delete(&ClusterKey::of(member, &cluster))
                    .into_iter()
                    .collect()
            }
            Err(error) => {
                let text = match watch::status_code(&error) {
                    Some(code @ (401 | 403)) => {
                        *refusals.entry((member.to_owned(), code)).or_default() += 1;
                        refused_text(target, &error, code)
                    }
                    _ => error.to_string(),
                };
                let text = entry.credential.redact(&text);
                // Once per distinct error, not per retry.
                if watch.health.error.as_ref() != Some(&text) {
                    tracing::warn!(member, namespace = %target.namespace, error = %text, "member watch failed");
                }
                watch.health.error = Some(text);
                Vec::new()
            }
        };
        // A namespace that starts or stops failing changes what reads there answer, even when
        // the member as a whole stays reachable: wake the topologies of this member.
        let error_changed = watch.health.error != error_before;
        self.announce(changed.into_iter().map(MemberEvent::Cluster));
        if error_changed {
            self.announce([MemberEvent::Member(member.to_owned())]);
        }
        self.refresh_health(&mut state, member);
    }
}

/// The marks [`refused_text`] puts in a refused watch's error: how the controller tells a
/// permission to grant from an outage (`MemberForbidden` instead of `MemberUnreachable`).
const REFUSED_MARKS: [&str; 2] = ["(403 Forbidden)", "(401 Unauthorized"];

/// How [`Lookup::Unreachable`] texts start when the hub has no usable credential for the member
/// (its Secret was refused before any request, or no Secret names it): a Secret to fix
/// (`MemberCredentialRefused`), not an outage.
const NO_CREDENTIAL_MARKS: [&str; 2] =
    ["no usable credential:", "no credential for member cluster"];

/// Whether `why` (a [`Lookup::Unreachable`] text) says the hub holds no usable credential.
pub fn credential_refused(why: &str) -> bool {
    NO_CREDENTIAL_MARKS.iter().any(|mark| why.starts_with(mark))
}

/// Whether `why` (a [`Lookup::Unreachable`] text) says the member refused the credential.
pub fn refused(why: &str) -> bool {
    REFUSED_MARKS.iter().any(|mark| why.contains(mark))
}

/// What a refused watch means and how to fix it; `read` prefixes the member's name.
fn refused_text(target: &Target, error: &watcher::Error, code: u16) -> String {
    let (member, namespace) = (&target.member, &target.namespace);
    if code == 401 {
        return format!(
            "the API server no longer accepts the credential (401 Unauthorized; revoked or \
             expired token?) when watching Clusters in namespace {namespace}; issue a new one: \
             `federator member rotate {member}` (docs/credentials.md)"
        );
    }
    format!(
        "the credential may not {} CNPG clusters (postgresql.cnpg.io) in namespace {namespace} \
         (403 Forbidden); grant the member Role there: `federator member join {member} \
         --namespaces …,{namespace} --overwrite`, or apply deploy/member-rbac/ for namespace \
         {namespace} (docs/credentials.md)",
        watch::verb(error)
    )
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn the_texts_of_refused_watches_are_recognised_and_name_the_fix() {
        let target = Target {
            member: "eu-south".into(),
            generation: 1,
            watch: 2,
            namespace: "payments".into(),
        };
        let status = |code| kube::core::Status {
            code,
            ..kube::core::Status::default()
        };
        let list = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status(403))));
        let text = refused_text(&target, &list, 403);
        assert!(refused(&text), "{text}");
        for needed in ["may not list", "payments", "federator member join eu-south"] {
            assert!(text.contains(needed), "{needed}: {text}");
        }
        let expired = watcher::Error::WatchError(Box::new(status(401)));
        let text = refused_text(&target, &expired, 401);
        assert!(refused(&text), "{text}");
        assert!(text.contains("federator member rotate eu-south"), "{text}");
        assert!(!refused("connection refused"));
    }
}
