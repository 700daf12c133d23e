#![forbid(unsafe_code)]
//! The controller against the emulator's CNPG faults (contract §6): a stuck demotion and a
//! skipped demotion hold the switchover with a condition and a Warning Event and never promote
//! (a demotion stalled until the Cluster changes resumes after the runbook's nudge);
//! a demotion token wiped after clean-up (#11074) does not stop the switchover, because the
//! controller persisted it when it first appeared — or, if no reconcile ran while it was there,
//! because the member pool's watch kept it. A token that decodes but is wrong is never applied
//! (foreign system id) or is refused by CNPG and rolled back (LSN 0/0). A promotion token is
//! cleared once promoted (#9273), so the switchover back can demote the new primary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::emulator::faults;
use e2e::harness::controller::{
    Controller, Load, assert_rows_kept, deploy, switchover, wait_condition, wide_timeouts,
};
use e2e::harness::setup::{Running, Setup};
use e2e::harness::testkit::{self, DEADLINE, Pair};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use topology::api::{Operation, OperationRecord, Outcome};
use topology::cnpg::{Cluster, Role, condition};
use topology::conditions::{kind, reason};
use topology::{DistributedTopology, StepKind};

/// A healthy pair with `fault` annotated on A, a topology with short deadlines and a
/// controller; switches over to B with `--wait` under the two-primaries sampler. Returns the
/// set-up (its controller stops when the caller drops it, as the caller destructures it), the
/// CLI's exit code and output, and the topology afterwards.
async fn switchover_with_fault(
    test: &str,
    fault: &'static str,
    value: &str,
) -> (Running, i32, String, DistributedTopology) {
    let timeouts = json!({"demotionStart": "5s", "tokenWait": "6s", "promotionWait": "2m"});
    let t = Setup::pair(test)
        .fault_on_a(fault, value)
        .timeouts(timeouts)
        .ready()
        .await;
    let load = Load::start(t.lab, t.ns(), &t.members(), false);
    let (code, out, _) = switchover(t.lab, t.ns(), t.pair.b.name).await;
    // The sampler keeps watching for a second after the CLI returned: a hold must stay a hold
    // (no late promotion), and a hold reached in 0.3 s left it only ~5 samples to judge by.
    tokio::time::sleep(AFTER_THE_ANSWER).await;
    load.finish().await;
    let topo = t.hub.get("pg").await.expect("the topology");
    (t, code, out, topo)
}

/// How long the two-primaries sampler goes on after the CLI answered.
const AFTER_THE_ANSWER: Duration = Duration::from_secs(1);

/// Waits (deadline) until the hub has a Warning Event for each of `reasons` in `ns`: Events are
/// published by a background task, after the status the caller just read.
async fn assert_warning_events(lab: &SharedLab, ns: &str, reasons: &[&str]) {
    let api: Api<Event> = Api::namespaced(lab.admin("hub").await, ns);
    let api = &api;
    let published = wait_for(
        &format!("Warning Events {reasons:?}"),
        DEADLINE,
        || async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            reasons
                .iter()
                .all(|wanted| {
                    list.items.iter().any(|e| {
                        e.reason.as_deref() == Some(*wanted)
                            && e.type_.as_deref() == Some("Warning")
                    })
                })
                .then_some(())
        },
    )
    .await;
    let events = api.list(&ListParams::default()).await.expect("events");
    assert!(
        published.is_ok(),
        "no Warning Events {reasons:?}: {:#?}",
        events
            .items
            .iter()
            .map(|e| (&e.type_, &e.reason, &e.note))
            .collect::<Vec<_>>()
    );
}

