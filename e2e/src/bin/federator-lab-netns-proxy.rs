//! Bridges the host's loopback and one region's network namespace for the real-CNPG lab tier
//! (`e2e::lab::real::netns_proxy`). Started by `federator lab up --cnpg real`, one per region.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use e2e::lab::real::netns_proxy::{self, Namespace};

#[derive(Parser)]
#[command(about = "Forwards between the host's loopback and a lab network namespace")]
struct Args {
    /// The network namespace, e.g. /run/netns/<name>.
    #[arg(long)]
    netns: PathBuf,
    /// LISTEN=TARGET: listen inside the namespace, connect to TARGET on the host (repeatable).
    #[arg(long = "forward", value_name = "LISTEN=TARGET")]
    forwards: Vec<String>,
    /// LISTEN=TARGET: listen on the host, connect to TARGET inside the namespace (repeatable).
    #[arg(long = "expose", value_name = "LISTEN=TARGET")]
    exposes: Vec<String>,
    /// Serve HTTP CONNECT on this unix socket, dialing inside the namespace.
    #[arg(long)]
    connect_proxy: Option<PathBuf>,
    /// Ignored: names the lab in the command line, so the lab recognises its process.
    #[arg(long)]
    label: Option<String>,
}

fn parse_forward(spec: &str) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let Some((listen, target)) = spec.split_once('=') else {
        bail!("{spec:?}: expected LISTEN=TARGET, e.g. 10.250.0.11:26544=127.0.0.1:26544");
    };
    Ok((
        listen
            .parse()
            .with_context(|| format!("{spec:?}: listen address"))?,
        target
            .parse()
            .with_context(|| format!("{spec:?}: target address"))?,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // The lab writes this log to a file: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let forwards = args
        .forwards
        .iter()
        .map(|s| parse_forward(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let exposes = args
        .exposes
        .iter()
        .map(|s| parse_forward(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if forwards.is_empty() && exposes.is_empty() && args.connect_proxy.is_none() {
        bail!("nothing to do: give --forward, --expose and/or --connect-proxy");
    }
    let namespace = Namespace::enter(&args.netns)
        .with_context(|| format!("entering the network namespace {}", args.netns.display()))?;
    // Everything is bound before "ready", so a taken address fails the start, not a later call.
    let mut tasks = tokio::task::JoinSet::new();
    for (listen, target) in forwards {
        let listener = namespace
            .listen(listen)
            .await
            .with_context(|| format!("listening on {listen} in {}", args.netns.display()))?;
        tasks.spawn(async move {
            netns_proxy::forward(listener, target)
                .await
                .with_context(|| format!("forwarding {listen} (in the namespace) to {target}"))
        });
    }
    for (listen, target) in exposes {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} on the host"))?;
        let namespace = namespace.clone();
        tasks.spawn(async move {
            netns_proxy::expose(listener, namespace, target)
                .await
                .with_context(|| format!("exposing {target} (in the namespace) on {listen}"))
        });
    }
    if let Some(path) = args.connect_proxy {
        let listener =
            netns_proxy::bind_unix(&path).with_context(|| format!("binding {}", path.display()))?;
        tasks.spawn(async move {
            netns_proxy::connect_proxy(namespace, listener)
                .await
                .with_context(|| format!("CONNECT proxy on {}", path.display()))
        });
    }
    tracing::info!("ready");
    // Every task runs forever; the first to end is an error worth exiting on.
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(e.into()),
        None => Ok(()),
    }
}
