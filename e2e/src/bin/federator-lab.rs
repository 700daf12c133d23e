#![forbid(unsafe_code)]
//! `federator-lab up | down | status | stop | start | agents | dsn`: the local lab of real kube-apiservers
//! (docs/lab.md). A binary of its own, so the product binary `federator` links neither the lab,
//! nor the emulator, nor its webhook's TLS server. All the work is in `e2e::lab`; this file
//! parses flags and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use e2e::lab::{self, Ports};

/// The local lab: real kube-apiservers, etcd and the CNPG emulator on loopback.
#[derive(Parser)]
#[command(name = "federator-lab", version, about)]
struct Args {
    /// Lab directory: state, PKI, logs and kubeconfigs.
    #[arg(long, global = true, default_value = ".lab")]
    dir: PathBuf,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(clap::Subcommand)]
enum LabCommand {
    /// Start etcd, the four apiservers and the CNPG emulators, and set them up (idempotent).
    Up {
        /// etcd client port; the peer port is the next one.
        #[arg(long, default_value_t = lab::DEFAULT_ETCD_PORT)]
        etcd_port: u16,
        /// Port of the hub apiserver; eu-central, eu-western and eu-south take the next three.
        #[arg(long, default_value_t = lab::DEFAULT_APISERVER_PORT)]
        apiserver_port: u16,
        /// `emulator`: the CNPG emulator on host PostgreSQL (fast, fault-injectable). `real`: real
        /// nodes in network namespaces running the real CloudNativePG operator (docs/lab-real.md;
        /// needs root and `make deps-real`).
        #[arg(long, value_enum, default_value_t = Cnpg::Emulator)]
        cnpg: Cnpg,
        /// With `--cnpg real`: the regions that get a node — member regions (each runs the
        /// CloudNativePG operator) and `hub` (for Federator as a pod, docs/install.md).
        #[arg(long, value_delimiter = ',', default_values_t = ["hub".to_owned(), "eu-central".to_owned(), "eu-western".to_owned()])]
        nodes: Vec<String>,
    },
    /// Stop every process the lab started and wait for them to exit.
    Down {
        /// Also delete the lab directory (CA, etcd data, kubeconfigs).
        #[arg(long)]
        purge: bool,
    },
    /// Show each component and its health; exits non-zero unless all are healthy.
    Status {
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Stop one component, or every component of a region (e.g. `eu-south`): its apiserver,
    /// its CNPG emulator and its PostgreSQL instances (data kept). On the real tier: the
    /// region's node (kubelet first), then its containers and shims (SIGKILL, a power cut).
    Stop { target: String },
    /// Start again what `stop` stopped, and wait until it is healthy: the apiserver first, then
    /// the emulator, which starts the PostgreSQL instances as their Clusters' specs say. On the
    /// real tier: the node, until Ready; its kubelet restarts the pods.
    Start {
        target: String,
        /// Only the apiserver: the region's databases stay down until a plain `start` (so the
        /// hub can fence a former primary before it runs; see docs/failover.md). On the real
        /// tier the node runs too (CloudNativePG's webhook is a pod there) but without the
        /// PostgreSQL image, so no instance starts until a plain `start` imports it again.
        #[arg(long)]
        control_plane: bool,
    },
    /// Start the automatic-failover agents of a topology (`federator agent`, one per member, in
    /// the member's region: `stop REGION` stops it with the region, `start REGION` brings it back
    /// with it); docs/automatic-failover.md.
    Agents {
        /// NAMESPACE/NAME of the DistributedTopology on the hub.
        topology: String,
    },
    /// Print the libpq URI of a Cluster's PostgreSQL: `psql "$(federator-lab dsn eu-central
    /// databases/pg16-eu-central)"`. On the real tier: the Cluster's `-rw` Service, exposed on
    /// the host's loopback until `down`, with its application (else superuser) credentials.
    Dsn {
        /// Member region of the Cluster (eu-central, eu-western, eu-south).
        cluster: String,
        /// NAMESPACE/NAME of the CNPG Cluster.
        target: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Cnpg {
    Emulator,
    Real,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // kube's client logs every failed request at ERROR, which readiness polling expects.
                "warn,kube_client=off".into()
            }),
        )
        .try_init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(dispatch(args))
}

async fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir;
    match args.command {
        LabCommand::Up {
            etcd_port,
            apiserver_port,
            cnpg,
            nodes,
        } => {
            let ports = Ports {
                etcd: etcd_port,
                apiserver: apiserver_port,
            };
            let report = lab::up(&lab::UpOptions {
                dir: dir.clone(),
                ports,
                real: (cnpg == Cnpg::Real).then_some(lab::real::RealOptions { members: nodes }),
            })
            .await
            .with_context(|| format!("bringing the lab in {} up", dir.display()))?;
            if report.already_running {
                println!(
                    "lab already running ({:.1} s)",
                    report.elapsed.as_secs_f64()
                );
            } else {
                println!("lab up in {:.1} s", report.elapsed.as_secs_f64());
            }
            print!("{}", report.status);
            print_access(&report.status.dir);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { purge } => {
            let stopped = lab::down(&dir, purge)
                .await
                .with_context(|| format!("stopping the lab in {}", dir.display()))?;
            print_names("stopped", &stopped, "nothing was running");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { output } => {
            let status = lab::status(&dir).await?;
            match output {
                Output::Text => print!("{status}"),
                Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
            }
            Ok(if status.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        LabCommand::Stop { target } => {
            let stopped = lab::stop(&dir, &target).await?;
            print_names("stopped", &stopped, "nothing was running");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Start {
            target,
            control_plane,
        } => {
            let started = if control_plane {
                lab::start_control_plane(&dir, &target).await?
            } else {
                lab::start(&dir, &target).await?
            };
            print_names("started", &started, "already running");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Agents { topology } => {
            let (namespace, name) = topology
                .split_once('/')
                .context("the topology is NAMESPACE/NAME")?;
            let started = lab::agents::start_for(&dir, namespace, name).await?;
            print_names("started", &started, "already running");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Dsn { cluster, target } => {
            let (namespace, name) = target
                .split_once('/')
                .context("the Cluster is NAMESPACE/NAME")?;
            let layout = lab::LabLayout::open(&dir)?;
            let real = lab::state::LabState::load(&layout)?.is_some_and(|s| s.real.is_some());
            let dsn = if real {
                // A Cluster on a real node: its `-rw` Service exposed on the host's loopback.
                lab::real::postgres::dsn(&layout, &cluster, namespace, name).await?
            } else {
                e2e::emulator::dsn(&dir, &cluster, namespace, name)?
            };
            println!("{dsn}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_names(verb: &str, names: &[String], none: &str) {
    let list = if names.is_empty() {
        none.to_owned()
    } else {
        names.join(", ")
    };
    println!("{verb}: {list}");
}

fn print_access(dir: &Path) {
    let d = dir.display();
    println!();
    println!("Reach the lab with kubectl:");
    println!(
        "  export KUBECONFIG={d}/lab.kubeconfig      # contexts: hub, eu-central, eu-western, eu-south"
    );
    println!(
        "  kubectl --context hub -n {} get secrets -l {}=true",
        lab::HUB_NAMESPACE,
        lab::MEMBER_SECRET_LABEL
    );
    println!("  kubectl --context eu-central get crd clusters.postgresql.cnpg.io");
    println!(
        "  kubectl --context eu-south -n {} get clusters",
        lab::DATABASES_NAMESPACE
    );
    println!(
        "  kubectl --kubeconfig {d}/eu-south.federator.kubeconfig auth can-i --list   # least privilege"
    );
    println!("Stop it with `make lab-down` (or `federator-lab down --dir {d}`).");
}
