//! `federator drill NAME -n NS --to MEMBER [--return] [--dsn MEMBER=URI ...] [--resume]`: runs a
//! disaster-recovery drill of topology NAME in this process, recorded in the
//! `DisasterRecoveryDrill` NAME (created or updated, annotated so that the controller leaves it
//! alone); `federator drill report NAME -n NS` prints its report as Markdown.
//!
//! Running in-process keeps the URIs given with `--dsn` (which may hold passwords) out of the hub
//! and shows progress as it happens; drills applied with kubectl, and scheduled drills, are run
//! by the controller instead.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use topology::drill_api::{
    DisasterRecoveryDrill, DisasterRecoveryDrillSpec, DrillPhase, FIELD_MANAGER, RUN_BY_ANNOTATION,
};

use federator::drill::postgres::{Dsns, Target};
use federator::drill::{Executor, Next, report};

use super::exit;
use super::hub::{Hub, KubeArgs};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the report of a drill's last run as Markdown.
    Report {
        /// The DisasterRecoveryDrill.
        name: String,
        /// Its namespace on the hub (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// `markdown`, or `json` (the drill's status, the same report for machines).
        #[arg(short, long, default_value = "markdown", value_parser = ["markdown", "json"])]
        output: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The DistributedTopology to drill (also the name of the DisasterRecoveryDrill, unless
    /// --drill-name).
    #[arg(required = true)]
    name: Option<String>,
    /// Its namespace on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// The member that becomes primary during the drill.
    #[arg(long, required_unless_present = "resume")]
    to: Option<String>,
    /// Switch back to the original primary afterwards, and verify it again.
    #[arg(long = "return")]
    return_to_original: bool,
    /// MEMBER=URI: a member's libpq URI (repeatable); overrides the drill's spec.connection.
    #[arg(long = "dsn", value_name = "MEMBER=URI", value_parser = parse_dsn)]
    dsns: Vec<(String, String)>,
    /// Deadline of each switchover of the drill, e.g. 5m.
    #[arg(long, default_value = "10m")]
    timeout: policies::Duration,
    /// Name of the DisasterRecoveryDrill object (default: the topology's name).
    #[arg(long)]
    drill_name: Option<String>,
    /// Continue the run a `federator drill` process left Running (it was killed), from the step
    /// its status records; give the same --dsn URIs again.
    #[arg(long, conflicts_with_all = ["to", "return_to_original"])]
    resume: bool,
}

fn parse_dsn(text: &str) -> Result<(String, String), String> {
    let (member, uri) = text.split_once('=').ok_or_else(|| {
        "expected MEMBER=URI, e.g. pg-b=postgresql://app:…@host:5432/app".to_owned()
    })?;
    if member.is_empty() || uri.is_empty() {
        return Err("expected MEMBER=URI with both parts non-empty".into());
    }
    Ok((member.to_owned(), uri.to_owned()))
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client=off".into()),
        )
        .try_init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let hub = kube.connect().await?;
        match args.command {
            Some(Command::Report {
                name,
                namespace,
                output,
            }) => {
                let namespace = hub.namespace(namespace.as_deref());
                print_report(hub.client, &name, &namespace, &output).await
            }
            None => drill(args.run, hub).await,
        }
    })
}

