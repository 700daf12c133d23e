//! What a drill reads and writes on the hub: the topology's `spec.primary` (its only write to
//! the topology), the topology's status (how the switchover went), the drill's status (the
//! report), the Secrets with the members' URIs, and Events.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource};
use serde_json::json;
use topology::DistributedTopology;
use topology::StepKind;
use topology::api::{Operation, Outcome};
use topology::conditions::kind;
use topology::drill_api::{
    DEFAULT_CA_KEY, DEFAULT_URI_KEY, DisasterRecoveryDrill, DisasterRecoveryDrillStatus,
    FIELD_MANAGER, SecretKeyRef,
};

use super::postgres::{Dsns, Target};
use crate::controller::publish_best_effort;

/// Why a hub request failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "Secret {secret} has no key {key:?} (spec.connection of member {member}); put the member's {what} there"
    )]
    MissingKey {
        secret: String,
        key: String,
        member: String,
        what: &'static str,
    },
    #[error(
        "reading Secret {secret} (spec.connection of member {member}) is forbidden: {message}; grant `get` on it (a Role rule on secrets with resourceNames: [{secret}])"
    )]
    SecretForbidden {
        secret: String,
        member: String,
        message: String,
    },
    /// Someone else wrote the drill since it was read (another controller took the run over,
    /// or a stale copy): nothing was written.
    #[error("{0} changed since it was read; reading it again")]
    Conflict(String),
}

impl HubError {
    /// The Kubernetes API's HTTP status, if the hub answered one.
    pub fn code(&self) -> Option<u16> {
        match self {
            HubError::Kube {
                source: kube::Error::Api(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> HubError {
    let what = what.into();
    move |source| HubError::Kube { what, source }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// The hub side of one drill.
#[derive(Clone)]
pub struct Hub {
    pub topologies: Api<DistributedTopology>,
    pub drills: Api<DisasterRecoveryDrill>,
    secrets: Api<Secret>,
    recorder: Recorder,
}

impl Hub {
    pub fn new(client: Client, namespace: &str, instance: String) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(instance),
        };
        Hub {
            topologies: Api::namespaced(client.clone(), namespace),
            drills: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn topology(&self, name: &str) -> Result<DistributedTopology, HubError> {
        self.topologies
            .get(name)
            .await
            .map_err(kube_err(format!("reading DistributedTopology {name}")))
    }

    /// The topology, `None` when it does not exist.
    pub async fn topology_opt(&self, name: &str) -> Result<Option<DistributedTopology>, HubError> {
        self.topologies
            .get_opt(name)
            .await
            .map_err(kube_err(format!("reading DistributedTopology {name}")))
    }

    /// The drill as the hub has it now, `None` when it was deleted.
    pub async fn drill(&self, name: &str) -> Result<Option<DisasterRecoveryDrill>, HubError> {
        self.drills
            .get_opt(name)
            .await
            .map_err(kube_err(format!("reading DisasterRecoveryDrill {name}")))
    }

    /// Sets the topology's `spec.primary` (asks for a planned switchover, or takes an untouched
    /// one back); returns the topology's new generation. With `seen`, only if the topology is
    /// still at that `resourceVersion` (the one the decision was made on): otherwise
    /// [`HubError::Conflict`] and nothing changed.
    pub async fn set_primary(
        &self,
        name: &str,
        to: &str,
        seen: Option<&str>,
    ) -> Result<i64, HubError> {
        let mut patch = json!({ "spec": { "primary": to } });
        if let Some(version) = seen {
            patch["metadata"] = json!({ "resourceVersion": version });
        }
        match self
            .topologies
            .patch(name, &params(), &Patch::Merge(patch))
            .await
        {
            Ok(patched) => Ok(patched.metadata.generation.unwrap_or_default()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Err(HubError::Conflict(format!("DistributedTopology {name}")))
            }
            Err(e) => Err(kube_err(format!("setting spec.primary of {name} to {to}"))(
                e,
            )),
        }
    }

    /// Replaces the drill's status with `status`, on the condition that the drill is still at
    /// the `resourceVersion` it was read at (an update of the status subresource carrying it):
    /// a process working from a stale copy, or one whose run another controller took over,
    /// writes nothing and gets [`HubError::Conflict`]. Returns the drill as written.
    pub async fn save(
        &self,
        drill: &DisasterRecoveryDrill,
        status: &DisasterRecoveryDrillStatus,
    ) -> Result<DisasterRecoveryDrill, HubError> {
        let name = drill.metadata.name.clone().unwrap_or_default();
        let mut next = drill.clone();
        next.status = Some(status.clone());
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match self.drills.replace_status(&name, &params, &next).await {
            Ok(written) => Ok(written),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Err(HubError::Conflict(format!("drill {name}")))
            }
            Err(e) => Err(kube_err(format!("writing the status of drill {name}"))(e)),
        }
    }

    /// The value under `key` of the Secret `secret_ref` names (read with one GET of that
    /// Secret: a drill reads no other Secret).
    async fn secret_value(
        &self,
        secret_ref: &SecretKeyRef,
        default_key: &str,
        member: &str,
        what: &'static str,
    ) -> Result<Vec<u8>, HubError> {
        let secret = match self.secrets.get(&secret_ref.name).await {
            Ok(s) => s,
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return Err(HubError::SecretForbidden {
                    secret: secret_ref.name.clone(),
                    member: member.to_owned(),
                    message: e.message.clone(),
                });
            }
            Err(e) => {
                return Err(kube_err(format!(
                    "reading Secret {} (spec.connection of member {member})",
                    secret_ref.name
                ))(e));
            }
        };
        let key = secret_ref.key.as_deref().unwrap_or(default_key);
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key).map(|v| v.clone().into_bytes()))
            })
            .ok_or_else(|| HubError::MissingKey {
                secret: secret_ref.name.clone(),
                key: key.to_owned(),
                member: member.to_owned(),
                what,
            })
    }

