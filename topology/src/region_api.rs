//! The `RegionSwitch` custom resource (`federator.dev/v1alpha1`, short name `rsw`): move the
//! primary of every DistributedTopology of a namespace whose primary runs in region `from` to its
//! member in region `to`, each through the ordinary planned switchover. A region switch is a
//! *client* of the switchover, as a drill is: it only sets each topology's `spec.primary` and
//! reads its status. The rules are the pure ones of [`crate::region`]; `status.topologies` is
//! their state, written before every side effect so a restarted controller resumes it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use kube::{CustomResource, KubeSchema};
use policies::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::region::{Entry, EntryState, OnHold};

/// Field manager of every write a region switch makes (topologies' `spec.primary`, its status).
pub const FIELD_MANAGER: &str = "federator-region-switch";
/// Label on a DistributedTopology: an integer; higher moves first in a region switch (default 0;
/// equal priorities move in name order).
pub const PRIORITY_LABEL: &str = "federator.dev/region-switch-priority";

/// Move every topology whose primary is in one region to its member in another.
// kube's `printcolumn(...)` repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "federator.dev",
    version = "v1alpha1",
    kind = "RegionSwitch",
    doc = "Move the primary of every DistributedTopology of the namespace whose primary runs in region spec.from to its member in region spec.to, each by a planned switchover, with a concurrency limit, pause, abort and per-topology progress in status.",
    namespaced,
    status = "RegionSwitchStatus",
    shortname = "rsw",
    category = "federator",
    printcolumn(name = "From", type_ = "string", json_path = ".spec.from"),
    printcolumn(name = "To", type_ = "string", json_path = ".spec.to"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Moved", type_ = "string", json_path = ".status.summary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RegionSwitchSpec {
    /// The region the primaries leave: a member Kubernetes cluster, as in the topologies'
    /// `spec.members[].cluster`.
    #[schemars(length(min = 1, max = 63))]
    pub from: String,
    /// The region they move to. A topology with no member there is skipped (and reported).
    #[schemars(length(min = 1, max = 63))]
    pub to: String,
    /// Start no further topology while true (running switchovers finish).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Start no further topology, ever: pending ones become `Aborted`. A running switchover is
    /// never interrupted (it finishes or holds as usual).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    /// Only the DistributedTopologies of these names (and `matchLabels`); empty: every one of
    /// the namespace. A region drill's way back names the databases its way there moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub topologies: Vec<String>,
    /// What moves and how (the part a RegionRotation's template also holds).
    #[serde(flatten)]
    pub moves: MovePolicy,
}

/// Which topologies a region switch moves and how: the spec of a region switch without its
/// regions, and a region rotation's template.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MovePolicy {
    /// Only topologies carrying all of these labels (default: every topology of the namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// How many topologies switch over at once (default 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: u32,
    /// When a topology's switchover holds (a human must act): `Stop` starts no further topology
    /// (running ones finish), `Continue` goes on with the others. Default `Stop`.
    #[serde(default)]
    pub on_hold: OnHoldPolicy,
    /// How long one topology's switchover may take from the moment it is asked for (default
    /// `10m`). A switchover the controller has not started by then is taken back (`spec.primary`
    /// set back) and that topology fails; one still running is left to the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// What runs around each topology's switchover: the applications in the old region stop
    /// before the demotion, those in the new region start after the promotion.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
}

impl Default for MovePolicy {
    fn default() -> Self {
        MovePolicy {
            match_labels: BTreeMap::new(),
            concurrency: 1,
            on_hold: OnHoldPolicy::Stop,
            timeout: None,
            hooks: Hooks::default(),
        }
    }
}

/// Hooks, each run for every topology the region switch moves, one at a time, in order.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// Before the topology's demotion. One that fails (or times out) stops that topology:
    /// nothing was demoted, `spec.primary` is not set; the others go on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before_demotion: Vec<Hook>,
    /// After the topology's promotion. One that fails is reported as a warning and the rest run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_promotion: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.before_demotion.is_empty() && self.after_promotion.is_empty()
    }
}

