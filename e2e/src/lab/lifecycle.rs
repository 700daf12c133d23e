//! `up`, `down`, `stop` and `start`: the lab's processes and their order.
//!
//! Every operation that changes processes holds an exclusive lock on `DIR/lab.lock`, so
//! concurrent callers (several test binaries, a test run and a terminal) serialise instead of
//! racing: the second `up` finds the lab running and returns at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::binaries;
use super::bootstrap;
use super::cnpg_crd;
use super::emulators;
use super::error::{LabError, Result};
use super::etcd_storage;
use super::hub_crds;
use super::kubeconfig::{self, Entry};
use super::layout::LabLayout;
use super::pki;
use super::process;
use super::real::{self, RealOptions, plan::RealPlan};
use super::running::{check_ports, ensure_running, is_running, lock};
use super::state::{Component, HealthCheck, LabState};
use super::status::{self, LabStatus};
use super::topology::{
    DATABASES_NAMESPACE, ETCD, FEDERATOR_SERVICE_ACCOUNT, HUB, MEMBERS, Ports, REGIONS,
};

const ETCD_READY_WITHIN: Duration = Duration::from_secs(60);
/// Four apiservers starting at once on two cores reach /readyz in ~3.5 s; leave wide room for a
/// loaded CI machine.
const APISERVER_READY_WITHIN: Duration = Duration::from_secs(120);

/// What `up` is asked to do.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    /// Used when nothing of the lab is running; a running lab keeps its recorded ports.
    pub ports: Ports,
    /// `Some`: the real-CNPG tier (docs/lab-real.md), real nodes in these member regions and the
    /// real operator instead of the emulators. A lab directory keeps its tier until
    /// `down --purge`.
    pub real: Option<RealOptions>,
}

