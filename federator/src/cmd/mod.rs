//! One module per subcommand; each exposes `Args` (clap) and `run(Args) -> anyhow::Result<ExitCode>`.

pub mod controller;
pub mod crds;
pub mod drill;
pub mod exit;
pub mod failover;
pub mod graph;
pub mod hub;
pub mod member;
pub mod member_join;
pub mod member_list;
pub mod member_remove;
pub mod member_token;
pub mod plan;
pub mod status;
pub mod switchover;
pub mod validate;
