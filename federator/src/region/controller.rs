//! Region switches in `federator controller`: a kube-runtime `Controller` on `RegionSwitch`,
//! woken by changes of the region switches, of the topologies of their namespace (a switchover's
//! progress), by gaining the Lease, and every few seconds while one runs (timeouts). Only the
//! leader acts.
//!
//! A reconcile reads the region switch afresh and, if it has not selected yet, selects (or refuses
//! with the field and the fix, nothing moved). Then it observes every topology it asked to switch
//! over, asks `topology::region::next_actions` what follows, **writes the new progress to the
//! status first** (carrying the `resourceVersion` it read: a stale process writes nothing), and
//! only then sets `spec.primary` of the topologies that start. Setting `spec.primary` is
//! idempotent and recorded with the generation it produced, so a controller killed anywhere
//! resumes from the status: an entry `Switching` without a generation is asked again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use topology::DistributedTopology;
use topology::region::{self, Observation, Progress};
use topology::region_api::{
    FIELD_MANAGER, Hook, HookRun, RegionSwitch, RegionSwitchPhase, RegionSwitchStatus,
    TopologyProgress, TopologyState,
};

use super::decide::{self, Seen};
use super::hooks::{self, HookState};
use super::{RegionError, kube_err, recorder, scoped};
use crate::controller::{Clock, Leadership, Members, publish_best_effort};
use crate::drill::hub::ready_with;

/// While a region switch runs: look at it at least this often (timeouts, a topology that is not
/// Ready yet).
const RUNNING_RECHECK: Duration = Duration::from_secs(3);
/// While a hook runs: look at its applications this often.
const HOOK_RECHECK: Duration = Duration::from_secs(1);
struct Ctx {
    client: Client,
    /// Member clients, for hooks (the member credentials the controller holds).
    members: Arc<dyn Members>,
    leader: Leadership,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
    /// `controller/<identity>`: recorded in `status.resumes` when this process takes a running
    /// region switch over.
    runner: String,
    /// The region switches this process has driven since it started (a running one it does not
    /// know was left by another process: a take-over).
    known: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// Runs the region switch controller on `namespace` (all: `None`) until `shutdown` resolves.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    members: Arc<dyn Members>,
    namespace: Option<String>,
    leader: Leadership,
    identity: String,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::controller::Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let switches: Api<RegionSwitch> = scoped(&client, namespace.as_deref());
    let topologies: Api<DistributedTopology> = scoped(&client, namespace.as_deref());
    let recorder = recorder(&client, identity.clone());
    let ctx = Arc::new(Ctx {
        client,
        members,
        leader: leader.clone(),
        clock,
        recorder,
        runner: format!("controller/{identity}"),
        known: Default::default(),
    });
    let controller = Controller::new(switches, watcher::Config::default());
    let store = controller.store();
    metrics.attach_region_switches(store.clone());
    // A topology change wakes the unfinished region switches of its namespace.
    let mapper = move |topo: DistributedTopology| {
        let ns = topo.namespace();
        store
            .state()
            .iter()
            .filter(|rs| rs.namespace() == ns && !finished(rs))
            .map(|rs| ObjectRef::from_obj(rs.as_ref()))
            .collect::<Vec<_>>()
    };
    let controller = controller.watches(topologies, watcher::Config::default(), mapper);
    super::serve(
        controller,
        &leader,
        shutdown,
        reconcile,
        ctx,
        "region switch",
    )
    .await;
}

/// Nothing more to do: it ended, or it was refused and its spec has not changed since.
fn finished(rs: &RegionSwitch) -> bool {
    let Some(status) = &rs.status else {
        return false;
    };
    match status.phase {
        Some(RegionSwitchPhase::Succeeded | RegionSwitchPhase::Failed) => true,
        Some(RegionSwitchPhase::Refused) => status.observed_generation == rs.metadata.generation,
        _ => false,
    }
}

