//! The one observation that is not in a `Cluster` object: how far the target's designated
//! primary has replayed WAL, read while a switchover waits at [`StepKind::AwaitReplay`] (a
//! channel with an object store; see that step), and once in the reconcile that reaches it.
//!
//! CNPG reports a replica's replay position nowhere in the Cluster's status. Its instance
//! manager serves it at `/pg/status` (port 8000, `replayLsn`), which `kubectl cnpg status` reads
//! through the member API server's `pods/proxy`; Federator does the same, with its member
//! credential (`get` on `pods` and `pods/proxy` in the Cluster's namespace).
//!
//! A failover reads the same document twice more ([`observe_failover`]): its target's
//! `receivedLsn` until it is promoted (where the new timeline forks, at the earliest), and the
//! old primary's role and WAL position the first time it can be read again (whether it kept
//! running as a primary, and how far past the target it wrote).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use topology::api::{FailoverRequest, Member, Operation};
use topology::token::Lsn;
use topology::{DistributedTopologyStatus, InstanceWal, Observed, OperationKind, Replay, StepKind};

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
    schemes: &StatusSchemes,
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
    let replay = read(pool, schemes, member).await;
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

/// How long after its fence the controller still tries to read a returned old primary's
/// instance (one read per reconcile): long enough for its pod to start again after a region
/// came back, short enough that a member that never answers costs nothing for ever.
const RETURN_READ_FOR: SignedDuration = SignedDuration::from_mins(10);

/// Around a failover, reads what the data-loss report needs into `observed` (`wal` of the
/// member): the target's WAL position while a failover request waits or its operation runs and
/// the target is not yet promoted; the old primary's role and position once it can be read
/// again, until the report has them (or [`RETURN_READ_FOR`] after its fence). Nothing
/// otherwise.
pub async fn observe_failover(
    pool: &dyn Members,
    schemes: &StatusSchemes,
    members: &[Member],
    (request, status): (Option<&FailoverRequest>, Option<&DistributedTopologyStatus>),
    now: Timestamp,
    observed: &mut Observed,
) {
    for name in failover_reads(request, status, observed, now) {
        let Some(member) = members.iter().find(|m| m.name == name) else {
            continue;
        };
        let Some(target) = observed.members.get_mut(&name) else {
            continue;
        };
        let wal = match read_status(pool, schemes, member).await {
            Ok(text) => parse_wal(&text).map_or_else(
                |why| InstanceWal::Unknown(format!("{}: {why}", member.name)),
                |(primary, lsn, timeline)| InstanceWal::At {
                    primary,
                    lsn,
                    timeline,
                },
            ),
            Err(why) => InstanceWal::Unknown(why),
        };
        match &wal {
            InstanceWal::At { primary, lsn, .. } => {
                tracing::info!(member = %name, primary, %lsn, "instance WAL position (failover report)")
            }
            InstanceWal::Unknown(why) => {
                tracing::info!(member = %name, %why, "instance WAL position unknown (failover report)")
            }
        }
        target.status.wal = Some(wal);
    }
}

/// The members whose instance the failover report needs read in this reconcile.
fn failover_reads(
    request: Option<&FailoverRequest>,
    status: Option<&DistributedTopologyStatus>,
    observed: &Observed,
    now: Timestamp,
) -> Vec<String> {
    let readable = |name: &str| observed.get(name).is_some_and(|m| m.reachable);
    let promoted = |name: &str| {
        observed
            .get(name)
            .is_some_and(|m| m.status.instance_is_primary)
    };
    let last = status.and_then(|s| s.last_failover.as_ref());
    let running = status
        .and_then(|s| s.operation.as_ref())
        .filter(|op| op.kind == OperationKind::Failover && op.outcome.is_none());
    // The target: a request not acted on yet (it may start in this reconcile), or the running
    // failover until its target reports itself primary.
    let target = running.map(|op| op.to.as_str()).or_else(|| {
        request
            .filter(|r| r.accept_data_loss && last.is_none_or(|l| l.request != **r))
            .map(|r| r.to.as_str())
    });
    let mut reads: Vec<String> = target
        .filter(|t| readable(t) && !promoted(t))
        .map(str::to_owned)
        .into_iter()
        .collect();
    // The old primary, back: once, while it is listed as fenced (a re-clone ends it).
    if let Some(report) = last.filter(|r| r.operation.is_some())
        && report
            .data_loss
            .as_ref()
            .is_some_and(|w| w.old_primary_returned.is_none())
        && readable(&report.from)
        && status.is_some_and(|s| {
            s.fenced_members.iter().any(|f| {
                f.name == report.from
                    && f.fenced_at
                        .as_ref()
                        .is_none_or(|at| now.duration_since(at.0) < RETURN_READ_FOR)
            })
        })
    {
        reads.push(report.from.clone());
    }
    reads
}