    /// The members' URIs (and CAs) from the Secrets named in `spec.connection`.
    pub async fn dsns(&self, drill: &DisasterRecoveryDrill) -> Result<Dsns, HubError> {
        let mut dsns = Dsns::new();
        for c in &drill.spec.connection {
            let uri = self
                .secret_value(&c.secret_ref, DEFAULT_URI_KEY, &c.member, "libpq URI")
                .await?;
            let ca = match &c.ca_secret_ref {
                Some(r) => Some((
                    format!(
                        "Secret {} key {}",
                        r.name,
                        r.key.as_deref().unwrap_or(DEFAULT_CA_KEY)
                    ),
                    self.secret_value(r, DEFAULT_CA_KEY, &c.member, "PEM CA certificate")
                        .await?,
                )),
                None => None,
            };
            let target = Target {
                uri: String::from_utf8_lossy(&uri).trim().to_owned(),
                ca,
            };
            dsns.insert(c.member.clone(), target);
        }
        Ok(dsns)
    }

    /// Best effort: an Event that cannot be written is logged, never fails the drill.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: &str,
    ) {
        publish_best_effort(&self.recorder, object, "Drill", warning, reason, note).await;
    }
}

/// How the switchover asked for at `generation` stands, from the topology's status.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// The controller has not started it yet.
    NotStarted,
    /// Running at this step.
    Running { step: StepKind },
    /// Stopped waiting for a human.
    Held {
        step: StepKind,
        reason: String,
        message: String,
    },
    /// Finished.
    Ended(Box<Operation>),
}

/// Pure: the operation of `generation` from `from` to `to`, running or in the history.
pub fn progress(topology: &DistributedTopology, generation: i64, from: &str, to: &str) -> Progress {
    let Some(status) = &topology.status else {
        return Progress::NotStarted;
    };
    let prefix = format!("{generation}-");
    let ours = |op: &&Operation| op.id.starts_with(&prefix) && op.from == from && op.to == to;
    let ended = status
        .history
        .iter()
        .rev()
        .find(|r| r.id.starts_with(&prefix) && r.from == from && r.to == to);
    if let Some(record) = ended {
        return Progress::Ended(Box::new(record.expand()));
    }
    match status.operation.as_ref().filter(|op| ours(op)) {
        None => Progress::NotStarted,
        Some(op) => match &op.hold {
            Some(hold) => Progress::Held {
                step: op.step,
                reason: hold.reason.clone(),
                message: hold.message.clone(),
            },
            None => Progress::Running { step: op.step },
        },
    }
}

/// Pure: `Ok` when the topology is Ready for the current generation with `primary` as observed
/// primary and no operation; otherwise what is not (for the failure message).
pub fn ready_with(topology: &DistributedTopology, primary: &str) -> Result<(), String> {
    let status = topology.status.clone().unwrap_or_default();
    if let Some(op) = &status.operation {
        return Err(format!(
            "an operation is in progress ({} → {}, at {})",
            op.from, op.to, op.step
        ));
    }
    let ready = status.conditions.iter().find(|c| c.type_ == kind::READY);
    let current = ready.is_some_and(|c| {
        c.status == "True" && c.observed_generation == topology.metadata.generation
    });
    if current && status.observed_primary.as_deref() == Some(primary) {
        return Ok(());
    }
    Err(format!(
        "not Ready with {primary} as primary ({})",
        ready
            .map(|c| format!("Ready={} {}: {}", c.status, c.reason, c.message))
            .unwrap_or_else(|| "no Ready condition yet".into())
    ))
}

