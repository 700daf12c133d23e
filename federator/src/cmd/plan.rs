//! `federator plan`: the steps and exact patches of a switchover, touching nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use comfy_table::{ContentArrangement, Table};
use topology::plan::{Desired, Plan, plan};
use topology::{OperationKind, PlanError};

use super::validate::{check, describe, load, print_problems, single};

#[derive(clap::Args)]
pub struct Args {
    /// YAML files with one DistributedTopology and, optionally, its CNPG Clusters. Without
    /// Clusters the members are assumed to match the topology exactly.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
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
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let manifests = load(&args.files)?;
    let loaded = single(&manifests)?;
    let (topology, observed) = match check(&loaded, Some(&args.to)) {
        Ok(ok) => ok,
        Err(problems) => {
            print_problems(&describe(&loaded), &problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    let kind = if args.failover {
        OperationKind::Failover
    } else {
        OperationKind::Switchover
    };
    let desired = Desired {
        topology: &topology,
        to: &args.to,
        kind,
    };
    let plan = match plan(&observed, &desired) {
        Ok(plan) => plan,
        Err(PlanError::Invalid(e)) => {
            print_problems(&describe(&loaded), &e.problems);
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => anyhow::bail!(e),
    };
    print!("{}", render(&plan, args.output)?);
    Ok(ExitCode::SUCCESS)
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
