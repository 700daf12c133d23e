//! The reconcile executed against a fake hub and fake members (scripted API servers,
//! `crate::fake_api`): one scenario per path. The members are the pure tests' CNPG simulation
//! (`decide::tests::Sim`); a patch a member accepts reaches the controller's view of it only when
//! the test delivers it, as a watch event would.

use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tokio::sync::watch;
use topology::conditions::reason;
use topology::{DistributedTopology, StepKind};

use super::reconcile;
use crate::controller::decide::FINALIZER;
use crate::controller::decide::tests::Sim;
use crate::controller::error::Error;
use crate::controller::ledger::{Ledger, MAX_DELAY, SETTLE};
use crate::controller::observe::{MemberRead, Members};
use crate::controller::runtime::clock::{Clock, ManualClock};
use crate::controller::runtime::deadlines;
use crate::controller::{Context, Events, Leadership, Metrics};
use crate::fake_api::{self, Call};
use crate::members::ClusterKey;

const TOPOLOGY: &str = "/apis/federator.dev/v1alpha1/namespaces/db/distributedtopologies/pg";
const STATUS: &str = "/apis/federator.dev/v1alpha1/namespaces/db/distributedtopologies/pg/status";

/// A Cluster's path on its member.
fn cluster_path(name: &str) -> String {
    format!("/apis/postgresql.cnpg.io/v1/namespaces/databases/clusters/{name}")
}

/// What a fake answers, when not the default.
#[derive(Default)]
struct Script {
    /// The hub refuses the next status write with 409 (someone else wrote).
    conflict: bool,
    /// Leadership is lost as the hub answers a status write.
    lose_leadership_on_write: bool,
    /// Members refuse real (not dry-run) patches with this code.
    refuse_patches: Option<u16>,
    /// Members refuse dry runs with this code.
    refuse_dry_runs: Option<u16>,
}

/// Everything the fakes share with the test.
#[derive(Default)]
struct State {
    /// The topology as the hub has it.
    hub: Option<DistributedTopology>,
    version: u64,
    script: Script,
    /// Every request, as `(who, call)`: `hub` or the member cluster.
    calls: Vec<(String, Call)>,
    /// Patches members accepted that their watch has not delivered yet: `(member, patch)`.
    undelivered: Vec<(String, Value)>,
    leader: Option<watch::Sender<bool>>,
}

struct World {
    sim: Arc<Mutex<Sim>>,
    state: Arc<Mutex<State>>,
    clock: Arc<ManualClock>,
    ctx: Arc<Context>,
}

/// The member pool over the simulation, with a fake API server per member.
struct SimMembers {
    sim: Arc<Mutex<Sim>>,
    clients: std::collections::BTreeMap<String, kube::Client>,
}

impl Members for SimMembers {
    fn read(&self, cluster: &str, namespace: &str, name: &str) -> MemberRead {
        self.sim
            .lock()
            .unwrap()
            .pool()
            .read(cluster, namespace, name)
    }
    fn client(&self, cluster: &str) -> Result<kube::Client, String> {
        self.clients
            .get(cluster)
            .cloned()
            .ok_or_else(|| cluster.to_owned())
    }
    fn redact(&self, _cluster: &str, text: &str) -> String {
        text.to_owned()
    }
}

struct At(Timestamp);

impl Clock for At {
    fn now(&self) -> Timestamp {
        self.0
    }
}

impl World {
    /// The pair a (primary) and b, idle and healthy, as hub and members have them; the
    /// topology carries the controller's finalizer.
    fn pair() -> World {
        let world = World::pair_without_finalizer();
        world.edit(|topo| topo.metadata.finalizers = Some(vec![FINALIZER.into()]));
        world
    }

    fn pair_without_finalizer() -> World {
        let mut sim = Sim::ring(&["a", "b"]);
        sim.topo.metadata.uid = Some("uid-pg".into());
        sim.topo.metadata.resource_version = Some("1".into());
        let state = Arc::new(Mutex::new(State {
            hub: Some(sim.topo.clone()),
            version: 1,
            ..State::default()
        }));
        let now = sim.now;
        let sim = Arc::new(Mutex::new(sim));
        let clients = ["a", "b"]
            .into_iter()
            .map(|m| (format!("k8s-{m}"), member_api(&state, m)))
            .collect();
        let hub = hub_api(&state);
        let (leader, switch) = Leadership::switched(true);
        state.lock().unwrap().leader = Some(switch);
        let clock = Arc::new(ManualClock::new());
        let ctx = Arc::new(Context {
            hub: hub.clone(),
            members: Arc::new(SimMembers {
                sim: sim.clone(),
                clients,
            }),
            leader,
            events: Events::new(hub, "test".into()),
            metrics: Arc::new(Metrics::new()),
            credentials: None,
            clock: Arc::new(At(now)),
            ledger: Ledger::new(clock.clone()),
            voters: crate::autofailover::hub::HubVoters::default(),
            status_schemes: Default::default(),
        });
        World {
            sim,
            state,
            clock,
            ctx,
        }
    }

    fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.state.lock().unwrap().script);
    }

    /// Somebody else changes the topology on the hub (a new resourceVersion).
    fn edit(&self, change: impl FnOnce(&mut DistributedTopology)) {
        let mut state = self.state.lock().unwrap();
        let State { hub, version, .. } = &mut *state;
        let topo = hub.as_mut().unwrap();
        change(topo);
        *version += 1;
        topo.metadata.resource_version = Some(version.to_string());
    }

    /// Asks for a switchover to `to` (a spec edit: a new generation).
    fn switch_to(&self, to: &str) {
        self.edit(|topo| {
            topo.spec.primary = to.into();
            topo.metadata.generation = topo.metadata.generation.map(|g| g + 1);
        });
        self.sim.lock().unwrap().switch_to(to);
    }

    /// `kubectl delete`: the API server sets the deletion timestamp (finalizers pending).
    fn delete(&self) {
        self.edit(|topo| {
            topo.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::from_second(1_800_000_000).unwrap(),
                ));
        });
    }

    /// The hub's topology as its watch delivers it.
    fn hub(&self) -> Arc<DistributedTopology> {
        Arc::new(
            self.state
                .lock()
                .unwrap()
                .hub
                .clone()
                .expect("the topology"),
        )
    }

    /// Whether the topology is gone from the hub.
    fn gone(&self) -> bool {
        self.state.lock().unwrap().hub.is_none()
    }

    async fn reconcile(&self, topo: Arc<DistributedTopology>) -> Result<Action, Error> {
        reconcile(topo, self.ctx.clone()).await
    }

    /// The members' watches deliver every accepted patch (and the simulated CNPG reacts).
    fn deliver(&self) {
        let undelivered = std::mem::take(&mut self.state.lock().unwrap().undelivered);
        let mut sim = self.sim.lock().unwrap();
        for (member, patch) in undelivered {
            // The member does not know the step; the simulation only records it.
            sim.patch(StepKind::Validate, &member, &patch);
            self.ctx.ledger.delivered(&ClusterKey {
                member: format!("k8s-{member}"),
                namespace: "databases".into(),
                name: member,
            });
        }
    }

    /// Every request so far, as `(who, method, path, dry run)`.
    fn calls(&self) -> Vec<(String, String, String, bool)> {
        let state = self.state.lock().unwrap();
        state
            .calls
            .iter()
            .filter(|(_, c)| !c.path.contains("/events"))
            .map(|(who, c)| {
                (
                    who.clone(),
                    c.method.clone(),
                    c.path.clone(),
                    c.query.contains("dryRun=All"),
                )
            })
            .collect()
    }

    /// Real (not dry-run) member patches so far, as `(member, patch)`.
    fn patches(&self) -> Vec<(String, Value)> {
        let state = self.state.lock().unwrap();
        state
            .calls
            .iter()
            .filter(|(who, c)| who != "hub" && !c.query.contains("dryRun=All"))
            .map(|(who, c)| (who.clone(), c.body.clone()))
            .collect()
    }

    /// The step of the operation the hub records.
    fn step_on_hub(&self) -> Option<StepKind> {
        let state = self.state.lock().unwrap();
        let op = state.hub.as_ref()?.status.as_ref()?.operation.as_ref()?;
        Some(op.step)
    }

    fn status_writes(&self) -> usize {
        self.calls()
            .iter()
            .filter(|(who, method, path, _)| who == "hub" && method == "PUT" && path == STATUS)
            .count()
    }
}

/// The hub: status writes with a resourceVersion precondition, Events accepted.
fn hub_api(state: &Arc<Mutex<State>>) -> kube::Client {
    let state = state.clone();
    fake_api::client(move |call| {
        let mut state = state.lock().unwrap();
        state.calls.push(("hub".into(), call.clone()));
        if call.method == "PATCH" && call.path == TOPOLOGY {
            return patch_topology(&mut state, &call.body);
        }
        if call.method != "PUT" || call.path != STATUS {
            // Events (and anything else): accepted as sent.
            return (201, call.body);
        }
        let Some(current) = state.hub.clone() else {
            return fake_api::refusal(404, "NotFound", "distributedtopologies \"pg\" not found");
        };
        let precondition = call.body["metadata"]["resourceVersion"].as_str();
        if std::mem::take(&mut state.script.conflict)
            || precondition != current.metadata.resource_version.as_deref()
        {
            return fake_api::conflict();
        }
        if state.script.lose_leadership_on_write
            && let Some(leader) = &state.leader
        {
            leader.send_replace(false);
        }
        state.version += 1;
        let mut written = current;
        written.status = serde_json::from_value(call.body["status"].clone()).expect("a status");
        written.metadata.resource_version = Some(state.version.to_string());
        state.hub = Some(written.clone());
        (200, serde_json::to_value(written).expect("JSON"))
    })
}

