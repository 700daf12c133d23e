//! `federator agent`: one per member region and topology. Every `renewEvery` it
//! - reads its own CNPG Cluster (role by spec, the primary it names, its own fence) and, when
//!   given a PostgreSQL URI, the WAL positions (flushed on a primary; received/replayed on a
//!   replica);
//! - acts as its region's voter: watches the heartbeat of the primary its Cluster names in its
//!   own store and, once a whole lease passed without one while that primary's region cannot be
//!   reached, takes the "lost" promise in its store;
//! - renews its member's heartbeat (with its report, and on the hub its ballot) in every voter's
//!   store at once: the hub's and every member region's;
//! - as the primary's agent, fences its own primary (CNPG's `cnpg.io/fencedInstances` on its
//!   Cluster, in its own region's store, so the fence survives a restart of the whole region)
//!   when no majority accepted a renewal for `fenceAfter`, and lifts only its own fence once a
//!   majority accepts again (`topology::autofailover::agent_action`).
//!
//! Everything it decides is decided by the pure rules in `topology::autofailover`; this module
//! is the I/O around them. Clock: `tokio::time::Instant` (monotonic).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;
use topology::DistributedTopology;
use topology::autofailover::quorum::Reach;
use topology::autofailover::record::{
    BallotReport, FENCED_BY_AGENT, Record, Report, SlowStore, lease_name,
};
use topology::autofailover::{AgentAction, AgentView, HUB_VOTER, Timing, agent_action, arm};
use topology::cnpg::{Cluster, FENCED_INSTANCES_ANNOTATION, Role};

use super::agent_metrics::{AgentMetrics, RenewalOutcome};
use super::store::{Read, Renewed, Store};
use super::voter::Voter;

/// The agent's cached view of its topology, kept in its own region's store (an annotation of
/// its own Lease there) so that an agent that starts while its hub is unreachable still knows
/// the voters and the timing, and fences fail-closed.
pub const CONFIG: &str = "federator.dev/agent-config";

/// One voter's store, as the agent reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoterRef {
    /// `hub:` or the member's name.
    pub name: String,
    /// The member's Kubernetes cluster (its kubeconfig's name); empty for the hub.
    pub cluster: String,
    pub namespace: String,
}

/// What the agent acts on, from the topology on the hub (or its cache).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    pub term: u64,
    /// The primary of `term` as the hub recorded it (None: the one the Clusters name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_primary: Option<String>,
    /// Members a failover left behind (`status.fencedMembers`, and the lost primary of the last
    /// automatic failover): a primary among them is deposed and never lifts its fence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<String>,
    /// Every voter, the hub first.
    pub voters: Vec<VoterRef>,
    /// This member's CNPG Cluster `metadata.name`.
    pub cluster_name: String,
    pub renew_every_ms: u64,
    pub fence_after_ms: u64,
    pub lease_ms: u64,
}

impl AgentConfig {
    /// From the topology as the hub serves it; `Err` names the field and the fix.
    pub fn from_topology(topo: &DistributedTopology, member: &str) -> Result<Self, String> {
        let spec = &topo.spec;
        let own = spec
            .members
            .iter()
            .find(|m| m.name == member)
            .ok_or_else(|| format!("{member} is not in spec.members of the topology"))?;
        let armed = match arm(spec) {
            None => {
                return Err("spec.automaticFailover is not set: automatic failover is off (the agent holds no heartbeat and never fences)".into());
            }
            Some(Err(problems)) => {
                return Err(format!(
                    "spec.automaticFailover is refused: {}",
                    topology::autofailover::policy::describe(&problems)
                ));
            }
            Some(Ok(armed)) => armed,
        };
        let hub_namespace = topo.metadata.namespace.clone().unwrap_or_default();
        let auto = topo
            .status
            .as_ref()
            .and_then(|s| s.automatic_failover.as_ref());
        let voters = std::iter::once(VoterRef {
            name: HUB_VOTER.to_owned(),
            cluster: String::new(),
            namespace: hub_namespace,
        })
        .chain(spec.members.iter().map(|m| VoterRef {
            name: m.name.clone(),
            cluster: m.cluster.clone(),
            namespace: m.namespace.clone(),
        }))
        .collect();
        let mut deposed: Vec<String> = topo
            .status
            .iter()
            .flat_map(|s| s.fenced_members.iter().map(|f| f.name.clone()))
            .collect();
        if let Some(d) =
            auto.and_then(|a| a.last_decision.as_ref().filter(|d| d.term + 1 == a.term))
        {
            deposed.push(d.from.clone());
        }
        Ok(AgentConfig {
            deposed,
            term: auto.map_or(1, |a| a.term),
            term_primary: auto.map(|a| a.primary.clone()),
            voters,
            cluster_name: own.cluster_name().to_owned(),
            renew_every_ms: millis(armed.timing.renew_every),
            fence_after_ms: millis(armed.timing.fence_after),
            lease_ms: millis(armed.timing.lease),
        })
    }