/// The hub side of one region switch's namespace.
struct Hub {
    switches: Api<RegionSwitch>,
    topologies: Api<DistributedTopology>,
}

impl Hub {
    fn new(client: &Client, namespace: &str) -> Self {
        Hub {
            switches: Api::namespaced(client.clone(), namespace),
            topologies: Api::namespaced(client.clone(), namespace),
        }
    }

    async fn topology(&self, name: &str) -> Result<Option<DistributedTopology>, RegionError> {
        self.topologies
            .get_opt(name)
            .await
            .map_err(kube_err(format!("reading DistributedTopology {name}")))
    }

    /// Replaces the status, only if the region switch is still at the `resourceVersion` `rs` was
    /// read at. Returns the region switch as written.
    async fn save(
        &self,
        rs: &RegionSwitch,
        status: RegionSwitchStatus,
    ) -> Result<RegionSwitch, RegionError> {
        let name = rs.name_any();
        let mut next = rs.clone();
        next.status = Some(status);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match self.switches.replace_status(&name, &params, &next).await {
            Ok(written) => Ok(written),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Err(RegionError::Conflict(format!("region switch {name}")))
            }
            Err(e) => Err(kube_err(format!(
                "writing the status of region switch {name}"
            ))(e)),
        }
    }

    /// Sets `spec.primary` of topology `name` to `to`, only if it is still at `seen`; returns
    /// the generation it produced, `None` on a conflict (nothing changed).
    async fn set_primary(
        &self,
        name: &str,
        to: &str,
        seen: Option<&str>,
    ) -> Result<Option<i64>, RegionError> {
        let mut patch = json!({ "spec": { "primary": to } });
        if let Some(version) = seen {
            patch["metadata"] = json!({ "resourceVersion": version });
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match self
            .topologies
            .patch(name, &params, &Patch::Merge(patch))
            .await
        {
            Ok(t) => Ok(Some(t.metadata.generation.unwrap_or_default())),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(kube_err(format!("setting spec.primary of {name} to {to}"))(
                e,
            )),
        }
    }
}

impl Ctx {
    /// Best effort: an Event that cannot be written is logged.
    async fn event(&self, rs: &RegionSwitch, warning: bool, reason: &str, note: &str) {
        publish_best_effort(&self.recorder, rs, "RegionSwitch", warning, reason, note).await;
    }
}

#[tracing::instrument(skip_all, fields(region_switch = %object.name_any(), namespace = ?object.namespace()))]
async fn reconcile(object: Arc<RegionSwitch>, ctx: Arc<Ctx>) -> Result<Action, RegionError> {
    if !ctx.leader.is_leader() {
        ctx.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&object.name_any());
        return Ok(Action::await_change());
    }
    let namespace = object.namespace().unwrap_or_default();
    let hub = Hub::new(&ctx.client, &namespace);
    let name = object.name_any();
    // The store may lag behind this controller's own last write; decide on the hub's copy.
    let Some(mut rs) = hub
        .switches
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("reading region switch {name}")))?
    else {
        return Ok(Action::await_change());
    };
    if finished(&rs) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let status = rs.status.clone().unwrap_or_default();
    let refused_before = status.phase == Some(RegionSwitchPhase::Refused);
    if status.phase.is_none() || refused_before {
        rs = match start(&ctx, &hub, &rs).await? {
            Some(started) => started,
            None => return Ok(Action::await_change()),
        };
    } else {
        let first_time = ctx
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone());
        if first_time {
            // Left running by another process (it crashed or lost the Lease): go on from the
            // status; whatever it was doing is idempotent and is done again below.
            let mut status = status.clone();
            status.resumes.push(MicroTime(now));
            rs = hub.save(&rs, status).await?;
            tracing::info!(region_switch = %name, runner = %ctx.runner, "taking a running region switch over");
        }
    }
    step(&ctx, &hub, rs).await
}

