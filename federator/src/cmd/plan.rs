//! `federator plan`: the steps and exact patches of a switchover, touching nothing; from files
//! (`-f`) or from the live hub (`plan NAME`: the topology and its members' Clusters as they are).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use comfy_table::{ContentArrangement, Table};
use topology::manifest::Origin;
use topology::plan::{Desired, Plan, plan};
use topology::{OperationKind, PlanError};

use super::exit;
use super::hub::{Hub, KubeArgs};
use super::live::{self, LiveArgs};
use super::validate::{Loaded, check, describe, load, print_problems, single};

#[derive(clap::Args)]
pub struct Args {
    /// The DistributedTopology on the hub (its members' Clusters are read with the member
    /// credentials); or give -f.
    #[arg(required_unless_present = "files", conflicts_with = "files")]
    name: Option<String>,
    /// With NAME: its namespace on the hub (default: the kubeconfig context's).
    #[arg(short, long, requires = "name")]
    namespace: Option<String>,
    /// YAML files with one DistributedTopology and, optionally, its CNPG Clusters. Without
    /// Clusters the members are assumed to match the topology exactly.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The member that should become primary.
    #[arg(long, value_name = "MEMBER")]
    to: String,
    /// Plan an explicit failover (no demotion token; possible data loss) instead of a switchover.
    #[arg(long)]
    failover: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.name {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        return runtime.block_on(async {
            let hub = kube.connect().await?;
            let namespace = hub.namespace(args.namespace.as_deref());
            let request = (name.as_str(), args.to.as_str(), args.failover);
            plan_live_as(&hub, &namespace, request, &args.live, args.output).await
        });
    }
    let manifests = load(&args.files)?;
    let loaded = single(&manifests)?;
    print_plan(&loaded, &args.to, args.failover, args.output)
}

/// The plan for topology `namespace/name` as it is on the hub, its members' Clusters read live.
pub async fn live_plan(
    hub: &Hub,
    namespace: &str,
    name: &str,
    to: &str,
    failover: bool,
    args: &LiveArgs,
) -> anyhow::Result<ExitCode> {
    plan_live_as(hub, namespace, (name, to, failover), args, Output::Table).await
}

async fn plan_live_as(
    hub: &Hub,
    namespace: &str,
    (name, to, failover): (&str, &str, bool),
    args: &LiveArgs,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let live = live::read(hub, namespace, name, args).await?;
    if !live.unread.is_empty() {
        eprintln!("cannot plan {namespace}/{name}: members not read:");
        for why in &live.unread {
            eprintln!("  - {why}");
        }
        return Ok(exit::code(exit::ERROR));
    }
    let origin = Origin {
        file: format!("live on {}", hub.describe),
        line: 0,
    };
    let loaded = Loaded {
        origin: &origin,
        object: &live.object,
        clusters: live.clusters,
    };
    print_plan(&loaded, to, failover, output)
}

fn print_plan(
    loaded: &Loaded<'_>,
    to: &str,
    failover: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let (topology, observed) = match check(loaded, Some(to)) {
        Ok(ok) => ok,
        Err(problems) => {
            print_problems(&describe(loaded), &problems);
            return Ok(exit::code(exit::ERROR));
        }
    };
    let kind = if failover {
        OperationKind::Failover
    } else {
        OperationKind::Switchover
    };
    let desired = Desired {
        topology: &topology,
        to,
        kind,
    };
    let plan = match plan(&observed, &desired) {
        Ok(plan) => plan,
        Err(PlanError::Invalid(e)) => {
            print_problems(&describe(loaded), &e.problems);
            return Ok(exit::code(exit::ERROR));
        }
        Err(e) => anyhow::bail!(e),
    };
    print!("{}", render(&plan, output)?);
    Ok(exit::code(exit::OK))
}

fn render(plan: &Plan, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(plan)? + "\n",
        Output::Yaml => serde_saphyr::to_string(plan)?,
        Output::Table => {
            let mut table = Table::new();
            table
                .load_style(comfy_table::presets::UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(160)
                .set_header([
                    "#",
                    "Step",
                    "Member",
                    "Patch (JSON merge, spec.replica only)",
                    "Done when",
                ]);
            for (i, step) in plan.steps.iter().enumerate() {
                table.add_row([
                    (i + 1).to_string(),
                    step.step.to_string(),
                    step.member.clone().unwrap_or_default(),
                    step.patch
                        .as_ref()
                        .map(|p| p["spec"]["replica"].to_string())
                        .unwrap_or_default(),
                    step.done_when.clone(),
                ]);
            }
            format!("{} {} -> {}\n{table}\n", plan.kind, plan.from, plan.to)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::validate::{check, single};

    fn plan_for(example: &str, to: &str) -> Plan {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(example);
        let manifests = load(&[path]).unwrap();
        let loaded = single(&manifests).unwrap();
        let (topology, observed) = check(&loaded, Some(to)).unwrap();
        let desired = Desired {
            topology: &topology,
            to,
            kind: OperationKind::Switchover,
        };
        plan(&observed, &desired).unwrap()
    }

    #[test]
    fn ring_of_three_plan_table() {
        let plan = plan_for("ring-of-three.yaml", "pg16-eu-western");
        insta::assert_snapshot!(render(&plan, Output::Table).unwrap());
    }

    #[test]
    fn cascade_plan_reroots_sources() {
        let plan = plan_for("cascade.yaml", "pg16-eu-south");
        insta::assert_snapshot!(render(&plan, Output::Yaml).unwrap());
    }
}
