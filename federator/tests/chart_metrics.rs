//! The chart's PrometheusRule (`charts/federator/files/alerts.yaml`) and Grafana dashboard
//! (`charts/federator/files/dashboard.json`) use only metrics the binary exports, with labels
//! those metrics have: an alert on a metric that does not exist never fires, and one grouped by
//! a label that does not exist loses it silently. The exported names and labels are read from a
//! render of `Metrics` with every family given a sample.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use federator::controller::{Leadership, Metrics};
use federator::members::MemberPool;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{reflector, watcher};
use kubeconfigs::{CredentialError, Origin, Snapshot};
use serde_json::json;
use topology::api::{
    DistributedTopologyStatus, Hold, MemberStatus, Operation, Outcome, RotationDecisionRecord,
    RotationRecord, RotationStatus,
};
use topology::cnpg::Role;
use topology::drill_api::DisasterRecoveryDrill;
use topology::{DistributedTopology, OperationKind, StepKind};

/// Labels Prometheus adds to every scraped series, usable in any expression.
const TARGET_LABELS: [&str; 6] = ["instance", "job", "pod", "service", "endpoint", "le"];

fn chart_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/federator/files")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the rule and the dashboard, with where it is.
fn expressions() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (n, line) in chart_file("alerts.yaml").lines().enumerate() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            found.push((format!("alerts.yaml:{}", n + 1), expr.trim().to_owned()));
        }
    }
    fn walk(value: &serde_json::Value, found: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr", serde_json::Value::String(expr)) => {
                            found.push(("dashboard.json".to_owned(), expr.clone()));
                        }
                        _ => walk(v, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&chart_file("dashboard.json")).expect("dashboard.json is JSON");
    walk(&dashboard, &mut found);
    found
}

/// The `federator_*` series names an expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("federator_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The label names an expression uses: in `by (…)`, `on (…)`, `without (…)` and selectors.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for keyword in ["by", "on", "without", "group_left", "group_right"] {
        let mut rest = expr;
        while let Some(at) = rest.find(keyword) {
            let before_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
            let after = rest[at + keyword.len()..].trim_start();
            if before_ok
                && after.starts_with('(')
                && let Some(close) = after.find(')')
            {
                labels.extend(
                    after[1..close]
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            rest = &rest[at + keyword.len()..];
        }
    }
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        for matcher in rest[open + 1..open + close].split(',') {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                labels.insert(name);
            }
        }
        rest = &rest[open + close..];
    }
    labels
}

fn topology() -> DistributedTopology {
    let mut t: DistributedTopology = serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DistributedTopology",
        "metadata": {"name": "pg", "namespace": "db"},
        "spec": {"members": [], "shape": {"star": {}}, "primary": "a"}
    }))
    .expect("a topology");
    let mut op = Operation::new(
        "2-a-to-b".into(),
        OperationKind::Switchover,
        "a",
        "b",
        Timestamp::UNIX_EPOCH,
    );
    op.hold = Some(Hold {
        reason: "StepMemberUnreachable".into(),
        message: "b cannot be read".into(),
    });
    t.status = Some(DistributedTopologyStatus {
        operation: Some(op),
        members: vec![MemberStatus {
            name: "a".into(),
            role: Some(Role::Primary),
            ..MemberStatus::default()
        }],
        conditions: serde_json::from_value(json!([
            {"type": "Ready", "status": "False", "reason": "InProgress", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Degraded", "status": "True", "reason": "MemberUnreachable", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]))
        .expect("conditions"),
        ..DistributedTopologyStatus::default()
    });
    t
}

fn rotated(t: &DistributedTopology) -> DistributedTopologyStatus {
    let at = Time(Timestamp::UNIX_EPOCH);
    let mut status = t.status.clone().unwrap_or_default();
    status.rotation = Some(RotationStatus {
        schedule_digest: "d".into(),
        active_since: at.clone(),
        last_schedule_time: None,
        next_rotation_time: None,
        last_decision: None,
        last_skip: Some(RotationDecisionRecord {
            decision: "Skip".into(),
            reason: Some("FreezePeriod".into()),
            message: String::new(),
            scheduled_for: Some(at.clone()),
            time: at.clone(),
        }),
        last_rotation: Some(RotationRecord {
            scheduled_for: at.clone(),
            started_at: at,
            from: "a".into(),
            to: "b".into(),
        }),
    });
    status
}

fn drill() -> DisasterRecoveryDrill {
    serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DisasterRecoveryDrill",
        "metadata": {"name": "weekly", "namespace": "db"},
        "spec": {"topology": "pg", "to": "b", "connection": []},
        "status": {
            "phase": "Failed",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:10:00Z"
        }
    }))
    .expect("a drill")
}

fn region_switch() -> topology::region_api::RegionSwitch {
    serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "RegionSwitch",
        "metadata": {"name": "move-west", "namespace": "db"},
        "spec": {"from": "eu-central", "to": "eu-western"},
        "status": {
            "phase": "Holding",
            "topologies": [
                {"name": "pg", "from": "a", "to": "b", "state": "Held"},
                {"name": "pg2", "from": "c", "to": "d", "state": "Moved"}
            ]
        }
    }))
    .expect("a region switch")
}

