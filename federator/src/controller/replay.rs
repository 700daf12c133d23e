//! The one observation that is not in a `Cluster` object: how far the target's designated
//! primary has replayed WAL, read while a switchover waits at [`StepKind::AwaitReplay`] (a
//! channel with an object store; see that step), and once in the reconcile that reaches it.
//!
//! CNPG reports a replica's replay position nowhere in the Cluster's status. Its instance
//! manager serves it at `/pg/status` (port 8000, `replayLsn`), which `kubectl cnpg status` reads
//! through the member API server's `pods/proxy`; Federator does the same, with its member
//! credential (`get` on `pods` and `pods/proxy` in the Cluster's namespace).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use topology::api::{Member, Operation};
use topology::token::Lsn;
use topology::{Observed, Replay, StepKind};

use super::observe::{MemberRead, Members};

/// CNPG's instance status port (`pkg/management/url`).
const STATUS_PORT: u16 = 8000;
/// CNPG's instance status path.
const STATUS_PATH: &str = "/pg/status";
/// The flag CNPG adds to the `postgres` container's command when the status port serves TLS.
const STATUS_TLS_FLAG: &str = "--status-port-tls";
/// One read (pod, then status: two requests) must not hold a reconcile longer than this: the
/// read timeout of one member request (`kubeconfigs::Timeouts::REQUESTS`), so a member slow
/// enough to answer a patch (e2e `faults_partition`: 5 s per request) answers this read too.
const READ_WITHIN: Duration = Duration::from_secs(15);

/// While `operation` waits at `AwaitReplay`, or is about to enter it in this reconcile (the
/// old primary's token is there and the target's channel has an object store), reads its
/// target's replay position into `observed` (the planner decides with it): a target that
/// replayed already is promoted without one more reconcile and status write. Does nothing
/// otherwise (one `pods/proxy` read per switchover in the usual case).
pub async fn observe(
    pool: &dyn Members,
    members: &[Member],
    operation: Option<&Operation>,
    observed: &mut Observed,
) {
    let Some(op) = operation.filter(|op| op.outcome.is_none() && about_to_wait(op, observed))
    else {
        return;
    };
    let Some(member) = members.iter().find(|m| m.name == op.to) else {
        return;
    };
    let Some(target) = observed.members.get_mut(&op.to) else {
        return;
    };
    let replay = read(pool, member).await;
    match &replay {
        Replay::At(lsn) => {
            tracing::debug!(member = %member.name, replay_lsn = %lsn, "target's replay position")
        }
        Replay::Unknown(why) => {
            tracing::info!(member = %member.name, %why, "target's replay position unknown")
        }
    }
    target.status.replay = Some(replay);
}

/// Whether this reconcile's decision may depend on the target's replay position.
fn about_to_wait(op: &Operation, observed: &Observed) -> bool {
    let archive = || {
        observed
            .members
            .get(&op.to)
            .is_some_and(|m| m.source.has_archive())
    };
    match op.step {
        StepKind::AwaitReplay => true,
        StepKind::CheckToken => !op.rolled_back && archive(),
        StepKind::AwaitToken => {
            let token_seen = observed
                .members
                .get(&op.from)
                .is_some_and(|m| m.status.demotion_token.is_some());
            !op.rolled_back && token_seen && archive()
        }
        _ => false,
    }
}

async fn read(pool: &dyn Members, member: &Member) -> Replay {
    let name = member.cluster_name();
    let pod = match pool.read(&member.cluster, &member.namespace, name) {
        MemberRead::Seen(cluster) => cluster
            .status
            .as_ref()
            .and_then(|s| {
                s.current_primary
                    .clone()
                    .or_else(|| s.target_primary.clone())
            })
            .filter(|p| !p.is_empty()),
        _ => None,
    };
    let Some(pod) = pod else {
        return Replay::Unknown(format!(
            "Cluster {}/{name} names no current primary pod",
            member.namespace
        ));
    };
    let client = match pool.client(&member.cluster) {
        Ok(c) => c,
        Err(why) => return Replay::Unknown(why),
    };
    match tokio::time::timeout(READ_WITHIN, replay_lsn(client, &member.namespace, &pod)).await {
        Ok(Ok(lsn)) => Replay::At(lsn),
        Ok(Err(why)) => Replay::Unknown(pool.redact(&member.cluster, &why)),
        Err(_) => Replay::Unknown(format!(
            "no answer from pod {}/{pod}'s instance status within {}s",
            member.namespace,
            READ_WITHIN.as_secs()
        )),
    }
}