#[derive(Debug, Clone)]
pub struct UpReport {
    /// The lab was already up and healthy; nothing was started.
    pub already_running: bool,
    pub elapsed: Duration,
    pub status: LabStatus,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The emulator tier runs PostgreSQL as the `postgres` OS user when the lab runs as root; its
/// data directories live inside the lab directory, so that user must be able to enter it.
pub fn check_postgres_can_enter(layout: &LabLayout) -> Result<()> {
    use crate::emulator::postgres::run::{OS_USER, first_unenterable};
    use std::os::unix::fs::MetadataExt;
    let blocked = first_unenterable(layout.root())
        .map_err(|e| LabError::Config(format!("checking the lab directory: {e}")))?;
    let Some(blocked) = blocked else {
        return Ok(());
    };
    let meta = std::fs::metadata(&blocked).map_err(LabError::io("reading", &blocked))?;
    Err(LabError::DirNotEnterable {
        dir: layout.root().to_path_buf(),
        blocked,
        user: OS_USER.to_owned(),
        mode: meta.mode() & 0o7777,
        owner: meta.uid(),
    })
}

/// Brings the lab up, or confirms that it is up. Idempotent.
pub async fn up(options: &UpOptions) -> Result<UpReport> {
    let started = Instant::now();
    // A bad FEDERATOR_LAB_ETCD_STORAGE is refused before anything is created or started.
    let storage = etcd_storage::wanted()?;
    // So is a real tier whose pieces are not built (the error names `make deps-real`).
    let artifacts = match &options.real {
        Some(real) => {
            real.validate()?;
            Some(real::artifacts::find()?)
        }
        None => None,
    };
    let layout = LabLayout::create(&options.dir)?;
    if options.real.is_none() {
        // Before anything starts: otherwise every Cluster stays "Setting up primary".
        check_postgres_can_enter(&layout)?;
    }
    let _lock = lock(&layout).await?;
    let mut state = LabState::load(&layout)?.unwrap_or_else(|| LabState::new(options.ports));
    let nothing_runs = !state.components.iter().any(|c| is_running(&layout, c));
    if nothing_runs {
        state.ports = options.ports;
    }
    if state.real != options.real {
        if state.bootstrapped_at.is_some() {
            let tier = |r: &Option<RealOptions>| match r {
                Some(r) => format!("the real tier ({})", r.members.join(", ")),
                None => "the emulator tier".to_owned(),
            };
            return Err(LabError::Config(format!(
                "the lab in {dir} was made for {}, not {}; run `federator-lab down --purge --dir \
                 {dir}` first, or use another --dir",
                tier(&state.real),
                tier(&options.real),
                dir = layout.root().display()
            )));
        }
        state.real = options.real.clone();
    }
    let plan = state
        .real
        .as_ref()
        .map(|r| RealPlan::new(&layout, &r.members));
    let admin_token = pki::ensure(&layout)?;
    let ca = std::fs::read_to_string(layout.ca_cert())
        .map_err(LabError::io("reading", layout.ca_cert()))?;
    write_admin_kubeconfigs(&layout, state.ports, &ca, &admin_token)?;

    let fresh = state
        .bootstrapped_at
        .is_some_and(|t| now_unix().saturating_sub(t) < bootstrap::TOKEN_REFRESH_AFTER.as_secs());
    let emulator_names: Vec<String> = MEMBERS
        .iter()
        .map(|m| emulators::component_name(m))
        .collect();
    let data_plane = match &plan {
        Some(plan) => real::component_names(plan),
        None => emulator_names,
    };
    let complete = std::iter::once(ETCD)
        .chain(REGIONS)
        .chain(data_plane.iter().map(String::as_str))
        .all(|name| state.component(name).is_some());
    let up_to_date =
        state.bootstrap_fingerprint.as_deref() == Some(bootstrap_fingerprint().as_str());
    if fresh && complete && up_to_date {
        let current = status::of_state(&layout, &state).await;
        // A region held down by `lab stop` stays down; the rest must be healthy.
        let healthy = current
            .components
            .iter()
            .all(|c| c.healthy || state.held.contains(&c.name));
        if current.healthy || (!current.components.is_empty() && healthy) {
            return Ok(UpReport {
                already_running: true,
                elapsed: started.elapsed(),
                status: current,
            });
        }
    }

    let run = Startup {
        layout: &layout,
        plan: plan.as_ref(),
        artifacts: artifacts.as_ref(),
        ca: &ca,
        admin_token: &admin_token,
        storage,
        nothing_runs,
        started,
    };
    match start_lab(&run, &mut state).await {
        Ok(status) => Ok(UpReport {
            already_running: false,
            elapsed: started.elapsed(),
            status,
        }),
        // A real tier started from nothing leaves nothing behind when it fails: its kubelets,
        // containers, namespaces and sysctls would otherwise outlive the failed `up`.
        Err(e) if nothing_runs && plan.is_some() => {
            let stopped = match stop_all(&layout, &mut state).await {
                Ok(stopped) if stopped.is_empty() => "nothing was running".to_owned(),
                Ok(stopped) => stopped.join(", "),
                Err(stop) => format!("stopping failed too: {stop}"),
            };
            Err(LabError::UpFailed {
                cause: Box::new(e),
                stopped,
            })
        }
        Err(e) => Err(e),
    }
}

/// What [`start_lab`] needs from `up`.
struct Startup<'a> {
    layout: &'a LabLayout,
    plan: Option<&'a RealPlan>,
    artifacts: Option<&'a real::artifacts::Artifacts>,
    ca: &'a str,
    admin_token: &'a str,
    storage: etcd_storage::Storage,
    nothing_runs: bool,
    started: Instant,
}

