//! Validation of a topology on its own (static) and against its members' CNPG Clusters (live).
//! Both report every problem at once, each with where it is, what is wrong and how to fix it.

mod externals;
mod live;
mod problem;
mod spec_rules;

pub(crate) use live::validate_live_members;
pub use live::{validate_clusters, validate_live};
pub use problem::{Problem, ValidationError};
pub use spec_rules::validate_spec;
