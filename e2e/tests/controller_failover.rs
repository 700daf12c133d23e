#![forbid(unsafe_code)]
//! An explicit failover on the lab: the primary's whole region (its apiserver, CNPG emulator and
//! PostgreSQL) is stopped under a writer, and `federator failover --accept-data-loss` promotes
//! the other member without a demotion token. Its own test binary, because it stops a region of
//! the shared lab (restored at the end, also when the test fails).
//!
//! Proven: without the acknowledgement nothing is promoted (CLI refusal, CEL rule, a bare
//! `spec.primary` change that cannot start); with it, writes resume on the new primary and the
//! report states the data-loss window; when the old region returns (apiserver first), its Cluster
//! is fenced into a replica of the new primary and listed for re-clone, and its PostgreSQL comes
//! back in recovery, never writable. A sampler asks every reachable instance
//! `pg_is_in_recovery()` every ~100 ms throughout: never two writable primaries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::emulator::EmulatorLayout;
use e2e::harness::controller::{
    Controller, Load, deploy, failover_cli, pg, status_now, status_until, wait_condition,
};
use e2e::harness::region::RegionDown;
use e2e::harness::testkit::{self, DEADLINE, Member};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use topology::api::{OperationKind, Outcome};
use topology::cnpg::Role;
use topology::conditions::kind;

