//! Federator's own CRDs, installed on the hub: generated from the Rust types, exactly what
//! `federator crds` prints and what `make crds-check` compares with `deploy/crds/`. Taking them
//! from the types (not the files) lets `federator-lab up` work outside a checkout.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Every CRD Federator serves (`topology::crds`, also what `federator crds` prints).
pub fn all() -> Vec<CustomResourceDefinition> {
    topology::crds()
}
