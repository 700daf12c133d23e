#![forbid(unsafe_code)]
//! Planned switchovers on the emulator, done the documented way (contract §7: demote, read the
//! token, promote with it) as JSON merge patches: data written before the demotion is on the
//! new primary, the old primary follows the new timeline, and the status walks through CNPG's
//! demotion sequence (contract §9).

use std::time::Instant;

use e2e::harness::TestNamespace;
use e2e::harness::testkit::{self, Member};
use futures::StreamExt;
use serde_json::json;
use topology::cnpg::{Cluster, FENCED_INSTANCES_ANNOTATION, condition};
use topology::token::PromotionToken;

/// What one status update of the demoting Cluster showed, in watch order.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    fenced: bool,
    ready: Option<i64>,
    in_progress: bool,
    transition: Option<String>,
    token: bool,
    switch: Option<String>,
}

fn seen(c: &Cluster) -> Seen {
    let s = c.status.clone().unwrap_or_default();
    let cond = |t: &str| c.condition(t).map(|x| format!("{}/{}", x.status, x.reason));
    Seen {
        fenced: c
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(FENCED_INSTANCES_ANNOTATION)),
        ready: s.ready_instances,
        in_progress: s
            .switch_replica_cluster_status
            .is_some_and(|x| x.in_progress),
        transition: cond(condition::DESIGNATED_PRIMARY_TRANSITION),
        token: s.demotion_token.is_some_and(|t| !t.is_empty()),
        switch: cond(condition::REPLICA_CLUSTER_SWITCH),
    }
}

/// Index of the first snapshot satisfying `f`, panicking with the whole history otherwise.
fn first(history: &[Seen], what: &str, f: impl Fn(&Seen) -> bool) -> usize {
    history
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("never saw {what}; history: {history:#?}"))
}