/// Selects the topologies and writes the initial status, or the refusal (nothing moved).
async fn start(
    ctx: &Ctx,
    hub: &Hub,
    rs: &RegionSwitch,
) -> Result<Option<RegionSwitch>, RegionError> {
    let now = ctx.clock.now();
    let name = rs.name_any();
    let topologies = hub
        .topologies
        .list(&ListParams::default())
        .await
        .map_err(kube_err(
            "listing the DistributedTopologies of the namespace",
        ))?
        .items;
    let others = hub
        .switches
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing the region switches of the namespace"))?
        .items;
    let claimed = decide::claims(&others, &name);
    let mut status = rs.status.clone().unwrap_or_default();
    status.observed_generation = rs.metadata.generation;
    let selected = match decide::select(rs, &topologies, &claimed) {
        Ok(selected) => {
            match hooks::refusal(ctx.members.as_ref(), &ctx.client, rs, &selected).await {
                None => Ok(selected),
                Some(message) => Err(message),
            }
        }
        Err(refusal) => Err(refusal.to_string()),
    };
    match selected {
        Err(message) => {
            if status.phase == Some(RegionSwitchPhase::Refused)
                && status.message.as_deref() == Some(message.as_str())
            {
                // The same refusal for a new generation: record the generation only.
                hub.save(rs, status).await?;
                return Ok(None);
            }
            status.phase = Some(RegionSwitchPhase::Refused);
            status.message = Some(message.clone());
            let refused = decide::condition(
                RegionSwitchPhase::Refused,
                &[],
                Some(&message),
                rs.metadata.generation,
                now,
            );
            topology::conditions::set(&mut status.conditions, refused);
            let written = hub.save(rs, status).await?;
            tracing::warn!(region_switch = %name, %message, "region switch refused; nothing moved");
            ctx.event(&written, true, "Refused", &message).await;
            Ok(None)
        }
        Ok(selected) => {
            status.topologies = selected;
            status.phase = Some(RegionSwitchPhase::Running);
            status.message = None;
            status.started_at = Some(MicroTime(now));
            status.summary = Some(decide::summary(&status.topologies));
            let written = hub.save(rs, status).await?;
            ctx.known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone());
            let moving = written
                .status
                .as_ref()
                .map(|s| decide::summary(&s.topologies))
                .unwrap_or_default();
            ctx.event(
                &written,
                false,
                "Started",
                &format!(
                    "moving the primaries in {} to {} (moved/selected {moving})",
                    rs.spec.from, rs.spec.to
                ),
            )
            .await;
            Ok(Some(written))
        }
    }
}

