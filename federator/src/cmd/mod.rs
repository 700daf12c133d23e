//! One module per subcommand; each exposes `Args` (clap) and `run(Args) -> anyhow::Result<ExitCode>`.

pub mod controller;
pub mod crds;
pub mod drill;
pub mod failover;
pub mod graph;
pub mod plan;
pub mod status;
pub mod switchover;
pub mod validate;
