#![forbid(unsafe_code)]
//! The pure heart of Federator: CNPG's API as Federator sees it, the DistributedTopology model,
//! validation and the switchover planner. Nothing here performs I/O.

pub mod api;
pub mod autofailover;
pub mod cnpg;
pub mod conditions;
pub mod drill_api;
pub mod graph;
pub mod manifest;
pub mod model;
mod name_index;
pub mod observed;
pub mod plan;
pub mod region;
pub mod shape;
pub mod step;
pub mod token;
pub mod validate;

pub use api::{DistributedTopology, DistributedTopologySpec, DistributedTopologyStatus};
pub use model::Topology;
pub use observed::{Observed, ObservedMember};
pub use plan::{Decision, Desired, Plan, PlanError, Progress, next_step, plan};
pub use step::{OperationKind, StepKind};
