//! `federator switchover NAME -n NS --to MEMBER [--wait]`: asks for a planned switchover by
//! setting `spec.primary`; with `--wait`, follows the step log in the topology's status until
//! the switchover ends (exit 0), holds (exit 3) or rolls back (exit 4); docs/cli.md.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use topology::DistributedTopology;
use topology::api::{Operation, Outcome};

use super::exit;
use super::hub::KubeArgs;

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
    /// With --wait: give up waiting after this many seconds (the switchover itself goes on).
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(switchover(args, kube))
}

async fn switchover(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let hub = kube.connect().await?;
    let namespace = hub.namespace(args.namespace.as_deref());
    let api: Api<DistributedTopology> = Api::namespaced(hub.client, &namespace);
    let topo = api.get(&args.name).await.with_context(|| {
        format!(
            "reading DistributedTopology {namespace}/{} on {}",
            args.name, hub.describe
        )
    })?;
    if !topo.spec.members.iter().any(|m| m.name == args.to) {
        let names: Vec<&str> = topo.spec.members.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "{} is not a member of {}; members: {}",
            args.to,
            args.name,
            names.join(", ")
        );
    }
    let patched = api
        .patch(
            &args.name,
            &PatchParams {
                field_manager: Some("federator-cli".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({ "spec": { "primary": args.to } })),
        )
        .await
        .context("setting spec.primary")?;
    let generation = patched.metadata.generation.unwrap_or_default();
    println!(
        "{namespace}/{}: spec.primary = {} (generation {generation})",
        args.name, args.to
    );
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let follow = follow(&api, &args, generation);
    match tokio::time::timeout(Duration::from_secs(args.timeout), follow).await {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "gave up waiting after {}s; the switchover goes on (see `federator status`)",
                args.timeout
            );
            Ok(exit::code(exit::TIMED_OUT))
        }
    }
}

/// Prints the step log as it grows; returns the exit code once the operation ends or holds.
async fn follow(
    api: &Api<DistributedTopology>,
    args: &Args,
    generation: i64,
) -> anyhow::Result<ExitCode> {
    let tty = std::io::stdout().is_terminal();
    let display = Display::new(tty);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.name));
    let mut updates = watcher(api.clone(), config).applied_objects().boxed();
    let prefix = format!("{generation}-");
    let mut printed = 0;
    while let Some(topo) = updates.try_next().await.context("watching the topology")? {
        let Some(status) = topo.status else { continue };
        let Some(op) = &status.operation_where(|id| id.starts_with(&prefix)) else {
            // No operation for this generation: either it has not started yet, or none was
            // needed because the member already is primary.
            let caught_up = status.observed_generation >= Some(generation);
            if caught_up
                && status.operation.is_none()
                && status.observed_primary.as_deref() == Some(args.to.as_str())
            {
                display.done(&format!(
                    "{} already is the primary; nothing to do",
                    args.to
                ));
                return Ok(ExitCode::SUCCESS);
            }
            continue;
        };
        printed = display.steps(op, printed);
        if let Some(hold) = &op.hold {
            display.done(&format!(
                "HOLD at {} ({}): {}",
                op.step, hold.reason, hold.message
            ));
            return Ok(exit::code(exit::HELD));
        }
        match op.outcome {
            Some(Outcome::Succeeded) => {
                display.done(&format!(
                    "switchover {} → {} succeeded in {}",
                    op.from,
                    op.to,
                    took(op)
                ));
                return Ok(ExitCode::SUCCESS);
            }
            Some(outcome) => {
                display.done(&format!(
                    "switchover {} → {} ended {outcome:?}; {} is primary",
                    op.from, op.to, op.from
                ));
                return Ok(exit::code(exit::NOT_DONE));
            }
            None => display.current(op),
        }
    }
    bail!("the watch on the topology ended")
}

pub(super) fn took(op: &Operation) -> String {
    match &op.finished_at {
        Some(end) => format!(
            "{:.2}s",
            end.0.duration_since(op.started_at.0).as_secs_f64()
        ),
        None => "-".into(),
    }
}

/// A spinner on a terminal, plain lines otherwise.
pub(super) struct Display {
    spinner: Option<ProgressBar>,
}

impl Display {
    pub(super) fn new(tty: bool) -> Self {
        let spinner = tty.then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Display { spinner }
    }

    pub(super) fn line(&self, text: String) {
        match &self.spinner {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// Prints the steps finished since `printed`; returns the new count.
    pub(super) fn steps(&self, op: &Operation, printed: usize) -> usize {
        let finished: Vec<_> = op
            .steps
            .iter()
            .filter(|s| s.finished_at.is_some())
            .collect();
        for step in finished.iter().skip(printed) {
            let secs = step
                .finished_at
                .as_ref()
                .map(|end| end.0.duration_since(step.started_at.0).as_secs_f64())
                .unwrap_or_default();
            let member = step
                .member
                .as_deref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default();
            self.line(format!(
                "  ✓ {:<22}{member:<14} {secs:>7.3}s",
                step.step.as_str()
            ));
        }
        finished.len().max(printed)
    }

    pub(super) fn current(&self, op: &Operation) {
        if let Some(bar) = &self.spinner {
            let member = op
                .steps
                .last()
                .and_then(|s| s.member.as_deref())
                .unwrap_or("");
            bar.set_message(format!("{} {member}", op.step));
        }
    }

    pub(super) fn done(&self, text: &str) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
        println!("{text}");
    }
}
