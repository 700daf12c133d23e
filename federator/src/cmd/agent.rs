//! `federator agent`: the automatic-failover agent of one member of one topology, run in the
//! member's region (docs/automatic-failover.md). It is part of the product binary: it needs
//! nothing the controller does not already link (kube, tokio-postgres), and one binary keeps
//! the agent and the hub on the same version of the rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use federator::autofailover::agent::{Agent, Health};
use federator::autofailover::permissions::{self, Place};
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(clap::Args)]
pub struct Args {
    /// The topology on the hub, `<namespace>/<name>`.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    topology: String,
    /// The member (of spec.members) whose region this agent runs in.
    #[arg(long)]
    member: String,
    /// The hub credential: a kubeconfig that may get the DistributedTopology and
    /// get/create/patch Leases in its namespace. Without one the agent could never renew with
    /// the hub and its primary would count one voter short; it refuses to start.
    #[arg(long, env = "FEDERATOR_AGENT_HUB_KUBECONFIG", value_name = "FILE")]
    hub_kubeconfig: Option<PathBuf>,
    /// Directory of every member region's kubeconfig (`<cluster>.kubeconfig`, its own region's
    /// included): the agent renews its heartbeat in every region's store.
    #[arg(long, env = "FEDERATOR_MEMBER_KUBECONFIGS", value_name = "DIR")]
    member_kubeconfigs: PathBuf,
    /// Its own region's Kubernetes cluster (the key of its kubeconfig in --member-kubeconfigs).
    #[arg(long)]
    cluster: String,
    /// Namespace of its member's CNPG Cluster in its own region.
    #[arg(long)]
    namespace: String,
    /// PostgreSQL of its member (libpq URI), for pg_is_in_recovery() and the WAL positions it
    /// reports; without it the positions are unknown (only dataLossBudget Any can promote).
    #[arg(long, env = "FEDERATOR_AGENT_POSTGRES", value_name = "URI")]
    postgres: Option<String>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Where to serve `/healthz` (its loop finishes rounds) and `/readyz` (its permission check
    /// found nothing missing), for the Deployment's probes, and `/metrics` (each voter's store:
    /// renewal latency against its bound, renewals by outcome). Unset: no probe server.
    #[arg(long, value_name = "ADDR")]
    probe_addr: Option<std::net::SocketAddr>,
}

/// Serves the agent's probes on `addr` until the process exits.
async fn serve_probes(
    addr: std::net::SocketAddr,
    health: std::sync::Arc<federator::autofailover::agent::Health>,
) -> std::io::Result<()> {
    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let answer = |r: Result<(), String>| match r {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    };
    let (live, ready) = (health.clone(), health.clone());
    let app = Router::new()
        .route(
            "/healthz",
            get(move || {
                let r = live.alive();
                async move { answer(r) }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let r = ready.ready();
                async move { answer(r) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = health.metrics();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app).await
}

async fn client_from(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    kube::Client::try_from(config).with_context(|| format!("a client for {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a pod's log (`kubectl logs`) or a file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if args.log_format == "json" {
        logs.json().flatten_event(true).try_init()
    } else {
        logs.try_init()
    };
    let Some(hub_kubeconfig) = args.hub_kubeconfig.clone() else {
        bail!(
            "federator agent needs a hub credential: set --hub-kubeconfig (or \
             FEDERATOR_AGENT_HUB_KUBECONFIG) to a kubeconfig that may get DistributedTopology {} \
             and get/create/patch Leases in its namespace; without it this member's heartbeat \
             never reaches the hub and automatic failover stays off (condition AutomaticFailover)",
            args.topology
        );
    };
    let Some((hub_namespace, topology)) = args.topology.split_once('/') else {
        bail!(
            "--topology must be <namespace>/<name>, got {:?}",
            args.topology
        );
    };
    let (hub_namespace, topology) = (hub_namespace.to_owned(), topology.to_owned());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let hub = client_from(&hub_kubeconfig).await?;
        let mut regions = BTreeMap::new();
        for entry in std::fs::read_dir(&args.member_kubeconfigs)
            .with_context(|| format!("listing {}", args.member_kubeconfigs.display()))?
        {
            let path = entry?.path();
            let Some(cluster) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".kubeconfig"))
            else {
                continue;
            };
            regions.insert(cluster.to_owned(), client_from(&path).await?);
        }
        if !regions.contains_key(&args.cluster) {
            // In its own region's Kubernetes (the agent's Deployment), its ServiceAccount.
            match kube::Config::incluster() {
                Ok(config) => {
                    let client = kube::Client::try_from(config)
                        .context("a client for its own region (in-cluster)")?;
                    regions.insert(args.cluster.clone(), client);
                }
                Err(_) => bail!(
                    "--member-kubeconfigs {} has no {}.kubeconfig and the agent does not run in \
                     a Kubernetes pod: the agent needs its own region's credential (--cluster) \
                     to read and fence its Cluster",
                    args.member_kubeconfigs.display(),
                    args.cluster
                ),
            }
        }
        tracing::info!(member = %args.member, topology = %args.topology, regions = ?regions.keys().collect::<Vec<_>>(), "agent starting");
        let health = std::sync::Arc::new(Health::default());
        if let Some(addr) = args.probe_addr {
            let health = health.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_probes(addr, health).await {
                    tracing::error!(%addr, error = %e, "the probe server stopped");
                }
            });
        }
        tokio::spawn(check_permissions(
            hub.clone(),
            regions.clone(),
            hub_namespace.clone(),
            topology.clone(),
            args.member.clone(),
            args.cluster.clone(),
            health.clone(),
        ));
        let agent = Agent {
            hub,
            hub_namespace,
            topology,
            member: args.member,
            cluster: args.cluster,
            namespace: args.namespace,
            regions,
            postgres: args.postgres,
            health,
        };
        agent.run(super::controller::shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Checks the agent's permissions once (the topology names the other regions' stores; until
/// the hub answers, the check waits and retries): every missing one is logged and keeps the
/// agent unready. The agent runs meanwhile: a permission check never delays a fence.
async fn check_permissions(
    hub: kube::Client,
    regions: BTreeMap<String, kube::Client>,
    hub_namespace: String,
    topology: String,
    member: String,
    cluster: String,
    health: std::sync::Arc<Health>,
) {
    let api: kube::Api<topology::DistributedTopology> =
        kube::Api::namespaced(hub.clone(), &hub_namespace);
    let topo = loop {
        match api.get(&topology).await {
            Ok(t) => break Some(t),
            Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => break None,
            Err(e) => {
                tracing::debug!(error = %e, "the permission check waits for the topology");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    };
    let required = match topo
        .as_ref()
        .and_then(|t| permissions::for_topology(t, &member))
    {
        Some(r) => r,
        None => {
            // Without the topology only the hub's permission to read it can be named.
            let own = permissions::StoreAt {
                cluster: &cluster,
                namespace: &hub_namespace,
            };
            permissions::required(&hub_namespace, &topology, &own, "", &[])
                .into_iter()
                .filter(|(place, _)| *place == Place::Hub)
                .collect()
        }
    };
    let missing = permissions::check(&required, |place| match place {
        Place::Hub => Some(hub.clone()),
        Place::Own(c) | Place::Peer(c) => regions.get(c).cloned(),
    })
    .await;
    health.checked(
        missing
            .iter()
            .map(|(place, permission)| format!("{permission} {place}"))
            .collect(),
    );
}
