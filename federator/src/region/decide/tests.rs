use serde_json::json;
use topology::region::EntryState;
use topology::region_api::RegionSwitchSpec;

use super::*;

fn topo(
    name: &str,
    primary: &str,
    labels: serde_json::Value,
    status: serde_json::Value,
) -> DistributedTopology {
    serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DistributedTopology",
        "metadata": {"name": name, "namespace": "ns", "generation": 3, "resourceVersion": "77",
                     "labels": labels},
        "spec": {
            "members": [
                {"name": format!("{name}-a"), "cluster": "eu-central", "namespace": "ns"},
                {"name": format!("{name}-b"), "cluster": "eu-western", "namespace": "ns"}
            ],
            "shape": {"star": {}},
            "primary": format!("{name}-{primary}")
        },
        "status": status,
    }))
    .unwrap()
}

fn switch(name: &str, spec: serde_json::Value, status: serde_json::Value) -> RegionSwitch {
    let spec: RegionSwitchSpec = serde_json::from_value(spec).unwrap();
    let mut rs = RegionSwitch::new(name, spec);
    rs.metadata.namespace = Some("ns".into());
    rs.metadata.generation = Some(1);
    rs.status = serde_json::from_value(status).unwrap();
    rs
}

fn entry(name: &str, state: TopologyState, generation: Option<i64>) -> TopologyProgress {
    let mut e = TopologyProgress::new(name.into(), format!("{name}-a"), format!("{name}-b"), state);
    e.generation = generation;
    e.requested_at = Some(MicroTime("2026-12-06T10:00:00Z".parse().unwrap()));
    e
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn selection_moves_primaries_in_the_region_left_by_priority_and_reports_the_others() {
    let topologies = [
        topo("db1", "a", json!({}), json!(null)),
        topo("db2", "a", json!({PRIORITY_LABEL: "10"}), json!(null)),
        topo("db3", "b", json!({}), json!(null)),
    ];
    let rs = switch(
        "move",
        json!({"from": "eu-central", "to": "eu-western"}),
        json!(null),
    );
    let selected = select(&rs, &topologies, &BTreeMap::new()).unwrap();
    let names: Vec<(&str, TopologyState)> = selected
        .iter()
        .map(|t| (t.name.as_str(), t.state))
        .collect();
    assert_eq!(
        names,
        [
            ("db2", TopologyState::Pending),
            ("db1", TopologyState::Pending),
            ("db3", TopologyState::Skipped)
        ]
    );
    assert_eq!(
        (selected[0].from.as_str(), selected[0].to.as_str()),
        ("db2-a", "db2-b")
    );
    assert!(
        selected[2]
            .message
            .as_deref()
            .unwrap()
            .contains("not in eu-central"),
        "{:?}",
        selected[2].message
    );
    assert_eq!(summary(&selected), "0/2");
}

#[test]
fn a_topology_claimed_by_a_running_region_switch_refuses_the_second() {
    let topologies = [topo("db1", "a", json!({}), json!(null))];
    let running = switch(
        "first",
        json!({"from": "eu-central", "to": "eu-western"}),
        json!({"phase": "Running", "topologies": [
            {"name": "db1", "from": "db1-a", "to": "db1-b", "state": "Switching"}]}),
    );
    let done = switch(
        "old",
        json!({"from": "eu-central", "to": "eu-western"}),
        json!({"phase": "Succeeded", "topologies": [
            {"name": "db1", "from": "db1-a", "to": "db1-b", "state": "Moved"}]}),
    );
    let second = switch(
        "second",
        json!({"from": "eu-central", "to": "eu-western"}),
        json!(null),
    );
    let claimed = claims(&[running.clone(), done, second.clone()], "second");
    assert_eq!(claimed.get("db1").map(String::as_str), Some("first"));
    let err = select(&second, &topologies, &claimed).unwrap_err();
    assert!(
        err.to_string()
            .contains("already being moved by region switch first"),
        "{err}"
    );
    // A region switch never claims against itself.
    assert!(claims(&[running], "first").is_empty());
}

#[test]
fn a_region_no_member_uses_is_refused_naming_the_field_and_the_regions_in_use() {
    let topologies = [topo("db1", "a", json!({}), json!(null))];
    let rs = switch(
        "move",
        json!({"from": "eu-centrall", "to": "eu-western"}),
        json!(null),
    );
    let err = select(&rs, &topologies, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.from") && err.contains("eu-central, eu-western"),
        "{err}"
    );
}

#[test]
fn observation_follows_the_operation_of_the_recorded_generation() {
    let now = at("2026-12-06T10:00:05Z");
    let e = entry("db1", TopologyState::Switching, Some(3));
    let op = |extra: serde_json::Value| {
        let mut op = json!({"id": "3-db1-a-to-db1-b", "kind": "switchover", "from": "db1-a",
            "to": "db1-b", "step": "AwaitToken", "startedAt": "2026-12-06T10:00:01.000000Z"});
        for (k, v) in extra.as_object().unwrap() {
            op[k] = v.clone();
        }
        op
    };
    let running = topo("db1", "b", json!({}), json!({"operation": op(json!({}))}));
    assert_eq!(
        observe(&e, Some(&running), now, DEFAULT_TIMEOUT),
        Seen::Nothing
    );
    let held = topo(
        "db1",
        "b",
        json!({}),
        json!({"operation": op(json!({"hold": {"reason": "StepMemberUnreachable", "message": "db1-b"}}))}),
    );
    let Seen::News(Observation::SwitchoverHeld(why), None) =
        observe(&e, Some(&held), now, DEFAULT_TIMEOUT)
    else {
        panic!("not held");
    };
    assert!(why.contains("StepMemberUnreachable"), "{why}");
    let done = topo(
        "db1",
        "b",
        json!({}),
        json!({"history": [op(json!({"step": "ClearToken", "outcome": "Succeeded",
            "finishedAt": "2026-12-06T10:00:04.000000Z"}))]}),
    );
    assert_eq!(
        observe(&e, Some(&done), now, DEFAULT_TIMEOUT),
        Seen::News(
            Observation::SwitchoverSucceeded,
            Some("3-db1-a-to-db1-b".into())
        )
    );
    let rolled_back = topo(
        "db1",
        "a",
        json!({}),
        json!({"history": [op(json!({"outcome": "RolledBack", "rolledBack": true,
            "finishedAt": "2026-12-06T10:00:04.000000Z"}))]}),
    );
    assert!(matches!(
        observe(&e, Some(&rolled_back), now, DEFAULT_TIMEOUT),
        Seen::News(Observation::SwitchoverEnded(_), Some(_))
    ));
    assert!(matches!(
        observe(&e, None, now, DEFAULT_TIMEOUT),
        Seen::News(Observation::SwitchoverEnded(_), None)
    ));
}

#[test]
fn a_switchover_not_started_within_the_timeout_is_taken_back_at_the_version_seen() {
    let e = entry("db1", TopologyState::Switching, Some(3));
    let idle = topo("db1", "b", json!({}), json!({}));
    let timeout = Duration::from_secs(60);
    assert_eq!(
        observe(&e, Some(&idle), at("2026-12-06T10:00:59Z"), timeout),
        Seen::Nothing
    );
    let Seen::TakeBack {
        resource_version,
        why,
    } = observe(&e, Some(&idle), at("2026-12-06T10:01:00Z"), timeout)
    else {
        panic!("not taken back");
    };
    assert_eq!(resource_version.as_deref(), Some("77"));
    assert!(why.contains("set back to db1-a"), "{why}");
    // Not asked yet (no generation): nothing to observe.
    let unasked = entry("db1", TopologyState::Switching, None);
    assert_eq!(
        observe(&unasked, Some(&idle), at("2026-12-06T11:00:00Z"), timeout),
        Seen::Nothing
    );
}

#[test]
fn the_phase_is_succeeded_only_when_every_selected_topology_moved() {
    let moved = entry("db1", TopologyState::Moved, Some(3));
    let skipped = entry("db2", TopologyState::Skipped, None);
    let held = entry("db3", TopologyState::Held, Some(3));
    let failed = entry("db4", TopologyState::Failed, Some(3));
    assert_eq!(
        phase(Phase::Done, &[moved.clone(), skipped.clone()]),
        RegionSwitchPhase::Succeeded
    );
    assert_eq!(
        phase(Phase::Done, &[moved.clone(), held]),
        RegionSwitchPhase::Holding
    );
    assert_eq!(
        phase(Phase::Done, &[moved.clone(), failed.clone()]),
        RegionSwitchPhase::Failed
    );
    let c = condition(
        RegionSwitchPhase::Failed,
        &[moved, skipped, failed],
        None,
        Some(2),
        at("2026-12-06T10:00:00Z"),
    );
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "TopologyNotMoved")
    );
    assert!(c.message.starts_with("db4"), "{}", c.message);
    assert_eq!(c.observed_generation, Some(2));
    assert_eq!(
        entry("x", TopologyState::Aborted, None)
            .entry(&Default::default())
            .state,
        EntryState::Aborted
    );
}