async fn read(pool: &dyn Members, schemes: &StatusSchemes, member: &Member) -> Replay {
    match read_status(pool, schemes, member).await {
        Ok(text) => parse_replay_lsn(&text).map_or_else(Replay::Unknown, Replay::At),
        Err(why) => Replay::Unknown(why),
    }
}

/// The instance status document of `member`'s current primary pod, or why it cannot be read.
async fn read_status(
    pool: &dyn Members,
    schemes: &StatusSchemes,
    member: &Member,
) -> Result<String, String> {
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
        return Err(format!(
            "Cluster {}/{name} names no current primary pod",
            member.namespace
        ));
    };
    let client = pool.client(&member.cluster)?;
    let key = PodKey {
        cluster: member.cluster.clone(),
        namespace: member.namespace.clone(),
        pod,
    };
    match tokio::time::timeout(READ_WITHIN, status_text(client, schemes, &key)).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(why)) => Err(pool.redact(&member.cluster, &why)),
        Err(_) => Err(format!(
            "no answer from pod {}/{}'s instance status within {}s",
            member.namespace,
            key.pod,
            READ_WITHIN.as_secs()
        )),
    }
}

/// The pod's instance status document, through the API server's pods/proxy, with the scheme
/// CNPG uses for that pod: remembered from an earlier read of the pod, else read from the pod
/// first. The read sits in series before the Promote patch (the switchover's one reaction that
/// reads outside the Cluster objects), so the pod's `get` is spared when the scheme is known; a
/// remembered scheme that fails (the pod re-created with another command) is forgotten and the
/// pod read again, once.
async fn status_text(
    client: kube::Client,
    schemes: &StatusSchemes,
    key: &PodKey,
) -> Result<String, String> {
    if let Some(scheme) = schemes.get(key) {
        match status_get(&client, key, scheme).await {
            Ok(text) => return Ok(text),
            Err(why) => {
                tracing::debug!(pod = %key.pod, %why, "remembered status scheme failed; reading the pod");
                schemes.forget(key);
            }
        }
    }
    let (namespace, pod) = (&key.namespace, &key.pod);
    let object = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod)
        .await
        .map_err(|e| format!("reading pod {namespace}/{pod}: {e}"))?;
    let scheme = status_scheme(&object);
    let text = status_get(&client, key, scheme).await?;
    schemes.remember(key, scheme);
    Ok(text)
}

async fn status_get(client: &kube::Client, key: &PodKey, scheme: &str) -> Result<String, String> {
    let path = status_path(&key.namespace, &key.pod, scheme);
    let request = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))
}

/// One instance pod of one member cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodKey {
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
}

/// The status scheme (`http`/`https`) of each instance pod read so far, kept for the
/// controller's life: one entry per instance pod a switchover targeted, dropped when a read
/// with it fails.
#[derive(Debug, Default)]
pub struct StatusSchemes(std::sync::Mutex<std::collections::HashMap<PodKey, &'static str>>);

impl StatusSchemes {
    fn get(&self, key: &PodKey) -> Option<&'static str> {
        self.0.lock().ok()?.get(key).copied()
    }

    fn remember(&self, key: &PodKey, scheme: &'static str) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key.clone(), scheme);
        }
    }

    fn forget(&self, key: &PodKey) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(key);
        }
    }
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
    current_lsn: String,
    #[serde(default)]
    received_lsn: String,
    #[serde(default)]
    replay_lsn: String,
    #[serde(default)]
    is_primary: bool,
    #[serde(default, rename = "timeLineID")]
    timeline: Option<i64>,
}