/// One hook: `scale` the topology's applications in one region and wait for them, `patch` one
/// object (traffic: a Service's selector, an external-dns annotation, an HTTPRoute's weights),
/// call a `webhook` and wait for its answer, or run a `job` on a member cluster and wait for it.
/// Exactly one of the four.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// Shown in status, Events and the step timings.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleHook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchHook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookHook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobHook>,
    /// How long the hook may take, waiting included (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Scale the Deployments (or StatefulSets) of one topology in one region, through the member
/// credential the hub holds for that region, then wait until they are there: no replica left
/// when scaling to 0, `replicas` ready otherwise. The objects are those in `namespace` carrying
/// `matchLabels` and the label `federator.dev/topology: <topology name>` (label each
/// application with the database it uses). The member credential needs `list` on the kind and
/// `patch` on its `scale` subresource there (docs/region-switch.md).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleHook {
    /// `From` (the region left) or `To` (the region moved to).
    pub region: HookRegion,
    /// The namespace of the applications on that member cluster.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// `Deployment` (default) or `StatefulSet`.
    #[serde(default)]
    pub kind: ScaleKind,
    /// Labels the applications carry besides `federator.dev/topology: <topology name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// The replica count to set (0: stop the applications).
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: i32,
}

/// Apply a JSON merge patch to one object on the member cluster of one region, through the member
/// credential (which needs `patch` on that resource in that namespace). Done when the patch is
/// accepted. `${topology}` in `name` is replaced by the topology's name.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchHook {
    /// `From` (the region left) or `To` (the region moved to).
    pub region: HookRegion,
    /// The object's apiVersion: `v1`, `gateway.networking.k8s.io/v1`.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// Its kind: `Service`, `HTTPRoute`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// The object's namespace on that member cluster.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The object's name; `${topology}` is replaced by the topology's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The JSON merge patch (RFC 7386), e.g. `{"spec": {"selector": {"region": "eu-western"}}}`.
    #[schemars(schema_with = "free_form")]
    pub merge_patch: serde_json::Value,
}

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Call an HTTPS endpoint (a DNS or load-balancer API, a runbook service) and wait for its
/// answer: done on a 2xx, failed on a 4xx (its body says why), retried until the hook's timeout
/// on anything else. The POST carries a JSON body (`regionSwitch`, `namespace`, `topology`,
/// `hook`, `phase`, `from`, `to`) and the header `X-Federator-Signature: t=<unix seconds>,
/// v1=<hex HMAC-SHA256 of "<t>.<body>" with the shared secret>`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookHook {
    /// `https://…` only.
    #[schemars(length(min = 9, max = 2048))]
    pub url: String,
    /// The shared secret: a Secret in the region switch's namespace on the hub (key default
    /// `secret`).
    pub secret_ref: crate::drill_api::SecretKeyRef,
    /// The PEM CA the endpoint's certificate chains to (key default `ca.crt`); absent: the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<crate::drill_api::SecretKeyRef>,
}

/// Run a Job on the member cluster of one region, through the member credential (which needs
/// `create` and `get` on `jobs` (group `batch`) in `namespace`), and wait for it: done when the
/// Job is Complete, failed when it is Failed (its reason and message recorded). One Job per region
/// switch, topology and hook (its name carries a hash of the three, so a controller restarted
/// mid-hook finds it instead of starting a second one). Every container gets the environment
/// `FEDERATOR_TOPOLOGY`, `FEDERATOR_REGION_SWITCH`, `FEDERATOR_HOOK`, `FEDERATOR_PHASE`,
/// `FEDERATOR_FROM` and `FEDERATOR_TO`; a template without `activeDeadlineSeconds` gets the
/// hook's timeout, so a Job that overruns it is stopped by the Job controller.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobHook {
    /// `From` (the region left) or `To` (the region moved to).
    pub region: HookRegion,
    /// The namespace of the Job on that member cluster.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The Job's `spec` (batch/v1 JobSpec: `template`, `backoffLimit`, ...), checked when the
    /// region switch starts.
    #[schemars(schema_with = "free_form")]
    pub template: serde_json::Value,
}