/// One round: observe, decide, write the status, act.
async fn step(ctx: &Ctx, hub: &Hub, rs: RegionSwitch) -> Result<Action, RegionError> {
    let now = ctx.clock.now();
    let timeout = rs
        .spec
        .moves
        .timeout
        .map(|d| d.as_std())
        .unwrap_or(decide::DEFAULT_TIMEOUT);
    let mut status = rs.status.clone().unwrap_or_default();
    let before = status.clone();

    // Observe the topologies whose switchover was asked for.
    let mut observed: Vec<(String, Observation)> = Vec::new();
    let mut taken_back: Vec<(String, Option<String>, String)> = Vec::new();
    let mut topologies: BTreeMap<String, Option<DistributedTopology>> = BTreeMap::new();
    let mut hook_runs: Vec<(String, HookRun)> = Vec::new();
    let mut operations: Vec<(String, String)> = Vec::new();
    for t in &status.topologies {
        if let Some((hook, phase)) = running_hook(&rs, t) {
            let Some(started) = t.hook_started_at.clone() else {
                continue;
            };
            let state = run_hook(ctx, &rs, hook, phase, &t.name).await;
            let elapsed = now.duration_since(started.0).unsigned_abs();
            let limit = hook_timeout(hook);
            let done = match state {
                HookState::Done(detail) => Some((true, detail)),
                HookState::Failed(detail) => Some((false, detail)),
                HookState::Waiting(detail) if elapsed >= limit => Some((
                    false,
                    format!("timed out after {}s: {detail}", limit.as_secs()),
                )),
                HookState::Waiting(_) => None,
            };
            if let Some((ok, detail)) = done {
                hook_runs.push((
                    t.name.clone(),
                    HookRun {
                        hook: format!("{phase}/{}", hook.name),
                        started_at: started,
                        finished_at: MicroTime(now),
                        ok,
                        detail: detail.clone(),
                    },
                ));
                observed.push((t.name.clone(), Observation::HookDone { ok, detail }));
            }
            continue;
        }
        if !matches!(t.state, TopologyState::Switching | TopologyState::Held) {
            continue;
        }
        let topo = hub.topology(&t.name).await?;
        match decide::observe(t, topo.as_ref(), now, timeout) {
            Seen::Nothing => {}
            Seen::News(o, operation) => {
                if let Some(id) = operation {
                    operations.push((t.name.clone(), id));
                }
                observed.push((t.name.clone(), o));
            }
            Seen::TakeBack {
                resource_version,
                why,
            } => taken_back.push((t.name.clone(), resource_version, why)),
        }
        topologies.insert(t.name.clone(), topo);
    }
    // A switchover never started is taken back before it is reported as failed: the controller
    // might still start it, and a failed entry must not leave a request behind.
    for (name, version, why) in taken_back {
        let from = status
            .topologies
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.from.clone())
            .unwrap_or_default();
        if hub
            .set_primary(&name, &from, version.as_deref())
            .await?
            .is_some()
        {
            observed.push((name, Observation::SwitchoverEnded(why)));
        }
    }

    let progress = Progress {
        entries: status
            .topologies
            .iter()
            .map(|t| t.entry(&rs.spec.moves.hooks))
            .collect(),
        concurrency: rs.spec.moves.concurrency.max(1),
        on_hold: rs.spec.moves.on_hold.into(),
        paused: rs.spec.paused,
        abort: rs.spec.abort,
    };
    let (next, mut actions, pure_phase) = region::next_actions(&progress, &observed);
    // What a previous round (or process) decided and did not finish: asked again, idempotent.
    for a in region::resume_actions(&next) {
        if let region::Action::SetPrimary { key, .. } = &a {
            let recorded = status
                .topologies
                .iter()
                .any(|t| t.name == *key && t.generation.is_some());
            if !recorded && !actions.contains(&a) {
                actions.push(a);
            }
        }
    }
    for (name, id) in operations {
        if let Some(t) = status.topologies.iter_mut().find(|t| t.name == name) {
            t.operation = Some(id);
        }
    }
    for (name, run) in hook_runs {
        if let Some(t) = status.topologies.iter_mut().find(|t| t.name == name) {
            t.hooks.push(run);
        }
    }
    for (t, e) in status.topologies.iter_mut().zip(&next.entries) {
        let was = (t.state, t.hook);
        t.set(e);
        if t.hook.is_some() && (t.state, t.hook) != was {
            t.hook_started_at = Some(MicroTime(now));
        } else if t.hook.is_none() {
            t.hook_started_at = None;
        }
        let was = was.0;
        if t.state == TopologyState::Switching && was != TopologyState::Switching {
            t.requested_at.get_or_insert(MicroTime(now));
        }
        if e.state.finished() && t.state != TopologyState::Held && t.finished_at.is_none() {
            t.finished_at = Some(decide::stamp(now));
        }
    }
    let phase = decide::phase(pure_phase, &status.topologies);
    status.phase = Some(phase);
    status.observed_generation = rs.metadata.generation;
    status.summary = Some(decide::summary(&status.topologies));
    if matches!(
        phase,
        RegionSwitchPhase::Succeeded | RegionSwitchPhase::Failed
    ) {
        status.finished_at.get_or_insert(MicroTime(now));
    }
    set_condition(&mut status, phase, rs.metadata.generation, now);

    let mut rs = if status != before {
        hub.save(&rs, status.clone()).await?
    } else {
        rs
    };
    announce(ctx, &rs, &before, &status).await;

    // Act: only what the written status announces.
    let mut waiting = false;
    let mut hooks_running = false;
    let mut call_now = false;
    for action in actions {
        let (key, member) = match action {
            region::Action::SetPrimary { key, member } => (key, member),
            region::Action::RunHookBeforeDemotion { key, .. }
            | region::Action::RunHookAfterPromotion { key, .. } => {
                // Applied now; the next rounds look until it is done (or times out).
                hooks_running = true;
                let hook = rs
                    .status
                    .as_ref()
                    .and_then(|s| s.topologies.iter().find(|t| t.name == key))
                    .and_then(|t| running_hook(&rs, t));
                match hook {
                    // A call is not idempotent: the next round (at once) makes it and records
                    // its answer.
                    Some((hook, _)) if hook.webhook.is_some() => call_now = true,
                    Some((hook, phase)) => {
                        run_hook(ctx, &rs, hook, phase, &key).await;
                    }
                    None => {}
                }
                continue;
            }
        };
        let topo = match topologies.remove(&key) {
            Some(t) => t,
            None => hub.topology(&key).await?,
        };
        let mut status = rs.status.clone().unwrap_or_default();
        let Some(entry) = status.topologies.iter_mut().find(|t| t.name == key) else {
            continue;
        };
        let asked = entry.requested_at.as_ref().map(|t| t.0).unwrap_or(now);
        match ask(hub, entry, topo.as_ref(), &member, now, asked, timeout).await? {
            Asked::Generation(g) => entry.generation = Some(g),
            Asked::Failed(why) => {
                entry.state = TopologyState::Failed;
                entry.message = Some(why);
                entry.finished_at = Some(decide::stamp(now));
            }
            Asked::Wait => {
                waiting = true;
                continue;
            }
        }
        rs = hub.save(&rs, status).await?;
    }
    let hooks_running = hooks_running
        || rs.status.as_ref().is_some_and(|s| {
            s.topologies
                .iter()
                .any(|t| t.hook.is_some() && !t.entry(&rs.spec.moves.hooks).state.finished())
        });
    if call_now {
        return Ok(Action::requeue(Duration::ZERO));
    }
    if hooks_running {
        return Ok(Action::requeue(HOOK_RECHECK));
    }
    if waiting
        || matches!(
            rs.status.as_ref().and_then(|s| s.phase),
            Some(RegionSwitchPhase::Running | RegionSwitchPhase::Holding)
        )
    {
        return Ok(Action::requeue(RUNNING_RECHECK));
    }
    Ok(Action::await_change())
}