/// Inserts increasing values on whichever instance accepts writes; returns each acknowledged
/// value with the member that acknowledged it.
async fn writer(
    lab: &'static SharedLab,
    ns: String,
    members: Vec<Member<'static>>,
    stop: Arc<AtomicBool>,
) -> Vec<(i32, &'static str)> {
    let mut acked = Vec::new();
    let mut next = 1000;
    let mut current: Option<(tokio_postgres::Client, &'static str)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some((client, name)) = &current else {
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
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&next];
        let insert = client.execute("INSERT INTO t VALUES ($1)", &params);
        match tokio::time::timeout(Duration::from_secs(2), insert).await {
            Ok(Ok(_)) => acked.push((next, *name)),
            _ => current = None,
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}

async fn rows_on(lab: &SharedLab, ns: &str, m: Member<'_>) -> Vec<i32> {
    let client = pg(lab, ns, m, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("a connection to {}", m.name));
    client
        .query("SELECT x FROM t", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_from_a_stopped_region_then_the_old_primary_returns_fenced() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-failover").await;
    ns.grant_federator().await;
    let name = ns.name().to_owned();
    let pair = testkit::Pair::create(lab, &name).await;
    let (a, b) = (pair.a, pair.b);
    let members = [a, b];
    let hub = deploy(
        lab,
        &name,
        &members,
        json!({"star": {}}),
        e2e::harness::controller::wide_timeouts(),
    )
    .await;
    let _controller = Controller::start(lab, &name);
    wait_condition(&hub, kind::READY).await;

    // The two-primaries sampler for the whole test, and a writer that records who acknowledged.
    let sampler = Load::start(lab, &name, &members, false);
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(writer(
        lab,
        name.clone(),
        members.to_vec(),
        stop_writer.clone(),
    ));
    wait_for("rows written on A", DEADLINE, || async {
        (rows_on(lab, &name, a).await.len() > 30).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The primary's region goes away: apiserver, emulator and PostgreSQL.
    let (mut region, stopped) = RegionDown::stop(lab, a.region).await;
    let stopped_at = Instant::now();
    println!("lab stop {}: {stopped:?}", a.region);
    assert!(
        stopped
            .iter()
            .any(|s| s.ends_with(&format!("{name}/{}", a.name))),
        "A's PostgreSQL is stopped with its region: {stopped:?}"
    );
    status_until(&hub, "A unreachable on the hub", DEADLINE, |s| {
        s.members
            .iter()
            .any(|m| m.name == a.name && !m.reachable)
            .then_some(())
    })
    .await;

    // Without the acknowledgement nothing is promoted.
    let (code, _) = failover_cli(lab, &name, b.name, &[]).await;
    assert_eq!(
        code, 3,
        "the CLI refuses without --accept-data-loss (exit 3, docs/cli.md)"
    );
    let refused = hub
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"primary": b.name, "failover": {"to": b.name, "acceptDataLoss": false}}})),
        )
        .await;
    let err = refused.expect_err("the CRD refuses acceptDataLoss: false");
    assert!(err.to_string().contains("acceptDataLoss"), "{err}");
    // A bare spec.primary change asks for a switchover, which cannot start without A.
    hub.patch(
        "pg",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"primary": b.name}})),
    )
    .await
    .expect("spec.primary");
    let blocked = status_until(&hub, "Ready=False PrimaryUnreachable", DEADLINE, |s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == kind::READY && c.reason == "PrimaryUnreachable")
            .cloned()
    })
    .await;
    assert!(
        blocked.message.contains("--accept-data-loss"),
        "{}",
        blocked.message
    );
    assert!(pair.b_in_recovery().await, "B was not promoted");
    let b_cluster = pair.api_b.get(b.name).await.expect("B");
    assert_eq!(b_cluster.role(), Role::Replica);

    // With it: B is promoted without a token, writes resume there.
    let started = Instant::now();
    let (code, stdout) = failover_cli(lab, &name, b.name, &["--accept-data-loss", "--wait"]).await;
    assert_eq!(code, 0, "the failover succeeds");
    assert!(stdout.contains("possible data loss:"), "{stdout}");
    println!(
        "failover: {:.2}s from the CLI call, {:.2}s after the region stopped",
        started.elapsed().as_secs_f64(),
        stopped_at.elapsed().as_secs_f64()
    );
    testkit::wait_until_writable(lab, b.region, &name, b.name).await;
    let status = status_now(&hub).await;
    let report = status.last_failover.clone().expect("status.lastFailover");
    let op = status.history.last().expect("the failover in history");
    assert_eq!(op.kind, OperationKind::Failover);
    assert_eq!(op.outcome, Some(Outcome::Succeeded));
    assert_eq!(report.operation.as_deref(), Some(op.id.as_str()));
    let window = report.data_loss.clone().expect("the data-loss window");
    println!(
        "data-loss window: {}\n  unknown: {:#?}",
        window.summary, window.unknown
    );
    assert_eq!(window.old_primary_timeline, Some(1));
    assert!(window.new_primary_timeline >= Some(2), "{window:?}");
    assert!(window.promoted_at.is_some() && window.old_primary_unreachable_since.is_some());
    assert!(!window.unknown.is_empty());
    // B's position before its promotion, read from its instance status (pods/proxy): the fork
    // is at or after it, and the report says so.
    let received = window
        .target_received_lsn
        .clone()
        .expect("B's received WAL position in the report");
    assert!(
        window
            .summary
            .contains(&format!("up to {received} before its promotion")),
        "{}",
        window.summary
    );
    let fenced = status
        .fenced_members
        .iter()
        .find(|f| f.name == a.name)
        .expect("A listed as fenced");
    assert!(
        fenced.fenced_at.is_none(),
        "A cannot be fenced while away: {fenced:?}"
    );
    wait_for("writes acknowledged by B", DEADLINE, || async {
        (rows_on(lab, &name, b)
            .await
            .iter()
            .filter(|x| **x >= 1000)
            .count()
            > 40)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The old region returns, control plane first: the hub fences A before its database runs.
    let control = e2e::lab::start_control_plane(&region.dir, a.region)
        .await
        .expect("lab start --control-plane");
    println!("lab start {} --control-plane: {control:?}", a.region);
    let fenced = status_until(&hub, "A fenced on the hub", DEADLINE, |s| {
        s.fenced_members
            .iter()
            .find(|f| f.name == a.name && f.fenced_at.is_some())
            .cloned()
    })
    .await;
    assert!(fenced.needs_reclone);
    let a_cluster = pair.api_a.get(a.name).await.expect("A");
    assert_eq!(
        a_cluster.role(),
        Role::Replica,
        "{:?}",
        a_cluster.spec.replica
    );
    assert_eq!(
        a_cluster
            .spec
            .replica
            .as_ref()
            .and_then(|r| r.primary.as_deref()),
        Some(b.name)
    );
    let started = region.restore().await;
    println!("lab start {}: {started:?}", a.region);
    // Its emulator demotes what it finds (the Cluster is a replica by spec now) ...
    testkit::wait_cluster(&pair.api_a, a.name, "A's replica transition done", |c| {
        c.status.as_ref().is_some_and(|s| {
            !s.switch_replica_cluster_status
                .as_ref()
                .is_some_and(|x| x.in_progress)
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "ReplicaClusterSwitch" && c.status == "True")
        })
    })
    .await;
    // ... and its PostgreSQL either follows B in recovery or, having written past the fork,
    // refuses B's timeline (the reason it must be re-cloned). Never writable.
    let log = EmulatorLayout::new(lab.layout.root())
        .cluster_dir(a.region, &name, a.name)
        .join("postgres.log");
    let ns_name = name.as_str();
    let outcome = wait_for("A in recovery, or refusing B's timeline", DEADLINE, || {
        let log = log.clone();
        async move {
            if let Some(c) = pg(lab, ns_name, a, Duration::from_secs(1)).await
                && let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await
            {
                assert!(row.get::<_, bool>(0), "the fenced A accepts writes");
                return Some("in recovery, following B");
            }
            let text = tokio::fs::read_to_string(&log).await.ok()?;
            text.contains("is not a child of this server's history")
                .then_some("down: it wrote past the fork and cannot follow B's timeline")
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!("the fenced A: {outcome}");
    if outcome.starts_with("in recovery") {
        // Read once its instance answers again: the report says where A came back (stopped,
        // not cut off: never as a primary), and keeps what it cannot know.
        let returned = status_until(&hub, "A's return in the failover report", DEADLINE, |s| {
            s.last_failover
                .as_ref()?
                .data_loss
                .as_ref()?
                .old_primary_returned
                .clone()
        })
        .await;
        println!("A's return in the report: {returned:?}");
        assert!(!returned.primary, "{returned:?}");
        let window = status_now(&hub)
            .await
            .last_failover
            .and_then(|r| r.data_loss)
            .expect("the window");
        assert!(
            window.summary.contains("it was in recovery"),
            "{}",
            window.summary
        );
        assert!(
            window
                .unknown
                .iter()
                .any(|u| u.contains("kept accepting writes")),
            "{:?}",
            window.unknown
        );
    }
    let status = status_now(&hub).await;
    assert!(
        status
            .fenced_members
            .iter()
            .any(|f| f.name == a.name && f.needs_reclone),
        "A stays listed for re-clone: {:?}",
        status.fenced_members
    );

    stop_writer.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    sampler.finish().await;
    let on_b = rows_on(lab, &name, b).await;
    let by_a: Vec<i32> = acked
        .iter()
        .filter(|(_, m)| *m == a.name)
        .map(|(x, _)| *x)
        .collect();
    let by_b: Vec<i32> = acked
        .iter()
        .filter(|(_, m)| *m == b.name)
        .map(|(x, _)| *x)
        .collect();
    assert!(!by_a.is_empty() && !by_b.is_empty(), "writes on both sides");
    let lost_after_b: Vec<i32> = by_b.iter().copied().filter(|x| !on_b.contains(x)).collect();
    assert!(
        lost_after_b.is_empty(),
        "rows acknowledged by the new primary are lost: {lost_after_b:?}"
    );
    let lost: Vec<i32> = by_a.iter().copied().filter(|x| !on_b.contains(x)).collect();
    println!(
        "measured: {} rows acknowledged by A, {} of them not on B (the data-loss window); {} acknowledged by B, all kept",
        by_a.len(),
        lost.len(),
        by_b.len()
    );
    let topo = hub.get("pg").await.expect("topology");
    let members_status = topo.status.expect("status").members;
    println!("members: {members_status:?}");
    testkit::delete_all(lab, &name, &members).await;
}
