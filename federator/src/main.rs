#![forbid(unsafe_code)]
//! `federator`: the hub controller and its command-line interface.

mod cmd;

use clap::{Parser, Subcommand};

/// Runs PostgreSQL (CloudNativePG) as one distributed database across Kubernetes clusters.
#[derive(Parser)]
#[command(name = "federator", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    kube: cmd::hub::KubeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print Federator's CustomResourceDefinitions as YAML (or check them against deploy/crds).
    Crds(cmd::crds::Args),
    /// Run the hub controller: switchovers driven by spec.primary, status, Events, /metrics.
    Controller(cmd::controller::Args),
    /// Validate DistributedTopology manifests and CNPG Clusters offline.
    Validate(cmd::validate::Args),
    /// Ask for a planned switchover (sets spec.primary); --wait follows it step by step.
    Switchover(cmd::switchover::Args),
    /// Promote a member without the old primary's demotion token (the primary is unreachable;
    /// possible data loss): needs --accept-data-loss; --wait follows it.
    Failover(cmd::failover::Args),
    /// Show a topology: members, roles, timelines, conditions, the current and last switchovers.
    Status(cmd::status::Args),
    /// Run a disaster-recovery drill (measured switchover, optionally back); `drill report` prints its report.
    Drill(cmd::drill::Args),
    /// Show the steps and exact patches of a switchover, touching nothing.
    Plan(cmd::plan::Args),
    /// Onboard member clusters: join, rotate a token, remove, list with their real permissions.
    Member(cmd::member::Args),
    /// Draw a topology (text, dot or svg).
    Graph(cmd::graph::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds(args) => cmd::crds::run(args),
        Command::Controller(args) => cmd::controller::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Switchover(args) => cmd::switchover::run(args, &cli.kube),
        Command::Failover(args) => cmd::failover::run(args, &cli.kube),
        Command::Status(args) => cmd::status::run(args, &cli.kube),
        Command::Drill(args) => cmd::drill::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Graph(args) => cmd::graph::run(args),
        Command::Member(args) => cmd::member::run(args, &cli.kube),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