/// A merge patch of the topology's finalizers with a resourceVersion precondition; the last
/// finalizer removed from an object being deleted deletes it.
fn patch_topology(state: &mut State, patch: &Value) -> (u16, Value) {
    let Some(mut topo) = state.hub.clone() else {
        return fake_api::refusal(404, "NotFound", "distributedtopologies \"pg\" not found");
    };
    if patch["metadata"]["resourceVersion"].as_str() != topo.metadata.resource_version.as_deref() {
        return fake_api::conflict();
    }
    let finalizers: Vec<String> =
        serde_json::from_value(patch["metadata"]["finalizers"].clone()).expect("finalizers");
    state.version += 1;
    topo.metadata.resource_version = Some(state.version.to_string());
    let deleted = finalizers.is_empty() && topo.metadata.deletion_timestamp.is_some();
    topo.metadata.finalizers = Some(finalizers);
    state.hub = (!deleted).then(|| topo.clone());
    (200, serde_json::to_value(topo).expect("JSON"))
}

/// Member `name`'s API server: merge patches of its Cluster, accepted unless scripted otherwise;
/// an accepted real patch waits for [`World::deliver`].
fn member_api(state: &Arc<Mutex<State>>, name: &'static str) -> kube::Client {
    let state = state.clone();
    fake_api::client(move |call| {
        let mut state = state.lock().unwrap();
        state.calls.push((name.into(), call.clone()));
        assert_eq!(call.path, cluster_path(name), "{call:?}");
        let dry_run = call.query.contains("dryRun=All");
        let refused = if dry_run {
            state.script.refuse_dry_runs
        } else {
            state.script.refuse_patches
        };
        if let Some(code) = refused {
            return fake_api::refusal(code, "Forbidden", "denied by the test");
        }
        if !dry_run {
            state.undelivered.push((name.into(), call.body.clone()));
        }
        let answer = json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": "databases"},
            "spec": {"instances": 1},
        });
        (200, answer)
    })
}

fn demote_a() -> Value {
    json!({"spec": {"replica": {"primary": "b"}}})
}

/// The Demote patch sets a's `primary` to b (whatever else the shape adds).
fn is_demote_of_a(patch: &(String, Value)) -> bool {
    patch.0 == "a"
        && patch.1["spec"]["replica"]["primary"] == demote_a()["spec"]["replica"]["primary"]
}

#[tokio::test]
async fn the_step_log_is_written_before_the_one_patch_and_an_accepted_patch_is_not_sent_again() {
    let world = World::pair();
    world.switch_to("b");
    let action = world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(
        action,
        Action::await_change(),
        "the member's watch wakes us"
    );
    let calls = world.calls();
    let write = calls
        .iter()
        .position(|(who, method, ..)| who == "hub" && method == "PUT")
        .expect("a status write");
    let patch = calls
        .iter()
        .position(|(who, _, _, dry)| who == "a" && !dry)
        .expect("the Demote patch");
    assert!(
        calls[..write].iter().any(|(_, _, _, dry)| *dry),
        "dry runs before the first change: {calls:?}"
    );
    assert!(write < patch, "status before patch: {calls:?}");
    assert_eq!(world.step_on_hub(), Some(StepKind::Demote));
    let patches = world.patches();
    assert_eq!(patches.len(), 1, "one patch per reconcile: {patches:?}");
    assert!(is_demote_of_a(&patches[0]), "{patches:?}");

    // The member accepted it; its watch has not shown it yet. The same decision again sends
    // nothing, and comes back when the gate's window ends at the latest.
    let action = world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(world.patches().len(), 1, "not sent twice");
    assert_eq!(action, deadlines::action(Some(SETTLE)));

    // Once delivered, the switchover moves on: the next patch is sent.
    world.deliver();
    world.reconcile(world.hub()).await.expect("a reconcile");
    let patches = world.patches();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(patches[1].0, "b", "Promote on the target: {patches:?}");
    assert_eq!(world.step_on_hub(), Some(StepKind::Promote));
}

