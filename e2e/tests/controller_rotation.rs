#![forbid(unsafe_code)]
//! Scheduled rotations (`spec.rotation`) on the lab: the controller runs with the test-only
//! `--unsafe-test-clock FILE`, set a few seconds before a daily 02:00 UTC schedule, so each test
//! waits seconds, not hours, and the rotation fires from the controller's own timer (nothing pokes
//! the topology at the scheduled time).
//!
//! Proven: a due rotation sets `spec.primary` (field manager `federator-rotation`) and the planned
//! switchover completes to the next member, never with two primaries; a freeze period skips it
//! with a Warning Event and the reason in status, and nothing moves; a member that cannot be read
//! holds it (`RunOnce`) with an Event, and it starts once the member is back.

use std::path::{Path, PathBuf};

use e2e::harness::controller::{
    Controller, Load, federator_binary, topology, wait_metric, wide_timeouts,
};
use e2e::harness::testkit::{self, DEADLINE, Pair};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use topology::DistributedTopology;
use topology::api::{Outcome, RotationStatus};

/// The schedule every test uses and its first instant after the test clock's start.
const SCHEDULE: &str = "0 2 * * *";
const DUE: &str = "2026-06-01T02:00:00Z";
/// The test clock starts here: the rotation is due 8 s after the controller's first reconcile.
const CLOCK_START: &str = "2026-06-01T01:59:52Z";

/// A healthy pair, a topology `pg` with `rotation` (merged over the daily 02:00 UTC schedule),
/// a test clock file and the controller reading it. With `only_a_readable`, the controller gets
/// its member credentials from a directory of its own that holds only A's: B cannot be read.
struct Rotating {
    ns: TestNamespace,
    pair: Pair,
    hub: Api<DistributedTopology>,
    dir: tempfile::TempDir,
    controller: Option<Controller>,
}

impl Rotating {
    /// Waits until the controller's `federator_rotations_total` for this topology, `outcome` and
    /// `reason`, is `count`.
    async fn wait_rotations(&self, outcome: &str, reason: &str, count: f64) {
        let controller = self.controller.as_ref().expect("the controller");
        let labels = format!(
            r#"namespace="{}",topology="pg",outcome="{outcome}",reason="{reason}""#,
            self.ns.name()
        );
        let addr = controller.probe_addr().await;
        wait_metric(&addr, "federator_rotations_total", &labels, count).await;
    }

    async fn start(test: &str, rotation: serde_json::Value, only_a_readable: bool) -> Self {
        let lab = testkit::lab_with_emulators().await;
        let ns = TestNamespace::create(test).await;
        ns.grant_federator().await;
        let pair = Pair::create(lab, ns.name()).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("now"), CLOCK_START).expect("writing the test clock");

        let mut policy = json!({"schedule": SCHEDULE, "timeZone": "UTC"});
        for (key, value) in rotation.as_object().expect("an object") {
            policy[key] = value.clone();
        }
        let members = [pair.a, pair.b];
        let mut topo = topology(
            ns.name(),
            &members,
            json!({"star": {}}),
            pair.a.name,
            wide_timeouts(),
        );
        topo.spec.rotation = Some(serde_json::from_value(policy).expect("a rotation policy"));
        let hub: Api<DistributedTopology> = Api::namespaced(lab.admin("hub").await, ns.name());
        hub.create(&PostParams::default(), &topo)
            .await
            .expect("creating the topology");

