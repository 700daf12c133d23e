//! Shared by the controller e2e tests: the controller and CLI as child processes, a writer and a
//! two-primaries sampler on the emulator's PostgreSQL instances, topology manifests.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::SharedLab;
use crate::harness::hub_identity::{HubIdentity, RuleRef};
use crate::harness::testkit::{DEADLINE, Member};
use crate::lab::health::wait_for;
use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use topology::api::Outcome;
use topology::conditions::kind;
use topology::{DistributedTopology, StepKind};

/// Wide deadlines for a loaded two-core machine; a hold fails a happy-path test anyway.
pub fn wide_timeouts() -> serde_json::Value {
    json!({"demotionStart": "2m", "tokenWait": "3m", "promotionWait": "3m"})
}

/// `$FEDERATOR_BIN`, else `federator` next to this test binary's directory.
pub fn federator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FEDERATOR_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("federator"))
        .find(|p| p.is_file())
        .expect("the federator binary: run `cargo build -p federator` first, or set FEDERATOR_BIN")
}

/// `federator controller` for one test namespace; killed when dropped, its log printed if the
/// test failed. It reaches the hub as the Helm chart's ServiceAccount with exactly the chart's
/// RBAC (`crate::harness::hub_identity`), not as the lab's admin; `FEDERATOR_E2E_HUB_ADMIN=1`
/// runs it as admin instead (to tell a permission problem from another).
pub struct Controller {
    child: tokio::process::Child,
    log: PathBuf,
    // Dropped after the child (declaration order): its permissions outlive the process.
    _identity: Option<HubIdentity>,
}

impl Controller {
    pub fn start(lab: &'static SharedLab, ns: &str) -> Self {
        Self::start_with(lab, ns, "", &[])
    }

    /// With extra flags; `tag` tells the log files of several controllers of one test apart.
    pub fn start_with(lab: &'static SharedLab, ns: &str, tag: &str, extra: &[&str]) -> Self {
        let admin = std::env::var_os("FEDERATOR_E2E_HUB_ADMIN").is_some_and(|v| v == "1");
        let identity = (!admin).then(|| chart_identity(lab, ns, None));
        Self::start_as(lab, ns, tag, extra, identity)
    }

    /// As `identity` (`None`: the lab's admin).
    pub fn start_as(
        lab: &SharedLab,
        ns: &str,
        tag: &str,
        extra: &[&str],
        identity: Option<HubIdentity>,
    ) -> Self {
        Self::spawn(lab, ns, tag, extra, identity, None)
    }

    /// As [`Self::start_with`], with the hub reached through the fault proxy at `hub_proxy`
    /// (`crate::faults`): the same credential, its server rewritten to the proxy.
    pub fn start_through(
        lab: &'static SharedLab,
        ns: &str,
        tag: &str,
        extra: &[&str],
        hub_proxy: std::net::SocketAddr,
    ) -> Self {
        let admin = std::env::var_os("FEDERATOR_E2E_HUB_ADMIN").is_some_and(|v| v == "1");
        let identity = (!admin).then(|| chart_identity(lab, ns, None));
        let source = identity
            .as_ref()
            .map(|i| i.kubeconfig().to_path_buf())
            .unwrap_or_else(|| lab.layout.kubeconfig("hub"));
        let dir = lab.layout.root().join("faults");
        std::fs::create_dir_all(&dir).expect("the lab's faults directory");
        let routed = dir.join(format!("hub-{ns}{tag}.kubeconfig"));
        crate::faults::route::write_redirected(&source, &routed, hub_proxy)
            .expect("the hub kubeconfig through the proxy");
        Self::spawn(lab, ns, tag, extra, identity, Some(routed))
    }