impl Hook {
    /// Why the hook cannot run as written (the field and the fix), checked before anything moves.
    pub fn invalid(&self) -> Option<String> {
        let set = [
            self.scale.is_some(),
            self.patch.is_some(),
            self.webhook.is_some(),
            self.job.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            return Some("set exactly one of scale, patch, webhook and job".into());
        }
        if let Some(j) = &self.job {
            let spec = match serde_json::from_value::<k8s_openapi::api::batch::v1::JobSpec>(
                j.template.clone(),
            ) {
                Ok(spec) => spec,
                Err(e) => {
                    return Some(format!(
                        "job.template is not a batch/v1 Job spec ({e}); give the Job's spec \
                         (template.spec.containers, template.spec.restartPolicy Never or \
                         OnFailure)"
                    ));
                }
            };
            let restart = spec
                .template
                .spec
                .as_ref()
                .and_then(|p| p.restart_policy.as_deref());
            if !matches!(restart, Some("Never" | "OnFailure")) {
                return Some(format!(
                    "job.template.template.spec.restartPolicy is {restart:?}; a Job's pods need \
                     Never or OnFailure"
                ));
            }
        }
        if let Some(p) = &self.patch
            && !p.merge_patch.is_object()
        {
            return Some("patch.mergePatch must be a JSON object (a merge patch)".into());
        }
        if let Some(w) = &self.webhook
            && !w.url.starts_with("https://")
        {
            return Some(format!(
                "webhook.url {:?} must be an https:// URL (the call carries a signature; plain \
                 HTTP would expose it)",
                w.url
            ));
        }
        None
    }

    /// The region it acts in (a webhook acts in none; `From` then).
    pub fn region(&self) -> HookRegion {
        match (&self.scale, &self.patch, &self.job) {
            (Some(s), _, _) => s.region,
            (None, Some(p), _) => p.region,
            (None, None, Some(j)) => j.region,
            (None, None, None) => HookRegion::From,
        }
    }
}

/// Which region a hook acts in.
#[derive(JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookRegion {
    From,
    To,
}

/// The kind a scale hook scales.
#[derive(JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScaleKind {
    #[default]
    Deployment,
    StatefulSet,
}

/// The label that ties an application to the topology whose database it uses.
pub const TOPOLOGY_LABEL: &str = "federator.dev/topology";

fn one() -> u32 {
    1
}

/// [`OnHold`] as the CRD spells it.
#[derive(JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnHoldPolicy {
    #[default]
    Stop,
    Continue,
}

impl From<OnHoldPolicy> for OnHold {
    fn from(p: OnHoldPolicy) -> Self {
        match p {
            OnHoldPolicy::Stop => OnHold::Stop,
            OnHoldPolicy::Continue => OnHold::Continue,
        }
    }
}

/// Move the active region around a ring of regions on a schedule: at each due time (cron + time
/// zone, maintenance windows, freeze periods, missed-schedule policy, suspend, as a topology's
/// `spec.rotation`), a RegionSwitch from the active region to the next one in `regions`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "federator.dev",
    version = "v1alpha1",
    kind = "RegionRotation",
    doc = "Move the active region of the namespace's DistributedTopologies around a ring of regions on a schedule: at each due time, a RegionSwitch from the active region to the next one.",
    namespaced,
    status = "RegionRotationStatus",
    shortname = "rrot",
    category = "federator",
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activeRegion"),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.rotation.nextRotationTime"
    ),
    printcolumn(
        name = "Last switch",
        type_ = "string",
        json_path = ".status.lastSwitch"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RegionRotationSpec {
    /// The regions (member clusters) in the order the active region moves through; after the
    /// last comes the first. At least two.
    #[schemars(length(min = 2, max = 16))]
    pub regions: Vec<String>,
    /// When rotations are due: `schedule`, `timeZone`, `maintenanceWindows`, `freezePeriods`,
    /// `missedSchedule` and `suspend` as in a topology's `spec.rotation` (docs/rotations.md).
    /// `order` is `regions`; `preconditions` are left to each topology's switchover.
    pub rotation: policies::rotation::RotationPolicy,
    /// What each region switch it starts moves, and how.
    #[serde(default)]
    pub template: MovePolicy,
}

/// Where a region rotation stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionRotationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The region most selected primaries are in now (where the next region switch starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_region: Option<String>,
    /// The schedule's bookkeeping and last decisions, as a topology's `status.rotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::api::RotationStatus>,
    /// The RegionSwitch the last rotation created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switch: Option<String>,
    /// `Valid`: False with the problems of the spec (each naming its field and fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The region switch's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionSwitchStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RegionSwitchPhase>,
    /// `moved/total`, e.g. `3/10` (skipped topologies are not counted in total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why nothing moved (phase `Refused`): the field and the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// Every topology of the namespace the selection looked at, in the order they move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topologies: Vec<TopologyProgress>,
    /// Each time another controller process took the region switch over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<MicroTime>,
    /// `Succeeded`: True when every selected topology moved; False with the reason when the
    /// region switch was refused or a topology failed, held or was aborted; Unknown while running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// How the whole region switch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RegionSwitchPhase {
    /// Switchovers are running or pending.
    Running,
    /// `spec.paused`: nothing new starts.
    Paused,
    /// A topology holds and `onHold` is `Stop`, or every unfinished topology holds.
    Holding,
    /// Every selected topology moved (some may have been skipped).
    Succeeded,
    /// Finished, and at least one topology failed or was aborted.
    Failed,
    /// Refused before anything moved (`message` says why).
    Refused,
}