#[tokio::test]
async fn pair_switchover_by_the_three_documented_steps() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-pair").await;
    let ns = ns.name().to_owned();
    let a = Member {
        name: "pg-a",
        region: "eu-central",
    };
    let b = Member {
        name: "pg-b",
        region: "eu-western",
    };
    let members = [a, b];
    let api_a = testkit::clusters(lab, a.region, &ns).await;
    let api_b = testkit::clusters(lab, b.region, &ns).await;
    // Archive only (no streaming): the path contract §10 verified by hand.
    testkit::create(
        &api_a,
        &testkit::blog_cluster(&ns, a.name, a.name, b.name, &members, false),
    )
    .await;
    testkit::wait_cluster(&api_a, a.name, "A healthy", testkit::healthy).await;
    let client_a = testkit::connect(lab, a.region, &ns, a.name).await;
    client_a
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
        .await
        .expect("writes on A");
    testkit::create(
        &api_b,
        &testkit::blog_cluster(&ns, b.name, a.name, a.name, &members, false),
    )
    .await;
    testkit::wait_cluster(&api_b, b.name, "B healthy as a replica", testkit::healthy).await;
    testkit::wait_rows(lab, b.region, &ns, b.name, &[1, 2]).await;
    client_a
        .batch_execute("INSERT INTO t VALUES (3)")
        .await
        .expect("a write just before the demotion");

    // Record every update of A while it demotes.
    let watch_api = api_a.clone();
    let name_a = a.name.to_owned();
    let recorder = tokio::spawn(async move {
        let mut history: Vec<Seen> = Vec::new();
        let mut stream = e2e::harness::watch::updates(watch_api, &name_a);
        while let Some(c) = stream.next().await {
            let s = seen(&c);
            if history.last() != Some(&s) {
                history.push(s.clone());
            }
            if s.switch.as_deref() == Some("True/ReplicaEnabledSetTrue")
                && !s.in_progress
                && !s.fenced
            {
                break;
            }
        }
        history
    });

    // Every phase B shows from here on: a correct token must never look unrecoverable.
    let watch_b = api_b.clone();
    let phases = tokio::spawn(async move {
        let mut seen: Vec<String> = Vec::new();
        let mut stream = e2e::harness::watch::updates(watch_b, "pg-b");
        while let Some(c) = stream.next().await {
            let phase = testkit::phase(&c).to_owned();
            if seen.last() != Some(&phase) {
                seen.push(phase);
            }
            if testkit::last_promotion_token(&c).is_some() && testkit::healthy(&c) {
                break;
            }
        }
        seen
    });

    // Step 1: demote A.
    let started = Instant::now();
    testkit::patch_replica(&api_a, a.name, json!({"primary": b.name}))
        .await
        .expect("demote A");
    // Step 2: read the token.
    let demoted = testkit::wait_cluster(&api_a, a.name, "the demotion token", |c| {
        testkit::demotion_token(c).is_some()
    })
    .await;
    let token = testkit::demotion_token(&demoted).expect("token");
    let token_after = started.elapsed();
    let decoded = PromotionToken::parse(&token).expect("a valid token");
    let archive = lab
        .layout
        .root()
        .join(format!("object-stores/{}-{ns}", a.name));
    assert!(
        archive
            .join(format!("{}.partial", decoded.redo_wal_file))
            .is_file(),
        "the .partial is archived before the token is published"
    );
    // Between steps 2 and 3, what CNPG's docs leave out (docs/lab-real.md, fidelity table): B
    // restores A's WAL from A's object store only while it is a replica by spec, so it must
    // have replayed the token's shutdown checkpoint before the promote patch.
    let wanted = decoded.redo_lsn().expect("the token's REDO location");
    testkit::wait_replayed_past(lab, b.region, &ns, b.name, wanted).await;
    // Step 3: promote B with it.
    testkit::patch_replica(
        &api_b,
        b.name,
        json!({"primary": b.name, "promotionToken": token}),
    )
    .await
    .expect("promote B");
    let promoted = testkit::wait_cluster(&api_b, b.name, "lastPromotionToken", |c| {
        testkit::last_promotion_token(c) == Some(token.as_str())
    })
    .await;
    testkit::wait_until_writable(lab, b.region, &ns, b.name).await;
    let writable_after = started.elapsed();
    eprintln!("switchover: token after {token_after:?}, B writable after {writable_after:?}");
    let _ = promoted;

    let history = recorder.await.expect("recorder");
    let phases = phases.await.expect("phase recorder");
    assert!(
        !phases
            .iter()
            .any(|p| p == topology::cnpg::phase::UNRECOVERABLE),
        "B's phases: {phases:?}"
    );
    assert!(
        phases.iter().any(|p| p == topology::cnpg::phase::PROMOTING),
        "B's phases: {phases:?}"
    );
    let fenced = first(&history, "fencing", |s| s.fenced);
    let not_ready = first(&history, "no Ready instances", |s| {
        s.fenced && s.ready == Some(0)
    });
    let started_switch = first(&history, "inProgress", |s| {
        s.in_progress && s.transition.as_deref() == Some("False/ReplicaClusterAfterCreation")
    });
    let completed = first(&history, "TransitionCompleted", |s| {
        s.transition.as_deref() == Some("True/TransitionCompleted")
    });
    let token_seen = first(&history, "the token", |s| s.token);
    let cleaned = first(&history, "clean-up", |s| {
        s.token && !s.fenced && !s.in_progress && s.transition.is_none()
    });
    assert!(
        fenced <= not_ready && not_ready <= started_switch,
        "{history:#?}"
    );
    assert!(
        started_switch < completed && completed < token_seen,
        "{history:#?}"
    );
    assert!(
        history[token_seen].in_progress,
        "token written before clean-up: {history:#?}"
    );
    assert!(token_seen < cleaned, "{history:#?}");

    // B has everything A had; the new timeline is the token's + 1.
    testkit::wait_rows(lab, b.region, &ns, b.name, &[1, 2, 3]).await;
    let healthy_b =
        testkit::wait_cluster(&api_b, b.name, "B healthy as primary", testkit::healthy).await;
    let client_b = testkit::connect(lab, b.region, &ns, b.name).await;
    assert!(!testkit::in_recovery(&client_b).await);
    let tl = decoded.timeline().expect("timeline") as i64;
    assert_eq!(
        healthy_b.status.as_ref().and_then(|s| s.timeline_id),
        Some(tl + 1)
    );
    assert_eq!(testkit::timeline(&client_b).await, tl + 1);
    assert_eq!(
        healthy_b
            .status
            .as_ref()
            .and_then(|s| s.demotion_token.clone()),
        None
    );

    // A follows B's timeline through B's archive and gets rows written after the promotion.
    client_b
        .batch_execute("INSERT INTO t VALUES (4)")
        .await
        .expect("write on B");
    client_b
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .expect("ship the segment");
    testkit::wait_rows(lab, a.region, &ns, a.name, &[1, 2, 3, 4]).await;
    let client_a = testkit::connect(lab, a.region, &ns, a.name).await;
    assert!(testkit::in_recovery(&client_a).await);
    let a_now =
        testkit::wait_cluster(&api_a, a.name, "A healthy as a replica", testkit::healthy).await;
    assert_eq!(
        a_now
            .status
            .as_ref()
            .and_then(|s| s.current_primary.clone())
            .as_deref(),
        Some("pg-a-1"),
        "currentPrimary names the designated primary throughout"
    );
    let (sa, sb) = (
        a_now.status.clone().unwrap_or_default(),
        healthy_b.status.clone().unwrap_or_default(),
    );
    assert_eq!(sa.system_id, sb.system_id, "one system across the pair");
    assert_eq!(
        sa.timeline_id,
        Some(tl),
        "a replica keeps the timeline it last reported as primary"
    );
    assert!(
        !sa.instances_reported_state.unwrap_or_default()["pg-a-1"].is_primary,
        "a designated primary reports isPrimary: false"
    );
    let mode = |c: tokio_postgres::Client| async move {
        c.query_one("SHOW archive_mode", &[])
            .await
            .map(|r| r.get::<_, String>(0))
            .expect("archive_mode")
    };
    assert_eq!(
        mode(client_a).await,
        "always",
        "replica clusters archive always"
    );
    let client_b = testkit::connect(lab, b.region, &ns, b.name).await;
    assert_eq!(
        mode(client_b).await,
        "on",
        "restarted in place after the promotion"
    );
    testkit::delete_all(lab, &ns, &members).await;
}