    fn spawn(
        lab: &SharedLab,
        ns: &str,
        tag: &str,
        extra: &[&str],
        identity: Option<HubIdentity>,
        hub_kubeconfig: Option<PathBuf>,
    ) -> Self {
        let kubeconfig = hub_kubeconfig.unwrap_or_else(|| {
            identity
                .as_ref()
                .map(|i| i.kubeconfig().to_path_buf())
                .unwrap_or_else(|| lab.layout.kubeconfig("hub"))
        });
        let log = lab.layout.log_file(&format!("controller-{ns}{tag}"));
        let file = std::fs::File::create(&log).expect("controller log file");
        let child = tokio::process::Command::new(federator_binary())
            .args(["controller", "--namespace", ns, "--watch-namespace", ns])
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--lease-name",
                &format!("federator-{ns}"),
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,federator=debug")
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting federator controller");
        Controller {
            child,
            log,
            _identity: identity,
        }
    }
}

/// The chart's hub identity for a controller of `ns` (Lease `federator-<ns>`, where
/// `Controller::start_with` puts it), minus the rule `without`; a release of its own.
pub fn chart_identity(lab: &'static SharedLab, ns: &str, without: Option<RuleRef>) -> HubIdentity {
    let ns = ns.to_owned();
    let release = format!("e2e-{}", crate::lab::pki::random_hex(4).expect("random"));
    // `start_with` is not async (its callers are many); the setup runs on a thread of its own.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(HubIdentity::create(
                lab,
                &release,
                &ns,
                &format!("federator-{ns}"),
                without.as_ref(),
            ))
    })
    .join()
    .expect("creating the controller's hub identity")
}

impl Controller {
    /// What the controller logged so far, without terminal colour codes.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut plain = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC '[' parameters, ended by a letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// Where it serves `/metrics`, `/healthz` and `/readyz` (`--metrics-addr 127.0.0.1:0`: a
    /// random port, which it logs).
    pub async fn probe_addr(&self) -> String {
        logged_addr(
            "the controller serving its probes",
            "serving /metrics, /healthz and /readyz",
            || self.log(),
        )
        .await
    }