async fn print_report(
    client: kube::Client,
    name: &str,
    namespace: &str,
    output: &str,
) -> anyhow::Result<ExitCode> {
    let api: Api<DisasterRecoveryDrill> = Api::namespaced(client, namespace);
    let drill = api
        .get(name)
        .await
        .with_context(|| format!("reading DisasterRecoveryDrill {namespace}/{name}"))?;
    if output == "json" {
        let json = json!({
            "drill": format!("{namespace}/{name}"),
            "spec": drill.spec,
            "status": drill.status,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", report::markdown(&drill));
    }
    Ok(ExitCode::SUCCESS)
}

async fn drill(args: RunArgs, hub: Hub) -> anyhow::Result<ExitCode> {
    let Some(topology) = args.name else {
        bail!("NAME is required");
    };
    let name = args.drill_name.unwrap_or_else(|| topology.clone());
    let ns = hub.namespace(args.namespace.as_deref());
    let client = hub.client;
    let api: Api<DisasterRecoveryDrill> = Api::namespaced(client.clone(), &ns);
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let runner = format!("cli/{}-{}", host.trim(), std::process::id());
    let mut executor = Executor::new(client, runner);
    executor.overrides = args
        .dsns
        .into_iter()
        .map(|(member, uri)| (member, Target::from(uri)))
        .collect::<Dsns>();
    executor.echo = true;

    let existing = api
        .get_opt(&name)
        .await
        .with_context(|| format!("reading DisasterRecoveryDrill {ns}/{name}"))?;
    let running =
        existing.filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DrillPhase::Running));
    let drill = match (running, args.resume) {
        (Some(d), true) => {
            let by = d.status.as_ref().and_then(|s| s.runner.clone());
            let by = by.unwrap_or_default();
            if !by.starts_with("cli/") {
                bail!(
                    "drill {ns}/{name} is run by {by}; the controller resumes its own runs (see `federator drill report {name} -n {ns}`)"
                );
            }
            println!("drill {ns}/{name}: resuming the run of {by}");
            executor.take_over(&d).await?
        }
        (Some(d), false) => bail!(
            "drill {ns}/{name} is already running ({}); wait for it, or if that `federator drill` process is gone continue its run with --resume (see `federator drill report {name} -n {ns}`)",
            d.status.and_then(|s| s.runner).unwrap_or_default()
        ),
        (None, true) => bail!("drill {ns}/{name} has no run in progress to resume"),
        (None, false) => {
            let Some(to) = args.to else {
                bail!("--to is required to start a drill");
            };
            let spec = DisasterRecoveryDrillSpec {
                topology: topology.clone(),
                to,
                return_to_original: args.return_to_original,
                schedule: None,
                connection: Vec::new(),
                timeout: Some(args.timeout),
            };
            let drill = upsert(&api, &name, spec).await?;
            println!(
                "drill {ns}/{name}: primary of {topology} to {}{}",
                drill.spec.to,
                if args.return_to_original {
                    " and back"
                } else {
                    ""
                }
            );
            executor.start(&drill, None).await?
        }
    };
    let drill = drive(&executor, drill, &name).await?;
    let status = drill.status.clone().unwrap_or_default();
    println!();
    print!("{}", report::markdown(&drill));
    Ok(exit::code(if status.phase == Some(DrillPhase::Succeeded) {
        exit::OK
    } else {
        exit::NOT_DONE
    }))
}

/// The same state machine as the controller's, driven here until the run ends; waits poll this
/// one drill and its topology.
async fn drive(
    executor: &Executor,
    mut drill: DisasterRecoveryDrill,
    name: &str,
) -> anyhow::Result<DisasterRecoveryDrill> {
    loop {
        let (written, next) = match executor.advance(drill.clone()).await {
            Ok(done) => done,
            // The drill or the topology changed under a write: read the drill again and decide
            // on what is there now.
            Err(e) if e.is_conflict() => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let fresh = executor.hub(&drill).drill(name).await?;
                (
                    fresh.context("the drill was deleted while it ran")?,
                    Next::Continue,
                )
            }
            Err(e) => return Err(e.into()),
        };
        drill = written;
        match next {
            Next::Continue => {}
            Next::Wait(until) => {
                let now = k8s_openapi::jiff::Timestamp::now();
                let wait = if until > now {
                    until.duration_since(now).unsigned_abs()
                } else {
                    std::time::Duration::ZERO
                };
                tokio::time::sleep(wait.min(std::time::Duration::from_millis(200))).await;
            }
            Next::Done => return Ok(drill),
        }
    }
}

/// Creates the drill, or replaces its spec; annotated as run by the CLI either way.
async fn upsert(
    api: &Api<DisasterRecoveryDrill>,
    name: &str,
    spec: DisasterRecoveryDrillSpec,
) -> anyhow::Result<DisasterRecoveryDrill> {
    let mut drill = DisasterRecoveryDrill::new(name, spec.clone());
    drill.metadata.annotations = Some([(RUN_BY_ANNOTATION.to_owned(), "cli".to_owned())].into());
    match api.create(&PostParams::default(), &drill).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Keep the connections and schedule the object already has; the CLI sets the rest.
            let patch = json!({
                "metadata": {"annotations": {RUN_BY_ANNOTATION: "cli"}},
                "spec": {
                    "topology": spec.topology,
                    "to": spec.to,
                    "return": spec.return_to_original,
                    "timeout": spec.timeout,
                },
            });
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            api.patch(name, &params, &Patch::Merge(patch))
                .await
                .with_context(|| format!("updating drill {name}"))
        }
        Err(e) => Err(e).with_context(|| format!("creating DisasterRecoveryDrill {name}")),
    }
}
