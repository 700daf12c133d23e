//! `federator status NAME -n NS [-o table|yaml|json]`: members, roles, timelines, readiness,
//! conditions, the current operation and the last switchovers with their step timings.

use std::process::ExitCode;

use anyhow::Context as _;
use comfy_table::Table;
use kube::Api;
use topology::DistributedTopology;
use topology::api::{Operation, RotationDecisionRecord, RotationStatus, StepRecord};

use super::hub::KubeArgs;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The DistributedTopology.
    name: String,
    /// Its namespace on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// How many finished switchovers to show (table output).
    #[arg(long, default_value_t = 3)]
    history: usize,
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let topo = runtime.block_on(async {
        let hub = kube.connect().await?;
        let namespace = hub.namespace(args.namespace.as_deref());
        let api: Api<DistributedTopology> = Api::namespaced(hub.client, &namespace);
        api.get(&args.name).await.with_context(|| {
            format!(
                "reading DistributedTopology {namespace}/{} on {}",
                args.name, hub.describe
            )
        })
    })?;
    let status = topo.status.clone().unwrap_or_default();
    let text = match args.output {
        Output::Yaml => serde_saphyr::to_string(&status)?,
        Output::Json => serde_json::to_string_pretty(&status)? + "\n",
        Output::Table => render(&topo, args.history),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn render(topo: &DistributedTopology, history: usize) -> String {
    let status = topo.status.clone().unwrap_or_default();
    let mut out = format!(
        "{}/{}  spec.primary: {}  observed primary: {}\n\n",
        topo.metadata.namespace.as_deref().unwrap_or_default(),
        topo.metadata.name.as_deref().unwrap_or_default(),
        topo.spec.primary,
        status.observed_primary.as_deref().unwrap_or("-"),
    );
    let mut members = Table::new();
    members.set_header([
        "MEMBER",
        "CLUSTER",
        "ROLE",
        "PHASE",
        "TIMELINE",
        "SYSTEM ID",
        "READY",
        "REACHABLE",
    ]);
    for m in &status.members {
        members.add_row([
            m.name.clone(),
            m.cluster.clone(),
            m.role.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            m.phase.clone().unwrap_or_else(|| "-".into()),
            m.timeline_id
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            m.system_id.clone().unwrap_or_else(|| "-".into()),
            yes_no(m.ready),
            yes_no(m.reachable),
        ]);
    }
    out += &format!("{members}\n\n");
    let mut conditions = Table::new();
    conditions.set_header(["CONDITION", "STATUS", "REASON", "MESSAGE"]);
    for c in &status.conditions {
        conditions.add_row([
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        ]);
    }
    out += &format!("{conditions}\n");
    if let Some(rotation) = &status.rotation {
        out += &rotation_lines(rotation);
    }
    if let Some(op) = &status.operation {
        out += &format!("\nCurrent {}\n{}\n", heading(op), steps(&op.steps));
        if let Some(hold) = &op.hold {
            out += &format!("HOLD ({}): {}\n", hold.reason, hold.message);
        }
    }
    for record in status.history.iter().rev().take(history) {
        let op = record.expand();
        out += &format!("\n{}\n{}\n", heading(&op), steps(&op.steps));
    }
    out
}

/// `spec.rotation` at a glance: the next rotation, the last decision, skip and rotation.
fn rotation_lines(rotation: &RotationStatus) -> String {
    let next = rotation
        .next_rotation_time
        .as_ref()
        .map_or_else(|| "none".to_owned(), |t| t.0.to_string());
    let mut out = format!("\nRotation: next {next}\n");
    let decision = |label: &str, d: &RotationDecisionRecord| {
        let reason = d
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        format!(
            "  {label}: {}{reason} at {}: {}\n",
            d.decision, d.time.0, d.message
        )
    };
    if let Some(d) = &rotation.last_decision {
        out += &decision("last decision", d);
    }
    if let Some(d) = &rotation.last_skip {
        out += &decision("last skip", d);
    }
    if let Some(r) = &rotation.last_rotation {
        out += &format!(
            "  last rotation: {} → {} for {} (started {})\n",
            r.from, r.to, r.scheduled_for.0, r.started_at.0
        );
    }
    out
}

fn heading(op: &Operation) -> String {
    let total = op
        .finished_at
        .as_ref()
        .map(|end| {
            format!(
                " in {:.2}s",
                end.0.duration_since(op.started_at.0).as_secs_f64()
            )
        })
        .unwrap_or_default();
    let outcome = op.outcome.map(|o| format!(": {o:?}")).unwrap_or_default();
    format!(
        "{} {} {} → {}{outcome}{total} (started {})",
        op.kind, op.id, op.from, op.to, op.started_at.0
    )
}

fn steps(records: &[StepRecord]) -> Table {
    let mut table = Table::new();
    table.set_header(["STEP", "MEMBER", "SECONDS"]);
    for s in records {
        let secs = s
            .finished_at
            .as_ref()
            .map(|end| format!("{:.3}", end.0.duration_since(s.started_at.0).as_secs_f64()))
            .unwrap_or_else(|| "running".into());
        table.add_row([
            s.step.as_str().to_owned(),
            s.member.clone().unwrap_or_default(),
            secs,
        ]);
    }
    table
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn the_rotation_block_shows_the_next_rotation_and_the_last_decisions() {
        let t = |s: &str| Time(s.parse().unwrap());
        let rotation = RotationStatus {
            schedule_digest: "x".into(),
            active_since: t("2026-06-01T01:00:00Z"),
            last_schedule_time: Some(t("2026-06-01T02:00:00Z")),
            next_rotation_time: Some(t("2026-06-02T02:00:00Z")),
            last_decision: None,
            last_skip: Some(RotationDecisionRecord {
                decision: "Skip".into(),
                reason: Some("FreezePeriod".into()),
                message: "frozen".into(),
                scheduled_for: Some(t("2026-06-01T02:00:00Z")),
                time: t("2026-06-01T02:00:01Z"),
            }),
            last_rotation: None,
        };
        assert_eq!(
            rotation_lines(&rotation),
            "\nRotation: next 2026-06-02T02:00:00Z\n  last skip: Skip (FreezePeriod) at \
             2026-06-01T02:00:01Z: frozen\n"
        );
    }
}