    /// SIGKILL, as a crash would: no graceful shutdown, no lease release.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("killing the controller");
        let _ = self.child.wait().await;
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, as Kubernetes stops a pod (the graceful shutdown); waits until it exited.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32));
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        self.child.wait().await.expect("waiting for the controller")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(80).collect();
            eprintln!(
                "--- controller log (last 80 lines, {}) ---",
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `federator switchover NAME -n NS --to TO --wait`, printing its output; returns the exit
/// code, stdout and the wall-clock time.
pub async fn switchover(lab: &SharedLab, ns: &str, to: &str) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = tokio::process::Command::new(federator_binary())
        .args([
            "switchover",
            "pg",
            "-n",
            ns,
            "--to",
            to,
            "--wait",
            "--timeout",
            "3m",
        ])
        .env("KUBECONFIG", lab.layout.kubeconfig("hub"))
        .output()
        .await
        .expect("running federator switchover");
    println!(
        "$ federator switchover pg -n {ns} --to {to} --wait\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), stdout, started.elapsed())
}

pub async fn pg(
    lab: &SharedLab,
    ns: &str,
    m: Member<'_>,
    within: Duration,
) -> Option<tokio_postgres::Client> {
    if lab.real {
        return real_pg(lab, ns, m, within).await;
    }
    let dsn = crate::emulator::dsn(lab.layout.root(), m.region, ns, m.name).ok()?;
    let (client, conn) =
        tokio::time::timeout(within, tokio_postgres::connect(&dsn, tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(conn);
    Some(client)
}

/// The superuser Secret every Cluster of a real-tier test uses (the same in every region: a
/// replica cluster keeps its source's roles).
pub const REAL_SUPERUSER_SECRET: &str = "pg-superuser";

/// On the real tier: the instance pod of `m`, through its region's netns proxy, as `postgres`.
async fn real_pg(
    lab: &SharedLab,
    ns: &str,
    m: Member<'_>,
    within: Duration,
) -> Option<tokio_postgres::Client> {
    let client = lab.admin(m.region).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, ns);
    let secret = secrets.get(REAL_SUPERUSER_SECRET).await.ok()?;
    let password = secret.data?.get("password")?.0.clone();
    let password = String::from_utf8(password).ok()?;
    crate::lab::real::postgres::connect(
        &lab.layout,
        m.region,
        ns,
        m.name,
        ("postgres", &password, "postgres"),
        within,
    )
    .await
    .ok()
}

/// Inserts increasing values into `t` on whichever instance accepts writes, until `stop`;
/// returns the values whose INSERT was acknowledged.
pub async fn writer(
    lab: &'static SharedLab,
    ns: String,
    members: Vec<Member<'static>>,
    stop: Arc<AtomicBool>,
) -> Vec<i32> {
    let acks = writer_acks(lab, ns, members, stop).await;
    acks.into_iter().map(|a| a.value).collect()
}

/// An acknowledged INSERT: the value, the member that acknowledged it, and when (wall clock,
/// to compare with the times a failover report gives).
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub value: i32,
    pub member: &'static str,
    pub at: std::time::SystemTime,
}

/// As [`writer`], recording who acknowledged each row and when.
pub async fn writer_acks(
    lab: &'static SharedLab,
    ns: String,
    members: Vec<Member<'static>>,
    stop: Arc<AtomicBool>,
) -> Vec<Ack> {
    let mut acked = Vec::new();
    let mut next = 1000;
    let mut current: Option<(tokio_postgres::Client, &'static str)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some((client, member)) = &current else {
            for m in &members {
                if let Some(c) = pg(lab, &ns, *m, Duration::from_millis(300)).await
                    && let Ok(row) = c.query_one("SELECT NOT pg_is_in_recovery()", &[]).await
                    && row.get::<_, bool>(0)
                {
                    current = Some((c, m.name));
                    break;
                }
            }
            if current.is_none() {
                // Nobody accepts writes right now (mid-switchover): try again shortly.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&next];
        let insert = client.execute("INSERT INTO t VALUES ($1)", &params);
        match tokio::time::timeout(Duration::from_secs(2), insert).await {
            Ok(Ok(_)) => acked.push(Ack {
                value: next,
                member,
                at: std::time::SystemTime::now(),
            }),
            _ => current = None,
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}

/// Every ~100 ms, asks every instance `pg_is_in_recovery()`; returns (samples, violations).
pub async fn sampler(
    lab: &'static SharedLab,
    ns: String,
    members: Vec<Member<'static>>,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<String>) {
    let mut clients: Vec<Option<tokio_postgres::Client>> = members.iter().map(|_| None).collect();
    let mut samples = 0;
    let mut violations = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut writable = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if clients[i].is_none() {
                clients[i] = pg(lab, &ns, *m, Duration::from_millis(200)).await;
            }
            let Some(c) = &clients[i] else { continue };
            match tokio::time::timeout(
                Duration::from_millis(500),
                c.query_one("SELECT pg_is_in_recovery()", &[]),
            )
            .await
            {
                Ok(Ok(row)) if !row.get::<_, bool>(0) => writable.push(m.name),
                Ok(Ok(_)) => {}
                _ => clients[i] = None,
            }
        }
        samples += 1;
        if writable.len() > 1 {
            violations.push(format!("sample {samples}: {writable:?} all accept writes"));
        }
    }
    (samples, violations)
}

pub fn topology(
    ns: &str,
    members: &[Member<'_>],
    shape: serde_json::Value,
    primary: &str,
    timeouts: serde_json::Value,
) -> DistributedTopology {
    topology_named("pg", ns, members, shape, primary, timeouts)
}

/// [`topology`] with a name of its own (several topologies in one namespace).
pub fn topology_named(
    name: &str,
    ns: &str,
    members: &[Member<'_>],
    shape: serde_json::Value,
    primary: &str,
    timeouts: serde_json::Value,
) -> DistributedTopology {
    serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DistributedTopology",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "members": members.iter().map(|m| json!({"name": m.name, "cluster": m.region, "namespace": ns})).collect::<Vec<_>>(),
            "shape": shape,
            "primary": primary,
            "policies": {"timeouts": timeouts},
        },
    }))
    .expect("a valid DistributedTopology")
}