    pub fn timing(&self) -> Timing {
        Timing {
            renew_every: Duration::from_millis(self.renew_every_ms),
            fence_after: Duration::from_millis(self.fence_after_ms),
            lease: Duration::from_millis(self.lease_ms),
            ..Timing::DEFAULT
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why the hub gave no configuration.
enum HubSays {
    /// Automatic failover is not set or refused there: the agent stands down.
    Off(String),
    /// The hub refused the agent's credential: the agent keeps acting on what it knew.
    Forbidden(String),
}

/// Where the agent runs and what it may reach.
pub struct Agent {
    pub hub: kube::Client,
    pub hub_namespace: String,
    pub topology: String,
    pub member: String,
    /// Its own region: the Kubernetes cluster key and the namespace of its Cluster.
    pub cluster: String,
    pub namespace: String,
    /// A client per member Kubernetes cluster (its own included), by cluster key.
    pub regions: BTreeMap<String, kube::Client>,
    /// PostgreSQL of its own Cluster, for `pg_is_in_recovery()` and WAL positions.
    pub postgres: Option<String>,
    /// What its probes read (`/healthz`, `/readyz`).
    pub health: Arc<Health>,
}

/// The agent's liveness and readiness, for its probes: alive while its loop finishes rounds,
/// ready once its permission check found nothing missing.
#[derive(Default)]
pub struct Health {
    started: std::sync::OnceLock<Instant>,
    /// When the last round finished (ms since `started`), and the period then.
    last_round_ms: AtomicU64,
    renew_every_ms: AtomicU64,
    /// The permissions found missing at start (empty: ready); `None` before the check.
    missing: std::sync::Mutex<Option<Vec<String>>>,
    /// Each voter's store as the renewals saw it (`/metrics`).
    metrics: AgentMetrics,
}

impl Health {
    fn since_start(&self) -> Duration {
        self.started.get_or_init(Instant::now).elapsed()
    }

    fn round_done(&self, every: Duration) {
        self.last_round_ms
            .store(millis(self.since_start()), Ordering::Relaxed);
        self.renew_every_ms.store(millis(every), Ordering::Relaxed);
    }

    /// Records one renewal in `voter`'s store: how long it took, its bound, and its answer
    /// (`None`: none within the bound).
    fn renewed(&self, voter: &str, took: Duration, bound: Duration, answer: Option<&Renewed>) {
        let outcome = match answer {
            Some(Renewed::Accepted) => RenewalOutcome::Accepted,
            Some(Renewed::Refused { .. }) => RenewalOutcome::Refused,
            None => RenewalOutcome::Unanswered,
        };
        self.metrics
            .renewed(voter, took.as_secs_f64(), bound.as_secs_f64(), outcome);
    }

    /// The agent's metrics in the OpenMetrics text format ([`AgentMetrics`]).
    pub fn metrics(&self) -> String {
        self.metrics.encode()
    }

    /// Records the permission check's outcome.
    pub fn checked(&self, missing: Vec<String>) {
        if let Ok(mut m) = self.missing.lock() {
            *m = Some(missing);
        }
    }

    /// `Err` with the reason when the loop has not finished a round for ten periods (at least
    /// 30 s): a round is bounded by about one period and a half, so the loop is stuck.
    pub fn alive(&self) -> Result<(), String> {
        let now = millis(self.since_start());
        let limit = (self.renew_every_ms.load(Ordering::Relaxed) * 10).max(30_000);
        let last = self.last_round_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) > limit {
            return Err(format!(
                "no round finished for {} ms (limit {limit} ms)",
                now - last
            ));
        }
        Ok(())
    }

    /// `Err` naming what is missing, or that the check has not run yet.
    pub fn ready(&self) -> Result<(), String> {
        match self.missing.lock().ok().and_then(|m| m.clone()) {
            None => Err("the permission check has not finished".into()),
            Some(missing) if missing.is_empty() => Ok(()),
            Some(missing) => Err(format!(
                "missing agent permissions:\n{}",
                missing.join("\n")
            )),
        }
    }
}

/// What the agent knows between rounds.
struct State {
    config: Option<AgentConfig>,
    started: Instant,
    /// When it sent the latest renewal a majority accepted (since `started`).
    last_accepted: Option<Duration>,
    /// Reach of each member region's store in the last round.
    reached: BTreeMap<String, bool>,
    voter: Voter,
    ballot: Option<BallotReport>,
    counter: u64,
    incarnation: String,
    last_fence_ms: Option<u64>,
    /// The fence as last read from (or written to) its Cluster.
    fenced: bool,
    primary: bool,
    /// The stores that gave the last round's renewal no answer within its bound, by voter: the
    /// next report carries them, so the hub can name them (`VoterStoreSlow`).
    slow: BTreeMap<String, SlowStore>,
}

/// Timeouts on every call, so that one unreachable store never delays the others' renewals.
async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Option<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "store call failed");
            None
        }
        Err(_) => {
            tracing::debug!(?limit, "store call timed out");
            None
        }
    }
}

