#![forbid(unsafe_code)]
//! `federator`: the hub controller and its command-line interface.

mod cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Run the automatic-failover agent of one member, in its region: holds its heartbeat with
    /// the voters, reports role and WAL positions, fences its own primary when it loses quorum.
    Agent(cmd::agent::Args),
    /// Validate DistributedTopologies and their CNPG Clusters: from files (-f), or as they are on
    /// the hub and the members.
    Validate(cmd::validate::Args),
    /// List DistributedTopologies on the hub (one line each; -A: every namespace).
    #[command(visible_alias = "list")]
    Get(cmd::get::Args),
    /// Ask for a planned switchover (sets spec.primary); --wait follows it step by step.
    Switchover(cmd::switchover::Args),
    /// Promote a member without the old primary's demotion token (the primary is unreachable;
    /// possible data loss): needs --accept-data-loss; --wait follows it.
    Failover(cmd::failover::Args),
    /// Show a topology: members, roles, timelines, conditions, the current and last switchovers.
    Status(cmd::status::Args),
    /// Run a disaster-recovery drill (measured switchover, optionally back); `drill report` prints its report.
    Drill(cmd::drill::Args),
    /// Move every topology whose primary is in one region to another (RegionSwitch): switch,
    /// status, pause, resume, abort.
    Region(cmd::region::Args),
    /// Show the steps and exact patches of a switchover, touching nothing: from files (-f), or
    /// for a topology on the hub as it is.
    Plan(cmd::plan::Args),
    /// Onboard member clusters: join, rotate a token, remove, list with their real permissions.
    Member(cmd::member::Args),
    /// Draw a topology (text, dot or svg).
    Graph(cmd::graph::Args),
    /// This CLI's version and the hub's (Kubernetes, Federator CRDs and controller).
    Version(cmd::version::Args),
    /// Print a shell completion script: `source <(federator completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The name to show in usage: `kubectl federator` when run as the kubectl plugin
/// (`kubectl-federator` on PATH), else `federator`.
fn bin_name() -> &'static str {
    let invoked = std::env::args_os().next().unwrap_or_default();
    let file = std::path::Path::new(&invoked)
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if file == "kubectl-federator" {
        "kubectl federator"
    } else {
        "federator"
    }
}

fn main() -> std::process::ExitCode {
    let mut command = Cli::command().bin_name(bin_name());
    let matches = command.get_matches_mut();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut command).exit(),
    };
    let result = match cli.command {
        Command::Crds(args) => cmd::crds::run(args),
        Command::Controller(args) => cmd::controller::run(args, &cli.kube),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Validate(args) => cmd::validate::run(args, &cli.kube),
        Command::Switchover(args) => cmd::switchover::run(args, &cli.kube),
        Command::Failover(args) => cmd::failover::run(args, &cli.kube),
        Command::Status(args) => cmd::status::run(args, &cli.kube),
        Command::Drill(args) => cmd::drill::run(args, &cli.kube),
        Command::Plan(args) => cmd::plan::run(args, &cli.kube),
        Command::Region(args) => cmd::region::run(args, &cli.kube),
        Command::Graph(args) => cmd::graph::run(args),
        Command::Member(args) => cmd::member::run(args, &cli.kube),
        Command::Get(args) => cmd::get::run(args, &cli.kube),
        Command::Version(args) => cmd::version::run(args, &cli.kube),
        Command::Completion { shell } => {
            let name = command.get_bin_name().unwrap_or("federator").to_owned();
            clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
            Ok(std::process::ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
