//! Prometheus metrics, served on `/metrics` (OpenMetrics text) by a small axum server. Timings
//! and counters are recorded here as things happen; the state an alert looks at (leadership,
//! members, topologies, drills) is read at each scrape (`state_metrics.rs`). The reference of
//! every metric is docs/operations.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use topology::api::{DistributedTopologyStatus, Outcome, RotationStatus};
use topology::drill_api::DisasterRecoveryDrill;
use topology::{DistributedTopology, StepKind};

use super::state_metrics::{Sources, StateMetrics};
use crate::controller::Leadership;
use crate::members::MemberPool;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabel {
    /// `beforeDemotion` or `afterPromotion`.
    phase: String,
    /// `ok` or `failed` (timed out included).
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThenLabel {
    then: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabel {
    topology: String,
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopologyLabel {
    topology: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabel {
    namespace: String,
    topology: String,
    outcome: String,
    reason: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    switchover_duration: Family<OutcomeLabel, Histogram>,
    step_duration: Family<StepLabel, Histogram>,
    hook_duration: Family<HookLabel, Histogram>,
    reaction: Family<StepLabel, Histogram>,
    reaction_pickup: Family<StepLabel, Histogram>,
    status_write: Family<ThenLabel, Histogram>,
    reconcile_errors: Family<ErrorLabel, Counter>,
    reconciles: Counter,
    rotations: Family<RotationLabel, Counter>,
    drill_runs: Family<OutcomeLabel, Counter>,
    drill_duration: Family<OutcomeLabel, Histogram>,
    heartbeat_age: Family<MemberLabel, Gauge<f64, AtomicU64>>,
    fence_time: Family<MemberLabel, Gauge<f64, AtomicU64>>,
    lost_votes: Family<TopologyLabel, Gauge>,
    reach_probe: Family<MemberLabel, Gauge<f64, AtomicU64>>,
    reach_probe_failures: Family<MemberLabel, Counter>,
    automatic_failovers: Counter,
    /// What the scrape-time metrics read.
    state: StateMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The reaction target (p99 ≤ 50 ms, issue #6), in seconds: a bucket bound of
/// `federator_reaction_seconds`, so `le="0.05"` counts the reactions that met it exactly.
pub const REACTION_TARGET_SECONDS: f64 = 0.05;

/// `bounds` with `extra` added in order (once).
fn with_bound(bounds: impl Iterator<Item = f64>, extra: f64) -> impl Iterator<Item = f64> {
    let mut all: Vec<f64> = bounds.filter(|b| *b != extra).collect();
    all.push(extra);
    all.sort_by(f64::total_cmp);
    all.into_iter()
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("federator");
        // 50 ms .. ~7 min: a step can take milliseconds (a patch) or minutes (a token wait).
        let switchover_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.25, 2.0, 12))
        });
        let step_duration = Family::<StepLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 14))
        });
        // 50 ms .. ~7 min, as steps: a patch hook is quick, a Job or a scale-up takes minutes.
        let hook_duration = Family::<HookLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 14))
        });
        // 0.5 ms .. ~3 s in steps of 25%: fine enough for a p99 of a few milliseconds. Plus
        // the target itself as a bound, so that "within the target" is a count, not an
        // interpolation inside a 43–54 ms bucket.
        let reaction = Family::<StepLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(with_bound(
                exponential_buckets(0.0005, 1.25, 40),
                REACTION_TARGET_SECONDS,
            ))
        });
        let fine = || Histogram::new(exponential_buckets(0.0005, 1.25, 40));
        let reaction_pickup = Family::<StepLabel, Histogram>::new_with_constructor(fine);
        let status_write = Family::<ThenLabel, Histogram>::new_with_constructor(fine);
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        let reconciles = Counter::default();
        let rotations = Family::<RotationLabel, Counter>::default();
        let drill_runs = Family::<OutcomeLabel, Counter>::default();
        // 30 s .. ~4.5 h: a drill is two switchovers and their waits.
        let drill_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(30.0, 2.0, 10))
        });
        let heartbeat_age = Family::<MemberLabel, Gauge<f64, AtomicU64>>::default();
        let fence_time = Family::<MemberLabel, Gauge<f64, AtomicU64>>::default();
        let lost_votes = Family::<TopologyLabel, Gauge>::default();
        let reach_probe = Family::<MemberLabel, Gauge<f64, AtomicU64>>::default();
        let reach_probe_failures = Family::<MemberLabel, Counter>::default();
        let automatic_failovers = Counter::default();
        let state = StateMetrics::default();
        registry.register(
            "autofailover_heartbeat_age_seconds",
            "Automatic failover: since the hub last saw each member's agent renew its heartbeat \
             (topology = namespace/name)",
            heartbeat_age.clone(),
        );
        registry.register(
            "autofailover_fence_seconds",
            "Automatic failover: how long the agent's last fence of its own primary took to stop \
             writes, as the agent reported it",
            fence_time.clone(),
        );
        registry.register(
            "autofailover_lost_votes",
            "Automatic failover: voters counting the term's primary lost in the last vote round",
            lost_votes.clone(),
        );
        registry.register(
            "autofailover_reach_probe_seconds",
            "Automatic failover: how long the last vote round's probe of the member's region \
             (GET /version; the term's primary, and a lost primary while its failover runs) \
             took; its bound when it did not answer",
            reach_probe.clone(),
        );
        registry.register(
            "autofailover_reach_probe_failures",
            "Automatic failover: vote rounds whose probe of the member's region got no answer \
             within its bound (the hub then counts the region unreadable for that round)",
            reach_probe_failures.clone(),
        );
        registry.register(
            "automatic_failovers",
            "Automatic failovers this leader started (spec.primary and spec.failover set)",
            automatic_failovers.clone(),
        );
        registry.register(
            "switchover_duration_seconds",
            "Duration of finished switchovers, from the start of Validate to Done",
            switchover_duration.clone(),
        );
        registry.register(
            "switchover_step_duration_seconds",
            "Duration of each finished switchover step",
            step_duration.clone(),
        );
        registry.register(
            "switchover_hook_duration_seconds",
            "Duration of each hook a switchover ran (a topology's spec.hooks), by phase and \
             outcome (ok, failed); _count is the number of hook runs",
            hook_duration.clone(),
        );
        registry.register(
            "reaction_seconds",
            "From the member pool delivering a member Cluster's change to the member patch it \
             led to being sent, by the patch's step",
            reaction.clone(),
        );
        registry.register(
            "reaction_pickup_seconds",
            "The part of reaction_seconds before the reconcile that sends the patch started \
             (queued behind another reconcile of the same topology, or scheduling)",
            reaction_pickup.clone(),
        );
        registry.register(
            "status_write_seconds",
            "Writes of a topology's status (the step log) to the hub, by what follows them: \
             a member patch, or nothing",
            status_write.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by what failed",
            reconcile_errors.clone(),
        );
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "rotations",
            "Scheduled rotations decided by this leader: outcome Started (spec.primary set to \
             the next member) or Skipped (the scheduled time passed while a precondition did \
             not hold; reason: why)",
            rotations.clone(),
        );
        registry.register(
            "drill_runs",
            "Drill runs this controller finished, by outcome (Succeeded, Failed)",
            drill_runs.clone(),
        );
        registry.register(
            "drill_duration_seconds",
            "Duration of the drill runs this controller finished, from start to end, by outcome",
            drill_duration.clone(),
        );
        registry.register_collector(Box::new(state.clone()));
        Metrics {
            registry,
            switchover_duration,
            step_duration,
            hook_duration,
            reaction,
            reaction_pickup,
            status_write,
            reconcile_errors,
            reconciles,
            rotations,
            drill_runs,
            drill_duration,
            heartbeat_age,
            fence_time,
            lost_votes,
            reach_probe,
            reach_probe_failures,
            automatic_failovers,
            state,
        }
    }

    /// The vote round of `topology` (`namespace/name`): heartbeat ages, fence times, lost votes.
    pub fn heartbeats(&self, topology: &str, votes: &crate::autofailover::hub::Votes) {
        for (member, seen) in &votes.agents {
            let label = MemberLabel {
                topology: topology.to_owned(),
                member: member.clone(),
            };
            self.heartbeat_age
                .get_or_create(&label)
                .set(seen.age.as_secs_f64());
            if let Some(ms) = seen.report.as_ref().and_then(|r| r.last_fence_ms) {
                #[allow(clippy::cast_precision_loss)]
                self.fence_time
                    .get_or_create(&label)
                    .set(ms as f64 / 1000.0);
            }
        }
        let lost = votes.ballots.iter().filter(|b| b.lost).count();
        self.lost_votes
            .get_or_create(&TopologyLabel {
                topology: topology.to_owned(),
            })
            .set(i64::try_from(lost).unwrap_or(i64::MAX));
        for probe in &votes.probes {
            let label = MemberLabel {
                topology: topology.to_owned(),
                member: probe.member.clone(),
            };
            self.reach_probe
                .get_or_create(&label)
                .set(probe.took.as_secs_f64());
            if probe.failed.is_some() {
                self.reach_probe_failures.get_or_create(&label).inc();
            }
        }
    }

    pub fn automatic_failover_started(&self) {
        self.automatic_failovers.inc();
    }

    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    pub fn error(&self, label: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabel {
                error: label.to_owned(),
            })
            .inc();
    }

    /// A hook of a switchover ended (`phase`: `beforeDemotion` or `afterPromotion`).
    pub fn hook_finished(&self, phase: &str, ok: bool, took: Duration) {
        self.hook_duration
            .get_or_create(&HookLabel {
                phase: phase.to_owned(),
                outcome: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn step_finished(&self, step: StepKind, took: Duration) {
        self.step_duration
            .get_or_create(&StepLabel {
                step: step.as_str().to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A member patch of `step` is being sent, `took` after the member change it answers.
    pub fn reacted(&self, step: StepKind, took: Duration) {
        self.reaction
            .get_or_create(&StepLabel {
                step: step.as_str().to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The reconcile sending a patch of `step` started `took` after the member change it answers.
    pub fn picked_up(&self, step: StepKind, took: Duration) {
        self.reaction_pickup
            .get_or_create(&StepLabel {
                step: step.as_str().to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A status write took `took`; `patch_follows`: a member patch is sent after it.
    pub fn status_written(&self, patch_follows: bool, took: Duration) {
        self.status_write
            .get_or_create(&ThenLabel {
                then: if patch_follows { "patch" } else { "nothing" }.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn operation_finished(&self, outcome: Outcome, took: Duration) {
        self.switchover_duration
            .get_or_create(&OutcomeLabel {
                outcome: format!("{outcome:?}"),
            })
            .observe(took.as_secs_f64());
    }

    fn attach(&self, f: impl FnOnce(&mut Sources)) {
        f(&mut self.state.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// `federator_leader` reads `leader` at each scrape; topology and drill state are exported
    /// only while it leads.
    pub fn attach_leadership(&self, leader: Leadership) {
        self.attach(|s| s.leader = Some(leader));
    }

    /// Member reachability and credential problems, from `pool` at each scrape.
    pub fn attach_members(&self, pool: MemberPool) {
        self.attach(|s| s.members = Some(pool));
    }

    /// Topology state, from the controller's watch store of the topologies.
    pub fn attach_topologies(&self, store: Store<DistributedTopology>) {
        self.attach(|s| s.topologies = Some(store));
    }

    /// Drill state, from the drill controller's watch store.
    /// Region switch progress, from the region switch controller's store at each scrape.
    pub fn attach_region_switches(&self, store: Store<topology::region_api::RegionSwitch>) {
        self.attach(|s| s.region_switches = Some(store));
    }

    pub fn attach_drills(&self, store: Store<DisasterRecoveryDrill>) {
        self.attach(|s| s.drills = Some(store));
    }

    /// Counts the rotations `after` records that `before` (the topology this reconcile decided
    /// on) did not: a new skipped scheduled time, a new started rotation.
    pub fn rotations(&self, before: &DistributedTopology, after: &DistributedTopologyStatus) {
        let Some(now) = after.rotation.as_ref() else {
            return;
        };
        let was: Option<&RotationStatus> = before.status.as_ref().and_then(|s| s.rotation.as_ref());
        let label = |outcome: &str, reason: &str| RotationLabel {
            namespace: before.metadata.namespace.clone().unwrap_or_default(),
            topology: before.metadata.name.clone().unwrap_or_default(),
            outcome: outcome.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(skip) = &now.last_skip
            && was.and_then(|w| w.last_skip.as_ref()) != Some(skip)
        {
            let reason = skip.reason.as_deref().unwrap_or("Unknown");
            self.rotations
                .get_or_create(&label("Skipped", reason))
                .inc();
        }
        if let Some(started) = &now.last_rotation
            && was.and_then(|w| w.last_rotation.as_ref()) != Some(started)
        {
            self.rotations.get_or_create(&label("Started", "")).inc();
        }
    }

    /// A drill run ended (its status is final): counted and timed by outcome.
    pub fn drill_finished(&self, drill: &DisasterRecoveryDrill) {
        let Some(status) = &drill.status else {
            return;
        };
        let Some(phase) = status.phase else {
            return;
        };
        let outcome = OutcomeLabel {
            outcome: format!("{phase:?}"),
        };
        self.drill_runs.get_or_create(&outcome).inc();
        if let (Some(start), Some(end)) = (&status.started_at, &status.finished_at) {
            let took = end.0.duration_since(start.0).as_secs_f64().max(0.0);
            self.drill_duration.get_or_create(&outcome).observe(took);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// What keeps the controller from being ready (empty: ready); asked at every `/readyz`.
pub type Readiness = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Serves `/metrics`, `/healthz` (liveness: the runtime answers) and `/readyz` (503 with the
/// reasons while `ready` names any) on `addr` until the process exits.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Readiness,
) -> std::io::Result<()> {
    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        // Answered by the same runtime that runs the reconciles: a stuck runtime fails it.
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let reasons = ready();
                async move {
                    if reasons.is_empty() {
                        (StatusCode::OK, "ok\n".to_owned())
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready:\n{}\n", reasons.join("\n")),
                        )
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_after_use() {
        let m = Metrics::new();
        m.step_finished(StepKind::Demote, Duration::from_millis(120));
        m.reacted(StepKind::Promote, Duration::from_millis(4));
        m.picked_up(StepKind::Promote, Duration::from_millis(1));
        m.status_written(true, Duration::from_millis(3));
        m.status_written(false, Duration::from_millis(3));
        m.operation_finished(Outcome::Succeeded, Duration::from_secs(2));
        m.error("conflict");
        let text = m.render();
        for needle in [
            "federator_switchover_step_duration_seconds_bucket{le=",
            "step=\"Demote\"",
            "federator_reaction_seconds_count{step=\"Promote\"} 1",
            "federator_reaction_pickup_seconds_count{step=\"Promote\"} 1",
            "federator_status_write_seconds_count{then=\"patch\"} 1",
            "federator_status_write_seconds_count{then=\"nothing\"} 1",
            "federator_switchover_duration_seconds_count{outcome=\"Succeeded\"} 1",
            "federator_reconcile_errors_total{error=\"conflict\"} 1",
            "federator_leader 1",
            "federator_build_info{version=",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
    }

    #[test]
    fn the_reaction_target_is_a_bucket_bound() {
        let m = Metrics::new();
        for ms in [12, 49, 50, 51] {
            m.reacted(StepKind::Promote, Duration::from_millis(ms));
        }
        let text = m.render();
        // 12, 49 and 50 ms are within the target; 51 ms is not.
        let within = "federator_reaction_seconds_bucket{le=\"0.05\",step=\"Promote\"} 3";
        assert!(text.contains(within), "{within} not in\n{text}");
    }
}
