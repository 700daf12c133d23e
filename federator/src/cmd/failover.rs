//! `federator failover NAME -n NS --to MEMBER --accept-data-loss [--wait]`: asks for an explicit
//! failover (promotion without the old primary's demotion token) by setting `spec.primary` and
//! `spec.failover` in one patch. Without `--accept-data-loss` nothing is changed (exit 3). With
//! `--wait`, follows the controller's answer: refused (exit 3), the failover's steps, then its
//! data-loss window (exit 0). See docs/failover.md and docs/cli.md.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use topology::DistributedTopology;
use topology::api::{DataLossWindow, Outcome};

use super::exit;
use super::hub::KubeArgs;
use super::switchover::{Display, took};

#[derive(clap::Args)]
pub struct Args {
    /// The DistributedTopology.
    name: String,
    /// Its namespace on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// The member to promote.
    #[arg(long)]
    to: String,
    /// Required: accept that writes the old primary acknowledged after its last archived WAL
    /// may be lost, and that it must be re-cloned when it comes back.
    #[arg(long)]
    accept_data_loss: bool,
    /// Follow the failover until it ends; exit non-zero if it is refused or holds.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this many seconds (the failover itself goes on).
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    if !args.accept_data_loss {
        let namespace = args
            .namespace
            .as_deref()
            .map(|ns| format!(" -n {ns}"))
            .unwrap_or_default();
        eprintln!(
            "refusing: a failover promotes {} WITHOUT the old primary's demotion token, so writes the old primary acknowledged after its last archived WAL may be lost and it must be re-cloned. Nothing was changed.\n  If the primary can be read, use `federator switchover {}{namespace} --to {}` (no data loss).\n  If it is down, repeat with --accept-data-loss.",
            args.to, args.name, args.to
        );
        return Ok(exit::code(exit::HELD));
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(failover(args, kube))
}

async fn failover(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
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
    // A fresh value makes this a new request even if an identical one was acted on before.
    let requested_at = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "spec": {
        "primary": args.to,
        "failover": { "to": args.to, "acceptDataLoss": true, "requestedAt": requested_at },
    }});
    api.patch(
        &args.name,
        &PatchParams {
            field_manager: Some("federator-cli".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(patch),
    )
    .await
    .context("setting spec.primary and spec.failover")?;
    println!(
        "{namespace}/{}: spec.primary = {}, spec.failover requested at {requested_at} (acceptDataLoss)",
        args.name, args.to
    );
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    match tokio::time::timeout(
        Duration::from_secs(args.timeout),
        follow(&api, &args, &requested_at),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => {
            eprintln!(
                "gave up waiting after {}s; the request stands (see `federator status`)",
                args.timeout
            );
            Ok(exit::code(exit::TIMED_OUT))
        }
    }
}

/// Waits for the controller's answer to the request made at `requested_at`, then follows the
/// failover it started.
async fn follow(
    api: &Api<DistributedTopology>,
    args: &Args,
    requested_at: &str,
) -> anyhow::Result<ExitCode> {
    let display = Display::new(std::io::stdout().is_terminal());
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.name));
    let mut updates = watcher(api.clone(), config).applied_objects().boxed();
    let mut printed = 0;
    let mut waiting_said = String::new();
    while let Some(topo) = updates.try_next().await.context("watching the topology")? {
        let Some(status) = topo.status else { continue };
        let Some(report) = status
            .last_failover
            .as_ref()
            .filter(|r| r.request.requested_at.as_deref() == Some(requested_at))
        else {
            // Not answered yet: say why once, if the controller says it cannot start.
            if let Some(ready) = status.conditions.iter().find(|c| {
                c.type_ == "Ready" && c.reason.starts_with("Failover") && c.message != waiting_said
            }) {
                display.line(format!("waiting ({}): {}", ready.reason, ready.message));
                waiting_said.clone_from(&ready.message);
            }
            continue;
        };
        if let Some(why) = &report.refused {
            display.done(&format!("REFUSED: {why}"));
            return Ok(exit::code(exit::HELD));
        }
        let Some(id) = &report.operation else {
            continue;
        };
        let Some(op) = &status.operation_where(|op| op == id) else {
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
                    "failover {} → {} succeeded in {}; {} must be re-cloned when it returns (it is fenced then)",
                    op.from,
                    op.to,
                    took(op),
                    op.from
                ));
                if let Some(window) = &report.data_loss {
                    print_window(window);
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some(outcome) => {
                display.done(&format!(
                    "failover {} → {} ended {outcome:?}",
                    op.from, op.to
                ));
                return Ok(exit::code(exit::NOT_DONE));
            }
            None => display.current(op),
        }
    }
    bail!("the watch on the topology ended")
}

fn print_window(window: &DataLossWindow) {
    println!("possible data loss: {}", window.summary);
    for unknown in &window.unknown {
        println!("  unknown: {unknown}");
    }
}
