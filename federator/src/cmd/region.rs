//! `federator region switch --from REGION --to REGION [-n NS] [--selector k=v,..] [--wait]`:
//! creates a `RegionSwitch` (the controller moves every topology whose primary is in `--from`);
//! `--wait` follows it, printing each topology as it moves. `region status NAME` prints its
//! progress; `region pause|resume|abort NAME` steer it. Exit codes (docs/cli.md): moved 0,
//! refused or holding 3, a topology failed or aborted 4, gave up waiting 5. `region drill` runs a
//! `RegionDrill` in this process (there and back, canaries, evidence report: exit 0 when every
//! check passed, 4 when one failed); `region report NAME [-o json]` prints its report.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use comfy_table::{Table, presets};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use topology::region_api::{
    MovePolicy, OnHoldPolicy, RegionSwitch, RegionSwitchPhase, RegionSwitchSpec,
    RegionSwitchStatus, TopologyState,
};

use topology::drill_api::DrillPhase;
use topology::region_drill_api::{ConnectionTemplate, DrillLimits, RegionDrill, RegionDrillSpec};

use super::exit;
use super::hub::{Hub, KubeArgs};

/// The CLI's field manager on region switches.
const FIELD_MANAGER: &str = "federator-cli";

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Move every topology whose primary is in --from to its member in --to (creates a
    /// RegionSwitch; the controller does the switchovers).
    Switch(SwitchArgs),
    /// Print a region switch's progress, one line per topology.
    Status(NameArgs),
    /// Start no further topology (running switchovers finish).
    Pause(NameArgs),
    /// Undo `pause`.
    Resume(NameArgs),
    /// Start no further topology, ever (running switchovers finish or hold as usual).
    Abort(NameArgs),
    /// A region drill: switch the region there and back with a canary and a probe writer in
    /// every database, run by this process; prints the evidence report (exit 0: every check
    /// passed, 4: a check failed).
    Drill(DrillArgs),
    /// Print a region drill's evidence report (Markdown, or JSON with -o json).
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct DrillArgs {
    /// The region whose primaries move (with --to; creates the RegionDrill).
    #[arg(long, requires = "to", conflicts_with = "run")]
    from: Option<String>,
    /// The region they move to.
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Run the RegionDrill of this name, applied beforehand (e.g. with hooks, `kubectl apply`).
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
    /// With --run: continue a run whose runner is gone, from the step its status records.
    #[arg(long, requires = "run")]
    resume: bool,
    /// The namespace of the topologies on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Only topologies with these labels: `key=value[,key=value]`.
    #[arg(long, short = 'l', value_parser = parse_labels)]
    selector: Option<BTreeMap<String, String>>,
    /// How many topologies switch over at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Do not switch back (one region switch, one verification).
    #[arg(long)]
    no_return: bool,
    /// The hub Secret holding each member's URI (key `uri`); `${member}` is the member's name.
    #[arg(long, default_value = "${member}-app")]
    connection_secret: String,
    /// Fail the check WriteUnavailabilityWithinLimit above this, e.g. 30s.
    #[arg(long)]
    max_write_unavailability: Option<policies::Duration>,
    /// Fail the check TotalTimeWithinLimit above this, e.g. 30m.
    #[arg(long)]
    max_total: Option<policies::Duration>,
    /// Name of the RegionDrill (default: `drill-<from>-<to>-<unix time>`).
    #[arg(long)]
    name: Option<String>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The RegionDrill.
    name: String,
    /// Its namespace on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// `markdown`, or `json` (the drill's spec and status: the same report for machines).
    #[arg(short, long, default_value = "markdown", value_parser = ["markdown", "json"])]
    output: String,
}

#[derive(clap::Args)]
struct SwitchArgs {
    /// The region the primaries leave (a member cluster, as in spec.members[].cluster).
    #[arg(long)]
    from: String,
    /// The region they move to.
    #[arg(long)]
    to: String,
    /// The namespace of the topologies on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Only topologies with these labels: `key=value[,key=value]`.
    #[arg(long, short = 'l', value_parser = parse_labels)]
    selector: Option<BTreeMap<String, String>>,
    /// How many topologies switch over at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// When a switchover holds: `stop` starts no further topology, `continue` goes on.
    #[arg(long, default_value = "stop", value_parser = ["stop", "continue"])]
    on_hold: String,
    /// How long one topology's switchover may take once asked for (the region switch's
    /// spec.timeout).
    #[arg(long, default_value = "10m")]
    switchover_timeout: policies::Duration,
    /// Name of the RegionSwitch (default: `<from>-to-<to>-<unix time>`).
    #[arg(long)]
    name: Option<String>,
    /// Follow it until every topology moved (exit 0), one holds (3) or fails (4).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (the region switch goes on), e.g. 1h.
    #[arg(long, default_value = "1h")]
    timeout: policies::Duration,
}

#[derive(clap::Args)]
struct NameArgs {
    /// The RegionSwitch.
    name: String,
    /// Its namespace on the hub (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!(
                "{pair:?} is not key=value; write --selector app=payments,tier=gold"
            )),
        })
        .collect()
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let hub = kube.connect().await?;
        match args.command {
            Command::Switch(a) => switch(&hub, a).await,
            Command::Status(a) => {
                let api = api(&hub, a.namespace.as_deref());
                let rs = get(&api, &a.name, &hub).await?;
                print!("{}", render(&rs));
                Ok(exit::code(exit::OK))
            }
            Command::Pause(a) => steer(&hub, a, json!({"spec": {"paused": true}}), "paused").await,
            Command::Resume(a) => {
                steer(&hub, a, json!({"spec": {"paused": false}}), "resumed").await
            }
            Command::Abort(a) => steer(&hub, a, json!({"spec": {"abort": true}}), "aborted").await,
            Command::Drill(a) => region_drill(&hub, a).await,
            Command::Report(a) => report(&hub, a).await,
        }
    })
}

