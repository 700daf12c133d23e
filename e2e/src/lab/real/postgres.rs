//! Reaching a Cluster's PostgreSQL on the real tier from the host: the instance pod's IP from the
//! member's API, a tunnel through the region's netns proxy, then the PostgreSQL protocol over it
//! (no TLS: CNPG's default `pg_hba` accepts password logins without it).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DynamicObject;

use super::netns_proxy::connect_through;
use super::plan::RealPlan;
use crate::lab::error::{LabError, Result};
use crate::lab::kubeconfig;
use crate::lab::layout::LabLayout;
use crate::lab::state::LabState;

const POSTGRES_PORT: u16 = 5432;

/// The pod CloudNativePG reports as the Cluster's current (or designated) primary.
pub async fn current_primary_pod(
    client: &kube::Client,
    namespace: &str,
    cluster: &str,
) -> Result<Pod> {
    let clusters: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &super::cluster_resource());
    let object = clusters.get(cluster).await.map_err(LabError::kube(format!(
        "reading Cluster {namespace}/{cluster}"
    )))?;
    let pod = object.data["status"]["currentPrimary"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            LabError::Config(format!(
                "Cluster {namespace}/{cluster} has no currentPrimary yet"
            ))
        })?
        .to_owned();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.get(&pod)
        .await
        .map_err(LabError::kube(format!("reading Pod {namespace}/{pod}")))
}

/// The real tier of the lab in `layout`, as recorded by `up`.
fn real_plan(layout: &LabLayout) -> Result<RealPlan> {
    let state =
        LabState::load(layout)?.ok_or_else(|| LabError::NotRunning(layout.root().into()))?;
    let real = state.real.ok_or_else(|| {
        LabError::Config(format!(
            "the lab in {} is not a real tier",
            layout.root().display()
        ))
    })?;
    Ok(RealPlan::new(layout, &real.members))
}

/// The node of member region `member`.
fn member_node<'a>(plan: &'a RealPlan, member: &str) -> Result<&'a super::plan::RegionPlan> {
    plan.member_regions()
        .find(|r| r.member == member)
        .ok_or_else(|| {
            let nodes: Vec<&str> = plan.regions.iter().map(|r| r.member.as_str()).collect();
            LabError::Config(format!(
                "{member} is not a member region with a node in this lab (nodes: {}); name the \
                 region the Cluster runs in",
                nodes.join(", ")
            ))
        })
}

/// A connection as `user`/`password` to database `dbname` on the Cluster's current primary pod
/// in `member`, made within `within`.
pub async fn connect(
    layout: &LabLayout,
    member: &str,
    namespace: &str,
    cluster: &str,
    (user, password, dbname): (&str, &str, &str),
    within: Duration,
) -> Result<tokio_postgres::Client> {
    let plan = real_plan(layout)?;
    let region = member_node(&plan, member)?;
    let client = kubeconfig::client_from_file(&layout.kubeconfig(member)).await?;
    let pod = current_primary_pod(&client, namespace, cluster).await?;
    let ip: IpAddr = pod
        .status
        .and_then(|s| s.pod_ip)
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| LabError::Config(format!("the primary pod of {cluster} has no IP yet")))?;
    let target = SocketAddr::new(ip, POSTGRES_PORT);
    let timeout = |what: &str| LabError::Timeout(what.to_owned(), within.as_secs());
    let stream = tokio::time::timeout(within, connect_through(&region.egress_socket(), target))
        .await
        .map_err(|_| timeout(&format!("a tunnel to {target}")))?
        .map_err(|e| LabError::Config(format!("tunnel to {target}: {e}")))?;
    let mut config = tokio_postgres::Config::new();
    config
        .user(user)
        .password(password)
        .dbname(dbname)
        .application_name("federator-e2e");
    let (pg, connection) =
        tokio::time::timeout(within, config.connect_raw(stream, tokio_postgres::NoTls))
            .await
            .map_err(|_| timeout(&format!("PostgreSQL at {target}")))?
            .map_err(|e| LabError::Config(format!("PostgreSQL at {target}: {e}")))?;
    tokio::spawn(connection);
    Ok(pg)
}

/// How long the exposing proxy may take to listen.
const EXPOSE_WITHIN: Duration = Duration::from_secs(20);