#[tokio::test]
async fn ring_of_three_switchover_follows_around_the_ring() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-ring").await;
    let ns = ns.name().to_owned();
    let central = Member {
        name: "pg16-eu-central",
        region: "eu-central",
    };
    let western = Member {
        name: "pg16-eu-western",
        region: "eu-western",
    };
    let south = Member {
        name: "pg16-eu-south",
        region: "eu-south",
    };
    let members = [central, western, south];
    // Circular sources: central ← south ← western ← central.
    let source = |m: &Member<'_>| match m.name {
        "pg16-eu-central" => south.name,
        "pg16-eu-western" => central.name,
        _ => western.name,
    };
    let mut apis = Vec::new();
    for m in &members {
        let api = testkit::clusters(lab, m.region, &ns).await;
        let mut cluster =
            testkit::blog_cluster(&ns, m.name, central.name, source(m), &members, true);
        // Three instances, as in the blog: one PostgreSQL reports for all three.
        cluster.spec.instances = 3;
        testkit::create(&api, &cluster).await;
        testkit::wait_cluster(&api, m.name, "healthy", testkit::healthy).await;
        if m.name == central.name {
            let c = testkit::connect(lab, m.region, &ns, m.name).await;
            c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
                .await
                .expect("writes on central");
        }
        apis.push(api);
    }
    for m in &members {
        testkit::wait_rows(lab, m.region, &ns, m.name, &[1]).await;
    }

    // Switchover central → western.
    testkit::patch_replica(&apis[0], central.name, json!({"primary": western.name}))
        .await
        .expect("demote central");
    let demoted = testkit::wait_cluster(&apis[0], central.name, "token", |c| {
        testkit::demotion_token(c).is_some()
    })
    .await;
    let token = testkit::demotion_token(&demoted).expect("token");
    testkit::patch_replica(
        &apis[1],
        western.name,
        json!({"primary": western.name, "promotionToken": token}),
    )
    .await
    .expect("promote western");
    testkit::patch_replica(&apis[2], south.name, json!({"primary": western.name}))
        .await
        .expect("bookkeeping on south");
    let promoted = testkit::wait_cluster(&apis[1], western.name, "western healthy primary", |c| {
        testkit::last_promotion_token(c) == Some(token.as_str()) && testkit::healthy(c)
    })
    .await;
    let tl = PromotionToken::parse(&token)
        .expect("token")
        .timeline()
        .expect("tl") as i64;
    assert_eq!(
        promoted.status.as_ref().and_then(|s| s.timeline_id),
        Some(tl + 1)
    );

    let client = testkit::connect(lab, western.region, &ns, western.name).await;
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("write on western");
    // Around the ring: western → south (streams from western) → central (streams from south).
    for m in [western, south, central] {
        testkit::wait_rows(lab, m.region, &ns, m.name, &[1, 2]).await;
    }
    let c = testkit::connect(lab, central.region, &ns, central.name).await;
    assert!(
        testkit::in_recovery(&c).await,
        "the old primary is a replica now"
    );
    testkit::delete_all(lab, &ns, &members).await;
}

