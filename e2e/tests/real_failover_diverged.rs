#![forbid(unsafe_code)]
//! An explicit failover on real CloudNativePG while the old primary is **cut off, not down**: a
//! pair streaming across regions with `verify-full`, a writer on A; then only A's API server
//! stops (`lab::stop_component`): the hub loses A, but A's node, its operator and its
//! PostgreSQL keep running and A keeps acknowledging writes on connections it already had. No
//! agent runs (docs/automatic-failover.md), so nothing fences A while it is cut off:
//! `federator failover --accept-data-loss` promotes B, and for a while both accept writes —
//! A's writes after B's promotion are on a timeline B never sees. Then A's API server returns.
//!
//! Proven, and what a user relies on: the hub fences A on its return (A's Cluster made a replica
//! of B, listed for re-clone) and A stops accepting writes; every row B acknowledged is kept;
//! every row A acknowledged after B's promotion is missing on B — lost — and the failover report
//! says so in words (writes acknowledged after B's last replayed WAL are lost; whether A kept
//! accepting writes is among what Federator cannot know). Observed and printed (the fidelity
//! finding): what real CloudNativePG does with A's diverged timeline once it must follow B —
//! `pg_rewind`, a re-clone, or a container that cannot start.
//!
//! Needs root and `make deps-real`; `make test-real` runs it (not `make test`'s subset).

mod real_support;

use std::time::{Duration, Instant};

use e2e::harness::controller::{failover_cli, pg, status_now};
use e2e::harness::region::ComponentDown;
use e2e::lab::health::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use real_support::{A, B, CLUSTER_WITHIN, instance_container, rows, writable};
use topology::api::{OperationKind, Outcome};

/// Rows the test writes itself on A's held connection, after B's promotion.
const PAST_FORK: i32 = 900_000;

