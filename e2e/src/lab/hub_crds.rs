//! Federator's own CRDs, installed on the hub: generated from the Rust types, exactly what
//! `federator crds` prints and what `make crds-check` compares with `deploy/crds/`. Taking them
//! from the types (not the files) lets `federator-lab up` work outside a checkout.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD Federator serves. Keep in step with `all_crds()` of `federator crds`
/// (federator/src/cmd/crds.rs), which the `e2e` crate cannot depend on.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        topology::DistributedTopology::crd(),
        topology::drill_api::DisasterRecoveryDrill::crd(),
    ]
}
