#![forbid(unsafe_code)]
//! The hub controller on the lab, against the CNPG emulator on real PostgreSQL: planned
//! switchovers asked for with `federator switchover --wait`, while a writer inserts rows and a
//! sampler asks every instance `pg_is_in_recovery()` about every 100 ms.
//!
//! Proven per test: every switchover succeeds; never two instances accept writes at once; every
//! acknowledged row is on the final primary; every old primary follows the new timeline.
//!
//! The controller runs as a child process of the built `federator` binary (`cargo build -p
//! federator` first, or set `FEDERATOR_BIN`), scoped to the test's namespace and Lease.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::emulator::testkit::{self, DEADLINE, Member};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use topology::DistributedTopology;
use topology::api::Outcome;
use topology::conditions::kind;

/// `$FEDERATOR_BIN`, else `federator` next to this test binary's directory.
fn federator_binary() -> PathBuf {
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
/// test failed.
struct Controller {
    _child: tokio::process::Child,
    log: PathBuf,
}

impl Controller {
    fn start(lab: &SharedLab, ns: &str) -> Self {
        let log = lab.layout.log_file(&format!("controller-{ns}"));
        let file = std::fs::File::create(&log).expect("controller log file");
        let child = tokio::process::Command::new(federator_binary())
            .args(["controller", "--namespace", ns, "--watch-namespace", ns])
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--lease-name",
                &format!("federator-{ns}"),
            ])
            .env("KUBECONFIG", lab.layout.kubeconfig("hub"))
            .env("RUST_LOG", "info,federator=debug")
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting federator controller");
        Controller { _child: child, log }
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

/// `federator switchover NAME -n NS --to TO --wait`, printing its output; returns the exit code.
async fn switchover(lab: &SharedLab, ns: &str, to: &str) -> (i32, Duration) {
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
            "180",
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
    (out.status.code().unwrap_or(-1), started.elapsed())
}

async fn pg(
    lab: &SharedLab,
    ns: &str,
    m: Member<'_>,
    within: Duration,
) -> Option<tokio_postgres::Client> {
    let dsn = e2e::emulator::dsn(lab.layout.root(), m.region, ns, m.name).ok()?;
    let (client, conn) =
        tokio::time::timeout(within, tokio_postgres::connect(&dsn, tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(conn);
    Some(client)
}

/// Inserts increasing values into `t` on whichever instance accepts writes, until `stop`;
/// returns the values whose INSERT was acknowledged.
async fn writer(
    lab: &'static SharedLab,
    ns: String,
    members: Vec<Member<'static>>,
    stop: Arc<AtomicBool>,
) -> Vec<i32> {
    let mut acked = Vec::new();
    let mut next = 1000;
    let mut current: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(client) = &current else {
            for m in &members {
                if let Some(c) = pg(lab, &ns, *m, Duration::from_millis(300)).await
                    && let Ok(row) = c.query_one("SELECT NOT pg_is_in_recovery()", &[]).await
                    && row.get::<_, bool>(0)
                {
                    current = Some(c);
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
            Ok(Ok(_)) => acked.push(next),
            _ => current = None,
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}

/// Every ~100 ms, asks every instance `pg_is_in_recovery()`; returns (samples, violations).
async fn sampler(
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

fn topology(
    ns: &str,
    members: &[Member<'_>],
    shape: serde_json::Value,
    primary: &str,
) -> DistributedTopology {
    serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DistributedTopology",
        "metadata": {"name": "pg", "namespace": ns},
        "spec": {
            "members": members.iter().map(|m| json!({"name": m.name, "cluster": m.region, "namespace": ns})).collect::<Vec<_>>(),
            "shape": shape,
            "primary": primary,
            // Wide deadlines for a loaded two-core machine; a hold fails the test anyway.
            "policies": {"timeouts": {"demotionStart": "2m", "tokenWait": "3m", "promotionWait": "3m"}},
        },
    }))
    .expect("a valid DistributedTopology")
}

/// Waits until the topology's condition `type_` is True.
async fn wait_condition(api: &Api<DistributedTopology>, type_: &str) -> DistributedTopology {
    wait_for(
        &format!("{type_}=True on the topology"),
        DEADLINE,
        || async move {
            let t = api.get("pg").await.ok()?;
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

/// Runs `targets` as switchovers in turn under a writer and a sampler, then checks the data.
async fn rotate(
    lab: &'static SharedLab,
    ns: &str,
    members: &[Member<'static>],
    shape: serde_json::Value,
    targets: &[&str],
) {
    let hub: Api<DistributedTopology> = Api::namespaced(lab.admin("hub").await, ns);
    hub.create(
        &PostParams::default(),
        &topology(ns, members, shape, members[0].name),
    )
    .await
    .expect("creating the topology");
    let _controller = Controller::start(lab, ns);
    wait_condition(&hub, kind::READY).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(writer(lab, ns.to_owned(), members.to_vec(), stop.clone()));
    let sampler = tokio::spawn(sampler(lab, ns.to_owned(), members.to_vec(), stop.clone()));
    for to in targets {
        let (code, took) = switchover(lab, ns, to).await;
        assert_eq!(code, 0, "switchover to {to} did not succeed");
        println!(
            "switchover to {to}: {:.2}s wall clock (CLI)",
            took.as_secs_f64()
        );
        // Let the writer land a few rows on the new primary before the next move.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    let (samples, violations) = sampler.await.expect("sampler");
    println!(
        "writer: {} acknowledged rows; sampler: {samples} samples",
        acked.len()
    );
    assert!(violations.is_empty(), "two primaries: {violations:#?}");
    assert!(samples > 10, "the sampler ran {samples} times");
    assert!(
        !acked.is_empty(),
        "the writer never got a write acknowledged"
    );

    let last = members
        .iter()
        .find(|m| m.name == *targets.last().unwrap())
        .copied()
        .unwrap();
    let primary = pg(lab, ns, last, Duration::from_secs(5))
        .await
        .expect("final primary");
    let rows: Vec<i32> = primary
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
        last.name
    );

    // Every other instance follows the final primary's timeline: it replays a row written now.
    primary
        .batch_execute("INSERT INTO t VALUES (-1); SELECT pg_switch_wal()")
        .await
        .expect("marker row");
    for m in members.iter().filter(|m| m.name != last.name) {
        let what = format!("{} replaying the marker row in recovery", m.name);
        wait_for(&what, DEADLINE, || async move {
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
        let steps: Vec<String> = op
            .steps
            .iter()
            .map(|s| {
                let secs = s
                    .finished_at
                    .as_ref()
                    .map(|f| f.0.duration_since(s.started_at.0).as_secs_f64())
                    .unwrap_or_default();
                format!("{} {secs:.3}s", s.step)
            })
            .collect();
        println!(
            "{} → {}: {:.2}s [{}]",
            op.from,
            op.to,
            total.as_secs_f64(),
            steps.join(", ")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_switchover_and_back_under_writes() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-pair").await;
    ns.grant_federator().await;
    let pair = testkit::Pair::create(lab, ns.name()).await;
    let members = [pair.a, pair.b];
    rotate(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        &[pair.b.name, pair.a.name],
    )
    .await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_three_full_rotation_under_writes() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-ring").await;
    ns.grant_federator().await;
    let name = ns.name().to_owned();
    let members = [
        Member {
            name: "pg-a",
            region: "eu-central",
        },
        Member {
            name: "pg-b",
            region: "eu-western",
        },
        Member {
            name: "pg-c",
            region: "eu-south",
        },
    ];
    let [a, b, c] = members;
    // A ring: each member's source is the previous one (A follows C). A is created first and
    // gets the table; each replica then copies its source.
    for (m, source) in [(a, c), (b, a), (c, b)] {
        let api = testkit::clusters(lab, m.region, &name).await;
        let cluster = testkit::blog_cluster(&name, m.name, a.name, source.name, &members, true);
        testkit::create(&api, &cluster).await;
        testkit::wait_cluster(&api, m.name, "healthy", testkit::healthy).await;
        if m.name == a.name {
            testkit::connect(lab, a.region, &name, a.name)
                .await
                .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
                .await
                .expect("writes on A");
        }
        testkit::wait_rows(lab, m.region, &name, m.name, &[1, 2]).await;
    }
    rotate(
        lab,
        &name,
        &members,
        json!({"ring": [a.name, b.name, c.name]}),
        &[b.name, c.name, a.name],
    )
    .await;
    testkit::delete_all(lab, &name, &members).await;
}