/// An LSN field of the document: empty is none.
fn lsn_field(name: &str, text: &str) -> Result<Option<Lsn>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| format!("{name}: {e}"))
}

/// Role, WAL position and timeline: on a primary `currentLsn`, on a standby the later of
/// `receivedLsn` and `replayLsn` (everything it would replay if promoted now).
fn parse_wal(text: &str) -> Result<(bool, Lsn, Option<i64>), String> {
    let status: InstanceStatus =
        serde_json::from_str(text).map_err(|e| format!("not CNPG's instance status ({e})"))?;
    let lsn = if status.is_primary {
        lsn_field("currentLsn", &status.current_lsn)?
    } else {
        let received = lsn_field("receivedLsn", &status.received_lsn)?;
        let replayed = lsn_field("replayLsn", &status.replay_lsn)?;
        received.max(replayed)
    };
    let lsn = lsn.ok_or_else(|| {
        format!(
            "the instance ({}) reports no WAL position",
            if status.is_primary {
                "primary"
            } else {
                "standby"
            }
        )
    })?;
    Ok((status.is_primary, lsn, status.timeline.filter(|t| *t > 0)))
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

    /// The pod's scheme is read once and then remembered (the read before Promote is one
    /// request); a pod re-created with another scheme fails once, is read again, and works.
    #[tokio::test]
    async fn a_pods_status_scheme_is_remembered_and_read_again_when_it_fails() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::sync::{Arc, Mutex};

        let calls = Arc::new(Mutex::new(Vec::<String>::new()));
        let tls = Arc::new(AtomicBool::new(false));
        let (seen, now_tls) = (calls.clone(), tls.clone());
        let client = crate::fake_api::client(move |call| {
            seen.lock().unwrap().push(call.path.clone());
            let tls = now_tls.load(SeqCst);
            if call.path.ends_with("/pods/pg-b-1") {
                let mut command = vec!["/controller/manager", "instance", "run"];
                if tls {
                    command.push(STATUS_TLS_FLAG);
                }
                let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "pg-b-1", "namespace": "db"},
                    "spec": {"containers": [{"name": "postgres", "command": command}]}});
                return (200, pod);
            }
            let scheme = if tls { "https" } else { "http" };
            if call.path == status_path("db", "pg-b-1", scheme) {
                (
                    200,
                    serde_json::json!({"replayLsn": "0/C0000A0", "isPrimary": false}),
                )
            } else {
                crate::fake_api::refusal(503, "ServiceUnavailable", "error trying to reach service")
            }
        });
        let schemes = StatusSchemes::default();
        let key = PodKey {
            cluster: "k8s-b".into(),
            namespace: "db".into(),
            pod: "pg-b-1".into(),
        };
        let read = || async { status_text(client.clone(), &schemes, &key).await };
        let paths = || calls.lock().unwrap().clone();

        assert!(read().await.unwrap().contains("0/C0000A0"));
        assert_eq!(paths().len(), 2, "the pod, then its status: {:?}", paths());
        assert!(read().await.unwrap().contains("0/C0000A0"));
        assert_eq!(
            paths()[2..],
            [status_path("db", "pg-b-1", "http")],
            "the remembered scheme: one request"
        );

        tls.store(true, SeqCst);
        assert!(read().await.unwrap().contains("0/C0000A0"));
        assert_eq!(
            paths()[3..],
            [
                status_path("db", "pg-b-1", "http"),
                "/api/v1/namespaces/db/pods/pg-b-1".to_owned(),
                status_path("db", "pg-b-1", "https"),
            ],
            "a failed remembered scheme: the pod read again, once"
        );
        assert!(read().await.is_ok());
        assert_eq!(paths().len(), 7, "https remembered: {:?}", paths());
    }

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
    fn a_failover_reads_role_and_wal_position_from_the_same_document() {
        let primary =
            r#"{"currentLsn":"0/D0001A8","replayLsn":"","isPrimary":true,"timeLineID":1}"#;
        assert_eq!(
            parse_wal(primary),
            Ok((true, "0/D0001A8".parse().unwrap(), Some(1)))
        );
        // A standby: everything it received counts (promotion replays it), whichever is later.
        let standby = r#"{"currentLsn":"","receivedLsn":"0/C0000A0","replayLsn":"0/C000028","isPrimary":false,"timeLineID":1}"#;
        assert_eq!(
            parse_wal(standby),
            Ok((false, "0/C0000A0".parse().unwrap(), Some(1)))
        );
        let replay_only = r#"{"receivedLsn":"","replayLsn":"0/C000028","isPrimary":false}"#;
        assert_eq!(
            parse_wal(replay_only),
            Ok((false, "0/C000028".parse().unwrap(), None))
        );
        assert!(
            parse_wal(r#"{"isPrimary":true,"currentLsn":""}"#)
                .unwrap_err()
                .contains("no WAL position")
        );
        assert!(
            parse_wal(r#"{"isPrimary":true,"currentLsn":"zz"}"#)
                .unwrap_err()
                .contains("currentLsn")
        );
    }

    #[test]
    fn a_failover_reads_its_target_until_promoted_and_the_old_primary_once_back() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        use topology::api::{DataLossWindow, FailoverReport, FencedMember};
        let cluster = |name: &str, primary: bool| -> topology::cnpg::Cluster {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                "metadata": {"name": name, "namespace": "db"},
                "spec": {"instances": 1},
                "status": {"instancesReportedState": {format!("{name}-1"): {"isPrimary": primary}}},
            }))
            .unwrap()
        };
        let observed = |b_promoted: bool, a_readable: bool| {
            let mut o = Observed::from_clusters(&[cluster("a", false), cluster("b", b_promoted)]);
            o.members.get_mut("a").unwrap().reachable = a_readable;
            o
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let request = FailoverRequest {
            to: "b".into(),
            accept_data_loss: true,
            requested_at: Some("t1".into()),
        };
        // A request not acted on yet: the target, which may be promoted in this reconcile.
        let idle = DistributedTopologyStatus::default();
        let reads = |status: &DistributedTopologyStatus, o: &Observed, at: Timestamp| {
            failover_reads(Some(&request), Some(status), o, at)
        };
        assert_eq!(reads(&idle, &observed(false, false), now), ["b"]);
        // Not without the acknowledgement, and never a target already primary.
        let unacknowledged = FailoverRequest {
            accept_data_loss: false,
            ..request.clone()
        };
        assert!(
            failover_reads(
                Some(&unacknowledged),
                Some(&idle),
                &observed(false, false),
                now
            )
            .is_empty()
        );
        assert!(reads(&idle, &observed(true, false), now).is_empty());

        // Acted on: the target is primary; the old primary is read once it is readable again,
        // until the report holds what it said or 10 minutes after its fence.
        let mut done = DistributedTopologyStatus {
            last_failover: Some(FailoverReport {
                request: request.clone(),
                from: "a".into(),
                to: "b".into(),
                decided_at: MicroTime(now),
                operation: Some("op-1".into()),
                refused: None,
                data_loss: Some(DataLossWindow::default()),
            }),
            fenced_members: vec![FencedMember {
                name: "a".into(),
                failover: "op-1".into(),
                new_primary: "b".into(),
                fenced_at: None,
                needs_reclone: true,
            }],
            ..DistributedTopologyStatus::default()
        };
        assert!(reads(&done, &observed(true, false), now).is_empty());
        assert_eq!(reads(&done, &observed(true, true), now), ["a"]);
        done.fenced_members[0].fenced_at = Some(MicroTime(now));
        let later = now + SignedDuration::from_mins(11);
        assert!(reads(&done, &observed(true, true), later).is_empty());
        done.fenced_members[0].fenced_at = None;
        let report = done.last_failover.as_mut().unwrap();
        report.data_loss.as_mut().unwrap().old_primary_returned =
            Some(topology::api::ReturnedPrimary {
                read_at: MicroTime(now),
                primary: true,
                lsn: "0/5000000".into(),
                timeline: Some(1),
                wal_past_target_bytes: None,
            });
        assert!(reads(&done, &observed(true, true), now).is_empty());
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
