#![forbid(unsafe_code)]
//! Disaster-recovery drills on the lab (real apiservers, the CNPG emulator on PostgreSQL 15),
//! with `federator controller` as a child process and a 100 ms two-primaries sampler running.
//!
//! - `federator drill --return` on a pair: the report's canary check passed on both primaries,
//!   write-unavailability and RPO were measured for both switchovers, the final primary is the
//!   original one, and `federator drill report` renders the step timeline.
//! - A drill applied as an object (the controller runs it, URIs from hub Secrets) to a member
//!   whose PostgreSQL cannot be reached fails at Preflight with the reason, changes nothing, and
//!   the topology still has exactly one primary.
//!
//! `cargo build -p federator` first (or set `FEDERATOR_BIN`).

use std::time::Duration;

use e2e::emulator::faults;
use e2e::harness::controller::{
    Controller, Load, deploy, federator_binary, pg, wait_condition, wait_metric, wide_timeouts,
};
use e2e::harness::testkit::{self, DEADLINE, Member};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use topology::DistributedTopology;
use topology::conditions::kind;
use topology::drill_api::{DisasterRecoveryDrill, DrillPhase, DrillStepName};

fn dsn(lab: &SharedLab, ns: &str, m: Member<'_>) -> String {
    e2e::emulator::dsn(lab.layout.root(), m.region, ns, m.name).expect("the member's URI")
}

/// Runs the `federator` CLI against the hub; returns (exit code, stdout).
async fn federator(lab: &SharedLab, args: &[&str]) -> (i32, String) {
    federator_as(&lab.layout.kubeconfig("hub"), args).await
}

/// Runs the `federator` CLI with the hub credential of `kubeconfig`.
async fn federator_as(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    let (code, stdout, _) = federator_full(kubeconfig, args).await;
    (code, stdout)
}

/// Runs the `federator` CLI; returns (exit code, stdout, stderr).
async fn federator_full(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(federator_binary())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("running federator");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("$ federator {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Whether the member's PostgreSQL takes writes (`None`: not reachable).
async fn writable(lab: &SharedLab, ns: &str, m: Member<'_>) -> Option<bool> {
    let c = pg(lab, ns, m, Duration::from_secs(3)).await?;
    let row = c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
    Some(!row.get::<_, bool>(0))
}

async fn events(lab: &SharedLab, ns: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(lab.admin("hub").await, ns);
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.type_.unwrap_or_default(),
                e.regarding.and_then(|r| r.kind).unwrap_or_default(),
            )
        })
        .collect()
}

/// A healthy pair (pg-a primary), the topology `pg` Ready under a controller, and the
/// two-primaries sampler running.
struct Setup {
    lab: &'static SharedLab,
    ns: TestNamespace,
    pair: testkit::Pair,
    topologies: Api<DistributedTopology>,
    _controller: Controller,
    load: Load,
}

impl Setup {
    async fn pair(test: &str) -> Self {
        Self::pair_with(test, |_| Vec::new()).await
    }

    /// `flags(namespace)`: extra flags of the controller.
    async fn pair_with(test: &str, flags: impl FnOnce(&str) -> Vec<String>) -> Self {
        let lab = testkit::lab_with_emulators().await;
        let ns = TestNamespace::create(test).await;
        ns.grant_federator().await;
        let pair = testkit::Pair::create(lab, ns.name()).await;
        let members = [pair.a, pair.b];
        let topologies = deploy(
            lab,
            ns.name(),
            &members,
            json!({"star": {}}),
            wide_timeouts(),
        )
        .await;
        let flags = flags(ns.name());
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let controller = Controller::start_with(lab, ns.name(), "", &flags);
        wait_condition(&topologies, kind::READY).await;
        let load = Load::start(lab, ns.name(), &members, false);
        Setup {
            lab,
            ns,
            pair,
            topologies,
            _controller: controller,
            load,
        }
    }
}

/// One hub Secret per `(name, uri)`, the URI under key `uri` (like CNPG's `-app` Secret).
async fn uri_secrets(lab: &SharedLab, ns: &str, secrets: &[(&str, String)]) {
    let api: Api<Secret> = Api::namespaced(lab.admin("hub").await, ns);
    for (name, uri) in secrets {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"uri": uri},
        }))
        .unwrap();
        api.create(&PostParams::default(), &secret)
            .await
            .expect("creating the Secret");
    }
}

/// `pg-a-app` and `pg-b-app`: the pair's URIs, as `apply_drill` names them.
async fn pair_uri_secrets(lab: &SharedLab, ns: &str, pair: &testkit::Pair) {
    let secrets = [
        ("pg-a-app", dsn(lab, ns, pair.a)),
        ("pg-b-app", dsn(lab, ns, pair.b)),
    ];
    uri_secrets(lab, ns, &secrets).await;
}