impl Agent {
    fn store_of(&self, voter: &VoterRef) -> Option<Store> {
        let tag = format!("{}.{}", self.hub_namespace, self.topology);
        if voter.name == HUB_VOTER {
            return Some(Store::new(self.hub.clone(), &voter.namespace, tag));
        }
        let client = self.regions.get(&voter.cluster)?;
        Some(Store::new(client.clone(), &voter.namespace, tag))
    }

    fn own_store(&self) -> Option<Store> {
        let client = self.regions.get(&self.cluster)?;
        Some(Store::new(
            client.clone(),
            &self.namespace,
            format!("{}.{}", self.hub_namespace, self.topology),
        ))
    }

    fn own_lease(&self) -> String {
        lease_name(&self.hub_namespace, &self.topology, &self.member)
    }

    /// The cached config from its own region's store, when the hub cannot be read.
    async fn cached_config(&self, limit: Duration) -> Option<AgentConfig> {
        let client = self.regions.get(&self.cluster)?;
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let lease = bounded(limit, api.get_opt(&self.own_lease())).await??;
        let text = lease.metadata.annotations?.remove(CONFIG)?;
        serde_json::from_str(&text).ok()
    }

    async fn hub_config(&self, limit: Duration) -> Option<Result<AgentConfig, HubSays>> {
        let api: Api<DistributedTopology> = Api::namespaced(self.hub.clone(), &self.hub_namespace);
        let topo = match tokio::time::timeout(limit, api.get(&self.topology)).await {
            Ok(Ok(t)) => t,
            Ok(Err(kube::Error::Api(s))) if s.code == 401 || s.code == 403 => {
                return Some(Err(HubSays::Forbidden(format!(
                    "the hub refused the agent's credential ({} {}): give --hub-kubeconfig a credential that may get DistributedTopologies and get/create/patch Leases in namespace {} of the hub",
                    s.code, s.message, self.hub_namespace
                ))));
            }
            _ => return None,
        };
        Some(AgentConfig::from_topology(&topo, &self.member).map_err(HubSays::Off))
    }