/// Starts what is not running, in order: etcd, the apiservers, the bootstrap, then the nodes or
/// the emulators.
async fn start_lab(run: &Startup<'_>, state: &mut LabState) -> Result<LabStatus> {
    let Startup {
        layout,
        plan,
        artifacts,
        ca,
        admin_token,
        storage,
        nothing_runs,
        started,
    } = *run;
    let etcd_bin = binaries::etcd()?;
    let apiserver_bin = binaries::kube_apiserver()?;
    for component in core_components(layout, state.ports, &etcd_bin, &apiserver_bin, plan)? {
        state.upsert(component);
    }
    let core: Vec<&str> = std::iter::once(ETCD).chain(REGIONS).collect();
    // Check every port before starting anything, so a clash leaves nothing half-started.
    check_ports(layout, state, &core)?;
    // etcd about to start without data (a new lab, a switched storage, `/dev/shm` emptied by a
    // reboot or by CI's clean-up): every object the data plane belonged to is gone.
    let etcd_starts_empty = if state.component(ETCD).is_some_and(|c| is_running(layout, c)) {
        false
    } else {
        let storage = etcd_storage::prepare(layout, storage, nothing_runs)?;
        tracing::info!(%storage, "etcd data directory ready");
        etcd_storage::holds_no_data(layout)
    };
    if let Some(plan) = plan {
        // Before etcd: what a lab killed with -9 left is swept, the namespaces made afresh, and
        // the nodes' state purged if etcd starts empty.
        real::prepare(layout, state, plan, etcd_starts_empty).await?;
    }
    if etcd_starts_empty {
        // The Clusters those instances and archives belonged to are gone with etcd's data; a
        // Cluster created again under the same name would find a stale archive (a `.partial`
        // that differs) and never finish a demotion.
        emulators::forget_data_plane(layout).await?;
    }
    // Phase timings at info level (RUST_LOG=e2e=info) show where a slow `up` spends its time.
    ensure_running(layout, state, &[ETCD], ETCD_READY_WITHIN).await?;
    tracing::info!(elapsed = ?started.elapsed(), "etcd healthy");
    ensure_running(layout, state, &REGIONS, APISERVER_READY_WITHIN).await?;
    tracing::info!(elapsed = ?started.elapsed(), "apiservers ready");
    bootstrap_objects(layout, state, ca).await?;
    tracing::info!(elapsed = ?started.elapsed(), "members and hub bootstrapped");
    match (plan, artifacts) {
        (Some(plan), Some(artifacts)) => {
            real::start_nodes(layout, state, plan, artifacts, ca, admin_token).await?;
            tracing::info!(elapsed = ?started.elapsed(), "nodes Ready, operators serving");
        }
        _ => {
            // The CNPG emulators watch their member's Clusters: they start once the CRD is there.
            emulators::start_all(layout, state).await?;
            tracing::info!(elapsed = ?started.elapsed(), "emulators serving");
        }
    }
    Ok(status::of_state(layout, state).await)
}

fn core_components(
    layout: &LabLayout,
    ports: Ports,
    etcd: &Path,
    apiserver: &Path,
    plan: Option<&RealPlan>,
) -> Result<Vec<Component>> {
    let root = layout.root().display().to_string();
    let etcd_url = format!("http://127.0.0.1:{}", ports.etcd);
    let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer());
    let mut components = vec![Component {
        name: ETCD.into(),
        kind: "etcd".into(),
        region: None,
        ports: vec![ports.etcd, ports.etcd_peer()],
        program: etcd.to_path_buf(),
        args: vec![
            "--name=lab".into(),
            // One member on loopback: elect it in ~0.3 s instead of the default ~1 s.
            "--heartbeat-interval=50".into(),
            "--election-timeout=250".into(),
            format!("--data-dir={}", layout.etcd_data_dir().display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=lab={peer_url}"),
        ],
        log: layout.log_file(ETCD),
        health: HealthCheck::Etcd { port: ports.etcd },
        pid: None,
    }];
    for region in REGIONS {
        let port = ports.apiserver_of(region).expect("REGIONS are known");
        let pki = |p: PathBuf| p.display().to_string();
        let mut component = Component {
            name: region.into(),
            kind: "apiserver".into(),
            region: Some(region.into()),
            ports: vec![port],
            program: apiserver.to_path_buf(),
            args: vec![
                format!("--etcd-servers={etcd_url}"),
                format!("--etcd-prefix=/{region}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // No loopback endpoint for the `kubernetes` Service (stops a warning every 10 s).
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={root}/pki/{region}"),
                format!("--tls-cert-file={}", pki(layout.apiserver_cert())),
                format!("--tls-private-key-file={}", pki(layout.apiserver_key())),
                format!("--client-ca-file={}", pki(layout.ca_cert())),
                format!("--service-account-key-file={}", pki(layout.sa_pub())),
                format!(
                    "--service-account-signing-key-file={}",
                    pki(layout.sa_key())
                ),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                "--authorization-mode=RBAC".into(),
                format!("--token-auth-file={}", pki(layout.tokens_csv())),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                // API Priority and Fairness on the hub, as on every real cluster: a test can
                // squeeze the controller's flow until the hub answers 429 (faults_load). Off on
                // the members, where nothing needs it: one control loop less per apiserver.
                format!("--enable-priority-and-fairness={}", region == HUB),
                "--profiling=false".into(),
            ],
            log: layout.log_file(region),
            health: HealthCheck::Apiserver {
                region: region.into(),
            },
            pid: None,
        };
        if let Some(node) = plan.and_then(|p| p.region(region)) {
            real::apiserver_args(
                plan.expect("a region implies a plan"),
                node,
                &mut component.args,
            )?;
        } else if MEMBERS.contains(&region) {
            // The emulator tier: pods/proxy to instance pods reaches the member's emulator.
            let egress = super::emulators::write_egress_config(layout, region)?;
            component.args.push(format!(
                "--egress-selector-config-file={}",
                egress.display()
            ));
        }
        components.push(component);
    }
    Ok(components)
}

fn server(ports: Ports, region: &str) -> String {
    format!(
        "https://127.0.0.1:{}",
        ports.apiserver_of(region).expect("REGIONS are known")
    )
}

fn write_admin_kubeconfigs(layout: &LabLayout, ports: Ports, ca: &str, token: &str) -> Result<()> {
    let entries: Vec<Entry<'_>> = REGIONS
        .iter()
        .map(|region| Entry {
            context: region,
            server: server(ports, region),
            ca_pem: ca,
            user: "admin",
            token,
            namespace: None,
        })
        .collect();
    for entry in &entries {
        kubeconfig::write(
            &layout.kubeconfig(entry.context),
            std::slice::from_ref(entry),
        )?;
    }
    kubeconfig::write(&layout.lab_kubeconfig(), &entries)
}

/// What the bootstrap applies that a rebuilt binary may change: Federator's CRDs and the CNPG
/// release. (std's hasher is not stable across Rust releases; a new toolchain merely causes one
/// extra bootstrap.)
fn bootstrap_fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&hub_crds::all())
        .unwrap_or_default()
        .hash(&mut hasher);
    cnpg_crd::CNPG_VERSION.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Members first (each returns its ServiceAccount token), then the hub with their Secrets.
