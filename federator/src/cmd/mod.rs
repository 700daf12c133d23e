//! One module per subcommand; each exposes `Args` (clap) and `run(Args[, &KubeArgs]) ->
//! anyhow::Result<ExitCode>` with the exit codes of [`exit`]. Shared: [`hub`] (reaching the hub as
//! kubectl does), [`live`] (topologies with their members' Clusters), [`primary_change`] (request
//! a primary change and follow the operation: `switchover` and `failover`).

pub mod agent;
pub mod controller;
pub mod crds;
pub mod drill;
pub mod exit;
pub mod failover;
pub mod get;
pub mod graph;
pub mod hub;
pub mod live;
pub mod member;
pub mod member_join;
pub mod member_list;
pub mod member_remove;
pub mod member_token;
pub mod plan;
pub mod primary_change;
pub mod region;
pub mod status;
pub mod switchover;
pub mod validate;
pub mod version;
