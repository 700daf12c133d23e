#![forbid(unsafe_code)]
//! Federator's library: the parts of the hub controller that the binary and the integration
//! tests share.

pub mod autofailover;
pub mod controller;
pub mod drill;
#[cfg(test)]
mod fake_api;
pub mod hub_permissions;
pub mod members;
pub mod region;