async fn bootstrap_objects(layout: &LabLayout, state: &mut LabState, ca: &str) -> Result<()> {
    let (cnpg_crd, source) = tokio::task::spawn_blocking(cnpg_crd::load)
        .await
        .expect("CRD loading does not panic")?;
    let hub_crds = hub_crds::all();
    let ports = state.ports;
    let members = MEMBERS.iter().map(|member| {
        let cnpg_crd = &cnpg_crd;
        async move {
            let client = kubeconfig::client_from_file(&layout.kubeconfig(member)).await?;
            let token = bootstrap::member(&client, cnpg_crd).await?;
            let entry = Entry {
                context: member,
                server: server(ports, member),
                ca_pem: ca,
                user: FEDERATOR_SERVICE_ACCOUNT,
                token: &token,
                namespace: Some(DATABASES_NAMESPACE),
            };
            kubeconfig::write(
                &layout.federator_kubeconfig(member),
                std::slice::from_ref(&entry),
            )?;
            Ok::<_, LabError>(((*member).to_owned(), kubeconfig::render(&[entry])))
        }
    });
    let member_kubeconfigs = futures::future::try_join_all(members).await?;
    let hub = kubeconfig::client_from_file(&layout.kubeconfig(HUB)).await?;
    bootstrap::hub(&hub, &hub_crds, &member_kubeconfigs).await?;
    state.bootstrapped_at = Some(now_unix());
    state.bootstrap_fingerprint = Some(bootstrap_fingerprint());
    state.cnpg_crd_source = Some(source);
    state.save(layout)
}

/// Stops every recorded process (etcd last) and waits for each to exit. Keeps the directory
/// (CA, data), so the next `up` is quick and old kubeconfigs stay valid; `purge` removes it.
/// A directory that does not exist is a lab that is not running: nothing to do.
pub async fn down(dir: impl AsRef<Path>, purge: bool) -> Result<Vec<String>> {
    if !dir.as_ref().exists() {
        return Ok(Vec::new());
    }
    let layout = LabLayout::open(dir.as_ref())?;
    let stopped = {
        let _lock = lock(&layout).await?;
        let mut state = LabState::load(&layout)?.unwrap_or_else(|| LabState::new(Ports::default()));
        stop_all(&layout, &mut state).await?
    };
    if purge {
        etcd_storage::remove_memory(&layout)?;
        std::fs::remove_dir_all(layout.root()).map_err(LabError::io("removing", layout.root()))?;
    }
    Ok(stopped)
}