    /// Its own Cluster: (primary by spec, the primary it names, its own fence marker).
    async fn own_cluster(&self, name: &str, limit: Duration) -> Option<Cluster> {
        let client = self.regions.get(&self.cluster)?;
        let api: Api<Cluster> = Api::namespaced(client.clone(), &self.namespace);
        bounded(limit, api.get(name)).await
    }

    async fn set_fence(&self, name: &str, term: Option<u64>, limit: Duration) -> bool {
        let Some(client) = self.regions.get(&self.cluster) else {
            return false;
        };
        let api: Api<Cluster> = Api::namespaced(client.clone(), &self.namespace);
        let annotations = match term {
            Some(term) => {
                json!({FENCED_INSTANCES_ANNOTATION: r#"["*"]"#, FENCED_BY_AGENT: term.to_string()})
            }
            None => json!({FENCED_INSTANCES_ANNOTATION: null, FENCED_BY_AGENT: null}),
        };
        let patch = json!({"metadata": {"annotations": annotations}});
        bounded(
            limit,
            api.patch(
                name,
                &PatchParams::apply("federator-agent"),
                &Patch::Merge(&patch),
            ),
        )
        .await
        .is_some()
    }

    /// Runs until `stop` resolves. Errors are logged and retried: the agent never exits while
    /// it may have to fence.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let mut state = State {
            config: None,
            started: Instant::now(),
            last_accepted: None,
            reached: BTreeMap::new(),
            voter: Voter::default(),
            ballot: None,
            counter: 0,
            incarnation: format!("{}-{}", std::process::id(), unique()),
            last_fence_ms: None,
            fenced: false,
            primary: false,
            slow: BTreeMap::new(),
        };
        tokio::pin!(stop);
        loop {
            let every = state
                .config
                .as_ref()
                .map_or(Timing::DEFAULT.renew_every, |c| c.timing().renew_every);
            let next = Instant::now() + every;
            self.round(&mut state).await;
            self.health.round_done(every);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }

    async fn round(&self, state: &mut State) {
        let sent = state.started.elapsed();
        let every = state
            .config
            .as_ref()
            .map_or(Timing::DEFAULT.renew_every, |c| c.timing().renew_every);
        // Reads are bounded by half a period and run together, so a round stays within about
        // one period and a half even when every store is unreachable.
        let limit = every / 2;
        let cluster_name = state.config.as_ref().map(|c| c.cluster_name.clone());
        let (from_hub, cluster) = tokio::join!(self.hub_config(limit), async {
            match &cluster_name {
                Some(name) => self.own_cluster(name, limit).await,
                None => None,
            }
        });
        // The topology from the hub, else the cache (first round only: later rounds keep theirs).
        match from_hub {
            Some(Ok(config)) => state.config = Some(config),
            Some(Err(HubSays::Forbidden(why))) => {
                // Fail-closed: keep acting on what it knew (the hub may still count this
                // member's region lost, so its primary must still fence on a lost quorum).
                tracing::error!(member = %self.member, "{why}");
                if state.config.is_none() {
                    state.config = self.cached_config(limit).await;
                }
            }
            Some(Err(HubSays::Off(why))) => {
                // Off (or refused) on the hub: nothing is promoted automatically, so nothing is
                // fenced either; a fence already set stays until a person or the hub lifts it.
                tracing::warn!(member = %self.member, "{why}");
                state.config = None;
            }
            None if state.config.is_none() => state.config = self.cached_config(limit).await,
            None => {}
        }
        let Some(config) = state.config.clone() else {
            tracing::debug!(member = %self.member, "automatic failover not armed (or no topology from the hub and none cached in its own region): nothing to renew");
            return;
        };
        let timing = config.timing();
        let cluster = match cluster {
            Some(c) => Some(c),
            None if cluster_name.is_none() => self.own_cluster(&config.cluster_name, limit).await,
            None => None,
        };
        if let Some(c) = &cluster {
            state.primary = c.role() == Role::Primary;
            state.fenced = c
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(FENCED_BY_AGENT));
        }
        let names_primary = cluster.as_ref().and_then(|c| {
            if c.role() == Role::Primary {
                Some(self.member.clone())
            } else {
                c.spec.replica.as_ref().and_then(|r| r.primary.clone())
            }
        });
        let mut report = Report {
            primary: state.primary,
            names_primary: names_primary.clone(),
            fenced: state.fenced,
            last_fence_ms: state.last_fence_ms,
            slow_stores: state.slow.values().cloned().collect(),
            ..Report::default()
        };
        if let Some(uri) = &self.postgres {
            positions(uri, &mut report, limit).await;
        }

        // The voter's part, about the primary its own Cluster names.
        let now = state.started.elapsed();
        if let (Some(subject), Some(store)) = (
            names_primary.clone().filter(|p| *p != self.member),
            self.own_store(),
        ) {
            let name = lease_name(&self.hub_namespace, &self.topology, &subject);
            if let Some(read) = bounded(limit, store.read(&name)).await {
                state
                    .voter
                    .observe(&subject, read.as_ref(), config.term, now);
                let reach = match state.reached.get(&subject) {
                    Some(false) => Reach::Unreachable,
                    _ => Reach::Reachable,
                };
                if let Some(p) =
                    state
                        .voter
                        .propose(&self.member, &subject, reach, now, timing.lease)
                {
                    let took = !p.write
                        || bounded(
                            limit,
                            store.vote_lost(
                                &name,
                                p.ballot.term,
                                read.as_ref().map(|r: &Read| r.version.as_str()),
                            ),
                        )
                        .await
                        .unwrap_or(false);
                    if took {
                        if p.write {
                            tracing::warn!(member = %self.member, primary = %subject, term = p.ballot.term, "voted the primary's region lost: no heartbeat for a whole lease and its region cannot be reached");
                        }
                        state.ballot = Some(BallotReport {
                            about: subject.clone(),
                            term: p.ballot.term,
                            lost: p.ballot.lost,
                            heartbeat_age_ms: millis(p.ballot.heartbeat_age),
                        });
                        state.voter.commit(&subject, p);
                    }
                }
            }
        }

        // Renew with every voter at once.
        state.counter += 1;
        let renewal = format!("{}/{}", state.incarnation, state.counter);
        let base = Record::renewal_annotations(config.term, &renewal, &report, None);
        let with_ballot =
            Record::renewal_annotations(config.term, &renewal, &report, state.ballot.as_ref());
        let mut own = base.clone();
        own.insert(
            CONFIG.to_owned(),
            serde_json::to_string(&config).unwrap_or_default(),
        );
        let lease = self.own_lease();
        let calls = config.voters.iter().map(|v| {
            let store = self.store_of(v);
            let annotations = if v.name == HUB_VOTER {
                &with_ballot
            } else if v.name == self.member {
                &own
            } else {
                &base
            };
            let lease = &lease;
            async move {
                let began = Instant::now();
                let Some(store) = store else {
                    return (v.name.clone(), None, began.elapsed());
                };
                let answer = bounded(every, store.renew(lease, config.term, annotations)).await;
                (v.name.clone(), answer, began.elapsed())
            }
        });
        // A primary's renewals never delay its fence past its deadline.
        let deadline = state
            .last_accepted
            .filter(|_| state.primary && !state.fenced)
            .map_or(sent + timing.fence_after.max(every), |at| {
                at + timing.fence_after
            });
        let calls_began = Instant::now();
        let until = state.started + deadline.max(state.started.elapsed());
        let answers = match tokio::time::timeout_at(until, join_all(calls)).await {
            Ok(answers) => answers,
            Err(_) => {
                // The fence deadline cut the round short: no store answered in time.
                let took = calls_began.elapsed();
                for v in &config.voters {
                    self.health.renewed(&v.name, took, took, None);
                }
                Vec::new()
            }
        };
        let mut accepted = 0;
        for (voter, answer, took) in &answers {
            self.health.renewed(voter, *took, every, answer.as_ref());
            state.reached.insert(voter.clone(), answer.is_some());
            note_slow(&mut state.slow, voter, answer.is_some(), *took, every);
            match answer {
                Some(Renewed::Accepted) => accepted += 1,
                Some(Renewed::Refused { term, lost_term }) => {
                    tracing::warn!(member = %self.member, %voter, term, ?lost_term, "renewal refused");
                }
                None => {}
            }
        }
        if accepted > config.voters.len() / 2 {
            state.last_accepted = Some(sent);
        } else {
            let outcome: Vec<String> = answers
                .iter()
                .map(|(voter, answer, took)| format!("{voter}: {answer:?} in {took:?}"))
                .collect();
            tracing::warn!(member = %self.member, round_took = ?state.started.elapsed().saturating_sub(sent), ?outcome, "no majority accepted this round's renewal");
        }

        // The fence decision. A member a failover left behind is deposed: its fence stays until
        // it is re-cloned (the hub makes it a replica on return). A member that became primary by
        // a planned switchover is not: the term catches up once the switchover ends.
        let deposed = state.primary && config.deposed.contains(&self.member);
        let view = AgentView {
            now: state.started.elapsed(),
            started_at: Duration::ZERO,
            last_accepted_sent_at: state.last_accepted,
            primary: state.primary,
            fenced: state.fenced,
        };
        let action = match agent_action(&timing, &view) {
            AgentAction::Unfence if deposed => AgentAction::Renew,
            _ if deposed && !state.fenced => {
                AgentAction::Fence(topology::autofailover::agent::FenceReason::NoQuorumAtStart)
            }
            a => a,
        };
        match action {
            AgentAction::Renew => {}
            AgentAction::Fence(reason) => {
                let began = Instant::now();
                if self
                    .set_fence(&config.cluster_name, Some(config.term), timing.fence_bound)
                    .await
                {
                    state.fenced = true;
                    tracing::warn!(member = %self.member, ?reason, accepted, voters = config.voters.len(), "fenced its own primary: no renewal accepted by a majority of voters in time");
                    if let Some(uri) = &self.postgres {
                        let took = until_not_writable(uri, timing.fence_bound * 2).await;
                        state.last_fence_ms = took.map(|_| millis(began.elapsed()));
                        tracing::info!(member = %self.member, fence_ms = ?state.last_fence_ms, "time to fence");
                    }
                } else {
                    tracing::error!(member = %self.member, "could not fence its own primary: its region's API server did not take the annotation; retrying next round");
                }
            }
            AgentAction::Unfence => {
                if self.set_fence(&config.cluster_name, None, limit).await {
                    state.fenced = false;
                    tracing::info!(member = %self.member, "lifted its own fence: a majority accepted its renewal again");
                }
            }
        }
    }
}

