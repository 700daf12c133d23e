//! `federator status NAME -n NS [-o table|yaml|json]`: members, roles, timelines, readiness,
//! conditions, the current operation and the last switchovers with their step timings.

use std::process::ExitCode;

use anyhow::Context as _;
use comfy_table::Table;
use kube::Api;
use topology::DistributedTopology;
use topology::api::{Operation, StepRecord};

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
    /// Its namespace on the hub.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// How many finished switchovers to show (table output).
    #[arg(long, default_value_t = 3)]
    history: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let topo = runtime.block_on(async {
        let hub = kube::Client::try_default()
            .await
            .context("connecting to the hub (KUBECONFIG)")?;
        let api: Api<DistributedTopology> = Api::namespaced(hub, &args.namespace);
        api.get(&args.name).await.with_context(|| {
            format!(
                "reading DistributedTopology {}/{}",
                args.namespace, args.name
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
    if let Some(op) = &status.operation {
        out += &format!("\nCurrent {}\n{}\n", heading(op), steps(&op.steps));
        if let Some(hold) = &op.hold {
            out += &format!("HOLD ({}): {}\n", hold.reason, hold.message);
        }
    }
    for op in status.history.iter().rev().take(history) {
        out += &format!("\n{}\n{}\n", heading(op), steps(&op.steps));
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