/// The switchover holds with `hold_reason` in status, condition and a Warning Event, and B
/// was never promoted: not by spec, not in PostgreSQL.
async fn assert_held_without_promotion(
    ns: &TestNamespace,
    pair: &Pair,
    code: i32,
    out: &str,
    topo: &DistributedTopology,
    hold_reason: &str,
) {
    assert_eq!(code, 3, "the CLI exits 3 on a hold; output:\n{out}");
    assert!(out.contains(hold_reason), "{out}");
    let status = topo.status.clone().expect("status");
    let op = status.operation.expect("the operation stays, holding");
    assert_eq!(
        op.hold.as_ref().map(|h| h.reason.as_str()),
        Some(hold_reason),
        "{op:#?}"
    );
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == kind::SWITCHOVER_IN_PROGRESS)
        .expect("SwitchoverInProgress");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", hold_reason)
    );

    assert_warning_events(ns.lab, ns.name(), &[hold_reason]).await;

    let b = pair.api_b.get(pair.b.name).await.expect("B");
    assert_eq!(
        b.role(),
        Role::Replica,
        "B's spec was promoted: {:?}",
        b.spec.replica
    );
    assert!(pair.b_in_recovery().await, "B accepts writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_demotion_holds_on_the_token_deadline_and_never_promotes() {
    let (Running { ns, pair, .. }, code, out, topo) =
        switchover_with_fault("ctl-stuck", faults::HANG_BEFORE_TRANSITION, "true").await;
    assert_held_without_promotion(&ns, &pair, code, &out, &topo, reason::TOKEN_TIMEOUT).await;
    pair.delete().await;
}