fn api(hub: &Hub, namespace: Option<&str>) -> Api<RegionSwitch> {
    Api::namespaced(hub.client.clone(), &hub.namespace(namespace))
}

async fn get(api: &Api<RegionSwitch>, name: &str, hub: &Hub) -> anyhow::Result<RegionSwitch> {
    api.get(name)
        .await
        .with_context(|| format!("reading RegionSwitch {name} on {}", hub.describe))
}

async fn steer(
    hub: &Hub,
    args: NameArgs,
    patch: serde_json::Value,
    what: &str,
) -> anyhow::Result<ExitCode> {
    let api = api(hub, args.namespace.as_deref());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(&args.name, &params, &Patch::Merge(patch))
        .await
        .with_context(|| format!("patching RegionSwitch {} on {}", args.name, hub.describe))?;
    println!("region switch {} {what}", args.name);
    Ok(exit::code(exit::OK))
}

async fn switch(hub: &Hub, args: SwitchArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let namespace = hub.namespace(args.namespace.as_deref());
    let api: Api<RegionSwitch> = Api::namespaced(hub.client.clone(), &namespace);
    let name = args.name.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        format!("{}-to-{}-{now}", args.from, args.to)
    });
    let spec = RegionSwitchSpec {
        from: args.from.clone(),
        to: args.to.clone(),
        paused: false,
        abort: false,
        topologies: vec![],
        moves: MovePolicy {
            match_labels: args.selector.clone().unwrap_or_default(),
            concurrency: args.concurrency,
            on_hold: if args.on_hold == "continue" {
                OnHoldPolicy::Continue
            } else {
                OnHoldPolicy::Stop
            },
            timeout: Some(args.switchover_timeout),
            // Hooks are declared in a RegionSwitch manifest (`kubectl apply`), not on this line.
            hooks: Default::default(),
        },
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    api.create(&params, &RegionSwitch::new(&name, spec))
        .await
        .with_context(|| {
            format!(
                "creating RegionSwitch {namespace}/{name} on {} (is the RegionSwitch CRD \
                 installed? `federator crds | kubectl apply -f -`)",
                hub.describe
            )
        })?;
    println!(
        "{namespace}/{name}: moving the primaries in {} to {}",
        args.from, args.to
    );
    if !args.wait {
        println!("follow it with `federator region status {name} -n {namespace}`");
        return Ok(exit::code(exit::OK));
    }
    follow(&api, &name, args.timeout).await
}

