//! The agent's Prometheus metrics (`/metrics` on `--probe-addr`): per voter's store, how long the
//! last renewal took against its bound, and the renewals by outcome. A store whose latency nears
//! its bound, or whose unanswered count grows, is the one that fences a healthy primary when it is
//! part of every majority (docs/automatic-failover.md, "Limits"). The reference of every metric is
//! docs/operations.md.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VoterLabel {
    voter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenewalLabel {
    voter: String,
    /// `accepted`, `refused` (a newer term, or the voter counted this member lost) or
    /// `unanswered` (nothing within the bound: that round does not count the store).
    outcome: &'static str,
}

/// How one renewal in a voter's store ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewalOutcome {
    Accepted,
    Refused,
    Unanswered,
}

impl RenewalOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Unanswered => "unanswered",
        }
    }
}

type Seconds = Gauge<f64, AtomicU64>;

/// Every metric the agent exports.
pub struct AgentMetrics {
    registry: Registry,
    renewal_seconds: Family<VoterLabel, Seconds>,
    renewal_bound_seconds: Family<VoterLabel, Seconds>,
    renewals: Family<RenewalLabel, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let renewal_seconds = Family::<VoterLabel, Seconds>::default();
        registry.register(
            "federator_agent_store_renewal_seconds",
            "How long the agent's last renewal in each voter's store took (its bound when it did \
             not answer)",
            renewal_seconds.clone(),
        );
        let renewal_bound_seconds = Family::<VoterLabel, Seconds>::default();
        registry.register(
            "federator_agent_store_renewal_bound_seconds",
            "The bound of a renewal in each voter's store (renewEvery): slower answers do not \
             count for the round",
            renewal_bound_seconds.clone(),
        );
        let renewals = Family::<RenewalLabel, Counter>::default();
        registry.register(
            // Exposed as `federator_agent_store_renewals_total` (OpenMetrics counter suffix).
            "federator_agent_store_renewals",
            "The agent's renewals in each voter's store, by outcome (accepted, refused, \
             unanswered within the bound)",
            renewals.clone(),
        );
        AgentMetrics {
            registry,
            renewal_seconds,
            renewal_bound_seconds,
            renewals,
        }
    }
}

impl AgentMetrics {
    /// Records one renewal in `voter`'s store: how long it took (never more than its bound: a
    /// renewal that did not answer shows the bound) and how it ended.
    pub fn renewed(&self, voter: &str, took: f64, bound: f64, outcome: RenewalOutcome) {
        let voter = || VoterLabel {
            voter: voter.to_owned(),
        };
        self.renewal_seconds
            .get_or_create(&voter())
            .set(took.min(bound));
        self.renewal_bound_seconds
            .get_or_create(&voter())
            .set(bound);
        self.renewals
            .get_or_create(&RenewalLabel {
                voter: voter().voter,
                outcome: outcome.label(),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