        let a_region = pair.a.region;
        let mut rotating = Rotating {
            ns,
            pair,
            hub,
            dir,
            controller: None,
        };
        if only_a_readable {
            rotating.restore_credential(lab, a_region);
        }
        let clock = rotating.dir.path().join("now");
        let members_dir = rotating.dir.path().join("members");
        let mut flags = vec!["--unsafe-test-clock".to_owned(), path(&clock)];
        if only_a_readable {
            flags.extend([
                "--secret-namespace".to_owned(),
                String::new(),
                "--member-kubeconfigs".to_owned(),
                path(&members_dir),
            ]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        rotating.controller = Some(Controller::start_with(lab, rotating.ns.name(), "", &flags));
        rotating
    }

    fn members_dir(&self) -> PathBuf {
        self.dir.path().join("members")
    }

    /// Puts the member's least-privilege kubeconfig into the controller's directory.
    fn restore_credential(&self, lab: &SharedLab, member: &str) {
        let dir = self.members_dir();
        std::fs::create_dir_all(&dir).expect("the member kubeconfig directory");
        std::fs::copy(
            lab.layout.federator_kubeconfig(member),
            dir.join(format!("{member}.kubeconfig")),
        )
        .expect("copying a member kubeconfig");
    }

    /// Waits until `status.rotation` satisfies `ok`.
    async fn wait_rotation(
        &self,
        what: &str,
        ok: impl Fn(&RotationStatus) -> bool,
    ) -> DistributedTopology {
        let hub = &self.hub;
        let ok = &ok;
        wait_for(what, DEADLINE, || async move {
            let t = hub.get("pg").await.ok()?;
            let rotation = t.status.as_ref()?.rotation.as_ref()?;
            ok(rotation).then_some(t)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Events on the topology with this reason.
    /// The Events with `reason`, once there is at least one (they are published after the
    /// status write the test waited for, so they may lag it); then exactly what the hub has.
    async fn events(&self, reason: &str) -> Vec<Event> {
        wait_for(&format!("a {reason} Event"), DEADLINE, || async {
            (!self.events_now(reason).await.is_empty()).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        self.events_now(reason).await
    }

    async fn events_now(&self, reason: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.ns.lab.admin("hub").await, self.ns.name());
        events
            .list(&ListParams::default())
            .await
            .expect("listing Events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

fn at(text: &str) -> k8s_openapi::jiff::Timestamp {
    text.parse().expect("an RFC 3339 instant")
}

/// The switchover to `to` has finished successfully and every member agrees.
async fn wait_switched(hub: &Api<DistributedTopology>, to: &str) -> DistributedTopology {
    wait_for(
        &format!("a finished switchover to {to}"),
        DEADLINE,
        || async move {
            let t = hub.get("pg").await.ok()?;
            let status = t.status.as_ref()?;
            let done = status.operation.is_none()
                && status.observed_primary.as_deref() == Some(to)
                && status
                    .history
                    .last()
                    .is_some_and(|op| op.to == to && op.outcome == Some(Outcome::Succeeded));
            done.then_some(t)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `federator status pg -n NS` output.
async fn status_text(lab: &SharedLab, ns: &str) -> String {
    let out = tokio::process::Command::new(federator_binary())
        .args(["status", "pg", "-n", ns])
        .env("KUBECONFIG", lab.layout.kubeconfig("hub"))
        .output()
        .await
        .expect("running federator status");
    assert!(out.status.success(), "federator status failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_rotation_fires_from_its_timer_and_the_switchover_completes() {
    let r = Rotating::start("rot-fire", json!({}), false).await;
    let lab = r.ns.lab;
    let members = [r.pair.a, r.pair.b];

    // Before it is due: waiting, with the next rotation in status.
    let waiting = r
        .wait_rotation("the first evaluation", |s| s.last_decision.is_some())
        .await;
    let rotation = waiting.status.unwrap().rotation.unwrap();
    assert_eq!(rotation.active_since.0, at(CLOCK_START));
    assert_eq!(rotation.next_rotation_time.map(|t| t.0), Some(at(DUE)));
    assert_eq!(waiting.spec.primary, r.pair.a.name);

    let load = Load::start(lab, r.ns.name(), &members, false);
    let started = std::time::Instant::now();
    let rotated = r
        .wait_rotation("the rotation to start", |s| s.last_rotation.is_some())
        .await;
    let record = rotated.status.unwrap().rotation.unwrap();
    let last = record.last_rotation.expect("lastRotation");
    assert_eq!(
        (last.from.as_str(), last.to.as_str(), last.scheduled_for.0),
        (r.pair.a.name, r.pair.b.name, at(DUE))
    );
    assert_eq!(record.last_schedule_time.map(|t| t.0), Some(at(DUE)));

    let done = wait_switched(&r.hub, r.pair.b.name).await;
    load.finish().await;
    println!(
        "rotation fired and switched over {:.1}s after the first evaluation",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done.spec.primary, r.pair.b.name);
    assert!(!r.pair.b_in_recovery().await, "B accepts writes");
    let managers: Vec<String> = done
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "federator-rotation"),
        "spec.primary was not set by federator-rotation: {managers:?}"
    );
    let rotation = done.status.unwrap().rotation.unwrap();
    assert_eq!(
        rotation.next_rotation_time.map(|t| t.0),
        Some(at("2026-06-02T02:00:00Z"))
    );
    let started_events = r.events("RotationStarted").await;
    assert_once(&started_events);
    r.wait_rotations("Started", "", 1.0).await;
    assert!(
        started_events[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains(r.pair.b.name)
    );

    let text = status_text(lab, r.ns.name()).await;
    assert!(text.contains("2026-06-02T02:00:00Z"), "{text}");
    r.pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_period_skips_the_rotation_with_an_event_and_nothing_moves() {
    let freeze = json!({"freezePeriods": [{
        "start": "2026-06-01T00:00:00Z",
        "end": "2026-06-01T06:00:00Z",
        "reason": "quarter-end close",
    }]});
    let r = Rotating::start("rot-freeze", freeze, false).await;

    let skipped = r
        .wait_rotation("the frozen rotation to be skipped", |s| {
            s.last_skip.is_some()
        })
        .await;
    let rotation = skipped.status.clone().unwrap().rotation.unwrap();
    let skip = rotation.last_skip.expect("lastSkip");
    assert_eq!(skip.reason.as_deref(), Some("FreezePeriod"));
    assert_eq!(skip.scheduled_for.map(|t| t.0), Some(at(DUE)));
    assert!(
        skip.message.contains("quarter-end close"),
        "{}",
        skip.message
    );
    assert_eq!(rotation.last_rotation, None);
    // The next day's 02:00 is after the freeze.
    assert_eq!(
        rotation.next_rotation_time.map(|t| t.0),
        Some(at("2026-06-02T02:00:00Z"))
    );

    let events = r.events("RotationSkipped").await;
    assert_once(&events);
    r.wait_rotations("Skipped", "FreezePeriod", 1.0).await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        events[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("FreezePeriod")
    );

    // Nothing moves: the spec, the members and the operation log are as before.
    let t = r.hub.get("pg").await.expect("the topology");
    let status = t.status.expect("status");
    assert_eq!(t.spec.primary, r.pair.a.name);
    assert!(status.operation.is_none() && status.history.is_empty());
    assert_eq!(status.observed_primary.as_deref(), Some(r.pair.a.name));
    assert!(r.pair.b_in_recovery().await, "B must still be a replica");
    let text = status_text(r.ns.lab, r.ns.name()).await;
    assert!(text.contains("FreezePeriod"), "{text}");
    r.pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_held_by_an_unreadable_member_starts_once_it_is_back() {
    let run_once = json!({"missedSchedule": {"policy": "RunOnce"}});
    // The controller has no credential for B: B cannot be read, so it is not Ready.
    let r = Rotating::start("rot-hold", run_once, true).await;
    let lab = r.ns.lab;
    let waiting = r
        .wait_rotation("the first evaluation", |s| s.last_decision.is_some())
        .await;
    let decision = waiting
        .status
        .unwrap()
        .rotation
        .unwrap()
        .last_decision
        .unwrap();
    assert_eq!(decision.decision, "Wait", "{decision:?}");

    let held = r
        .wait_rotation("the rotation to be held", |s| {
            s.last_decision
                .as_ref()
                .is_some_and(|d| d.decision == "Hold")
        })
        .await;
    let decision = held
        .status
        .as_ref()
        .and_then(|s| s.rotation.as_ref())
        .and_then(|r| r.last_decision.clone())
        .unwrap();
    assert_eq!(decision.reason.as_deref(), Some("PreconditionFailed"));
    assert!(
        decision.message.contains("MembersNotReady") && decision.message.contains(r.pair.b.name),
        "{}",
        decision.message
    );
    assert_eq!(
        held.spec.primary, r.pair.a.name,
        "a held rotation moves nothing"
    );
    let events = r.events("RotationHeld").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));

    // More reconciles while held; the end of the test checks they announced nothing new.
    for _ in 0..3 {
        poke(&r.hub).await;
    }

    // B is readable again: the held rotation starts and the switchover completes.
    r.restore_credential(lab, r.pair.b.region);
    poke(&r.hub).await;
    let done = wait_switched(&r.hub, r.pair.b.name).await;
    let last = done
        .status
        .unwrap()
        .rotation
        .unwrap()
        .last_rotation
        .unwrap();
    assert_eq!(
        (last.to.as_str(), last.scheduled_for.0),
        (r.pair.b.name, at(DUE))
    );
    assert!(!r.pair.b_in_recovery().await, "B accepts writes");
    // Every reconcile while held (pokes, credential reload, member events, the switchover) left
    // the one hold announcement alone: a repeat would have made it a series.
    assert_once(&r.events("RotationHeld").await);
    assert_once(&r.events("RotationStarted").await);
    r.pair.delete().await;
}

/// Exactly one Event, published once: kube's Recorder turns a repeat of the same Event into a
/// series (`series.count`), so a decision announced at every reconcile would show there.
fn assert_once(events: &[Event]) {
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0].series.is_none(),
        "published repeatedly: {events:#?}"
    );
}

/// Touches an annotation, so the controller reconciles (and re-reads its kubeconfig directory)
/// now rather than at its next timer.
async fn poke(hub: &Api<DistributedTopology>) {
    let stamp = format!("{:?}", std::time::SystemTime::now());
    hub.patch(
        "pg",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test.federator.dev/poke": stamp}}})),
    )
    .await
    .expect("annotating the topology");
}