/// Every exported series name (`_total`, `_bucket`, … as scraped) and the labels seen on it.
async fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let metrics = Metrics::new();
    metrics.attach_leadership(Leadership::always());
    let pool = MemberPool::new(["databases"]);
    pool.apply_credentials(&Snapshot {
        members: BTreeMap::new(),
        problems: vec![Arc::new(CredentialError::Invalid {
            member: Some("eu-south".into()),
            origin: Origin::File("/etc/federator/members/eu-south".into()),
            message: "no cluster".into(),
        })],
        complete: true,
    });
    metrics.attach_members(pool);
    let (topologies, mut writer) = reflector::store::<DistributedTopology>();
    let t = topology();
    writer.apply_watcher_event(&watcher::Event::Apply(t.clone()));
    metrics.attach_topologies(topologies);
    let (drills, mut writer) = reflector::store::<DisasterRecoveryDrill>();
    writer.apply_watcher_event(&watcher::Event::Apply(drill()));
    metrics.attach_drills(drills);
    let (switches, mut writer) = reflector::store::<topology::region_api::RegionSwitch>();
    writer.apply_watcher_event(&watcher::Event::Apply(region_switch()));
    metrics.attach_region_switches(switches);
    metrics.rotations(&t, &rotated(&t));
    metrics.drill_finished(&drill());
    metrics.reconciled();
    metrics.error("conflict");
    metrics.step_finished(StepKind::Promote, Duration::from_millis(5));
    metrics.hook_finished("beforeDemotion", false, Duration::from_millis(800));
    metrics.reacted(StepKind::Promote, Duration::from_millis(5));
    metrics.picked_up(StepKind::Promote, Duration::from_millis(1));
    metrics.status_written(true, Duration::from_millis(2));
    metrics.operation_finished(Outcome::Succeeded, Duration::from_secs(2));

    let text = metrics.render();
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_count", "_sum"],
                _ => &[""],
            };
            for suffix in suffixes {
                series.entry(format!("{name}{suffix}")).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = series.entry(line[..name_end].to_owned()).or_default();
            if let Some(open) = line.find('{') {
                let close = line.rfind('}').unwrap();
                for pair in line[open + 1..close].split("\",") {
                    if let Some((key, _)) = pair.split_once('=') {
                        labels.insert(key.trim().to_owned());
                    }
                }
            }
        }
    }
    series
}

#[tokio::test]
async fn the_chart_reads_only_exported_metrics_and_their_labels() {
    let series = exported().await;
    let expressions = expressions();
    assert!(
        expressions.len() >= 10,
        "the rule and the dashboard were not read: {expressions:?}"
    );
    let mut problems = Vec::new();
    for (place, expr) in &expressions {
        let names = metric_names(expr);
        let mut allowed: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
        for name in &names {
            match series.get(name) {
                Some(labels) => allowed.extend(labels.iter().map(String::as_str)),
                None => problems.push(format!("{place}: {name} is not exported ({expr})")),
            }
        }
        for label in label_names(expr) {
            if !allowed.contains(label.as_str()) {
                problems.push(format!(
                    "{place}: label {label} is on none of {names:?} ({expr})"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nexported: {series:#?}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn the_leader_reports_a_held_operation_its_reason_the_conditions_and_the_primaries() {
    let text = Metrics::render(&{
        let m = Metrics::new();
        m.attach_leadership(Leadership::always());
        let (store, mut writer) = reflector::store::<DistributedTopology>();
        writer.apply_watcher_event(&watcher::Event::Apply(topology()));
        m.attach_topologies(store);
        m
    });
    for needle in [
        "federator_leader 1",
        r#"federator_operation_held{namespace="db",topology="pg",reason="StepMemberUnreachable"} 1"#,
        r#"federator_operation_running{namespace="db",topology="pg"} 1"#,
        r#"federator_topology_ready{namespace="db",topology="pg",reason="InProgress"} 0"#,
        r#"federator_topology_degraded{namespace="db",topology="pg",reason="MemberUnreachable"} 1"#,
        r#"federator_topology_primaries{namespace="db",topology="pg"} 1"#,
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
}

#[test]
fn the_expression_parsing_finds_names_and_labels() {
    let expr = r#"sum by (topology, reason) (increase(federator_rotations_total{outcome="Skipped"}[1h])) > 0 and on (instance) federator_leader == 1"#;
    assert_eq!(
        metric_names(expr),
        ["federator_rotations_total", "federator_leader"]
    );
    let labels: Vec<String> = label_names(expr).into_iter().collect();
    assert_eq!(labels, ["instance", "outcome", "reason", "topology"]);
}

#[test]
fn every_alert_has_a_runbook() {
    let runbooks = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .expect("docs/operations.md");
    let alerts: Vec<String> = chart_file("alerts.yaml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|a| a.trim().to_owned())
        .collect();
    assert!(alerts.len() >= 5, "{alerts:?}");
    for alert in alerts {
        let heading = format!("\n### {alert}\n");
        assert!(
            runbooks.contains(&heading),
            "no runbook `### {alert}` in docs/operations.md"
        );
        let anchor = format!("docs/operations.md#{}", alert.to_lowercase());
        assert!(
            chart_file("alerts.yaml").contains(&anchor),
            "{alert}: runbook_url is not {anchor}"
        );
    }
}
