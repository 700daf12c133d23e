//! [`Topology`]: a statically validated `DistributedTopologySpec`, indexed for the planner.

use std::collections::HashMap;

use policies::Policies;

use crate::api::{DistributedTopologySpec, Member};
use crate::shape::Shape;
use crate::validate::{ValidationError, validate_spec};

/// A topology that passed static validation: unique member names, a primary among them and a
/// well-formed shape covering every member.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    members: Vec<Member>,
    names: Vec<String>,
    index: HashMap<String, usize>,
    shape: Shape,
    primary: String,
    policies: Policies,
}

impl Topology {
    /// Validates `spec` statically; see [`validate_spec`].
    pub fn from_spec(spec: &DistributedTopologySpec) -> Result<Topology, ValidationError> {
        validate_spec(spec)
    }

    /// Builds without checking; only `validate_spec` calls this, after its checks passed.
    pub(crate) fn new_unchecked(spec: &DistributedTopologySpec, shape: Shape) -> Topology {
        let names: Vec<String> = spec.members.iter().map(|m| m.name.clone()).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Topology {
            members: spec.members.clone(),
            names,
            index,
            shape,
            primary: spec.primary.clone(),
            policies: spec.policies.clone(),
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member names in spec order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.index.get(name).map(|&i| &self.members[i])
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The desired primary (`spec.primary`).
    pub fn primary(&self) -> &str {
        &self.primary
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// What each member's `replica.source` should be when `primary` is primary, in member order
    /// (`None`: no opinion, see [`Shape::desired_sources`]).
    pub fn desired_sources(&self, primary: &str) -> Vec<Option<String>> {
        self.shape.desired_sources(&self.names, primary)
    }
}
