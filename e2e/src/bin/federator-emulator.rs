#![forbid(unsafe_code)]
//! `federator-emulator`: the CNPG emulator of one member region (see docs/emulator.md).
//!
//! `federator-emulator run --lab-dir .lab --member eu-central` watches that member's Clusters
//! and runs a real PostgreSQL for each; `lab up` starts one per member with the lab's flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use e2e::emulator::postgres::PgBin;
use e2e::emulator::postgres::run::DEFAULT_PG_BIN;
use e2e::emulator::webhook::{self, WebhookConfig};
use e2e::emulator::{EmulatorConfig, Timing};

#[derive(Parser)]
#[command(
    version,
    about = "CloudNativePG emulator on real PostgreSQL, one process per member"
)]
enum Command {
    /// Watch the member's Clusters and run their PostgreSQL instances until SIGTERM.
    Run(RunArgs),
    /// Print the libpq URI of a Cluster's instance.
    Dsn {
        #[arg(long, default_value = ".lab")]
        lab_dir: PathBuf,
        #[arg(long)]
        member: String,
        /// NAMESPACE/NAME of the Cluster.
        cluster: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, default_value = ".lab")]
    lab_dir: PathBuf,
    /// Member region whose apiserver to watch (eu-central, eu-western, eu-south).
    #[arg(long)]
    member: String,
    /// Admin kubeconfig of the member; default `<lab-dir>/<member>.kubeconfig`.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_PG_BIN)]
    pg_bin: PathBuf,
    /// First PostgreSQL port of this member; its Clusters take the next 100.
    #[arg(long)]
    pg_port_base: u16,
    /// Multiplies CNPG's requeue intervals (1 s operator, 10 s instance manager); 1 = CNPG's.
    #[arg(long, env = "FEDERATOR_EMULATOR_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// PostgreSQL's `wal_retrieve_retry_interval` in milliseconds (PostgreSQL's default: 5000).
    #[arg(long, env = "FEDERATOR_EMULATOR_WAL_RETRY_MS", default_value_t = 5000)]
    wal_retrieve_retry_interval_ms: u64,
    /// WAL segment size in MB of the instances it creates (`initdb --wal-segsize`, a power of
    /// two, 1–1024; CNPG's `bootstrap.initdb.walSegmentSize`). Default: PostgreSQL's 16.
    #[arg(long, env = "FEDERATOR_EMULATOR_WAL_SEGMENT_MB")]
    wal_segment_mb: Option<u32>,
    /// Serve the `vcluster.cnpg.io` admission webhook on this loopback port and register it.
    #[arg(long)]
    webhook_port: Option<u16>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=warn,kube_runtime=warn".into()),
        )
        // The lab writes this log to a file: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match Command::parse() {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Dsn {
            lab_dir,
            member,
            cluster,
        } => {
            let (namespace, name) = cluster
                .split_once('/')
                .context("the Cluster is NAMESPACE/NAME")?;
            println!(
                "{}",
                e2e::emulator::dsn(&lab_dir, &member, namespace, name)?
            );
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let lab_dir = args
        .lab_dir
        .canonicalize()
        .with_context(|| format!("lab directory {}", args.lab_dir.display()))?;
    let kubeconfig = args
        .kubeconfig
        .unwrap_or_else(|| lab_dir.join(format!("{}.kubeconfig", args.member)));
    let client = e2e::lab::kubeconfig::client_from_file(&kubeconfig)
        .await
        .with_context(|| format!("kubeconfig {}", kubeconfig.display()))?;
    // Kept alive for the whole run: dropping it would not stop the server, but holding it says
    // the webhook lives as long as the emulator.
    let _webhook = match args.webhook_port {
        Some(port) => {
            let (cert, key) = e2e::lab::pki::issue_serving_cert(&lab_dir, &["127.0.0.1"])?;
            let server =
                webhook::serve(WebhookConfig::new(([127, 0, 0, 1], port).into(), cert, key))
                    .await?;
            let ca = e2e::lab::pki::ca_pem(&lab_dir)?;
            // The member apiserver may be down (`lab stop REGION`, a restart): keep trying
            // rather than exit, as CNPG's operator does.
            while let Err(error) = webhook::register(client.clone(), &ca, &server.url()).await {
                tracing::warn!(%error, "registering the admission webhook; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tracing::info!(url = %server.url(), "admission webhook serving and registered");
            Some(server)
        }
        None => None,
    };
    let config = EmulatorConfig {
        lab_dir,
        member: args.member,
        pg_bin: PgBin::new(args.pg_bin),
        pg_port_base: args.pg_port_base,
        timing: Timing {
            scale: args.time_scale,
        },
        wal_retrieve_retry_interval: Duration::from_millis(args.wal_retrieve_retry_interval_ms),
        wal_segment_mb: args.wal_segment_mb,
    };
    tracing::info!(member = %config.member, scale = config.timing.scale, "emulator running");
    e2e::emulator::run::run(config, client).await;
    Ok(())
}