/// One topology of the region switch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyProgress {
    /// The DistributedTopology (same namespace).
    pub name: String,
    /// Its primary when the region switch selected it (the member in `spec.from`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Its member in `spec.to` (empty when skipped).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    pub state: TopologyState,
    /// Why it was skipped, holds, failed; what a warning said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The topology's generation produced by setting its `spec.primary` (identifies the
    /// switchover in its status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When its switchover was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<MicroTime>,
    /// When it finished (moved, failed, aborted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// The id of the topology's switchover operation, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Hooks after the promotion that failed (reported, not fatal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The index of the hook running (in `BeforeDemotion` or `AfterPromotion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<u32>,
    /// When that hook started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_started_at: Option<MicroTime>,
    /// Every hook that ran for this topology: which, how long, how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    /// The topology's own `spec.hooks` as they were when the region switch selected it: checked
    /// up front with the region switch's hooks; its switchover runs them (not the region switch).
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub topology_hooks: Hooks,
}

/// One hook run for one topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    /// `beforeDemotion/<name>` or `afterPromotion/<name>`.
    pub hook: String,
    pub started_at: MicroTime,
    pub finished_at: MicroTime,
    /// True when the hook did what it declares; false when it failed or timed out.
    pub ok: bool,
    /// What it did or why it failed.
    pub detail: String,
}

/// `list` with the field each hook comes from: `<owner>spec.hooks.<phase>[i] (<name>)`.
fn fields<'a>(owner: &str, phase: &str, list: &'a [Hook]) -> Vec<(String, &'a Hook)> {
    list.iter()
        .enumerate()
        .map(|(i, h)| (format!("{owner}spec.hooks.{phase}[{i}] ({})", h.name), h))
        .collect()
}

/// [`EntryState`] as the CRD spells it (the hook index, if any, is in `hook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TopologyState {
    Pending,
    BeforeDemotion,
    Switching,
    AfterPromotion,
    Moved,
    Skipped,
    Held,
    Failed,
    Aborted,
}

impl TopologyProgress {
    /// A topology as the selection leaves it: nothing asked, run or recorded yet.
    pub fn new(name: String, from: String, to: String, state: TopologyState) -> Self {
        TopologyProgress {
            name,
            from,
            to,
            state,
            message: None,
            generation: None,
            requested_at: None,
            finished_at: None,
            operation: None,
            warnings: vec![],
            hook: None,
            hook_started_at: None,
            hooks: vec![],
            topology_hooks: Hooks::default(),
        }
    }