/// The libpq URI of Cluster `namespace/cluster` in `member` on the real tier (what
/// `federator-lab dsn` prints): its `-rw` Service exposed on the host's loopback by a netns proxy
/// the lab starts (component `dsn-<member>-<namespace>-<cluster>`, stopped by `down`), with the
/// credentials of the Cluster's application Secret (`<cluster>-app`), else of its superuser
/// Secret. The Service follows the primary, so the URI stays valid across switchovers.
pub async fn dsn(
    layout: &LabLayout,
    member: &str,
    namespace: &str,
    cluster: &str,
) -> Result<String> {
    use k8s_openapi::api::core::v1::{Secret, Service};

    let plan = real_plan(layout)?;
    let region = member_node(&plan, member)?;
    let client = kubeconfig::client_from_file(&layout.kubeconfig(member)).await?;
    let clusters: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &super::cluster_resource());
    let object = clusters
        .get_opt(cluster)
        .await
        .map_err(LabError::kube(format!(
            "reading Cluster {namespace}/{cluster}"
        )))?
        .ok_or_else(|| {
            LabError::Config(format!(
                "no Cluster {namespace}/{cluster} on {member}; `kubectl --context {member} get \
                 clusters -A` lists them"
            ))
        })?;
    let service = format!("{cluster}-rw");
    let ip: IpAddr = Api::<Service>::namespaced(client.clone(), namespace)
        .get_opt(&service)
        .await
        .map_err(LabError::kube(format!(
            "reading Service {namespace}/{service}"
        )))?
        .and_then(|s| s.spec?.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| {
            LabError::Config(format!(
                "Cluster {namespace}/{cluster} has no Service {service} with a ClusterIP yet; wait \
                 until CloudNativePG created it"
            ))
        })?;
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let superuser = object.data["spec"]["superuserSecret"]["name"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{cluster}-superuser"));
    // The application database (CloudNativePG's default `app` in every bootstrap method): a
    // replica cluster made by `pg_basebackup` has it too, but no `-app` Secret, so its superuser
    // connects there — the same database on every member of a topology.
    let bootstrap = &object.data["spec"]["bootstrap"];
    let app_db = ["initdb", "pg_basebackup", "recovery"]
        .iter()
        .find_map(|m| bootstrap[m]["database"].as_str())
        .unwrap_or("app");
    // The application user's Secret the bootstrap names (shared by every member of a topology,
    // examples/real), else the one CloudNativePG generates, else the superuser's.
    let named = ["initdb", "pg_basebackup", "recovery"]
        .iter()
        .find_map(|m| bootstrap[m]["secret"]["name"].as_str())
        .map(str::to_owned);
    let mut credentials = None;
    for name in named
        .into_iter()
        .chain([format!("{cluster}-app"), superuser])
    {
        if let Some(secret) = secrets
            .get_opt(&name)
            .await
            .map_err(LabError::kube(format!("reading Secret {namespace}/{name}")))?
        {
            let data = secret.data.unwrap_or_default();
            let field = |k: &str| {
                data.get(k)
                    .and_then(|v| String::from_utf8(v.0.clone()).ok())
            };
            if let (Some(user), Some(password)) = (field("username"), field("password")) {
                let db = field("dbname").unwrap_or_else(|| app_db.to_owned());
                credentials = Some((user, password, db));
                break;
            }
        }
    }
    let (user, password, db) = credentials.ok_or_else(|| {
        LabError::Config(format!(
            "Cluster {namespace}/{cluster} has neither an application Secret {cluster}-app nor a \
             superuser Secret (set spec.enableSuperuserAccess, or bootstrap it with initdb)"
        ))
    })?;
    let port = expose(
        layout,
        region,
        &format!("{namespace}-{cluster}"),
        SocketAddr::new(ip, POSTGRES_PORT),
    )
    .await?;
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    Ok(format!(
        "postgresql://{}:{}@127.0.0.1:{port}/{}?sslmode=require",
        enc(&user),
        enc(&password),
        enc(&db)
    ))
}

/// Starts (or finds running) the proxy exposing `target` inside `region` on a loopback port of
/// the host; returns the port.
async fn expose(
    layout: &LabLayout,
    region: &super::plan::RegionPlan,
    what: &str,
    target: SocketAddr,
) -> Result<u16> {
    use crate::lab::running::{ensure_running, is_running, lock};
    use crate::lab::state::{Component, HealthCheck};

    let artifacts = super::artifacts::find()?;
    let _lock = lock(layout).await?;
    let mut state =
        LabState::load(layout)?.ok_or_else(|| LabError::NotRunning(layout.root().into()))?;
    let name = format!("dsn-{}-{what}", region.member);
    let expose_arg = |port: u16| format!("--expose=127.0.0.1:{port}={target}");
    if let Some(existing) = state.component(&name)
        && is_running(layout, existing)
    {
        let port = existing.ports.first().copied().unwrap_or_default();
        if existing.args.contains(&expose_arg(port)) {
            return Ok(port);
        }
        // The Service was made again (another ClusterIP): a new proxy.
        super::super::process::stop(
            existing.pid.unwrap_or_default(),
            layout.root(),
            &existing.ports,
        )
        .await;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(LabError::io("finding a free port on", layout.root()))?;
    let component = Component {
        name: name.clone(),
        kind: "dsn".into(),
        region: Some(region.member.clone()),
        ports: vec![port],
        program: artifacts.netns_proxy,
        args: vec![
            format!("--netns={}", region.netns_path().display()),
            expose_arg(port),
            // Marks the process as this lab's real tier (the sweep kills it with the rest).
            format!("--label={}", region.dir().join("dsn").join(what).display()),
        ],
        log: layout.log_file(&name),
        health: HealthCheck::Tcp { port },
        pid: None,
    };
    state.upsert(component);
    state.save(layout)?;
    ensure_running(layout, &mut state, &[name.as_str()], EXPOSE_WITHIN).await?;
    Ok(port)
}