/// `replayLsn` of pod `namespace/pod`'s instance manager, through the API server's pods/proxy,
/// with the scheme CNPG uses for that pod.
async fn replay_lsn(client: kube::Client, namespace: &str, pod: &str) -> Result<Lsn, String> {
    let object = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod)
        .await
        .map_err(|e| format!("reading pod {namespace}/{pod}: {e}"))?;
    let path = status_path(namespace, pod, status_scheme(&object));
    let request = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    parse_replay_lsn(&text).map_err(|why| format!("GET {path}: {why}"))
}

/// `https` when the pod's `postgres` container runs with `--status-port-tls`, else `http`
/// (CNPG's `GetStatusSchemeFromPod`).
fn status_scheme(pod: &Pod) -> &'static str {
    let tls = pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .filter(|c| c.name == "postgres")
            .any(|c| c.command.iter().flatten().any(|a| a == STATUS_TLS_FLAG))
    });
    if tls { "https" } else { "http" }
}

fn status_path(namespace: &str, pod: &str, scheme: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{scheme}:{pod}:{STATUS_PORT}/proxy{STATUS_PATH}")
}

/// The instance status document, the fields read here.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceStatus {
    #[serde(default)]
    replay_lsn: String,
    #[serde(default)]
    is_primary: bool,
}

fn parse_replay_lsn(text: &str) -> Result<Lsn, String> {
    let status: InstanceStatus =
        serde_json::from_str(text).map_err(|e| format!("not CNPG's instance status ({e})"))?;
    if status.is_primary {
        return Err("the instance reports itself primary, not a standby".into());
    }
    if status.replay_lsn.is_empty() {
        return Err("the instance reports no replayLsn".into());
    }
    status.replay_lsn.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_position_comes_from_cnpgs_status_document() {
        let doc = r#"{"currentLsn":"","receivedLsn":"","replayLsn":"0/C0000A0","systemID":"7","isPrimary":false,"replayPaused":false,"pendingRestart":false,"isWalReceiverActive":false,"node":"n","pod":null}"#;
        assert_eq!(parse_replay_lsn(doc), Ok("0/C0000A0".parse().unwrap()));
        let primary = r#"{"currentLsn":"0/D000000","replayLsn":"","isPrimary":true}"#;
        assert!(parse_replay_lsn(primary).unwrap_err().contains("primary"));
        assert!(
            parse_replay_lsn(r#"{"isPrimary":false}"#)
                .unwrap_err()
                .contains("no replayLsn")
        );
        assert!(parse_replay_lsn("<html>").unwrap_err().contains("not CNPG"));
    }

    #[test]
    fn the_scheme_follows_the_status_port_tls_flag() {
        let pod = |command: &[&str]| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "pg-b-1"},
                "spec": {"containers": [
                    {"name": "bootstrap-controller", "command": ["--status-port-tls"]},
                    {"name": "postgres", "command": command},
                ]},
            }))
            .unwrap()
        };
        assert_eq!(
            status_scheme(&pod(&["/controller/manager", "instance", "run"])),
            "http"
        );
        assert_eq!(
            status_scheme(&pod(&[
                "/controller/manager",
                "instance",
                "run",
                "--status-port-tls"
            ])),
            "https"
        );
        assert_eq!(
            status_path("db", "pg-b-1", "https"),
            "/api/v1/namespaces/db/pods/https:pg-b-1:8000/proxy/pg/status"
        );
    }
}