/// Stops every component of the lab (the lock held); returns what it stopped.
async fn stop_all(layout: &LabLayout, state: &mut LabState) -> Result<Vec<String>> {
    // The real tier first: its kubelets stop before the apiservers they report to, and what a
    // killed lab left (processes, mounts, namespaces) is swept even without a state file.
    let mut stopped = Vec::new();
    if state.real.is_some() || layout.root().join("real").exists() {
        let members: Vec<String> = match &state.real {
            Some(real) => real.members.clone(),
            None => MEMBERS.iter().map(|m| (*m).to_owned()).collect(),
        };
        let plan = RealPlan::new(layout, &members);
        stopped.extend(real::down(layout, state, &plan).await?);
    }
    let all: Vec<String> = state.components.iter().map(|c| c.name.clone()).collect();
    let not_etcd: Vec<String> = all.iter().filter(|n| *n != ETCD).cloned().collect();
    stopped.extend(stop_components(layout, state, &not_etcd).await?);
    // PostgreSQL instances are started by the emulators and outlive them: stop them once no
    // emulator is left to restart one.
    stopped.extend(emulators::stop_postgres(layout).await);
    stopped.extend(stop_components(layout, state, &[ETCD.to_owned()]).await?);
    // `lab dsn`'s proxies are made on demand, by the next `dsn` after `up`.
    state.components.retain(|c| c.kind != "dsn");
    state.held.clear();
    state.save(layout)?;
    Ok(stopped)
}

async fn stop_components(
    layout: &LabLayout,
    state: &mut LabState,
    names: &[String],
) -> Result<Vec<String>> {
    let targets: Vec<&Component> = state
        .components
        .iter()
        .filter(|c| names.contains(&c.name) && is_running(layout, c))
        .collect();
    let stops = targets
        .iter()
        .map(|c| process::stop(c.pid.unwrap_or_default(), layout.root(), &c.ports));
    futures::future::join_all(stops).await;
    let stopped = targets.iter().map(|c| c.name.clone()).collect();
    for name in names {
        state.set_pid(name, None);
    }
    state.save(layout)?;
    Ok(stopped)
}

/// Names of the components `target` designates: one component by name, or all of a region.
fn select(state: &LabState, target: &str) -> Result<Vec<String>> {
    let names: Vec<String> = state
        .components
        .iter()
        .filter(|c| c.name == target || c.region.as_deref() == Some(target))
        .map(|c| c.name.clone())
        .collect();
    if names.is_empty() {
        let known: Vec<&str> = state.components.iter().map(|c| c.name.as_str()).collect();
        return Err(LabError::UnknownComponent(
            target.to_owned(),
            known.join(", "),
        ));
    }
    Ok(names)
}

/// The real tier's plan of a lab made for it.
fn real_plan(layout: &LabLayout, state: &LabState) -> Option<RealPlan> {
    state
        .real
        .as_ref()
        .map(|r| RealPlan::new(layout, &r.members))
}

/// The layout, the held lock and the state of an existing lab.
async fn open_locked(dir: &Path) -> Result<(LabLayout, std::fs::File, LabState)> {
    let layout = LabLayout::open(dir)?;
    let lock = lock(&layout).await?;
    let state = LabState::load(&layout)?.ok_or_else(|| LabError::NotRunning(dir.to_path_buf()))?;
    Ok((layout, lock, state))
}

/// Stops one component or every component of a region (e.g. `eu-south`), leaving the rest up.
/// A member region's PostgreSQL instances (started by its emulator, not recorded as components)
/// are stopped too, after the emulator, with a fast shutdown that keeps their data; they are
/// listed as `postgres <member>/<namespace>/<name>`.
pub async fn stop(dir: impl AsRef<Path>, target: &str) -> Result<Vec<String>> {
    let (layout, _lock, mut state) = open_locked(dir.as_ref()).await?;
    let names = select(&state, target)?;
    for name in &names {
        if !state.held.contains(name) {
            state.held.push(name.clone());
        }
    }
    let plan = real_plan(&layout, &state);
    if let Some(plan) = plan.as_ref().filter(|p| p.region(target).is_some()) {
        // A real node: its kubelet first (it would restart what stops), then the rest, then its
        // containers, which containerd's shims would otherwise keep running.
        let kubelet = real::node::component_name(target, "kubelet");
        let mut stopped = stop_components(&layout, &mut state, &[kubelet]).await?;
        stopped.extend(stop_components(&layout, &mut state, &names).await?);
        stopped.extend(real::stop_region(plan, target).await?);
        return Ok(stopped);
    }
    let mut stopped = stop_components(&layout, &mut state, &names).await?;
    if MEMBERS.contains(&target) {
        let instances = emulators::stop_postgres_of(&layout, target).await;
        stopped.extend(
            instances
                .into_iter()
                .map(|i| format!("{POSTGRES_PREFIX}{i}")),
        );
    }
    Ok(stopped)
}