async fn region_drill(hub: &Hub, args: DrillArgs) -> anyhow::Result<ExitCode> {
    let namespace = hub.namespace(args.namespace.as_deref());
    let api: Api<RegionDrill> = Api::namespaced(hub.client.clone(), &namespace);
    let name = match (&args.run, &args.from, &args.to) {
        (Some(name), _, _) => name.clone(),
        (None, Some(from), Some(to)) => {
            let name = args.name.clone().unwrap_or_else(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                format!("drill-{from}-{to}-{now}")
            });
            let drill = RegionDrill::new(
                &name,
                RegionDrillSpec {
                    from: from.clone(),
                    to: to.clone(),
                    return_to_original: !args.no_return,
                    moves: MovePolicy {
                        match_labels: args.selector.clone().unwrap_or_default(),
                        concurrency: args.concurrency,
                        ..MovePolicy::default()
                    },
                    connection: ConnectionTemplate {
                        secret_name: args.connection_secret.clone(),
                        key: None,
                    },
                    limits: DrillLimits {
                        max_write_unavailability: args.max_write_unavailability,
                        max_total: args.max_total,
                    },
                },
            );
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            api.create(&params, &drill).await.with_context(|| {
                format!(
                    "creating RegionDrill {namespace}/{name} on {} (is the RegionDrill CRD \
                     installed? `federator crds | kubectl apply -f -`)",
                    hub.describe
                )
            })?;
            name
        }
        _ => bail!(
            "give --from and --to (a new drill), or --run NAME (a RegionDrill applied before)"
        ),
    };
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let runner = format!("cli/{}-{}", host.trim(), std::process::id());
    println!("{namespace}/{name}: region drill run by {runner}");
    let mut run = federator::region::drill::Runner::new(
        hub.client.clone(),
        &namespace,
        runner,
        Box::new(|line| println!("  {line}")),
    );
    let drill = match run.run(&name, args.resume).await {
        Ok(drill) => drill,
        Err(federator::region::drill::DrillError::Refused(why)) => {
            eprintln!("{why}");
            return Ok(exit::code(exit::HELD));
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", federator::region::drill_report::markdown(&drill));
    let passed = drill.status.as_ref().and_then(|s| s.phase) == Some(DrillPhase::Succeeded);
    Ok(exit::code(if passed { exit::OK } else { exit::NOT_DONE }))
}

async fn report(hub: &Hub, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let namespace = hub.namespace(args.namespace.as_deref());
    let api: Api<RegionDrill> = Api::namespaced(hub.client.clone(), &namespace);
    let drill = api.get(&args.name).await.with_context(|| {
        format!(
            "reading RegionDrill {namespace}/{} on {}",
            args.name, hub.describe
        )
    })?;
    if args.output == "json" {
        let json = json!({
            "regionDrill": format!("{namespace}/{}", args.name),
            "spec": drill.spec,
            "status": drill.status,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", federator::region::drill_report::markdown(&drill));
    }
    Ok(ExitCode::SUCCESS)
}

/// Watches region switch `name`, printing each topology's state change, until it ends.
async fn follow(
    api: &Api<RegionSwitch>,
    name: &str,
    timeout: policies::Duration,
) -> anyhow::Result<ExitCode> {
    let watched = async {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut updates = watcher(api.clone(), config).applied_objects().boxed();
        let mut seen: BTreeMap<String, TopologyState> = BTreeMap::new();
        while let Some(rs) = updates
            .try_next()
            .await
            .context("watching the region switch")?
        {
            let Some(status) = rs.status.clone() else {
                continue;
            };
            for t in &status.topologies {
                if seen.insert(t.name.clone(), t.state) != Some(t.state) {
                    let detail = t
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    println!("  {} {:?} ({} → {}){detail}", t.name, t.state, t.from, t.to);
                }
            }
            if let Some(code) = outcome(&status) {
                println!(
                    "{} {:?}: {} moved{}",
                    name,
                    status.phase.unwrap_or(RegionSwitchPhase::Running),
                    status.summary.as_deref().unwrap_or("0/0"),
                    status
                        .message
                        .as_deref()
                        .map(|m| format!(" — {m}"))
                        .unwrap_or_default()
                );
                return Ok(exit::code(code));
            }
        }
        bail!("the watch on the region switch ended")
    };
    match tokio::time::timeout(timeout.as_std(), watched).await {
        Ok(result) => result,
        Err(_) => {
            println!(
                "gave up waiting after {timeout}; the region switch goes on (see `federator region status {name}`)"
            );
            Ok(exit::code(exit::TIMED_OUT))
        }
    }
}

/// The exit code of a region switch that needs no more following.
fn outcome(status: &RegionSwitchStatus) -> Option<u8> {
    match status.phase? {
        RegionSwitchPhase::Succeeded => Some(exit::OK),
        RegionSwitchPhase::Refused | RegionSwitchPhase::Holding => Some(exit::HELD),
        RegionSwitchPhase::Failed => Some(exit::NOT_DONE),
        RegionSwitchPhase::Running | RegionSwitchPhase::Paused => None,
    }
}

fn render(rs: &RegionSwitch) -> String {
    let status = rs.status.clone().unwrap_or_default();
    let mut out = format!(
        "{} {} → {}: {} ({} moved)\n",
        rs.metadata.name.as_deref().unwrap_or_default(),
        rs.spec.from,
        rs.spec.to,
        status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "not started".into()),
        status.summary.as_deref().unwrap_or("0/0"),
    );
    if let Some(m) = &status.message {
        out.push_str(&format!("{m}\n"));
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(["TOPOLOGY", "FROM", "TO", "STATE", "OPERATION", "MESSAGE"]);
    for t in &status.topologies {
        table.add_row([
            t.name.clone(),
            t.from.clone(),
            t.to.clone(),
            format!("{:?}", t.state),
            t.operation.clone().unwrap_or_else(|| "-".into()),
            t.message.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&table.to_string());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_is_key_value_pairs_and_a_bad_one_says_how_to_write_it() {
        let labels = parse_labels("app=payments, tier=gold").unwrap();
        assert_eq!(labels.get("tier").map(String::as_str), Some("gold"));
        let err = parse_labels("app").unwrap_err();
        assert!(err.contains("key=value"), "{err}");
    }

    #[test]
    fn exit_codes_follow_docs_cli() {
        let with = |phase| RegionSwitchStatus {
            phase: Some(phase),
            ..Default::default()
        };
        assert_eq!(outcome(&with(RegionSwitchPhase::Succeeded)), Some(exit::OK));
        assert_eq!(outcome(&with(RegionSwitchPhase::Refused)), Some(exit::HELD));
        assert_eq!(
            outcome(&with(RegionSwitchPhase::Failed)),
            Some(exit::NOT_DONE)
        );
        assert_eq!(outcome(&with(RegionSwitchPhase::Running)), None);
    }
}