/// A returned A in recovery that has not streamed from B for this long is reported as stuck.
const STUCK: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
async fn real_failover_while_the_cut_off_old_primary_keeps_writing_then_it_returns() {
    let (lab, test_ns) = real_support::lab_and_namespace("real-diverged").await;
    let ns = test_ns.name().to_owned();
    let ns = ns.as_str();
    let (hub, _controller, load) = real_support::pair_under_writes(lab, ns).await;
    // Opened while A's API server answers (it names the pod's address); kept across the cut.
    let held = pg(lab, ns, A, Duration::from_secs(10))
        .await
        .expect("a connection to A");
    let before = instance_container(lab, ns, A).await;

    // A's region is cut off from the hub: its API server alone stops.
    let (mut cut, stopped) = ComponentDown::stop(lab, A.region).await;
    let cut_at = Instant::now();
    println!("stopped {stopped:?}: A's node and PostgreSQL keep running");
    real_support::wait_unreachable(&hub, A).await;
    let a_primary = held
        .query_one("SELECT NOT pg_is_in_recovery()", &[])
        .await
        .map(|r| r.get::<_, bool>(0));
    println!(
        "A {:.1}s after the cut: {a_primary:?} (true: still a primary)",
        cut_at.elapsed().as_secs_f64()
    );

    let cli = Instant::now();
    let (code, stdout) = failover_cli(lab, ns, B.name, &["--accept-data-loss", "--wait"]).await;
    assert_eq!(code, 0, "the failover succeeds: {stdout}");
    real_support::wait_writable(lab, ns, B).await;
    println!(
        "failover: {:.1}s from the CLI call, B writable {:.1}s after the cut",
        cli.elapsed().as_secs_f64(),
        cut_at.elapsed().as_secs_f64()
    );

    // A, still cut off, acknowledges writes past B's takeover (nothing fences it).
    let mut past_fork = Vec::new();
    for i in 0..20 {
        let value = PAST_FORK + i;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&value];
        let insert = held.execute("INSERT INTO t VALUES ($1)", &params);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), insert).await {
            past_fork.push(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "A acknowledged {} of 20 writes after B's promotion (two primaries while A is cut off)",
        past_fork.len()
    );

    let status = status_now(&hub).await;
    let op = status.history.last().expect("the failover in history");
    assert_eq!(op.kind, OperationKind::Failover);
    assert_eq!(op.outcome, Some(Outcome::Succeeded), "{op:#?}");
    let window = status
        .last_failover
        .clone()
        .and_then(|r| r.data_loss)
        .expect("the data-loss window");
    println!("data-loss window: {}", window.summary);
    for line in &window.unknown {
        println!("  unknown: {line}");
    }
    assert!(
        window.summary.contains(&format!(
            "Writes {} acknowledged after the last WAL",
            A.name
        )),
        "{}",
        window.summary
    );
    assert!(
        window
            .unknown
            .iter()
            .any(|u| u.contains("kept accepting writes")),
        "the report says it cannot know whether A kept writing: {:?}",
        window.unknown
    );

    // A's API server returns: the hub fences A.
    let back = cut.restore().await;
    let returned_at = Instant::now();
    println!("started {back:?}; A's postgres container before: {before:?}");
    let fenced = real_support::wait_fenced(&hub, A).await;
    println!(
        "A fenced {:.1}s after its API server returned: {fenced:?}",
        returned_at.elapsed().as_secs_f64()
    );
    // The report, completed from A's instance status as it returned: still a primary (cut off,
    // not down), with WAL past what B had received — the writes it took meanwhile.
    let back = e2e::harness::controller::status_until(
        &hub,
        "A's return in the failover report",
        CLUSTER_WITHIN,
        |s| {
            s.last_failover
                .clone()?
                .data_loss
                .filter(|w| w.old_primary_returned.is_some())
        },
    )
    .await;
    println!("the report after A's return: {}", back.summary);
    let returned = back
        .old_primary_returned
        .clone()
        .expect("A's return recorded");
    assert!(returned.primary, "A was read as a primary: {returned:?}");
    assert!(
        back.target_received_lsn.is_some() && returned.wal_past_target_bytes > Some(0),
        "A's WAL past B's: {back:?}"
    );
    assert!(
        back.summary.contains("cut off, not down"),
        "{}",
        back.summary
    );

    // What real CloudNativePG does with A's timeline: A stops accepting writes, then follows B
    // (rewound or re-cloned), or stays in recovery without following it, or cannot start.
    let last_seen = std::sync::Mutex::new(None);
    let (last_seen, before) = (&last_seen, &before);
    let outcome = wait_for("A no longer a primary, and settled", CLUSTER_WITHIN, || {
        async move {
            let container = instance_container(lab, ns, A).await;
            {
                let mut last = last_seen.lock().unwrap_or_else(|e| e.into_inner());
                if last.as_ref() != Some(&container) {
                    println!(
                        "  {:.1}s: A's postgres container {container:?}",
                        returned_at.elapsed().as_secs_f64()
                    );
                    *last = Some(container.clone());
                }
            }
            match writable(lab, ns, A).await {
                Some(true) => None,
                Some(false) => {
                    let c = pg(lab, ns, A, Duration::from_secs(2)).await?;
                    let row = c
                        .query_one(
                            "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none'), \
                             (SELECT count(*) FROM t WHERE x >= $1)",
                            &[&PAST_FORK],
                        )
                        .await
                        .ok()?;
                    let (receiver, kept): (String, i64) = (row.get(0), row.get(1));
                    if receiver == "streaming" {
                        Some(format!(
                            "in recovery, streaming from B; {kept} of A's rows past the fork still on A"
                        ))
                    } else {
                        (returned_at.elapsed() > STUCK).then(|| {
                            format!(
                                "in recovery but not following B (WAL receiver: {receiver}) {} s after its return; {kept} of A's rows past the fork on A",
                                STUCK.as_secs()
                            )
                        })
                    }
                }
                None => {
                    let (ready, restarts, state) = container?;
                    let first = before.as_ref().map_or(0, |b| b.1);
                    (!ready && restarts >= first + 3).then(|| {
                        format!("not serving: postgres container {state}, {restarts} restarts")
                    })
                }
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "the returned A: {outcome} ({:.1}s after its API server returned)",
        returned_at.elapsed().as_secs_f64()
    );
    print_instance_log(lab, ns).await;

    let (acked, two_primaries) = load.finish_with_violations().await;
    let on_b = rows(lab, ns, B).await.expect("rows on B");
    let lost: Vec<i32> = acked
        .iter()
        .chain(&past_fork)
        .copied()
        .filter(|x| !on_b.contains(x))
        .collect();
    println!(
        "measured: {} rows acknowledged by the writer + {} past the fork on A's held connection; \
         {} lost (not on B); {} samples saw two primaries",
        acked.len(),
        past_fork.len(),
        lost.len(),
        two_primaries.len()
    );
    assert!(
        past_fork.iter().all(|x| lost.contains(x)),
        "A's writes after B's promotion cannot be on B"
    );
    assert_ne!(
        writable(lab, ns, A).await,
        Some(true),
        "the fenced A does not accept writes"
    );
    real_support::assert_listed_for_reclone(&hub, A).await;
}

/// The distinct messages of A's instance log about timelines, rewinds and streaming (the
/// finding's evidence), and how many mention `pg_rewind`.
async fn print_instance_log(lab: &'static e2e::harness::SharedLab, ns: &str) {
    let pods: Api<Pod> = Api::namespaced(lab.admin(A.region).await, ns);
    let params = LogParams {
        container: Some("postgres".into()),
        ..LogParams::default()
    };
    let text = match pods.logs(&format!("{}-1", A.name), &params).await {
        Ok(text) => text,
        Err(e) => {
            println!("A's postgres log: {e}");
            return;
        }
    };
    // The instance manager logs JSON; PostgreSQL's own lines are under `record.message`.
    let messages: Vec<String> = text
        .lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) => v["record"]["message"]
                .as_str()
                .or(v["msg"].as_str())
                .unwrap_or(l)
                .to_owned(),
            Err(_) => l.to_owned(),
        })
        .collect();
    let rewinds = messages.iter().filter(|m| m.contains("rewind")).count();
    println!(
        "A's postgres log: {} lines, {rewinds} mention pg_rewind",
        messages.len()
    );
    let mut distinct: Vec<String> = Vec::new();
    for m in &messages {
        let l = m.to_lowercase();
        let relevant = [
            "rewind",
            "timeline",
            "history",
            "streaming",
            "demot",
            "fenc",
        ]
        .iter()
        .any(|w| l.contains(w));
        // Digits (LSNs, pids) differ between repeats of one message.
        let shape: String = m.chars().filter(|c| !c.is_ascii_digit()).collect();
        if relevant && !distinct.contains(&shape) {
            distinct.push(shape);
            println!("  {m:.600}");
        }
    }
}