/// Stops exactly the component `name`, held down until [`start_component`]: e.g. a region's
/// API server alone (which [`stop`] of the region's name would take with its node), so the
/// region is cut off from the hub while its node and databases keep running.
pub async fn stop_component(dir: impl AsRef<Path>, name: &str) -> Result<Vec<String>> {
    let (layout, _lock, mut state) = open_locked(dir.as_ref()).await?;
    if state.component(name).is_none() {
        let known: Vec<&str> = state.components.iter().map(|c| c.name.as_str()).collect();
        return Err(LabError::UnknownComponent(
            name.to_owned(),
            known.join(", "),
        ));
    }
    if !state.held.iter().any(|h| h == name) {
        state.held.push(name.to_owned());
    }
    stop_components(&layout, &mut state, &[name.to_owned()]).await
}

/// Starts again the one component [`stop_component`] stopped, and waits until it is healthy.
pub async fn start_component(dir: impl AsRef<Path>, name: &str) -> Result<Vec<String>> {
    let (layout, _lock, mut state) = open_locked(dir.as_ref()).await?;
    state.held.retain(|h| h != name);
    state.save(&layout)?;
    ensure_running(&layout, &mut state, &[name], APISERVER_READY_WITHIN).await
}

/// How [`stop`] lists a PostgreSQL instance it stopped.
pub const POSTGRES_PREFIX: &str = "postgres ";

/// Starts again what [`stop`] stopped, with the recorded command lines, and waits until healthy:
/// the apiserver first, then the rest (the region's CNPG emulator, which starts its PostgreSQL
/// instances as their Clusters' specs say — a Cluster made a replica while the region was away
/// comes back in recovery).
pub async fn start(dir: impl AsRef<Path>, target: &str) -> Result<Vec<String>> {
    start_selected(dir.as_ref(), target, false).await
}

/// Starts only the control plane of what `target` designates: its apiserver, and for a member
/// region its CNPG emulator with the data plane held (it serves the admission webhook and
/// accepts Cluster changes but runs no PostgreSQL), so a returning region can be seen and patched
/// from the hub before any of its databases runs. `start` releases the hold.
pub async fn start_control_plane(dir: impl AsRef<Path>, target: &str) -> Result<Vec<String>> {
    start_selected(dir.as_ref(), target, true).await
}

async fn start_selected(dir: &Path, target: &str, control_plane_only: bool) -> Result<Vec<String>> {
    let (layout, _lock, mut state) = open_locked(dir).await?;
    let names = select(&state, target)?;
    if MEMBERS.contains(&target) {
        let hold = crate::emulator::EmulatorLayout::new(layout.root()).data_plane_hold(target);
        if control_plane_only {
            if let Some(parent) = hold.parent() {
                std::fs::create_dir_all(parent).map_err(LabError::io("creating", parent))?;
            }
            std::fs::write(&hold, b"").map_err(LabError::io("writing", &hold))?;
        } else if hold.exists() {
            std::fs::remove_file(&hold).map_err(LabError::io("removing", &hold))?;
        }
    }
    // Apiservers first: what else runs in a region (its CNPG emulator) connects to them.
    let (core, rest): (Vec<&str>, Vec<&str>) = names.iter().map(String::as_str).partition(|name| {
        state
            .component(name)
            .is_some_and(|c| c.kind == "etcd" || c.kind == "apiserver")
    });
    state.held.retain(|h| !names.contains(h));
    state.save(&layout)?;
    if names.iter().any(|n| n == ETCD) {
        // The storage is not switched here, and a memory directory a reboot emptied needs the
        // whole lab rebuilt: `up` does that.
        etcd_storage::prepare(&layout, etcd_storage::wanted()?, false)?;
        if etcd_storage::holds_no_data(&layout) {
            return Err(LabError::Config(format!(
                "etcd's data in {} is gone (a reboot empties /dev/shm); run `federator-lab down \
                 --dir {dir}` and `federator-lab up --dir {dir}` to rebuild the lab",
                layout.etcd_data_dir().display(),
                dir = layout.root().display()
            )));
        }
    }
    let mut started = ensure_running(&layout, &mut state, &core, APISERVER_READY_WITHIN).await?;
    let plan = real_plan(&layout, &state);
    if let Some(plan) = plan.as_ref().filter(|p| p.region(target).is_some()) {
        started.extend(
            real::start_region(&layout, &mut state, plan, target, control_plane_only).await?,
        );
        return Ok(started);
    }
    started.extend(ensure_running(&layout, &mut state, &rest, APISERVER_READY_WITHIN).await?);
    Ok(started)
}