#[tokio::test]
async fn a_status_write_conflict_sends_no_patch_and_the_newer_version_is_decided_on() {
    let world = World::pair();
    world.switch_to("b");
    world.script(|s| s.conflict = true);
    let action = world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(action, Action::await_change(), "the newer object wakes us");
    assert!(world.patches().is_empty(), "no patch after a refused write");
    assert_eq!(world.step_on_hub(), None);

    // The watch brings the newer version: decided on, written, then patched.
    world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(world.step_on_hub(), Some(StepKind::Demote));
    assert_eq!(world.patches().len(), 1);
}

#[tokio::test]
async fn a_refused_member_patch_fails_after_the_step_log_and_is_sent_again() {
    let world = World::pair();
    world.switch_to("b");
    world.script(|s| s.refuse_patches = Some(403));
    let error = world
        .reconcile(world.hub())
        .await
        .expect_err("the patch was refused");
    assert!(matches!(error, Error::PatchMember { .. }), "{error}");
    assert_eq!(
        world.step_on_hub(),
        Some(StepKind::Demote),
        "the step log precedes the patch"
    );

    // Retried (error_policy requeues): the refused patch is not remembered as accepted.
    world.script(|s| s.refuse_patches = None);
    world.reconcile(world.hub()).await.expect("a reconcile");
    let patches = world.patches();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert!(patches.iter().all(is_demote_of_a), "{patches:?}");
}

#[tokio::test]
async fn leadership_lost_between_the_write_and_the_patch_sends_nothing() {
    let world = World::pair();
    world.switch_to("b");
    world.script(|s| s.lose_leadership_on_write = true);
    let error = world
        .reconcile(world.hub())
        .await
        .expect_err("no longer leading");
    assert!(matches!(error, Error::NotLeader), "{error}");
    assert_eq!(world.status_writes(), 1);
    assert!(world.patches().is_empty(), "{:?}", world.calls());

    // A follower neither writes nor patches.
    let action = world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(action, Action::await_change());
    assert_eq!(world.status_writes(), 1);
    assert!(world.patches().is_empty());
}

#[tokio::test]
async fn a_refused_dry_run_holds_before_any_change() {
    let world = World::pair();
    world.switch_to("b");
    world.script(|s| s.refuse_dry_runs = Some(403));
    world.reconcile(world.hub()).await.expect("a reconcile");
    assert!(world.patches().is_empty(), "{:?}", world.calls());
    let hub = world.hub();
    let op = hub.status.as_ref().unwrap().operation.as_ref().unwrap();
    let hold = op.hold.as_ref().expect("the operation holds");
    assert_eq!(hold.reason, reason::VALIDATION_FAILED);
    assert!(
        hold.message.contains("denied by the test"),
        "{}",
        hold.message
    );
}

#[tokio::test]
async fn a_change_with_no_patch_after_it_is_held_and_written_when_its_window_ends() {
    let world = World::pair();
    world.sim.lock().unwrap().faults.no_token = true;
    world.switch_to("b");
    world.reconcile(world.hub()).await.expect("Demote");
    world.deliver();
    let writes = world.status_writes();

    // a demotes (no token yet): the step moves to AwaitToken, and nothing is patched, so the
    // change waits for the next write.
    let action = world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(world.status_writes(), writes, "held, not written");
    assert_eq!(world.step_on_hub(), Some(StepKind::Demote));
    assert_eq!(action, deadlines::action(Some(MAX_DELAY)));

    // Decided on top of what is held: still nothing to write, the window keeps running.
    world.clock.advance(MAX_DELAY / 2);
    let action = world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(world.status_writes(), writes);
    assert_eq!(action, deadlines::action(Some(MAX_DELAY / 2)));

    // The window ends: the held change is written.
    world.clock.advance(MAX_DELAY / 2);
    world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(world.status_writes(), writes + 1);
    assert_eq!(world.step_on_hub(), Some(StepKind::AwaitToken));
    assert!(
        world.patches().len() == 1,
        "only Demote: {:?}",
        world.patches()
    );
}

#[tokio::test]
async fn the_finalizer_is_added_before_anything_else_is_done() {
    let world = World::pair_without_finalizer();
    world.switch_to("b");
    let action = world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(
        action,
        Action::await_change(),
        "the changed object wakes us"
    );
    assert_eq!(
        world.calls(),
        [("hub".into(), "PATCH".into(), TOPOLOGY.into(), false)],
        "only the finalizer"
    );
    assert_eq!(
        world.hub().metadata.finalizers,
        Some(vec![FINALIZER.into()])
    );

    world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(world.step_on_hub(), Some(StepKind::Demote));
}

