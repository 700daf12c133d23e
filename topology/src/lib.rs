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
pub mod region_api;
pub mod region_drill_api;
pub mod shape;
pub mod step;
pub mod token;
pub mod validate;

pub use api::{DistributedTopology, DistributedTopologySpec, DistributedTopologyStatus};
pub use model::Topology;
pub use observed::{InstanceWal, Observed, ObservedMember, Replay};
pub use plan::{Decision, Desired, Plan, PlanError, Progress, next_step, plan};
pub use step::{OperationKind, StepKind};

/// Every CRD Federator serves: what `federator crds` prints, `make crds-check` compares with
/// `deploy/crds/`, and `federator-lab up` installs on the lab's hub.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        DistributedTopology::crd(),
        drill_api::DisasterRecoveryDrill::crd(),
        region_api::RegionSwitch::crd(),
        region_api::RegionRotation::crd(),
        region_drill_api::RegionDrill::crd(),
    ]
}