/// Creates the drill `name` of topology `pg` (connections from the Secrets `pg-a-app` and
/// `pg-b-app`) with `spec` merged in, as `kubectl apply` would: no CLI annotation.
async fn apply_drill(
    lab: &SharedLab,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> Api<DisasterRecoveryDrill> {
    let api: Api<DisasterRecoveryDrill> = Api::namespaced(lab.admin("hub").await, ns);
    let mut full = json!({
        "topology": "pg",
        "connection": [
            {"member": "pg-a", "secretRef": {"name": "pg-a-app"}},
            {"member": "pg-b", "secretRef": {"name": "pg-b-app", "key": "uri"}},
        ],
    });
    for (k, v) in spec.as_object().expect("an object") {
        full[k] = v.clone();
    }
    let drill: DisasterRecoveryDrill = serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DisasterRecoveryDrill",
        "metadata": {"name": name},
        "spec": full,
    }))
    .unwrap();
    api.create(&PostParams::default(), &drill)
        .await
        .expect("creating the drill");
    api
}

/// Waits until the drill's phase is `phase`; returns its status.
async fn wait_phase(
    drills: &Api<DisasterRecoveryDrill>,
    name: &str,
    phase: DrillPhase,
) -> topology::drill_api::DisasterRecoveryDrillStatus {
    wait_for(
        &format!("drill {name} {phase:?}"),
        DEADLINE,
        || async move {
            let s = drills.get(name).await.ok()?.status?;
            (s.phase == Some(phase)).then_some(s)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_there_and_back_reports_canary_unavailability_and_rpo() {
    let Setup {
        lab,
        ns,
        pair,
        topologies,
        _controller,
        load,
    } = Setup::pair("drill-pair").await;
    let (a, b) = (pair.a, pair.b);

    let dsn_a = format!("pg-a={}", dsn(lab, ns.name(), a));
    let dsn_b = format!("pg-b={}", dsn(lab, ns.name(), b));
    let started = std::time::Instant::now();
    let (code, stdout) = federator(
        lab,
        &[
            "drill",
            "pg",
            "-n",
            ns.name(),
            "--to",
            b.name,
            "--return",
            "--dsn",
            &dsn_a,
            "--dsn",
            &dsn_b,
            "--timeout",
            "3m",
        ],
    )
    .await;
    println!(
        "drill took {:.2}s wall clock",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "the drill failed");
    assert!(stdout.contains("✓ VerifyReturn"), "{stdout}");
    load.finish().await;

    // The report in the drill's status.
    let drills: Api<DisasterRecoveryDrill> = Api::namespaced(lab.admin("hub").await, ns.name());
    let drill = drills.get("pg").await.expect("the drill object");
    let status = drill.status.clone().expect("a report");
    let canary = e2e::harness::drill::assert_there_and_back(&status, a, b);
    let writes = status.writes.clone().expect("probe counts");
    assert!(writes.acknowledged > 0 && writes.failed > 0, "{writes:?}");
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .expect("condition");
    assert_eq!(
        (condition.status.as_str(), condition.observed_generation),
        ("True", drill.metadata.generation)
    );

    // The original primary is primary again, on the topology and in PostgreSQL, with the canary.
    let topo = wait_condition(&topologies, kind::READY).await;
    assert_eq!(topo.spec.primary, a.name);
    assert_eq!(
        topo.status
            .as_ref()
            .and_then(|s| s.observed_primary.as_deref()),
        Some(a.name)
    );
    assert_eq!(writable(lab, ns.name(), a).await, Some(true));
    assert_eq!(writable(lab, ns.name(), b).await, Some(false));
    let on_a = pg(lab, ns.name(), a, Duration::from_secs(3))
        .await
        .expect("pg-a");
    let found: i64 = on_a
        .query_one(
            "SELECT count(*) FROM federator_drill WHERE kind = 'canary' AND value = $1",
            &[&canary.value],
        )
        .await
        .expect("canary query")
        .get(0);
    assert_eq!(found, 1);

    // The Markdown report: header, the six steps with durations, canary, both switchovers.
    let (code, md) = federator(lab, &["drill", "report", "pg", "-n", ns.name()]).await;
    assert_eq!(code, 0);
    assert!(
        md.starts_with(&format!("# Drill `{}/pg`: Succeeded\n", ns.name())),
        "{md}"
    );
    assert!(md.contains("| Moves | pg-a → pg-b, and back |"), "{md}");
    let timeline: Vec<&str> = md
        .lines()
        .filter(|l| l.ends_with("|") && l.contains(" s | Succeeded |"))
        .collect();
    assert_eq!(timeline.len(), 6, "{md}");
    for (i, (line, step)) in timeline
        .iter()
        .zip([
            "Preflight",
            "WriteCanary",
            "Switchover",
            "Verify",
            "SwitchBack",
            "VerifyReturn",
        ])
        .enumerate()
    {
        assert!(
            line.starts_with(&format!("| {} | {step} | ", i + 1)),
            "{line}"
        );
    }
    assert!(
        md.contains(&format!("| `{}` | pg-a |", canary.value)) && md.contains("| yes | yes |"),
        "{md}"
    );
    assert!(
        md.contains("| pg-a → pg-b | `") && md.contains("| pg-b → pg-a | `"),
        "{md}"
    );
    assert!(md.contains("| 0 | 0 ms |"), "RPO 0 in the table: {md}");

    // Events say the result, on the drill and on the topology.
    let seen = events(lab, ns.name()).await;
    for kind in ["DisasterRecoveryDrill", "DistributedTopology"] {
        assert!(
            seen.iter()
                .any(|(r, t, k)| r == "DrillSucceeded" && t == "Normal" && k == kind),
            "no DrillSucceeded Event on the {kind}: {seen:?}"
        );
    }
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_to_an_unreachable_member_fails_at_preflight_and_changes_nothing() {
    let Setup {
        lab,
        ns,
        pair,
        topologies,
        _controller: controller,
        load,
    } = Setup::pair("drill-fail").await;
    let (a, b) = (pair.a, pair.b);

    // URIs in hub Secrets, as CNPG's -app Secrets would give them; pg-b's points nowhere.
    uri_secrets(
        lab,
        ns.name(),
        &[
            ("pg-a-app", dsn(lab, ns.name(), a)),
            (
                "pg-b-app",
                "postgresql://postgres@127.0.0.1:1/postgres?sslmode=disable".to_owned(),
            ),
        ],
    )
    .await;
    // Applied as an object (no CLI): the controller runs it.
    let drills = apply_drill(lab, ns.name(), "to-b", json!({"to": b.name})).await;
    let status = wait_phase(&drills, "to-b", DrillPhase::Failed).await;

    let failure = status.failure.clone().expect("the failure");
    assert_eq!(
        (failure.step, failure.reason.as_str()),
        (DrillStepName::Preflight, "TargetUnreachable"),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("pg-b") && failure.message.contains("nothing was changed"),
        "{failure:?}"
    );
    assert!(
        !failure.message.contains("postgresql://"),
        "the URI leaked: {failure:?}"
    );
    assert!(
        status
            .runner
            .as_deref()
            .is_some_and(|r| r.starts_with("controller/")),
        "{status:?}"
    );
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .expect("condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "TargetUnreachable")
    );

    // Nothing moved: spec.primary, no operation in the history, exactly one primary.
    let topo: DistributedTopology = topologies.get("pg").await.expect("topology");
    assert_eq!(topo.spec.primary, a.name);
    let topo_status = topo.status.expect("status");
    assert!(
        topo_status.operation.is_none() && topo_status.history.is_empty(),
        "{topo_status:#?}"
    );
    assert_eq!(writable(lab, ns.name(), a).await, Some(true));
    assert_eq!(writable(lab, ns.name(), b).await, Some(false));

    let (code, md) = federator(lab, &["drill", "report", "to-b", "-n", ns.name()]).await;
    assert_eq!(code, 0);
    assert!(
        md.contains("Stopped at **Preflight** (TargetUnreachable): cannot connect to pg-b"),
        "{md}"
    );
    let seen = events(lab, ns.name()).await;
    assert!(
        seen.iter()
            .any(|(r, t, k)| r == "DrillFailed" && t == "Warning" && k == "DisasterRecoveryDrill"),
        "no DrillFailed Event: {seen:?}"
    );
    // What the FederatorDrillFailed alert reads, and the run counted once.
    let metrics = controller.probe_addr().await;
    let drill = format!(r#"namespace="{}",drill="to-b""#, ns.name());
    wait_metric(&metrics, "federator_drill_failed", &drill, 1.0).await;
    wait_metric(
        &metrics,
        "federator_drill_runs_total",
        r#"outcome="Failed""#,
        1.0,
    )
    .await;
    // The controller does not run it again for the same generation.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = drills
        .get("to-b")
        .await
        .expect("drill")
        .status
        .expect("status");
    assert_eq!(
        again.run_id, status.run_id,
        "the controller ran the drill twice"
    );
    load.finish().await;
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_drill_runs_once_at_its_time_on_the_controller_clock() {
    let clock = std::env::temp_dir().join(format!("federator-drill-clock-{}", std::process::id()));
    let _ = std::fs::remove_file(&clock);
    let clock_flag = clock.display().to_string();
    let Setup {
        lab,
        ns,
        pair,
        topologies,
        _controller,
        load,
    } = Setup::pair_with("drill-sched", |_| {
        vec!["--unsafe-test-clock".into(), clock_flag.clone()]
    })
    .await;
    let (a, b) = (pair.a, pair.b);
    pair_uri_secrets(lab, ns.name(), &pair).await;
    let drills = apply_drill(
        lab,
        ns.name(),
        "nightly",
        json!({"to": b.name, "return": true, "schedule": {"cron": "0 3 * * *", "timeZone": "UTC"}}),
    )
    .await;
    // The controller's clock jumps to two seconds before the scheduled time; its own loop
    // then starts the drill (the real date is years earlier: nothing else is due).
    std::fs::write(&clock, "2030-01-01T02:59:58Z").expect("writing the test clock");
    let status = wait_phase(&drills, "nightly", DrillPhase::Succeeded).await;
    load.finish().await;

    let at = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap();
    assert_eq!(
        status.last_schedule_time.as_ref().map(|t| t.0),
        Some(at("2030-01-01T03:00:00Z")),
        "{status:#?}"
    );
    assert!(
        status
            .runner
            .as_deref()
            .is_some_and(|r| r.starts_with("controller/")),
        "{status:?}"
    );
    let canary = status.canary.clone().expect("canary");
    assert_eq!(
        (canary.found_on_new_primary, canary.found_after_return),
        (Some(true), Some(true))
    );
    assert_eq!(status.switchovers.len(), 2);
    assert!(
        status
            .switchovers
            .iter()
            .all(|m| m.lost_writes == 0 && m.unavailable_millis.is_some())
    );
    let topo = wait_condition(&topologies, kind::READY).await;
    assert_eq!(topo.spec.primary, a.name);
    assert_eq!(writable(lab, ns.name(), a).await, Some(true));

    // The next time is recorded, and the same scheduled time does not run twice.
    wait_for("the next schedule time", DEADLINE, || async {
        let s = drills.get("nightly").await.ok()?.status?;
        (s.next_schedule_time.map(|t| t.0) == Some(at("2030-01-02T03:00:00Z"))).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let again = drills
        .get("nightly")
        .await
        .expect("drill")
        .status
        .expect("status");
    assert_eq!(
        (again.run_id, again.phase),
        (status.run_id, Some(DrillPhase::Succeeded))
    );
    let _ = std::fs::remove_file(&clock);
    pair.delete().await;
}

/// A short Lease, so that the next controller takes over within seconds.
const LEASE: [&str; 2] = ["--lease-seconds", "3"];

/// Slower shutdown checkpoint and promotion on both members: each switchover takes seconds, so
/// a controller can be stopped while the drill waits for it.
async fn slow_switchovers(pair: &testkit::Pair) {
    for (api, name) in [(&pair.api_a, pair.a.name), (&pair.api_b, pair.b.name)] {
        testkit::annotate(api, name, faults::SLOW_SHUTDOWN, Some("1500ms")).await;
        testkit::annotate(api, name, faults::SLOW_PROMOTION, Some("1500ms")).await;
    }
}

/// Waits until the drill's run is at `step` with switchover `leg` asked for and its generation
/// recorded (the drill waits for the controller's operation); returns the drill.
async fn wait_asked(
    drills: &Api<DisasterRecoveryDrill>,
    name: &str,
    step: DrillStepName,
    leg: usize,
) -> DisasterRecoveryDrill {
    wait_for(
        &format!("drill {name} waiting at {step} for switchover {leg}"),
        DEADLINE,
        || async move {
            let d = drills.get(name).await.ok()?;
            let s = d.status.as_ref()?;
            let at = s
                .steps
                .last()
                .filter(|s| s.outcome == DrillPhase::Running)?;
            let asked = s.switchovers.get(leg)?.generation.is_some();
            (at.name == step && asked).then_some(d.clone())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The report is whole: every step succeeded in order, the canary found after each move, both
/// moves with their operation and measurements, probe counts; Markdown and JSON say so.
async fn assert_whole_report(
    lab: &SharedLab,
    ns: &str,
    name: &str,
    status: &topology::drill_api::DisasterRecoveryDrillStatus,
    moves: &[(&str, &str)],
) {
    use DrillStepName::*;
    let expected: &[DrillStepName] = if moves.len() == 2 {
        &[
            Preflight,
            WriteCanary,
            Switchover,
            Verify,
            SwitchBack,
            VerifyReturn,
        ]
    } else {
        &[Preflight, WriteCanary, Switchover, Verify]
    };
    let steps: Vec<(DrillStepName, DrillPhase)> =
        status.steps.iter().map(|s| (s.name, s.outcome)).collect();
    let want: Vec<(DrillStepName, DrillPhase)> = expected
        .iter()
        .map(|s| (*s, DrillPhase::Succeeded))
        .collect();
    assert_eq!(steps, want, "{status:#?}");
    assert!(status.steps.iter().all(|s| s.finished_at.is_some()));
    let canary = status.canary.clone().expect("canary");
    assert_eq!(canary.found_on_new_primary, Some(true), "{canary:?}");
    if moves.len() == 2 {
        assert_eq!(canary.found_after_return, Some(true), "{canary:?}");
    }
    assert_eq!(status.switchovers.len(), moves.len(), "{status:#?}");
    for (m, (from, to)) in status.switchovers.iter().zip(moves) {
        assert_eq!((m.from.as_str(), m.to.as_str()), (*from, *to));
        assert!(
            m.operation_id
                .as_deref()
                .is_some_and(|id| id.ends_with(&format!("{from}-to-{to}"))),
            "{m:?}"
        );
        assert!(
            m.operation_millis.is_some() && m.unavailable_millis.is_some(),
            "{m:?}"
        );
        assert_eq!((m.lost_writes, m.rpo_millis), (0, 0), "{m:?}");
    }
    let writes = status.writes.clone().expect("probe counts");
    assert!(writes.acknowledged > 0, "{writes:?}");
    assert_eq!(status.failure, None);

    let (code, md) = federator(lab, &["drill", "report", name, "-n", ns]).await;
    assert_eq!(code, 0);
    assert!(
        md.starts_with(&format!("# Drill `{ns}/{name}`: Succeeded\n")),
        "{md}"
    );
    let rows = md
        .lines()
        .filter(|l| l.ends_with('|') && l.contains(" s | Succeeded |"))
        .count();
    assert_eq!(rows, expected.len(), "{md}");
    assert!(md.contains(&format!("| `{}` | ", canary.value)), "{md}");
    let (code, json) = federator(lab, &["drill", "report", name, "-n", ns, "-o", "json"]).await;
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).expect("the JSON report");
    let from_json: topology::drill_api::DisasterRecoveryDrillStatus =
        serde_json::from_value(json["status"].clone()).expect("a drill status");
    assert_eq!(&from_json, status, "the JSON report is the status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_resumes_after_kill_9_of_its_controller_at_two_steps() {
    let Setup {
        lab,
        ns,
        pair,
        topologies,
        _controller: mut controller,
        load,
    } = Setup::pair_with("drill-kill", |_| LEASE.map(String::from).to_vec()).await;
    let (a, b) = (pair.a, pair.b);
    slow_switchovers(&pair).await;
    pair_uri_secrets(lab, ns.name(), &pair).await;
    let drills = apply_drill(
        lab,
        ns.name(),
        "crash",
        json!({"to": b.name, "return": true, "timeout": "3m"}),
    )
    .await;

    let mut resumed_at = Vec::new();
    let mut acked_before_kill = Vec::new();
    for (i, (step, leg)) in [
        (DrillStepName::Switchover, 0),
        (DrillStepName::SwitchBack, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let before = wait_asked(&drills, "crash", step, leg).await;
        controller.kill().await;
        println!("kill -9 of the controller while the drill waits at {step}");
        let before = before.status.unwrap_or_default();
        let runner = before.runner.clone().unwrap_or_default();
        let acked = before.writes.clone().unwrap_or_default();
        assert!(
            !acked.acknowledged_seqs.is_empty(),
            "acknowledged probe writes are recorded with the status: {before:#?}"
        );
        acked_before_kill.push(acked);
        controller = Controller::start_with(lab, ns.name(), &format!("-{}", i + 1), &LEASE);
        // The next controller takes the run over where the status says it is.
        let resumed = wait_for(&format!("the run resumed at {step}"), DEADLINE, || async {
            let s = drills.get("crash").await.ok()?.status?;
            (s.resumes.len() > i).then_some(s)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let resume = &resumed.resumes[i];
        assert_eq!(resume.step, step, "{resumed:#?}");
        assert_ne!(resume.runner, runner, "{resumed:#?}");
        resumed_at.push(resume.step);
    }
    let status = wait_phase(&drills, "crash", DrillPhase::Succeeded).await;
    load.finish().await;

    assert_eq!(status.resumes.len(), 2, "{status:#?}");
    assert_eq!(
        resumed_at,
        [DrillStepName::Switchover, DrillStepName::SwitchBack]
    );
    assert_eq!(
        status.runner.as_deref(),
        Some(status.resumes[1].runner.as_str())
    );
    assert_whole_report(
        lab,
        ns.name(),
        "crash",
        &status,
        &[(a.name, b.name), (b.name, a.name)],
    )
    .await;
    // Both legs were taken over while waiting for the operation: unavailability measured from
    // the takeover, and the RPO check covers the writes the killed controller had recorded.
    let kept: std::collections::BTreeSet<i64> = status
        .writes
        .iter()
        .flat_map(|w| w.acknowledged_seqs.iter().flat_map(|[a, b]| *a..=*b))
        .collect();
    for (m, acked) in status.switchovers.iter().zip(&acked_before_kill) {
        assert!(m.measured_from.is_some(), "{m:?}");
        assert!(
            m.acknowledged_writes >= acked.acknowledged,
            "{} writes were acknowledged before the kill, {} checked: {m:?}",
            acked.acknowledged,
            m.acknowledged_writes
        );
        let before: Vec<i64> = acked
            .acknowledged_seqs
            .iter()
            .flat_map(|[a, b]| *a..=*b)
            .collect();
        assert!(
            before.iter().all(|s| kept.contains(s)),
            "the writes acknowledged before the kill are still in the record"
        );
    }
    // One run: the same run id throughout, one canary row, and the topology back on pg-a.
    let on_a = pg(lab, ns.name(), a, Duration::from_secs(3))
        .await
        .expect("pg-a");
    let canaries: i64 = on_a
        .query_one(
            "SELECT count(*) FROM federator_drill WHERE kind = 'canary' AND run_id = $1",
            &[&status.run_id],
        )
        .await
        .expect("canary query")
        .get(0);
    assert_eq!(canaries, 1);
    let topo = wait_condition(&topologies, kind::READY).await;
    assert_eq!(topo.spec.primary, a.name);
    assert_eq!(writable(lab, ns.name(), a).await, Some(true));
    assert_eq!(writable(lab, ns.name(), b).await, Some(false));
    drop(controller);
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_records_where_a_drill_stopped_and_the_elected_follower_resumes_it() {
    let Setup {
        lab,
        ns,
        pair,
        topologies,
        _controller: mut controller,
        load,
    } = Setup::pair_with("drill-term", |_| LEASE.map(String::from).to_vec()).await;
    let (a, b) = (pair.a, pair.b);
    // A second controller, following while the first leads: it must not touch the drill.
    let follower = Controller::start_with(lab, ns.name(), "-next", &LEASE);
    slow_switchovers(&pair).await;
    pair_uri_secrets(lab, ns.name(), &pair).await;
    let drills = apply_drill(
        lab,
        ns.name(),
        "term",
        json!({"to": b.name, "timeout": "3m"}),
    )
    .await;
    let asked = wait_asked(&drills, "term", DrillStepName::Switchover, 0).await;
    let asked = asked.status.expect("status");
    assert!(asked.resumes.is_empty(), "the follower acted: {asked:#?}");
    let exit = controller.terminate().await;
    assert!(
        exit.success(),
        "the controller's graceful shutdown: {exit:?}"
    );

    // Where it stopped, on the drill: still Running, the condition naming the step.
    let stopped = drills.get("term").await.expect("drill");
    let status = stopped.status.clone().expect("status");
    assert_eq!(status.phase, Some(DrillPhase::Running), "{status:#?}");
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .expect("condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("Unknown", "ControllerStopped"),
        "{condition:?}"
    );
    assert!(condition.message.contains("at Switchover"), "{condition:?}");
    assert!(
        status.writes.as_ref().is_some_and(|w| w.acknowledged > 0),
        "the stopped probe's counts are kept: {status:#?}"
    );

    // The follower is elected once the Lease is free and resumes the run.
    controller = follower;
    let status = wait_phase(&drills, "term", DrillPhase::Succeeded).await;
    load.finish().await;
    assert_eq!(
        status.resumes.iter().map(|r| r.step).collect::<Vec<_>>(),
        [DrillStepName::Switchover],
        "{status:#?}"
    );
    assert_ne!(status.runner, asked.runner, "{status:#?}");
    assert_whole_report(lab, ns.name(), "term", &status, &[(a.name, b.name)]).await;
    let topo = wait_condition(&topologies, kind::READY).await;
    assert_eq!(topo.spec.primary, b.name);
    assert_eq!(writable(lab, ns.name(), b).await, Some(true));
    assert_eq!(writable(lab, ns.name(), a).await, Some(false));
    drop(controller);
    pair.delete().await;
}

/// Both members' PostgreSQL serve TLS with one certificate from the lab CA for `127.0.0.1`
/// only (so `localhost` does not match it). Set with ALTER SYSTEM and a reload; plain
/// connections keep working (the lab's pg_hba has `host` lines).
async fn serve_tls(lab: &SharedLab, ns: &str, pair: &testkit::Pair) {
    let dir = lab.layout.root().join(format!("tls-{ns}"));
    std::fs::create_dir_all(&dir).expect("the certificate directory");
    let (cert, key) = e2e::lab::pki::issue_serving_cert(lab.layout.root(), &["127.0.0.1"])
        .expect("a serving certificate");
    let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert_file, cert).expect("writing the certificate");
    std::fs::write(&key_file, key).expect("writing the key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for path in [&dir, &cert_file, &key_file] {
        e2e::emulator::postgres::run::hand_over(path).expect("handing over to postgres");
    }
    for m in [pair.a, pair.b] {
        let c = pg(lab, ns, m, Duration::from_secs(3))
            .await
            .expect("the member's PostgreSQL");
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert_file.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key_file.display()),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            c.batch_execute(&sql).await.expect("configuring TLS");
        }
        wait_for("PostgreSQL serving TLS", DEADLINE, || async {
            let row = c.query_one("SHOW ssl", &[]).await.ok()?;
            (row.get::<_, String>(0) == "on").then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A ServiceAccount on the hub allowed what `federator drill` needs and, of Secrets, only
/// `get` on `secrets`; returns a kubeconfig file with its token.
async fn drill_runner_kubeconfig(
    lab: &SharedLab,
    ns: &str,
    secrets: &[&str],
) -> std::path::PathBuf {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let client = lab.admin("hub").await;
    let pp = PostParams::default();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "drill-runner"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&pp, &sa)
        .await
        .expect("the ServiceAccount");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "drill-runner"},
        "rules": [
            {"apiGroups": ["federator.dev"], "resources": ["disasterrecoverydrills"],
             "verbs": ["get", "create", "patch"]},
            {"apiGroups": ["federator.dev"], "resources": ["disasterrecoverydrills/status"],
             "verbs": ["get", "update"]},
            {"apiGroups": ["federator.dev"], "resources": ["distributedtopologies"],
             "verbs": ["get", "patch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
             "resourceNames": secrets},
        ],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &role)
        .await
        .expect("the Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "drill-runner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "drill-runner"},
        "subjects": [{"kind": "ServiceAccount", "name": "drill-runner", "namespace": ns}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &binding)
        .await
        .expect("the RoleBinding");
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let token = Api::<ServiceAccount>::namespaced(client, ns)
        .create_token_request("drill-runner", &pp, &request)
        .await
        .expect("a token")
        .status
        .expect("token status")
        .token;
    let mut config =
        kube::config::Kubeconfig::read_from(lab.layout.kubeconfig("hub")).expect("kubeconfig");
    for auth in &mut config.auth_infos {
        auth.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..Default::default()
        });
    }
    let path = lab
        .layout
        .root()
        .join(format!("drill-runner-{ns}.kubeconfig"));
    // JSON is YAML: kube reads it as a kubeconfig.
    let text = serde_json::to_string(&config).expect("kubeconfig JSON");
    std::fs::write(&path, text).expect("writing the kubeconfig");
    path
}

/// One Secret holding `ca.crt`.
async fn ca_secret(lab: &SharedLab, ns: &str, name: &str, pem: &str) {
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"ca.crt": pem}}))
            .unwrap();
    Api::<Secret>::namespaced(lab.admin("hub").await, ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the CA Secret");
}

/// A drill annotated as run by the CLI (the controller leaves it alone) with these connections.
async fn cli_drill(lab: &SharedLab, ns: &str, name: &str, connection: serde_json::Value) {
    let drill: DisasterRecoveryDrill = serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DisasterRecoveryDrill",
        "metadata": {"name": name, "annotations": {topology::drill_api::RUN_BY_ANNOTATION: "cli"}},
        "spec": {"topology": "pg", "to": "pg-b", "connection": connection},
    }))
    .unwrap();
    Api::<DisasterRecoveryDrill>::namespaced(lab.admin("hub").await, ns)
        .create(&PostParams::default(), &drill)
        .await
        .expect("creating the drill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_over_verify_full_tls_reads_only_the_secrets_its_spec_names() {
    let Setup {
        lab,
        ns,
        pair,
        topologies,
        _controller,
        load,
    } = Setup::pair("drill-tls").await;
    let (a, b) = (pair.a, pair.b);
    let ns = ns.name();
    serve_tls(lab, ns, &pair).await;
    let port = |m: Member<'_>| {
        let uri = dsn(lab, ns, m);
        uri.rsplit_once(':')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(port, _)| port.to_owned())
            .expect("a port in the URI")
    };
    let full = |host: &str, m| {
        format!(
            "postgresql://postgres@{host}:{}/postgres?sslmode=verify-full",
            port(m)
        )
    };
    uri_secrets(
        lab,
        ns,
        &[
            ("pg-a-tls", full("127.0.0.1", a)),
            ("pg-b-tls", full("127.0.0.1", b)),
            ("pg-a-by-name", full("localhost", a)),
        ],
    )
    .await;
    let lab_ca = e2e::lab::pki::ca_pem(lab.layout.root()).expect("the lab CA");
    ca_secret(lab, ns, "lab-ca", &lab_ca).await;
    let other = rcgen::generate_simple_self_signed(vec!["another-ca".to_owned()]).expect("a CA");
    ca_secret(lab, ns, "other-ca", &other.cert.pem()).await;
    let granted = ["pg-a-tls", "pg-b-tls", "pg-a-by-name", "lab-ca", "other-ca"];
    let kubeconfig = drill_runner_kubeconfig(lab, ns, &granted).await;
    let conn = |member: &str, secret: &str, ca: Option<&str>| {
        let mut c = json!({"member": member, "secretRef": {"name": secret}});
        if let Some(ca) = ca {
            c["caSecretRef"] = json!({"name": ca});
        }
        c
    };
    let drills: Api<DisasterRecoveryDrill> = Api::namespaced(lab.admin("hub").await, ns);

    // Refused before anything changes, each with the reason: a CA that did not sign the
    // server's certificate, a host name the certificate does not carry, no CA at all, and a
    // Secret the credential may not read.
    let refusals = [
        (
            "wrong-ca",
            json!([
                conn("pg-a", "pg-a-tls", Some("other-ca")),
                conn("pg-b", "pg-b-tls", Some("lab-ca"))
            ]),
            "PrimaryUnreachable",
            "UnknownIssuer",
        ),
        (
            "wrong-host",
            json!([
                conn("pg-a", "pg-a-by-name", Some("lab-ca")),
                conn("pg-b", "pg-b-tls", Some("lab-ca"))
            ]),
            "PrimaryUnreachable",
            "certificate not valid for name \"localhost\"",
        ),
        (
            "no-ca",
            json!([
                conn("pg-a", "pg-a-tls", None),
                conn("pg-b", "pg-b-tls", Some("lab-ca"))
            ]),
            "PrimaryUnreachable",
            "sslmode=verify-full needs the CA",
        ),
        (
            "not-granted",
            json!([
                conn("pg-a", "pg-a-tls", Some("lab-ca")),
                conn("pg-b", "pg-b-app", Some("lab-ca"))
            ]),
            "ConnectionUnreadable",
            "reading Secret pg-b-app",
        ),
    ];
    for (name, connection, reason, says) in refusals {
        cli_drill(lab, ns, name, connection).await;
        let (code, _) = federator_as(
            &kubeconfig,
            &[
                "drill",
                "pg",
                "-n",
                ns,
                "--to",
                b.name,
                "--drill-name",
                name,
            ],
        )
        .await;
        assert_eq!(code, 4, "drill {name} should fail (exit 4, docs/cli.md)");
        let status = drills
            .get(name)
            .await
            .expect("drill")
            .status
            .expect("status");
        let failure = status.failure.clone().expect("a failure");
        assert_eq!(
            (failure.step, failure.reason.as_str()),
            (DrillStepName::Preflight, reason),
            "{name}: {failure:?}"
        );
        assert!(failure.message.contains(says), "{name}: {failure:?}");
        if name == "not-granted" {
            assert!(
                failure.message.contains("is forbidden")
                    && failure.message.contains("resourceNames: [pg-b-app]"),
                "the error names the permission and the fix: {failure:?}"
            );
        }
        let topo = topologies.get("pg").await.expect("topology");
        assert_eq!(topo.spec.primary, a.name, "{name} changed spec.primary");
    }

    // verify-full with the lab CA, run with the narrow credential: the whole drill over TLS.
    cli_drill(
        lab,
        ns,
        "tls",
        json!([
            conn("pg-a", "pg-a-tls", Some("lab-ca")),
            conn("pg-b", "pg-b-tls", Some("lab-ca"))
        ]),
    )
    .await;
    let (code, stdout) = federator_as(
        &kubeconfig,
        &[
            "drill",
            "pg",
            "-n",
            ns,
            "--to",
            b.name,
            "--drill-name",
            "tls",
            "--timeout",
            "3m",
        ],
    )
    .await;
    assert_eq!(code, 0, "the TLS drill failed: {stdout}");
    load.finish().await;
    let status = drills
        .get("tls")
        .await
        .expect("drill")
        .status
        .expect("status");
    assert_eq!(status.phase, Some(DrillPhase::Succeeded), "{status:#?}");
    let canary = status.canary.clone().expect("canary");
    assert_eq!(canary.found_on_new_primary, Some(true));
    let m = &status.switchovers[0];
    assert_eq!((m.lost_writes, m.rpo_millis), (0, 0), "{m:?}");
    assert!(m.acknowledged_writes > 0, "{m:?}");
    // verify-full makes the connection require TLS (a plain session is never tried), so every
    // step above ran encrypted, against a certificate checked up to the lab CA and for its host.
    let topo = wait_condition(&topologies, kind::READY).await;
    assert_eq!(topo.spec.primary, b.name);
    pair.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cli_drill_is_continued_with_resume() {
    let Setup {
        lab,
        ns,
        pair,
        topologies,
        _controller,
        load,
    } = Setup::pair("drill-cli-resume").await;
    let (a, b) = (pair.a, pair.b);
    slow_switchovers(&pair).await;
    let ns = ns.name();
    let dsn_a = format!("pg-a={}", dsn(lab, ns, a));
    let dsn_b = format!("pg-b={}", dsn(lab, ns, b));
    let hub = lab.layout.kubeconfig("hub");
    let mut first = tokio::process::Command::new(federator_binary())
        .args(["drill", "pg", "-n", ns, "--to", b.name, "--return"])
        .args(["--dsn", &dsn_a, "--dsn", &dsn_b, "--timeout", "3m"])
        .env("KUBECONFIG", &hub)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting federator drill");
    let drills: Api<DisasterRecoveryDrill> = Api::namespaced(lab.admin("hub").await, ns);
    let asked = wait_asked(&drills, "pg", DrillStepName::Switchover, 0).await;
    first.start_kill().expect("kill -9 of the CLI");
    let _ = first.wait().await;
    let killed = asked.status.and_then(|s| s.runner).unwrap_or_default();

    // Starting it again is refused, and says how to continue; nothing changes.
    let (code, _, stderr) = federator_full(&hub, &["drill", "pg", "-n", ns, "--to", b.name]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("--resume"), "{stderr}");
    let still = drills
        .get("pg")
        .await
        .expect("drill")
        .status
        .expect("status");
    assert_eq!(
        (still.phase, still.runner.as_deref()),
        (Some(DrillPhase::Running), Some(killed.as_str()))
    );

    let (code, stdout) = federator(
        lab,
        &[
            "drill", "pg", "-n", ns, "--resume", "--dsn", &dsn_a, "--dsn", &dsn_b,
        ],
    )
    .await;
    assert_eq!(code, 0, "the resumed drill failed");
    assert!(
        stdout.contains(&format!("resuming the run of {killed}")),
        "{stdout}"
    );
    load.finish().await;
    let status = drills
        .get("pg")
        .await
        .expect("drill")
        .status
        .expect("status");
    assert_eq!(status.phase, Some(DrillPhase::Succeeded), "{status:#?}");
    assert_eq!(
        status.resumes.iter().map(|r| r.step).collect::<Vec<_>>(),
        [DrillStepName::Switchover]
    );
    assert!(
        status
            .runner
            .as_deref()
            .is_some_and(|r| r.starts_with("cli/") && r != killed),
        "{status:#?}"
    );
    assert_whole_report(
        lab,
        ns,
        "pg",
        &status,
        &[(a.name, b.name), (b.name, a.name)],
    )
    .await;
    let topo = wait_condition(&topologies, kind::READY).await;
    assert_eq!(topo.spec.primary, a.name);
    pair.delete().await;
}