/// Waits until the topology's condition `type_` is True.
pub async fn wait_condition(api: &Api<DistributedTopology>, type_: &str) -> DistributedTopology {
    wait_condition_of(api, "pg", type_).await
}

/// [`wait_condition`] for the topology `name`.
pub async fn wait_condition_of(
    api: &Api<DistributedTopology>,
    name: &str,
    type_: &str,
) -> DistributedTopology {
    wait_for(
        &format!("{type_}=True on the topology {name}"),
        DEADLINE,
        || async move {
            let t = api.get(name).await.ok()?;
            let ok = t
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True");
            ok.then_some(t)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Creates the topology `pg` in `ns` on the hub, `members[0]` primary.
pub async fn deploy(
    lab: &SharedLab,
    ns: &str,
    members: &[Member<'_>],
    shape: serde_json::Value,
    timeouts: serde_json::Value,
) -> Api<DistributedTopology> {
    let hub: Api<DistributedTopology> = Api::namespaced(lab.admin("hub").await, ns);
    let topo = topology(ns, members, shape, members[0].name, timeouts);
    hub.create(&kube::api::PostParams::default(), &topo)
        .await
        .expect("creating the topology");
    hub
}

/// The writer (optional) and the two-primaries sampler, running until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    writer: Option<tokio::task::JoinHandle<Vec<Ack>>>,
    sampler: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Load {
    pub fn start(
        lab: &'static SharedLab,
        ns: &str,
        members: &[Member<'static>],
        write: bool,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = write.then(|| {
            tokio::spawn(writer_acks(
                lab,
                ns.to_owned(),
                members.to_vec(),
                stop.clone(),
            ))
        });
        let sampler = tokio::spawn(sampler(lab, ns.to_owned(), members.to_vec(), stop.clone()));
        Load {
            stop,
            writer,
            sampler,
        }
    }

    /// Stops both; asserts that no sample saw two primaries; returns the acknowledged rows.
    pub async fn finish(self) -> Vec<i32> {
        let (acked, violations) = self.finish_with_violations().await;
        assert!(violations.is_empty(), "two primaries: {violations:#?}");
        acked
    }

    /// Stops both; returns the acknowledged rows and the samples that saw two primaries (for a
    /// test where two are expected for a while: an isolated old primary nothing fences).
    pub async fn finish_with_violations(self) -> (Vec<i32>, Vec<String>) {
        let record = self.finish_record().await;
        let acked = record.acks.iter().map(|a| a.value).collect();
        (acked, record.violations)
    }

    /// Stops both; returns everything they saw: each acknowledged row with who acknowledged it
    /// and when, the number of samples, and the samples that saw two primaries.
    pub async fn finish_record(self) -> LoadRecord {
        self.stop.store(true, Ordering::Relaxed);
        let acks = match self.writer {
            Some(w) => w.await.expect("writer"),
            None => Vec::new(),
        };
        let (samples, violations) = self.sampler.await.expect("sampler");
        println!(
            "writer: {} acknowledged rows; sampler: {samples} samples",
            acks.len()
        );
        assert!(samples > 5, "the sampler ran {samples} times");
        LoadRecord {
            acks,
            samples,
            violations,
        }
    }
}

/// What a [`Load`] saw.
pub struct LoadRecord {
    pub acks: Vec<Ack>,
    pub samples: usize,
    /// The samples that saw two primaries.
    pub violations: Vec<String>,
}

/// Every acknowledged row is on `primary`; returns a connection to it.
pub async fn assert_rows_kept(
    lab: &SharedLab,
    ns: &str,
    primary: Member<'_>,
    acked: &[i32],
) -> tokio_postgres::Client {
    assert!(
        !acked.is_empty(),
        "the writer never got a write acknowledged"
    );
    let client = pg(lab, ns, primary, Duration::from_secs(5))
        .await
        .expect("final primary");
    let rows: Vec<i32> = client
        .query("SELECT x FROM t", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<i32> = acked
        .iter()
        .filter(|x| !rows.contains(x))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged rows missing on the final primary {}: {missing:?}",
        primary.name
    );
    client
}

/// Creates the topology `pg` (`members[0]` primary) and a controller, runs `targets` as
/// switchovers in turn under a writer and a sampler, then checks: never two primaries, every
/// acknowledged row on the final primary, every other member replaying its timeline (within
/// `within`), every operation Succeeded with its step timings.
pub async fn rotate(
    lab: &'static SharedLab,
    ns: &str,
    members: &[Member<'static>],
    shape: serde_json::Value,
    targets: &[&str],
    within: Duration,
) {
    let hub = deploy(lab, ns, members, shape, wide_timeouts()).await;
    let _controller = Controller::start(lab, ns);
    wait_condition(&hub, kind::READY).await;

    let load = Load::start(lab, ns, members, true);
    for to in targets {
        let (code, _, took) = switchover(lab, ns, to).await;
        assert_eq!(code, 0, "switchover to {to} did not succeed");
        println!(
            "switchover to {to}: {:.2}s wall clock (CLI)",
            took.as_secs_f64()
        );
        // Let the writer land a few rows on the new primary before the next move.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let acked = load.finish().await;
    let last = members
        .iter()
        .find(|m| m.name == *targets.last().unwrap())
        .copied()
        .unwrap();
    let primary = assert_rows_kept(lab, ns, last, &acked).await;

    // Every other instance follows the final primary's timeline: it replays a row written now.
    let followers: Vec<Member<'static>> = members
        .iter()
        .filter(|m| m.name != last.name)
        .copied()
        .collect();
    assert_followers_replay(lab, ns, &primary, &followers, within).await;

    let topo = wait_condition(&hub, kind::READY).await;
    let status = topo.status.expect("status");
    assert!(status.operation.is_none());
    assert_eq!(status.history.len(), targets.len());
    for op in &status.history {
        assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
        let total = op
            .finished_at
            .as_ref()
            .unwrap()
            .0
            .duration_since(op.started_at.0);
        // Every step of a finished operation has its timing, and they parse.
        let steps = op.steps().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            steps.iter().all(|s| s.took.is_some()),
            "{}",
            op.step_timings
        );
        assert_eq!(
            steps.last().map(|s| s.step),
            Some(StepKind::Done),
            "{}",
            op.step_timings
        );
        println!(
            "{} → {}: {:.2}s [{}]",
            op.from,
            op.to,
            total.as_secs_f64(),
            op.step_timings
        );
    }
}

/// Every member but `primary` follows its timeline: each replays, in recovery, a row written on
/// `primary` now (`x = -1` into `t`, then a WAL switch), within `within`.
pub async fn assert_followers_replay(
    lab: &'static SharedLab,
    ns: &str,
    primary: &tokio_postgres::Client,
    followers: &[Member<'static>],
    within: Duration,
) {
    // Two statements: in one simple query they are one transaction, and the switch would come
    // before the commit record, which an archive-only follower then gets only at the next switch.
    primary
        .batch_execute("INSERT INTO t VALUES (-1)")
        .await
        .expect("marker row");
    primary
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .expect("a WAL switch after the marker row");
    for m in followers {
        let what = format!("{} replaying the marker row in recovery", m.name);
        wait_for(&what, within, || async move {
            let c = pg(lab, ns, *m, Duration::from_secs(1)).await?;
            let row = c
                .query_one(
                    "SELECT pg_is_in_recovery(), count(*) FROM t WHERE x = -1",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, bool>(0) && row.get::<_, i64>(1) == 1).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Waits until the operation of `generation` (ids `<generation>-…`) is in the topology's
/// history; returns it.
pub async fn finished_operation(
    hub: &Api<DistributedTopology>,
    generation: i64,
    within: Duration,
) -> topology::api::OperationRecord {
    let prefix = format!("{generation}-");
    let prefix = &prefix;
    wait_for(
        &format!("the operation of generation {generation} to finish"),
        within,
        || async move {
            let topo = hub.get("pg").await.ok()?;
            topo.status?
                .history
                .into_iter()
                .find(|op| op.id.starts_with(prefix))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Sets `spec.primary` of the topology `pg`; returns the new generation.
pub async fn set_primary(hub: &Api<DistributedTopology>, to: &str) -> i64 {
    hub.patch(
        "pg",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"primary": to}})),
    )
    .await
    .expect("setting spec.primary")
    .metadata
    .generation
    .unwrap_or_default()
}

/// Waits, on the topology's watch, until the operation of `generation` is at `step` or later;
/// returns the step it saw (`None`: the operation finished first).
pub async fn reach(
    hub: &Api<DistributedTopology>,
    generation: i64,
    step: StepKind,
) -> Option<StepKind> {
    let mut updates = crate::harness::watch::updates(hub.clone(), "pg");
    let prefix = format!("{generation}-");
    let watch = async {
        while let Some(topo) = updates.next().await {
            let status = topo.status.unwrap_or_default();
            if status.history.iter().any(|op| op.id.starts_with(&prefix)) {
                return None;
            }
            if let Some(op) = status.operation.filter(|op| op.id.starts_with(&prefix))
                && op.step >= step
            {
                return Some(op.step);
            }
        }
        panic!("the watch on the topology ended")
    };
    tokio::time::timeout(DEADLINE, watch)
        .await
        .expect("the switchover to reach the step")
}

/// The `addr=` of the first line of a process's log that contains `line` (a server it started
/// on a random port), once it is there; panics with the log after the deadline.
pub async fn logged_addr(what: &str, line: &str, log: impl Fn() -> String) -> String {
    wait_for(what, DEADLINE, || async {
        let text = log();
        let found = text.lines().find(|l| l.contains(line))?;
        let at = found.find("addr=")? + "addr=".len();
        Some(found[at..].split_whitespace().next()?.to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log()))
}

/// `GET path` on `addr` (HTTP/1.0, loopback): the status code and body.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((code, body))
}

/// The value of the sample `name{labels}` in a `/metrics` text (`labels` exactly as rendered,
/// e.g. `member="eu-central"`; empty for none).
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Scrapes `addr`'s `/metrics` until the sample `name{labels}` has `value`; panics with the last
/// scrape after the deadline.
pub async fn wait_metric(addr: &str, name: &str, labels: &str, value: f64) {
    let found = wait_for(
        &format!("{name}{{{labels}}} = {value}"),
        DEADLINE,
        || async move {
            let (_, text) = http_get(addr, "/metrics").await?;
            (sample(&text, name, labels) == Some(value)).then_some(())
        },
    )
    .await;
    if let Err(e) = found {
        let last = http_get(addr, "/metrics").await.map(|(_, t)| t);
        panic!("{e}; last scrape:\n{}", last.unwrap_or_default());
    }
}

/// One switchover of an archive-only pair while its target lags: `rows` are inserted on `from`,
/// each followed by a WAL switch, just before `federator switchover --wait` to `to`. Asserts that
/// it succeeds; that the step log has `AwaitReplay` before `Promote` (Federator checked the
/// target's replay before the promote patch) and, when that wait lasted 2 s or more, that the
/// topology's `SwitchoverInProgress` condition named it while it ran; and that every row is on
/// the new primary. Returns the step timings.
pub async fn archive_switchover(
    lab: &'static SharedLab,
    ns: &str,
    hub: &Api<DistributedTopology>,
    (from, to): (Member<'static>, Member<'static>),
    rows: &[i32],
) -> String {
    wait_condition(hub, kind::READY).await;
    let primary = pg(lab, ns, from, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("connecting to {}", from.name));
    for x in rows {
        // Separate statements, so that the row's commit is in the switched segment.
        primary
            .batch_execute(&format!("INSERT INTO t VALUES ({x})"))
            .await
            .expect("a row on the old primary");
        primary
            .batch_execute("SELECT pg_switch_wal()")
            .await
            .expect("a WAL switch on the old primary");
    }
    drop(primary);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (hub, done) = (hub.clone(), done.clone());
        tokio::spawn(async move {
            let mut messages: Vec<String> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                if let Ok(t) = hub.get("pg").await {
                    let message = t.status.and_then(|s| {
                        s.conditions
                            .into_iter()
                            .find(|c| c.type_ == kind::SWITCHOVER_IN_PROGRESS)
                            .map(|c| c.message)
                    });
                    if let Some(m) = message
                        && messages.last() != Some(&m)
                    {
                        messages.push(m);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            messages
        })
    };
    let (code, _, took) = switchover(lab, ns, to.name).await;
    done.store(true, Ordering::Relaxed);
    let messages = watcher.await.expect("the condition watcher");
    assert_eq!(code, 0, "switchover to {} did not succeed", to.name);
    println!(
        "archive-only switchover to {}: {:.2}s wall clock (CLI)",
        to.name,
        took.as_secs_f64()
    );
    let topo = hub.get("pg").await.expect("the topology");
    let last = topo
        .status
        .and_then(|s| s.history.last().cloned())
        .expect("the finished switchover in history");
    assert_eq!(last.outcome, Some(Outcome::Succeeded), "{last:#?}");
    assert_eq!(last.to, to.name);
    let steps = last.steps().unwrap_or_else(|e| panic!("{e}"));
    let replay = steps.iter().position(|s| s.step == StepKind::AwaitReplay);
    let promote = steps.iter().position(|s| s.step == StepKind::Promote);
    assert!(
        matches!((replay, promote), (Some(r), Some(p)) if r < p),
        "AwaitReplay before Promote: {}",
        last.step_timings
    );
    // A wait long enough to outlast the ledger's hold of a status change (1 s) is shown in the
    // condition; a target that had replayed the token's LSN when it was checked is promoted in
    // the same reconcile (AwaitReplay 0 s), and there is no wait to show.
    let waited = replay.and_then(|r| steps[r].took).unwrap_or_default();
    if waited >= Duration::from_secs(2) {
        assert!(
            messages.iter().any(|m| m.contains("at step AwaitReplay")),
            "the condition never showed the {waited:?} wait for {}'s replay: {messages:#?}",
            to.name
        );
    } else {
        println!(
            "{} had replayed when the token was checked (AwaitReplay {waited:?})",
            to.name
        );
    }
    let client = pg(lab, ns, to, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("connecting to {}", to.name));
    let present: Vec<i32> = client
        .query("SELECT x FROM t", &[])
        .await
        .expect("rows on the new primary")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<i32> = rows
        .iter()
        .filter(|x| !present.contains(x))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "rows missing on {}: {missing:?}",
        to.name
    );
    println!("{} → {}: [{}]", last.from, last.to, last.step_timings);
    last.step_timings
}

/// Waits up to `within` until `check` finds what it wants in the status of topology `pg`.
pub async fn status_until<T>(
    hub: &Api<DistributedTopology>,
    what: &str,
    within: Duration,
    check: impl Fn(&topology::api::DistributedTopologyStatus) -> Option<T>,
) -> T {
    let check = &check;
    wait_for(what, within, || async move {
        let topo = hub.get("pg").await.ok()?;
        check(topo.status.as_ref()?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The status of topology `pg` now.
pub async fn status_now(
    hub: &Api<DistributedTopology>,
) -> topology::api::DistributedTopologyStatus {
    hub.get("pg")
        .await
        .expect("topology")
        .status
        .expect("status")
}

/// `federator failover pg -n NS --to TO [extra…]` against the lab's hub; returns the exit code
/// and stdout (both streams printed).
pub async fn failover_cli(lab: &SharedLab, ns: &str, to: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["failover", "pg", "-n", ns, "--to", to];
    args.extend_from_slice(extra);
    federator_cli(lab, &args).await
}

/// `federator ARGS…` against the lab's hub; returns the exit code and stdout (both streams
/// printed).
pub async fn federator_cli(lab: &SharedLab, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(federator_binary())
        .args(args)
        .env("KUBECONFIG", lab.layout.kubeconfig("hub"))
        .output()
        .await
        .expect("running federator");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "$ federator {}\n{stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}