/// How long `hook` may take, waiting included.
fn hook_timeout(hook: &Hook) -> Duration {
    hook.timeout
        .map_or(topology::plan::HOOK_TIMEOUT, |d| d.as_std())
}

/// The hook `t` is running, if any (the region switch's or the topology's own), with its
/// phase's name.
fn running_hook<'a>(
    rs: &'a RegionSwitch,
    t: &'a TopologyProgress,
) -> Option<(&'a Hook, &'static str)> {
    let index = t.hook? as usize;
    let [before, after] = t.hooks(&rs.spec.moves.hooks);
    let (list, phase) = match t.state {
        TopologyState::BeforeDemotion => (before, "beforeDemotion"),
        TopologyState::AfterPromotion => (after, "afterPromotion"),
        _ => return None,
    };
    list.into_iter().nth(index).map(|(_, h)| (h, phase))
}

/// Runs `hook` for `topology`: on the member cluster of its region, or (a webhook) from here.
async fn run_hook(
    ctx: &Ctx,
    rs: &RegionSwitch,
    hook: &Hook,
    phase: &str,
    topology: &str,
) -> HookState {
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let call = super::webhook::Call {
        region_switch: &name,
        namespace: &namespace,
        topology,
        hook: &hook.name,
        phase,
        from: &rs.spec.from,
        to: &rs.spec.to,
    };
    let uid = rs.uid().unwrap_or_default();
    let region = hooks::region_of(rs, hook.region());
    hooks::perform(ctx.members.as_ref(), &ctx.client, call, &uid, hook, region).await
}