/// Keeps `slow` (by voter) after one renewal in `voter`'s store that took `took` against its
/// `bound`: a renewal that gave no answer for the whole bound counts one more round in a row; an
/// answer (or a failure before the bound: a refused connection is unreachable, not slow) clears
/// it. A round cut short by the fence deadline is not passed here: it says nothing of a store.
fn note_slow(
    slow: &mut BTreeMap<String, SlowStore>,
    voter: &str,
    answered: bool,
    took: Duration,
    bound: Duration,
) {
    if answered || took < bound {
        slow.remove(voter);
        return;
    }
    let entry = slow.entry(voter.to_owned()).or_insert_with(|| SlowStore {
        voter: voter.to_owned(),
        bound_ms: millis(bound),
        rounds: 0,
    });
    entry.bound_ms = millis(bound);
    entry.rounds = entry.rounds.saturating_add(1);
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

async fn connect(uri: &str, limit: Duration) -> Option<tokio_postgres::Client> {
    let (client, conn) =
        tokio::time::timeout(limit, tokio_postgres::connect(uri, tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(conn);
    Some(client)
}

/// Fills the WAL positions of `report` from PostgreSQL (left unknown when it does not answer).
async fn positions(uri: &str, report: &mut Report, limit: Duration) {
    let Some(client) = connect(uri, limit).await else {
        return;
    };
    let query = client.query_one(
        "SELECT pg_is_in_recovery(), \
         CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END, \
         pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
         (SELECT timeline_id FROM pg_control_checkpoint())::int4",
        &[],
    );
    let Ok(Ok(row)) = tokio::time::timeout(limit, query).await else {
        return;
    };
    let in_recovery: bool = row.get(0);
    report.writable = Some(!in_recovery);
    report.flushed = row.get(1);
    report.received = row.get(2);
    report.replayed = row.get(3);
    report.timeline = row
        .get::<_, Option<i32>>(4)
        .and_then(|t| u32::try_from(t).ok());
}

/// Waits until PostgreSQL refuses writes (gone, or in recovery); `None` past `limit`.
async fn until_not_writable(uri: &str, limit: Duration) -> Option<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let writable = match connect(uri, Duration::from_millis(500)).await {
            None => false,
            Some(c) => matches!(
                tokio::time::timeout(
                    Duration::from_millis(500),
                    c.query_one("SELECT NOT pg_is_in_recovery()", &[])
                )
                .await,
                Ok(Ok(row)) if row.get::<_, bool>(0)
            ),
        };
        if !writable {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_silent_for_the_whole_bound_is_reported_slow_until_it_answers() {
        let bound = Duration::from_secs(2);
        let mut slow = BTreeMap::new();
        // Silent for the whole bound, twice in a row: slow, two rounds.
        note_slow(&mut slow, "pg-b", false, bound, bound);
        note_slow(
            &mut slow,
            "pg-b",
            false,
            bound + Duration::from_millis(3),
            bound,
        );
        // A refused connection fails before the bound: unreachable, not slow.
        note_slow(&mut slow, "hub:", false, Duration::from_millis(5), bound);
        assert_eq!(
            slow.values().cloned().collect::<Vec<_>>(),
            [SlowStore {
                voter: "pg-b".into(),
                bound_ms: 2000,
                rounds: 2
            }]
        );
        // Any answer within the bound clears it.
        note_slow(&mut slow, "pg-b", true, Duration::from_millis(1_900), bound);
        assert!(slow.is_empty(), "{slow:?}");
    }

    #[test]
    fn metrics_show_each_stores_latency_against_its_bound_and_its_unanswered_renewals() {
        let health = Health::default();
        let bound = Duration::from_secs(2);
        health.renewed(
            "hub:",
            Duration::from_millis(40),
            bound,
            Some(&Renewed::Accepted),
        );
        health.renewed(
            "pg-b",
            Duration::from_millis(1_900),
            bound,
            Some(&Renewed::Accepted),
        );
        // The slow store: refused once, then silent for the whole bound.
        let refused = Renewed::Refused {
            term: 2,
            lost_term: Some(2),
        };
        health.renewed("pg-a", Duration::from_millis(30), bound, Some(&refused));
        health.renewed("pg-a", Duration::from_secs(5), bound, None);
        let text = health.metrics();
        let sample = |name: &str, labels: &str| -> f64 {
            let key = format!("{name}{{{labels}}} ");
            let line = text
                .lines()
                .find(|l| l.starts_with(&key))
                .unwrap_or_else(|| panic!("{key} not in\n{text}"));
            line[key.len()..].parse().expect("a number")
        };
        let latency = "federator_agent_store_renewal_seconds";
        assert_eq!(sample(latency, r#"voter="hub:""#), 0.04);
        assert_eq!(sample(latency, r#"voter="pg-b""#), 1.9);
        // A renewal that did not answer shows its bound, never longer.
        assert_eq!(sample(latency, r#"voter="pg-a""#), 2.0);
        assert_eq!(
            sample(
                "federator_agent_store_renewal_bound_seconds",
                r#"voter="pg-a""#
            ),
            2.0
        );
        let renewals = "federator_agent_store_renewals_total";
        assert_eq!(sample(renewals, r#"voter="pg-a",outcome="refused""#), 1.0);
        assert_eq!(
            sample(renewals, r#"voter="pg-a",outcome="unanswered""#),
            1.0
        );
        assert_eq!(sample(renewals, r#"voter="hub:",outcome="accepted""#), 1.0);
        assert!(
            text.lines()
                .any(|l| l == "# TYPE federator_agent_store_renewals counter"),
            "{text}"
        );
    }
}
