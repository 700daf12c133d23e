//! `federator failover NAME [-n NS] --to MEMBER --accept-data-loss [--wait]`: asks for an
//! explicit failover (promotion without the old primary's demotion token) by setting
//! `spec.primary` and `spec.failover` in one patch. Without `--accept-data-loss` nothing is
//! changed (exit 3). With `--wait`, follows the controller's answer: refused (3), the failover's
//! steps, then its data-loss window (0). See docs/failover.md and docs/cli.md.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use topology::DistributedTopology;
use topology::api::{DataLossWindow, Outcome};

use super::exit;
use super::hub::KubeArgs;
use super::primary_change::{self, Answer};

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
    /// With --wait: give up waiting after this long (the failover itself goes on), e.g. 15m.
    #[arg(long, default_value = "15m")]
    timeout: policies::Duration,
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
    let api = kube::Api::<DistributedTopology>::namespaced(hub.client.clone(), &namespace);
    primary_change::read_checked(&api, &namespace, &args.name, &args.to, &hub.describe).await?;
    // A fresh value makes this a new request even if an identical one was acted on before.
    let requested_at = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "spec": {
        "primary": args.to,
        "failover": { "to": args.to, "acceptDataLoss": true, "requestedAt": requested_at },
    }});
    primary_change::request(&api, &args.name, patch, "spec.primary and spec.failover").await?;
    println!(
        "{namespace}/{}: spec.primary = {}, spec.failover requested at {requested_at} (acceptDataLoss)",
        args.name, args.to
    );
    if !args.wait {
        return Ok(exit::code(exit::OK));
    }
    let followed = primary_change::follow(&api, &args.name, args.timeout, |status| {
        let Some(report) = status
            .last_failover
            .as_ref()
            .filter(|r| r.request.requested_at.as_deref() == Some(requested_at.as_str()))
        else {
            // Not answered yet: say why, if the controller says it cannot start.
            let why = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready" && c.reason.starts_with("Failover"))
                .map(|c| format!("({}) {}", c.reason, c.message));
            return Answer::Waiting(why);
        };
        if let Some(why) = &report.refused {
            return Answer::Refused(why.clone());
        }
        match report
            .operation
            .as_ref()
            .and_then(|id| status.operation_where(|op| op == id))
        {
            Some(op) => Answer::Running(Box::new(op)),
            None => Answer::Waiting(None),
        }
    })
    .await?;
    let report = followed.status.as_ref().and_then(|s| {
        let report = s.last_failover.as_ref()?;
        let id = report.operation.as_ref()?;
        let op = s.operation_where(|op| op == id)?;
        (op.outcome == Some(Outcome::Succeeded)).then_some((op, report))
    });
    if let Some((op, report)) = report {
        println!(
            "{} must be re-cloned when it returns (it is fenced then)",
            op.from
        );
        if let Some(window) = &report.data_loss {
            print_window(window);
        }
    }
    Ok(followed.code)
}

fn print_window(window: &DataLossWindow) {
    println!("possible data loss: {}", window.summary);
    for unknown in &window.unknown {
        println!("  unknown: {unknown}");
    }
}
