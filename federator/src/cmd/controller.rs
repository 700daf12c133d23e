//! `federator controller`: the hub controller. Hub access from `KUBECONFIG` (or the in-cluster
//! config); member credentials from a directory and/or labelled Secrets on the hub.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use federator::controller::{
    self, Clock, Context, Events, FileClock, Leadership, LeaseOptions, Metrics, SystemClock,
};
use federator::members::{Liveness, MemberPool};
use kubeconfigs::{CredentialOptions, CredentialSet};

#[derive(clap::Args)]
pub struct Args {
    /// Directory of member kubeconfig files, one per member cluster (`<member>.kubeconfig`).
    #[arg(long, env = "FEDERATOR_MEMBER_KUBECONFIGS")]
    member_kubeconfigs: Option<PathBuf>,
    /// Hub namespace whose Secrets labelled `federator.dev/member-cluster=true` hold member
    /// credentials ("" to not read Secrets).
    #[arg(long, default_value = "federator-system")]
    secret_namespace: String,
    /// Hub namespace of Argo CD cluster Secrets to read as member credentials too.
    #[arg(long)]
    argocd_namespace: Option<String>,
    /// Accept member kubeconfigs that use `exec` or auth-provider plugins.
    #[arg(long)]
    allow_auth_plugins: bool,
    /// Accept member kubeconfigs with `insecure-skip-tls-verify: true` (Argo CD:
    /// `tlsClientConfig.insecure`), which let anyone on the path impersonate the member. For test
    /// clusters only.
    #[arg(long)]
    allow_insecure_member_tls: bool,
    /// How often each member's API server is asked `GET /version` (the liveness probe that
    /// notices a partition a watch cannot see; docs/faults.md). Between 1s and 5m.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    member_probe_interval: policies::Duration,
    /// How long that probe may take before the member counts as unreachable (steps that need
    /// it hold). At least 1s, less than the member request timeout (15s).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    member_probe_timeout: policies::Duration,
    /// Namespaces of CNPG Clusters to watch on every member from the start (more are added as
    /// topologies name them).
    #[arg(long = "watch-namespace", default_value = "databases")]
    watch_namespaces: Vec<String>,
    /// Reconcile only the DistributedTopologies of this hub namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Where to serve Prometheus `/metrics`, `/healthz` (liveness) and `/readyz` (member watches
    /// answered, leadership known). Default: `0.0.0.0:9464` in a pod (the kubelet and Prometheus
    /// must reach it), `127.0.0.1:9464` elsewhere.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Take part in leader election (a Lease on the hub); off only for a single, sole controller.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, default_value = "federator-system")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "federator-controller")]
    lease_name: String,
    /// This controller's identity in the election (default: hostname and pid).
    #[arg(long)]
    identity: Option<String>,
    /// Seconds a lease stays valid after its last renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Log lines as `text` (for a terminal) or `json` (one object per line, for a log pipeline:
    /// every field and the span of the reconcile are keys).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// TEST ONLY: read "now" from FILE (an RFC 3339 instant, advancing in real time from when
    /// it is read; rewrite the file to jump). Lets end-to-end tests fire scheduled rotations
    /// without waiting; never use it in production.
    #[arg(long, value_name = "FILE", hide = true)]
    unsafe_test_clock: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub fn run(args: Args, kube: &super::hub::KubeArgs) -> anyhow::Result<ExitCode> {
    // Bad timing is refused before anything starts.
    let liveness = Liveness::new(
        args.member_probe_interval.as_std(),
        args.member_probe_timeout.as_std(),
    )
    .map_err(anyhow::Error::msg)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_lease_manager=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a pod's log (`kubectl logs`) or a file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match args.log_format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args, kube, liveness))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args, kube: &super::hub::KubeArgs, liveness: Liveness) -> anyhow::Result<()> {
    // --kubeconfig/--context, else KUBECONFIG, ~/.kube/config or the in-cluster ServiceAccount.
    let hub = kube.connect().await?.client;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });

    // Every missing hub permission named up front (docs/install.md), not found one request at
    // a time; the controller still starts and does what it is allowed to.
    let credential_namespaces: Vec<&str> = [
        Some(args.secret_namespace.as_str()),
        args.argocd_namespace.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|ns| !ns.is_empty())
    .collect();
    federator::hub_permissions::check(
        &hub,
        &federator::hub_permissions::Scope {
            topologies: args.namespace.as_deref(),
            lease: args
                .leader_election
                .then_some((args.lease_namespace.as_str(), args.lease_name.as_str())),
            credential_namespaces,
        },
    )
    .await;

    let credentials = CredentialSet::new(CredentialOptions {
        directory: args.member_kubeconfigs.clone(),
        secret_namespace: Some(args.secret_namespace.clone()).filter(|ns| !ns.is_empty()),
        argocd_namespace: args.argocd_namespace.clone(),
        trust: kubeconfigs::Trust {
            allow_auth_plugins: args.allow_auth_plugins,
            allow_insecure_tls: args.allow_insecure_member_tls,
        },
    });
    tokio::spawn({
        let credentials = credentials.clone();
        let hub = hub.clone();
        async move {
            if let Err(e) = credentials.run(Some(hub)).await {
                tracing::error!(error = %e, "member credentials stopped reloading");
            }
        }
    });
    let pool = MemberPool::with_liveness(args.watch_namespaces.clone(), liveness);
    // Subscribe before the pool starts, so that no change is missed between the two.
    let member_changes = pool.events();
    tokio::spawn({
        let pool = pool.clone();
        let updates = credentials.subscribe();
        async move { pool.run(updates).await }
    });

    // The one monotonic clock: the Lease's deadline and the ledger's windows are measured on it.
    let monotonic: Arc<dyn controller::Monotonic> = Arc::new(controller::SystemMonotonic);
    let leader = if args.leader_election {
        Leadership::elect(
            hub.clone(),
            LeaseOptions {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: Duration::from_secs(args.lease_seconds),
                grace: Duration::from_secs((args.lease_seconds / 3).max(1)),
            },
            monotonic.clone(),
        )
        .await
        .context("joining leader election")?
    } else {
        Leadership::always()
    };

    let metrics = Arc::new(Metrics::new());
    metrics.attach_leadership(leader.clone());
    metrics.attach_members(pool.clone());
    let ready: controller::Readiness = Arc::new({
        let (pool, leader) = (pool.clone(), leader.clone());
        move || {
            let mut reasons: Vec<String> = pool
                .unanswered()
                .into_iter()
                .map(|w| format!("member watch {w} has not answered yet"))
                .collect();
            if !leader.known() {
                reasons.push("the Lease has not been read yet (leadership unknown)".into());
            }
            reasons
        }
    });
    tokio::spawn({
        let metrics = metrics.clone();
        let addr = args.metrics_addr.unwrap_or_else(default_metrics_addr);
        async move {
            if let Err(e) = controller::serve_metrics(addr, metrics, ready).await {
                tracing::error!(error = %e, %addr, "serving /metrics");
            }
        }
    });

    let clock = clock(args.unsafe_test_clock.clone());
    // One shutdown for every controller: on SIGTERM a running drill records where it stopped.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown_signal()));
    let drills = tokio::spawn(federator::drill::controller::run(
        hub.clone(),
        args.namespace.clone(),
        leader.clone(),
        identity.clone(),
        clock.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let region_switches = tokio::spawn(federator::region::controller::run(
        hub.clone(),
        Arc::new(pool.clone()),
        args.namespace.clone(),
        leader.clone(),
        identity.clone(),
        clock.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let region_rotations = tokio::spawn(federator::region::rotation::run(
        hub.clone(),
        args.namespace.clone(),
        leader.clone(),
        identity.clone(),
        clock.clone(),
        shutdown.clone(),
    ));

    let ctx = Arc::new(Context {
        hub: hub.clone(),
        members: Arc::new(pool),
        leader,
        events: Events::new(hub, identity.clone()),
        metrics,
        credentials: Some(credentials),
        clock,
        ledger: controller::Ledger::new(monotonic),
        voters: federator::autofailover::hub::HubVoters::default(),
        status_schemes: Default::default(),
    });
    tracing::info!(%identity, "federator controller running");
    let leadership = ctx.leader.clone();
    controller::run(ctx, args.namespace.as_deref(), member_changes, shutdown).await;
    let _ = drills.await;
    let _ = region_switches.await;
    let _ = region_rotations.await;
    // A graceful stop (a rollout, a drained node) hands the Lease over at once instead of
    // leaving the other replica to wait for it to expire.
    leadership.release().await;
    tracing::info!("federator controller stopped");
    Ok(())
}

/// All interfaces in a pod (`KUBERNETES_SERVICE_HOST` is set there), loopback elsewhere.
fn default_metrics_addr() -> SocketAddr {
    let port = 9464;
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        SocketAddr::from(([0, 0, 0, 0], port))
    } else {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// The system clock, or with `--unsafe-test-clock` the test clock (loudly).
fn clock(test_file: Option<PathBuf>) -> Arc<dyn Clock> {
    match test_file {
        Some(path) => {
            tracing::warn!(path = %path.display(), "UNSAFE TEST CLOCK: \"now\" is read from a file; rotations follow it. Never use this in production.");
            Arc::new(FileClock::new(path))
        }
        None => Arc::new(SystemClock),
    }
}

/// SIGTERM or Ctrl-C.
pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