#[tokio::test]
async fn deleting_an_idle_topology_releases_it_at_once() {
    let world = World::pair();
    world.reconcile(world.hub()).await.expect("a reconcile");
    let writes = world.status_writes();
    // News from a member arrives with the deletion: not written to an object about to go.
    if let Some(status) = world.sim.lock().unwrap().cluster_mut("b").status.as_mut() {
        status.ready_instances = Some(0);
    }
    world.delete();
    let deleting = world.hub();
    let action = world
        .reconcile(deleting.clone())
        .await
        .expect("a reconcile");
    assert_eq!(action, Action::await_change());
    assert!(world.gone(), "{:?}", world.calls());
    assert!(world.patches().is_empty(), "no member is touched");
    assert_eq!(
        world.status_writes(),
        writes,
        "nothing to record: {:?}",
        world.calls()
    );

    // A reconcile of the store's stale copy, queued before the removal, is not an error, even
    // when it would write the status again.
    let action = world
        .reconcile(deleting.clone())
        .await
        .expect("already gone");
    assert_eq!(action, Action::await_change());
    let mut older = (*deleting).clone();
    older.status = None;
    let action = world
        .reconcile(Arc::new(older))
        .await
        .expect("already gone");
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_finalizer_patch_on_a_stale_version_ends_the_reconcile_without_an_error() {
    let world = World::pair_without_finalizer();
    let stale = world.hub();
    world.switch_to("b");
    let action = world.reconcile(stale).await.expect("not an error");
    assert_eq!(action, Action::await_change(), "the newer version wakes us");
    assert_eq!(world.hub().metadata.finalizers, None);
    world.reconcile(world.hub()).await.expect("a reconcile");
    assert_eq!(
        world.hub().metadata.finalizers,
        Some(vec![FINALIZER.into()])
    );
}

#[tokio::test]
async fn deleting_a_topology_mid_switchover_finishes_the_switchover_first() {
    let world = World::pair();
    world.switch_to("b");
    world.reconcile(world.hub()).await.expect("Demote");
    world.delete();
    for _ in 0..12 {
        if world.gone() {
            break;
        }
        world.deliver();
        world.reconcile(world.hub()).await.expect("a reconcile");
    }
    assert!(world.gone(), "released once the switchover ended");
    let patches = world.patches();
    assert!(
        patches
            .iter()
            .any(|(m, p)| m == "b" && p["spec"]["replica"]["promotionToken"].is_string()),
        "b promoted: {patches:?}"
    );
    // The last status written records the switchover as succeeded.
    let state = world.state.lock().unwrap();
    let last = state
        .calls
        .iter()
        .rev()
        .find(|(who, c)| who == "hub" && c.method == "PUT")
        .map(|(_, c)| c.body["status"]["history"].clone())
        .expect("a status write");
    assert_eq!(last[0]["outcome"], "Succeeded", "{last}");
    // Nothing is sent to a member after the finalizer is removed.
    let release = state
        .calls
        .iter()
        .rposition(|(who, c)| who == "hub" && c.method == "PATCH")
        .unwrap();
    assert!(state.calls[release..].iter().all(|(who, _)| who == "hub"));
}

#[tokio::test]
async fn deleting_a_topology_whose_switchover_holds_stops_it_and_releases_it() {
    let world = World::pair();
    world.switch_to("b");
    world.script(|s| s.refuse_dry_runs = Some(403));
    world.reconcile(world.hub()).await.expect("a reconcile");
    let hub = world.hub();
    let op = hub.status.as_ref().and_then(|s| s.operation.as_ref());
    assert!(op.is_some_and(|op| op.hold.is_some()), "{op:?}");
    world.delete();
    world.reconcile(world.hub()).await.expect("a reconcile");
    assert!(world.gone());
    assert!(world.patches().is_empty(), "no member is touched");
    let state = world.state.lock().unwrap();
    let last = state
        .calls
        .iter()
        .rev()
        .find(|(who, c)| who == "hub" && c.method == "PUT")
        .map(|(_, c)| c.body["status"].clone())
        .expect("a status write");
    assert!(last["operation"].is_null(), "{last}");
    assert_eq!(last["history"][0]["outcome"], "Abandoned", "{last}");
}

#[test]
fn the_promotion_token_is_logged_by_its_length_only() {
    let shown = crate::controller::execute::loggable(
        &json!({"spec": {"replica": {"primary": "b", "promotionToken": "secret-token"}}}),
    );
    assert_eq!(shown["spec"]["replica"]["promotionToken"], "<12 bytes>");
    assert_eq!(shown["spec"]["replica"]["primary"], "b");
}