/// True when an ended operation reached its target.
pub fn succeeded(op: &Operation) -> bool {
    op.outcome == Some(Outcome::Succeeded) && !op.rolled_back
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(generation: i64, status: serde_json::Value) -> DistributedTopology {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "federator.dev/v1alpha1",
            "kind": "DistributedTopology",
            "metadata": {"name": "pg", "namespace": "ns", "generation": generation},
            "spec": {
                "members": [
                    {"name": "pg-a", "cluster": "eu-central", "namespace": "ns"},
                    {"name": "pg-b", "cluster": "eu-western", "namespace": "ns"}
                ],
                "shape": {"star": {}},
                "primary": "pg-a"
            },
            "status": status,
        }))
        .unwrap()
    }

    fn op(id: &str, from: &str, to: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut op = serde_json::json!({
            "id": id, "kind": "switchover", "from": from, "to": to, "step": "Validate",
            "startedAt": "2026-11-23T09:00:00.000000Z"
        });
        for (k, v) in extra.as_object().unwrap() {
            op[k] = v.clone();
        }
        op
    }

    fn ready(generation: i64, status: &str, reason: &str) -> serde_json::Value {
        serde_json::json!([{"type": "Ready", "status": status, "reason": reason, "message": "m",
            "observedGeneration": generation, "lastTransitionTime": "2026-11-23T09:00:00Z"}])
    }

    #[test]
    fn progress_finds_the_operation_of_the_generation_and_move() {
        let not_yet = topo(
            3,
            serde_json::json!({"history": [op("2-pg-b-to-pg-a", "pg-b", "pg-a", serde_json::json!({"outcome": "Succeeded"}))]}),
        );
        assert_eq!(progress(&not_yet, 3, "pg-a", "pg-b"), Progress::NotStarted);
        let held = topo(
            3,
            serde_json::json!({"operation": op("3-pg-a-to-pg-b", "pg-a", "pg-b",
            serde_json::json!({"hold": {"reason": "MemberNotReady", "message": "target not ready"}}))}),
        );
        assert_eq!(
            progress(&held, 3, "pg-a", "pg-b"),
            Progress::Held {
                step: StepKind::Validate,
                reason: "MemberNotReady".into(),
                message: "target not ready".into()
            }
        );
        let done = topo(
            3,
            serde_json::json!({"history": [op("3-pg-a-to-pg-b", "pg-a", "pg-b",
            serde_json::json!({"step": "ClearToken", "outcome": "Succeeded", "finishedAt": "2026-11-23T09:00:02.000000Z"}))]}),
        );
        let Progress::Ended(ended) = progress(&done, 3, "pg-a", "pg-b") else {
            panic!("not ended");
        };
        assert!(succeeded(&ended));
        // Same generation, other move (e.g. someone else's switchover): not ours.
        assert_eq!(progress(&done, 3, "pg-b", "pg-a"), Progress::NotStarted);
    }

    #[test]
    fn ready_needs_a_current_ready_condition_the_primary_and_no_operation() {
        let ok = topo(
            4,
            serde_json::json!({"observedPrimary": "pg-a", "conditions": ready(4, "True", "AsDesired")}),
        );
        assert_eq!(ready_with(&ok, "pg-a"), Ok(()));
        assert!(ready_with(&ok, "pg-b").is_err());
        let stale = topo(
            5,
            serde_json::json!({"observedPrimary": "pg-a", "conditions": ready(4, "True", "AsDesired")}),
        );
        assert!(ready_with(&stale, "pg-a").is_err());
        let rejoining = topo(
            4,
            serde_json::json!({"observedPrimary": "pg-a", "conditions": ready(4, "False", "MemberNotReady")}),
        );
        let why = ready_with(&rejoining, "pg-a").unwrap_err();
        assert!(why.contains("MemberNotReady"), "{why}");
        let busy = topo(
            4,
            serde_json::json!({"observedPrimary": "pg-a", "conditions": ready(4, "True", "AsDesired"),
            "operation": op("4-pg-a-to-pg-b", "pg-a", "pg-b", serde_json::json!({}))}),
        );
        assert!(
            ready_with(&busy, "pg-a")
                .unwrap_err()
                .contains("in progress")
        );
    }
}