/// A demotion that stalls until the Cluster changes (real CNPG 1.28.1 after an instance-manager
/// restart, docs/lab-real.md): the switchover holds at `TokenTimeout` without promoting, and the
/// runbook's nudge (docs/operations.md: annotate the Cluster) brings the token late; the held
/// switchover resumes by itself from it — CheckToken, Promote — and succeeds, never with two
/// primaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_demotion_holds_and_the_runbooks_nudge_resumes_the_switchover() {
    let (t, code, out, topo) =
        switchover_with_fault("ctl-nudge", faults::STALL_DEMOTION_UNTIL_CHANGED, "true").await;
    assert_held_without_promotion(&t.ns, &t.pair, code, &out, &topo, reason::TOKEN_TIMEOUT).await;
    let held = topo
        .status
        .and_then(|s| s.operation)
        .expect("the held operation");
    assert!(
        t.pair
            .api_a
            .get(t.pair.a.name)
            .await
            .expect("A")
            .status
            .and_then(|s| s.demotion_token)
            .is_none_or(|token| token.is_empty()),
        "inconclusive: A published its token before the nudge"
    );

    let load = Load::start(t.lab, t.ns(), &t.members(), true);
    testkit::annotate(
        &t.pair.api_a,
        t.pair.a.name,
        "federator.dev/nudge",
        Some("1"),
    )
    .await;
    let done = wait_operation(&t.hub, "the held switchover to finish", |topo| {
        in_history(topo, &held.id)
    })
    .await;
    assert_eq!(done.outcome, Some(Outcome::Succeeded), "{done:#?}");
    assert!(
        done.steps.iter().any(|s| s.step == StepKind::CheckToken)
            && done.steps.iter().any(|s| s.step == StepKind::Promote),
        "resumed through CheckToken and Promote: {done:#?}"
    );
    assert!(!t.pair.b_in_recovery().await, "B is the primary");
    let acked = load.finish().await;
    assert_rows_kept(t.lab, t.ns(), t.pair.b, &acked).await;
    t.pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_demotion_holds_and_never_promotes() {
    let (Running { ns, pair, .. }, code, out, topo) =
        switchover_with_fault("ctl-skip", faults::SKIP_DEMOTION, "true").await;
    assert_held_without_promotion(&ns, &pair, code, &out, &topo, reason::DEMOTION_NOT_STARTED)
        .await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_demotion_token_was_persisted_and_the_switchover_completes() {
    let (Running { ns: _ns, pair, .. }, code, out, topo) =
        switchover_with_fault("ctl-wipe", faults::WIPE_DEMOTION_TOKEN, "true").await;
    assert_eq!(code, 0, "{out}");
    let status = topo.status.expect("status");
    assert!(status.operation.is_none());
    assert!(!pair.b_in_recovery().await, "B is the primary");
    pair.delete().await;
}

/// The topology's operation (or finished operation) whose id starts with `prefix`, once `done`.
async fn wait_operation(
    hub: &Api<DistributedTopology>,
    what: &str,
    done: impl Fn(&DistributedTopology) -> Option<Operation>,
) -> Operation {
    let done = &done;
    wait_for(what, DEADLINE, || async move {
        done(&hub.get("pg").await.ok()?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn in_history(topo: &DistributedTopology, prefix: &str) -> Option<Operation> {
    topo.status
        .as_ref()?
        .history
        .iter()
        .find(|op| op.id.starts_with(prefix))
        .map(OperationRecord::expand)
}

/// A's demotion completed (`ReplicaClusterSwitch` True, not in progress) and its status holds
/// no demotion token.
fn demoted_without_token(c: &Cluster) -> bool {
    let status = c.status.clone().unwrap_or_default();
    c.condition(condition::REPLICA_CLUSTER_SWITCH)
        .is_some_and(|s| s.status == "True")
        && !status
            .switch_replica_cluster_status
            .is_some_and(|s| s.in_progress)
        && status.demotion_token.as_deref().is_none_or(str::is_empty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_wiped_before_any_reconcile_read_it_is_kept_by_the_watch_and_used() {
    // The default lease: a new leader cannot lead sooner than its 5 s grace after a kill, so the
    // demotion (1.5 s slow shutdown) completes, token written and wiped, before it reconciles.
    const LEASE: [&str; 2] = ["--lease-seconds", "15"];
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("ctl-wipe-unread").await;
    ns.grant_federator().await;
    let pair = Pair::create(lab, ns.name()).await;
    testkit::annotate(
        &pair.api_a,
        pair.a.name,
        faults::WIPE_DEMOTION_TOKEN,
        Some("true"),
    )
    .await;
    testkit::annotate(
        &pair.api_a,
        pair.a.name,
        faults::SLOW_SHUTDOWN,
        Some("1500ms"),
    )
    .await;
    let members = [pair.a, pair.b];
    let hub = deploy(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        wide_timeouts(),
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(lab.admin("hub").await, "federator-system");
    let lease = format!("federator-{}", ns.name());
    let flags = |id: &'static str| [["--identity", id], LEASE].concat();
    let mut first = Controller::start_with(lab, ns.name(), "-first", &flags("ctl-first"));
    let holds = |who: &'static str| {
        let (leases, lease) = (&leases, &lease);
        move || async move {
            let holder = leases.get(lease).await.ok()?.spec?.holder_identity?;
            (holder == who).then_some(())
        }
    };
    wait_for("ctl-first to lead", DEADLINE, holds("ctl-first"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = Controller::start_with(lab, ns.name(), "-second", &flags("ctl-second"));
    wait_condition(&hub, kind::READY).await;
    let load = Load::start(lab, ns.name(), &members, true);

    let generation = hub
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"primary": pair.b.name}})),
        )
        .await
        .expect("setting spec.primary")
        .metadata
        .generation
        .unwrap_or_default();
    let prefix = format!("{generation}-");
    let awaiting = wait_operation(&hub, "the leader to await A's token", |t| {
        let op = t.status.as_ref()?.operation.clone()?;
        (op.id.starts_with(&prefix) && op.step >= StepKind::AwaitToken).then_some(op)
    })
    .await;
    first.kill().await;
    assert_eq!(
        awaiting.token, None,
        "inconclusive: the first leader persisted the token before it was killed"
    );

    // The token comes and goes while nobody leads: no reconcile reads it.
    testkit::wait_cluster(
        &pair.api_a,
        pair.a.name,
        "A's demotion completed and its token wiped",
        demoted_without_token,
    )
    .await;
    let holder = leases.get(&lease).await.expect("the Lease").spec;
    assert_eq!(
        holder.and_then(|s| s.holder_identity).as_deref(),
        Some("ctl-first"),
        "inconclusive: ctl-second led before the token was wiped"
    );

    let done = wait_operation(&hub, "the switchover to finish", |t| in_history(t, &prefix)).await;
    assert_eq!(done.outcome, Some(Outcome::Succeeded), "{done:#?}");
    // History keeps no token; a switchover passes CheckToken only with the persisted one.
    assert!(
        done.steps.iter().any(|s| s.step == StepKind::CheckToken),
        "the token was persisted and checked: {done:#?}"
    );
    assert!(
        second.log().contains("using the one its watch saw"),
        "ctl-second did not take the token from its watch:\n{}",
        second.log()
    );
    let acked = load.finish().await;
    assert_rows_kept(lab, ns.name(), pair.b, &acked).await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promotion_token_is_cleared_once_promoted_so_the_switchover_back_demotes() {
    let t = Setup::pair("ctl-stale-token").ready().await;
    let (lab, ns, pair, hub) = (t.lab, &t.ns, &t.pair, &t.hub);
    let members = t.members();

    // Every version of B: (spec.replica.promotionToken, status.lastPromotionToken).
    let versions = Arc::new(Mutex::new(Vec::<(Option<String>, Option<String>)>::new()));
    let watch = tokio::spawn({
        let (api, versions) = (pair.api_b.clone(), versions.clone());
        let name = pair.b.name;
        async move {
            let mut updates = e2e::harness::watch::updates(api, name);
            while let Some(b) = updates.next().await {
                let spec = b
                    .spec
                    .replica
                    .as_ref()
                    .and_then(|r| r.promotion_token.clone());
                let last = b.status.and_then(|s| s.last_promotion_token);
                versions.lock().unwrap().push((spec, last));
            }
        }
    });
    let load = Load::start(lab, ns.name(), &members, true);
    let (code, out, _) = switchover(lab, ns.name(), pair.b.name).await;
    assert_eq!(code, 0, "{out}");
    // The controller records success only once its own watch shows B without the token; this
    // test's watch is another stream and may be a moment behind it: wait for it (a deadline).
    let shown = wait_for(
        "this test's watch of B to show its token cleared",
        DEADLINE,
        || {
            let versions = versions.clone();
            async move {
                let versions = versions.lock().unwrap();
                let set = versions.iter().position(|(spec, _)| spec.is_some())?;
                versions[set..]
                    .iter()
                    .any(|(spec, _)| spec.is_none())
                    .then_some(())
            }
        },
    )
    .await;
    watch.abort();
    let versions = versions.lock().unwrap().clone();
    if let Err(e) = shown {
        panic!("B's promotion token was never cleared ({e}): {versions:?}");
    }
    let set = versions
        .iter()
        .position(|(spec, _)| spec.is_some())
        .unwrap_or_else(|| panic!("B never carried a promotion token: {versions:?}"));
    let token = versions[set].0.clone();
    let cleared = set
        + versions[set..]
            .iter()
            .position(|(spec, _)| spec.is_none())
            .unwrap_or_else(|| panic!("B's promotion token was never cleared: {versions:?}"));
    // #9273: cleared only once B reported the promotion, never before (an earlier clear would
    // let the pending promotion skip CNPG's LSN check).
    assert_eq!(
        versions[cleared].1, token,
        "cleared before lastPromotionToken showed it: {versions:?}"
    );
    let b = pair.api_b.get(pair.b.name).await.expect("B");
    assert_eq!(b.spec.replica.and_then(|r| r.promotion_token), None);

    // The switchover back demotes B; with a stale token CNPG's webhook would refuse that patch.
    let (code, out, _) = switchover(lab, ns.name(), pair.a.name).await;
    assert_eq!(code, 0, "{out}");
    let back = hub
        .get("pg")
        .await
        .expect("the topology")
        .status
        .expect("status");
    let last = back.history.last().expect("the switchover back");
    assert_eq!(last.outcome, Some(Outcome::Succeeded));
    // A switchover passes CheckToken only with a token in hand: B's demotion produced one.
    let steps: Vec<StepKind> = last.steps().unwrap().iter().map(|s| s.step).collect();
    assert!(steps.contains(&StepKind::CheckToken), "{steps:?}");
    let acked = load.finish().await;
    assert_rows_kept(lab, ns.name(), pair.a, &acked).await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_system_id_token_is_never_applied_and_the_old_primary_stays_intact() {
    let (Running { ns, pair, .. }, code, out, topo) = switchover_with_fault(
        "ctl-foreign",
        faults::CORRUPT_DEMOTION_TOKEN,
        "foreign-sysid",
    )
    .await;
    assert_held_without_promotion(&ns, &pair, code, &out, &topo, reason::TOKEN_INVALID).await;
    let hold = topo.status.and_then(|s| s.operation).and_then(|op| op.hold);
    assert!(
        hold.as_ref()
            .is_some_and(|h| h.message.contains("system id")),
        "{hold:?}"
    );
    let b = pair.api_b.get(pair.b.name).await.expect("B");
    assert_eq!(
        b.spec.replica.and_then(|r| r.promotion_token),
        None,
        "the token was applied"
    );
    // A is a clean designated primary with every row: promoting it back needs nothing else.
    testkit::wait_cluster(&pair.api_a, pair.a.name, "A healthy", testkit::healthy).await;
    testkit::wait_rows(pair.lab, pair.a.region, ns.name(), pair.a.name, &[1, 2]).await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cnpg_refuses_at_promotion_is_rolled_back_and_never_makes_two_primaries() {
    let (Running { ns, pair, .. }, code, out, topo) =
        switchover_with_fault("ctl-lsn-zero", faults::CORRUPT_DEMOTION_TOKEN, "lsn-zero").await;
    let status = topo.status.clone().expect("status");
    let op = status.operation.clone().expect("the operation holds");
    let steps: Vec<StepKind> = op.steps.iter().map(|s| s.step).collect();
    assert!(op.rolled_back, "{op:#?}");
    assert!(steps.contains(&StepKind::RollbackTarget), "{steps:?}");
    // The old primary is re-promoted with the token it published; CNPG checks it against the
    // old primary's own pg_controldata and refuses it as well: both stay replicas (no primary,
    // never two), and the operation holds for a human.
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        op.hold.as_ref().map(|h| h.reason.as_str()),
        Some(reason::ROLLBACK_FAILED),
        "{op:#?}"
    );
    assert_warning_events(ns.lab, ns.name(), &["RollingBack", reason::ROLLBACK_FAILED]).await;
    let b = pair.api_b.get(pair.b.name).await.expect("B");
    assert_eq!(b.role(), Role::Replica, "B was rolled back by spec");
    assert_eq!(b.spec.replica.and_then(|r| r.promotion_token), None);
    assert!(pair.b_in_recovery().await, "B accepts writes");
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_target_refuses_is_rolled_back_and_the_old_primary_takes_writes() {
    let t = Setup::pair("ctl-rollback")
        .fault_on_b(faults::REPLAYED_PAST_TOKEN, "true")
        .ready()
        .await;
    let (lab, ns, pair, hub) = (t.lab, &t.ns, &t.pair, &t.hub);
    let members = t.members();
    let load = Load::start(lab, ns.name(), &members, true);

    let (code, out, _) = switchover(lab, ns.name(), pair.b.name).await;
    assert_eq!(code, 4, "the CLI exits 4 on a rollback; output:\n{out}");
    let status = hub
        .get("pg")
        .await
        .expect("the topology")
        .status
        .expect("status");
    assert!(status.operation.is_none(), "{:#?}", status.operation);
    let last = status.history.last().expect("the switchover in history");
    assert_eq!(last.outcome, Some(Outcome::RolledBack), "{last:#?}");
    let steps: Vec<StepKind> = last.steps().unwrap().iter().map(|s| s.step).collect();
    assert!(steps.contains(&StepKind::RollbackTarget), "{steps:?}");
    assert_warning_events(lab, ns.name(), &["RollingBack", "SwitchoverRolledBack"]).await;

    // A is the primary again, by spec and in PostgreSQL, and takes writes; B follows it.
    let a = pair.api_a.get(pair.a.name).await.expect("A");
    assert_eq!(a.role(), Role::Primary);
    let b = pair.api_b.get(pair.b.name).await.expect("B");
    assert_eq!(b.role(), Role::Replica);
    assert_eq!(b.spec.replica.and_then(|r| r.promotion_token), None);
    let acked = load.finish().await;
    let client = assert_rows_kept(lab, ns.name(), pair.a, &acked).await;
    client
        .execute("INSERT INTO t VALUES (-1)", &[])
        .await
        .expect("a write on A after the rollback");
    let (ns_name, b) = (ns.name(), pair.b);
    wait_for("B to replay the write made on A", DEADLINE, || async move {
        let client = e2e::harness::controller::pg(lab, ns_name, b, Duration::from_secs(2)).await?;
        let row = client
            .query_one("SELECT count(*) FROM t WHERE x = -1", &[])
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    pair.delete().await;
}
