//! Automatic failover's I/O (docs/automatic-failover.md): the voters' stores (Leases), a voter's
//! memory of the heartbeats it saw, and the agent (`federator agent`). The rules they apply are
//! the pure functions of `topology::autofailover`.

pub mod agent;
pub mod agent_metrics;
pub mod hub;
pub mod permissions;
pub mod store;
pub mod voter;
