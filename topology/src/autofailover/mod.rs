//! Automatic region failover, the pure part: the timing rule that keeps fencing ahead of
//! promotion, the quorum verdict that declares a region lost, the election of the replica to
//! promote, and the agent's fence decision. No I/O and no clock: every function takes the
//! durations it judges, measured by the caller on its own monotonic clock.
//!
//! The safety argument these functions implement is written down in `docs/automatic-failover.md`;
//! `tests/autofailover_properties.rs` checks it against random partitions, clock drift and agent
//! crashes in simulated time.

pub mod agent;
pub mod election;
pub mod policy;
pub mod quorum;
pub mod record;
pub mod timing;

pub use agent::{AgentAction, AgentView, agent_action};
pub use election::{Candidate, DataLossBudget, Elected, ElectionError, elect};
pub use policy::{Armed, HUB_VOTER, PolicyError, arm};
pub use quorum::{Ballot, Reach, Verdict, verdict};
pub use timing::{Drift, Timing, TimingError, TimingMargins};