/// The PostgreSQL processes whose command line names `pgdata`.
fn postgres_serving(pgdata: &std::path::Path) -> usize {
    let wanted = pgdata.display().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .filter(|cmdline| {
                    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                    args.first().is_some_and(|a| a.ends_with(b"postgres"))
                        && args.contains(&wanted.as_bytes())
                })
                .count()
        })
        .unwrap_or(0)
}

/// A deleted Cluster's PostgreSQL is stopped and its data removed (as CNPG deletes its pods and
/// PVCs); its neighbours are untouched. Before the emulator's sweep read the apiserver, these
/// instances ran until `lab down`, and a few bench runs left 29 replicas polling their archives.
#[tokio::test]
async fn a_deleted_cluster_stops_and_removes_its_postgresql() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-delete").await;
    let pair = testkit::Pair::create(lab, ns.name()).await;
    let layout = e2e::emulator::layout::EmulatorLayout::new(lab.layout.root());
    let dir = layout.cluster_dir(pair.b.region, ns.name(), pair.b.name);
    let pgdata = dir.join("pgdata");
    assert_eq!(
        postgres_serving(&pgdata),
        1,
        "B's postgres at {}",
        pgdata.display()
    );

    pair.api_b
        .delete(pair.b.name, &Default::default())
        .await
        .expect("deleting B");
    let dir = &dir;
    let pgdata = &pgdata;
    e2e::lab::health::wait_for(
        "B's PostgreSQL stopped and its data removed",
        testkit::DEADLINE,
        || async move { (!dir.exists() && postgres_serving(pgdata) == 0).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let a = testkit::connect(lab, pair.a.region, ns.name(), pair.a.name).await;
    a.batch_execute("INSERT INTO t VALUES (3)")
        .await
        .expect("A still takes writes");
    pair.delete().await;
}

/// Found on the real tier (docs/lab-real.md, fidelity): CNPG restarts a promoted primary in place
/// (archive_mode `always` → `on`) with a smart shutdown, which waits for every client session up
/// to `spec.smartShutdownTimeout` (default 180 s) before a fast one, and the Cluster is not
/// healthy meanwhile. Here at the lab's time scale (0.05): 180 s is 9 s.
#[tokio::test]
async fn a_promoted_primary_restart_waits_for_open_sessions_up_to_the_smart_shutdown_timeout() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-smart-shutdown").await;
    let pair = testkit::Pair::create(lab, ns.name()).await;
    // CNPG's default, where the fixture sets 5 s.
    pair.api_b
        .patch(
            pair.b.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"smartShutdownTimeout": null}})),
        )
        .await
        .expect("removing B's smartShutdownTimeout");
    let token = pair.demote_a().await;
    // A session on B, open across its promotion and restart.
    let session = testkit::connect(lab, pair.b.region, ns.name(), pair.b.name).await;
    let started = Instant::now();
    pair.promote_b(Some(&token)).await.expect("promote B");
    testkit::wait_cluster(&pair.api_b, pair.b.name, "B promoted and healthy", |c| {
        testkit::last_promotion_token(c) == Some(token.as_str()) && testkit::healthy(c)
    })
    .await;
    let took = started.elapsed();
    assert!(
        took.as_secs_f64() >= 8.0,
        "B was healthy {took:?} after its promotion, while a session was open (want >= the \
         scaled 180 s smart shutdown window, 9 s)"
    );
    // The session ended with the fast shutdown that followed.
    assert!(session.simple_query("SELECT 1").await.is_err());
    pair.delete().await;
}