enum Asked {
    Generation(i64),
    Failed(String),
    /// The topology is not Ready with its old primary yet: ask again at the next round.
    Wait,
}

/// Sets `spec.primary` of `entry`'s topology to `member`: once it is Ready with the primary the
/// region switch selected (the controller refuses a switchover to a member that is not ready),
/// never over someone else's change, and at most once (a value already set is only recorded).
async fn ask(
    hub: &Hub,
    entry: &TopologyProgress,
    topo: Option<&DistributedTopology>,
    member: &str,
    now: k8s_openapi::jiff::Timestamp,
    asked: k8s_openapi::jiff::Timestamp,
    timeout: Duration,
) -> Result<Asked, RegionError> {
    let Some(topo) = topo else {
        return Ok(Asked::Failed("the DistributedTopology was deleted".into()));
    };
    if topo.spec.primary == member {
        return Ok(Asked::Generation(
            topo.metadata.generation.unwrap_or_default(),
        ));
    }
    if topo.spec.primary != entry.from {
        return Ok(Asked::Failed(format!(
            "spec.primary was changed to {} by someone else since the region switch selected it; \
             left alone",
            topo.spec.primary
        )));
    }
    if let Err(why) = ready_with(topo, &entry.from) {
        if now.duration_since(asked).unsigned_abs() >= timeout {
            return Ok(Asked::Failed(format!(
                "{} was {why} for {}s; nothing was changed",
                entry.name,
                timeout.as_secs()
            )));
        }
        return Ok(Asked::Wait);
    }
    Ok(
        match hub
            .set_primary(
                &entry.name,
                member,
                topo.metadata.resource_version.as_deref(),
            )
            .await?
        {
            Some(g) => Asked::Generation(g),
            // Changed under the patch: decide again at the next round.
            None => Asked::Wait,
        },
    )
}

fn set_condition(
    status: &mut RegionSwitchStatus,
    phase: RegionSwitchPhase,
    generation: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
) {
    let next = decide::condition(phase, &status.topologies, None, generation, now);
    topology::conditions::set(&mut status.conditions, next);
}

/// Events for what changed between two statuses: each topology that moved or failed, and the end.
async fn announce(
    ctx: &Ctx,
    rs: &RegionSwitch,
    before: &RegionSwitchStatus,
    after: &RegionSwitchStatus,
) {
    for t in &after.topologies {
        let was = before
            .topologies
            .iter()
            .find(|b| b.name == t.name)
            .map(|b| b.state);
        if was == Some(t.state) {
            continue;
        }
        match t.state {
            TopologyState::Moved => {
                ctx.event(
                    rs,
                    false,
                    "TopologyMoved",
                    &format!("{}: primary moved {} → {}", t.name, t.from, t.to),
                )
                .await
            }
            TopologyState::Failed | TopologyState::Held => {
                ctx.event(
                    rs,
                    true,
                    if t.state == TopologyState::Held {
                        "TopologyHeld"
                    } else {
                        "TopologyFailed"
                    },
                    &format!("{}: {}", t.name, t.message.as_deref().unwrap_or("")),
                )
                .await
            }
            _ => {}
        }
    }
    if before.phase != after.phase {
        match after.phase {
            Some(RegionSwitchPhase::Succeeded) => {
                ctx.event(
                    rs,
                    false,
                    "Succeeded",
                    &format!(
                        "every selected topology moved from {} to {} ({})",
                        rs.spec.from,
                        rs.spec.to,
                        after.summary.as_deref().unwrap_or("")
                    ),
                )
                .await
            }
            Some(RegionSwitchPhase::Failed) => {
                let message = after
                    .conditions
                    .first()
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                ctx.event(rs, true, "Failed", &message).await
            }
            _ => {}
        }
    }
}