    /// The region switch's hooks this topology runs, in order, with the field each comes from.
    /// The topology's own `spec.hooks` are not among them: its switchover runs them (before
    /// its demotion, after its promotion), so they run once, closest to the switchover.
    pub fn hooks<'a>(&'a self, switch: &'a Hooks) -> [Vec<(String, &'a Hook)>; 2] {
        [
            fields("", "beforeDemotion", &switch.before_demotion),
            fields("", "afterPromotion", &switch.after_promotion),
        ]
    }

    /// The topology's own hooks as selected (checked up front with the region switch's), with
    /// the field each comes from.
    pub fn own_hooks(&self) -> Vec<(String, &Hook)> {
        let own = format!("DistributedTopology {} ", self.name);
        let mut all = fields(&own, "beforeDemotion", &self.topology_hooks.before_demotion);
        all.extend(fields(
            &own,
            "afterPromotion",
            &self.topology_hooks.after_promotion,
        ));
        all
    }

    /// The pure rules' view of this topology (`key` = its name: one namespace), `switch` the
    /// region switch's hooks.
    pub fn entry(&self, switch: &Hooks) -> Entry {
        let why = || self.message.clone().unwrap_or_default();
        let state = match self.state {
            TopologyState::Pending => EntryState::Pending,
            TopologyState::BeforeDemotion => EntryState::BeforeDemotion {
                index: self.hook.unwrap_or(0) as usize,
            },
            TopologyState::Switching => EntryState::Switching,
            TopologyState::AfterPromotion => EntryState::AfterPromotion {
                index: self.hook.unwrap_or(0) as usize,
            },
            TopologyState::Moved => EntryState::Moved,
            TopologyState::Skipped => EntryState::Skipped(why()),
            TopologyState::Held => EntryState::Held(why()),
            TopologyState::Failed => EntryState::Failed(why()),
            TopologyState::Aborted => EntryState::Aborted,
        };
        Entry {
            key: self.name.clone(),
            member: self.to.clone(),
            state,
            warnings: self.warnings.clone(),
            hooks_before: switch.before_demotion.len(),
            hooks_after: switch.after_promotion.len(),
        }
    }

    /// Takes the state of `entry` (the pure rules' decision), keeping what only the CRD records.
    pub fn set(&mut self, entry: &Entry) {
        let (state, message) = match &entry.state {
            EntryState::Pending => (TopologyState::Pending, None),
            EntryState::BeforeDemotion { .. } => (TopologyState::BeforeDemotion, None),
            EntryState::Switching => (TopologyState::Switching, None),
            EntryState::AfterPromotion { .. } => (TopologyState::AfterPromotion, None),
            EntryState::Moved => (TopologyState::Moved, None),
            EntryState::Skipped(m) => (TopologyState::Skipped, Some(m.clone())),
            EntryState::Held(m) => (TopologyState::Held, Some(m.clone())),
            EntryState::Failed(m) => (TopologyState::Failed, Some(m.clone())),
            EntryState::Aborted => (TopologyState::Aborted, None),
        };
        self.state = state;
        self.message = message;
        self.warnings = entry.warnings.clone();
        self.hook = match entry.state {
            EntryState::BeforeDemotion { index } | EntryState::AfterPromotion { index } => {
                Some(index as u32)
            }
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: TopologyState, message: Option<&str>) -> TopologyProgress {
        let mut p = TopologyProgress::new("pg".into(), "a".into(), "b".into(), state);
        p.message = message.map(str::to_owned);
        p.generation = Some(3);
        p
    }

    #[test]
    fn every_state_survives_the_round_trip_through_the_pure_entry() {
        for (state, message) in [
            (TopologyState::Pending, None),
            (TopologyState::Switching, None),
            (TopologyState::Moved, None),
            (TopologyState::Skipped, Some("no member in region b")),
            (TopologyState::Held, Some("MemberNotReady: b is not ready")),
            (TopologyState::Failed, Some("ended RolledBack")),
            (TopologyState::Aborted, None),
        ] {
            let p = progress(state, message);
            let mut back = progress(TopologyState::Pending, Some("stale"));
            back.set(&p.entry(&Hooks::default()));
            assert_eq!(back, p, "{state:?}");
        }
    }

    #[test]
    fn the_spec_defaults_are_one_at_a_time_and_stop_on_hold() {
        let spec: RegionSwitchSpec =
            serde_json::from_value(serde_json::json!({"from": "eu-central", "to": "eu-western"}))
                .unwrap();
        assert_eq!(spec.moves.concurrency, 1);
        assert_eq!(spec.moves.on_hold, OnHoldPolicy::Stop);
        assert!(!spec.paused && !spec.abort);
    }
}
