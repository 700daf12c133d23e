//! `federator switchover NAME [-n NS] --to MEMBER [--wait] [--dry-run]`: asks for a planned
//! switchover by setting `spec.primary`; `--wait` follows the operation until it ends (exit 0),
//! holds (3) or rolls back (4); `--dry-run` prints the plan against the live hub and changes
//! nothing. Exit codes: docs/cli.md.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use topology::DistributedTopology;
use topology::api::Outcome;

use super::hub::KubeArgs;
use super::live::LiveArgs;
use super::primary_change::{self, Answer};
use super::{exit, plan};

#[derive(clap::Args)]
pub struct Args {
    /// The DistributedTopology.
    name: String,
    /// Its namespace on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// The member that should become primary.
    #[arg(long)]
    to: String,
    /// Follow the switchover until it ends; exit non-zero if it holds or rolls back.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (the switchover itself goes on), e.g. 15m.
    #[arg(long, default_value = "15m")]
    timeout: policies::Duration,
    /// Print the steps and patches this switchover would take, from the live topology and its
    /// members' Clusters; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    live: LiveArgs,
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(switchover(args, kube))
}

async fn switchover(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let hub = kube.connect().await?;
    let namespace = hub.namespace(args.namespace.as_deref());
    if args.dry_run {
        return plan::live_plan(&hub, &namespace, &args.name, &args.to, false, &args.live).await;
    }
    let api = kube::Api::<DistributedTopology>::namespaced(hub.client.clone(), &namespace);
    primary_change::read_checked(&api, &namespace, &args.name, &args.to, &hub.describe).await?;
    let patch = json!({ "spec": { "primary": args.to } });
    let generation = primary_change::request(&api, &args.name, patch, "spec.primary").await?;
    println!(
        "{namespace}/{}: spec.primary = {} (generation {generation})",
        args.name, args.to
    );
    if !args.wait {
        return Ok(exit::code(exit::OK));
    }
    let prefix = format!("{generation}-");
    let to = args.to.clone();
    let followed = primary_change::follow(&api, &args.name, args.timeout, |status| {
        match status.operation_where(|id| id.starts_with(&prefix)) {
            Some(op) => Answer::Running(Box::new(op)),
            // No operation for this generation: either it has not started yet, or none was
            // needed because the member already is primary.
            None if status.observed_generation >= Some(generation)
                && status.operation.is_none()
                && status.observed_primary.as_deref() == Some(to.as_str()) =>
            {
                Answer::Done(format!("{to} already is the primary; nothing to do"))
            }
            None => Answer::Waiting(None),
        }
    })
    .await?;
    if let Some(op) = followed
        .status
        .as_ref()
        .and_then(|s| s.operation_where(|id| id.starts_with(&prefix)))
        && op.outcome.is_some_and(|o| o != Outcome::Succeeded)
    {
        println!("{} is primary", op.from);
    }
    Ok(followed.code)
}
