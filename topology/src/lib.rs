#![forbid(unsafe_code)]
//! The pure heart of Federator: CNPG's API as Federator sees it, the DistributedTopology model,
//! validation and the switchover planner. Nothing here performs I/O.

pub mod cnpg;
pub mod token;
