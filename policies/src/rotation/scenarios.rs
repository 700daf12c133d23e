//! Decisions end to end through the public API: a policy as a user writes it, validated, then
//! evaluated at injected instants.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use jiff::Timestamp;
use proptest::prelude::*;

use super::schedule::Schedule;
use super::*;

const MEMBERS: [&str; 3] = ["eu-west", "eu-central", "us-east"];

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A policy from its manifest form; `extra` is merged over a quarterly Berlin schedule.
fn policy(extra: serde_json::Value) -> ValidatedRotation {
    let mut manifest = serde_json::json!({
        "schedule": "0 2 1 1,4,7,10 *",
        "timeZone": "Europe/Berlin",
    });
    for (key, value) in extra.as_object().unwrap() {
        manifest[key] = value.clone();
    }
    let policy: RotationPolicy = serde_json::from_value(manifest).unwrap();
    policy.validate(&MEMBERS).unwrap()
}

fn healthy() -> RotationFacts {
    let member = MemberFacts {
        ready: true,
        replay_lag: Some(StdDuration::from_secs(1)),
        replay_lag_bytes: Some(1024),
    };
    RotationFacts {
        members: MEMBERS
            .iter()
            .map(|m| (m.to_string(), member.clone()))
            .collect(),
        operation_in_progress: false,
        last_failure: None,
        replay_lag_unobservable: false,
        topology_invalid: None,
    }
}

/// Decides with eu-west primary and the policy in effect since February 2026 (so the first
/// quarterly time it can act on is 2026-04-01).
fn decide_at(rotation: &ValidatedRotation, now: &str, facts: &RotationFacts) -> RotationDecision {
    decide_with(rotation, ts(now), None, facts)
}

fn decide_with(
    rotation: &ValidatedRotation,
    now: Timestamp,
    last_handled: Option<Timestamp>,
    facts: &RotationFacts,
) -> RotationDecision {
    rotation.decide(&RotationInput {
        now,
        history: RotationHistory {
            last_handled,
            active_since: ts("2026-02-01T00:00:00Z"),
        },
        primary: "eu-west",
        members: &MEMBERS,
        facts,
    })
}

fn rotate(target: &str, scheduled_for: &str) -> RotationDecision {
    RotationDecision::Rotate {
        target: target.into(),
        scheduled_for: ts(scheduled_for),
    }
}

fn skip(scheduled_for: &str, reason: SkipReason) -> RotationDecision {
    RotationDecision::Skip {
        scheduled_for: ts(scheduled_for),
        reason,
    }
}

fn wait(next_at: &str) -> RotationDecision {
    RotationDecision::Wait {
        next_at: Some(ts(next_at)),
    }
}

// 2026-04-01 02:00 in Berlin (CEST, +02:00).
const Q2: &str = "2026-04-01T00:00:00Z";
const Q2_DEADLINE: &str = "2026-04-01T00:15:00Z";

#[test]
fn a_rotation_fires_at_its_scheduled_instant_and_not_before() {
    let rotation = policy(serde_json::json!({}));
    let cases = [
        ("2026-03-31T23:59:59Z", wait(Q2)),
        (Q2, rotate("eu-central", Q2)),
        ("2026-04-01T00:10:00Z", rotate("eu-central", Q2)),
        (Q2_DEADLINE, rotate("eu-central", Q2)),
        (
            "2026-04-01T00:15:01Z",
            skip(
                Q2,
                SkipReason::MissedDeadline {
                    deadline: ts(Q2_DEADLINE),
                },
            ),
        ),
    ];
    for (now, expected) in cases {
        assert_eq!(decide_at(&rotation, now, &healthy()), expected, "at {now}");
    }
    // Once recorded, the same scheduled time is never decided again.
    let after = decide_with(
        &rotation,
        ts("2026-04-01T00:01:00Z"),
        Some(ts(Q2)),
        &healthy(),
    );
    assert_eq!(after, wait("2026-07-01T00:00:00Z"));
}

#[test]
fn a_freeze_period_holds_a_rotation_back() {
    let freeze = serde_json::json!({"freezePeriods": [{
        "start": "2026-03-25T00:00:00+01:00",
        "end": "2026-04-01T02:10:00+02:00",
        "reason": "quarter-end close",
    }]});
    let frozen = SkipReason::FreezePeriod {
        reason: "quarter-end close".into(),
        until: ts("2026-04-01T00:10:00Z"),
    };
    let skipping = policy(freeze.clone());
    assert_eq!(
        decide_at(&skipping, Q2, &healthy()),
        skip(Q2, frozen.clone())
    );

    // RunOnce: held while frozen, starts once the freeze ends, within the deadline.
    let mut run_once = freeze;
    run_once["missedSchedule"] = serde_json::json!({"policy": "RunOnce"});
    let run_once = policy(run_once);
    let held = RotationDecision::Hold {
        scheduled_for: ts(Q2),
        reason: frozen,
        deadline: ts(Q2_DEADLINE),
    };
    assert_eq!(decide_at(&run_once, Q2, &healthy()), held);
    assert_eq!(
        decide_at(&run_once, "2026-04-01T00:10:00Z", &healthy()),
        rotate("eu-central", Q2)
    );
    assert_eq!(
        run_once.next_rotation_after(ts("2026-03-30T00:00:00Z")),
        Some(ts("2026-04-01T00:10:00Z"))
    );
    // Skip passes over the frozen quarter in the "next rotation" shown in status.
    assert_eq!(
        skipping.next_rotation_after(ts("2026-03-30T00:00:00Z")),
        Some(ts("2026-07-01T00:00:00Z"))
    );
}

#[test]
fn a_failed_precondition_holds_a_rotation_back() {
    type Break = fn(&mut RotationFacts);
    let cases: [(Break, SkipReason); 6] = [
        (
            |f| f.operation_in_progress = true,
            SkipReason::OperationInProgress,
        ),
        (
            |f| f.members.get_mut("us-east").unwrap().ready = false,
            SkipReason::PreconditionFailed(PreconditionFailure::MembersNotReady {
                members: vec!["us-east".into()],
            }),
        ),
        (
            |f| {
                f.members.remove("us-east");
            },
            SkipReason::PreconditionFailed(PreconditionFailure::MembersNotReady {
                members: vec!["us-east".into()],
            }),
        ),
        (
            |f| {
                f.members.get_mut("eu-central").unwrap().replay_lag =
                    Some(StdDuration::from_secs(31))
            },
            SkipReason::PreconditionFailed(PreconditionFailure::ReplayLagTooHigh {
                member: "eu-central".into(),
                lag: "31s".into(),
                max: "30s".into(),
            }),
        ),
        (
            |f| f.members.get_mut("eu-central").unwrap().replay_lag = None,
            SkipReason::PreconditionFailed(PreconditionFailure::ReplayLagUnknown {
                member: "eu-central".into(),
            }),
        ),
        (
            |f| f.last_failure = Some(ts("2026-03-31T12:00:00Z")),
            SkipReason::PreconditionFailed(PreconditionFailure::RecentFailure {
                failed_at: ts("2026-03-31T12:00:00Z"),
                cooldown_until: ts("2026-04-01T12:00:00Z"),
            }),
        ),
    ];
    let rotation = policy(serde_json::json!({}));
    for (break_it, reason) in cases {
        let mut facts = healthy();
        break_it(&mut facts);
        assert_eq!(decide_at(&rotation, Q2, &facts), skip(Q2, reason));
    }
}

#[test]
fn preconditions_that_are_switched_off_are_not_checked() {
    let relaxed = policy(serde_json::json!({"preconditions": {
        "allMembersReady": false,
        "maxReplayLagBytes": 2048,
        "failureCooldown": "1h",
    }}));
    let mut facts = healthy();
    facts.members.get_mut("us-east").unwrap().ready = false; // not the target
    facts.last_failure = Some(ts("2026-03-31T22:00:00Z")); // two hours before
    assert_eq!(decide_at(&relaxed, Q2, &facts), rotate("eu-central", Q2));
    // The target itself must be Ready and within the byte limit whatever else is relaxed.
    facts
        .members
        .get_mut("eu-central")
        .unwrap()
        .replay_lag_bytes = Some(4096);
    let too_far = SkipReason::PreconditionFailed(PreconditionFailure::ReplayLagTooHigh {
        member: "eu-central".into(),
        lag: "4096 bytes".into(),
        max: "2048 bytes".into(),
    });
    assert_eq!(decide_at(&relaxed, Q2, &facts), skip(Q2, too_far));
    facts.members.get_mut("eu-central").unwrap().ready = false;
    let not_ready = SkipReason::PreconditionFailed(PreconditionFailure::MembersNotReady {
        members: vec!["eu-central".into()],
    });
    assert_eq!(decide_at(&relaxed, Q2, &facts), skip(Q2, not_ready));
}

/// Berlin springs forward on 2026-03-29 (02:00 CET → 03:00 CEST) and falls back on 2026-10-25
/// (03:00 CEST → 02:00 CET), so 02:30 does not exist on the first day and happens twice on the
/// second. (01:30, the fall-back example people often think of, is not ambiguous in Berlin.)
#[test]
fn dst_transitions_in_berlin_give_the_documented_instants() {
    let daily = Schedule::parse(
        "30 2 * * *",
        jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
    )
    .unwrap();
    let cases = [
        // (after, next scheduled instant)
        ("2026-03-28T00:00:00Z", "2026-03-28T01:30:00Z"), // 02:30 CET
        ("2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z"), // no 02:30: 03:00 CEST, after the gap
        ("2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"), // 02:30 CEST
        ("2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z"), // the first 02:30 (CEST)...
        ("2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"), // ...and not the second (CET)
    ];
    for (after, expected) in cases {
        assert_eq!(
            daily.next_after(ts(after)),
            Some(ts(expected)),
            "after {after}"
        );
    }
    // In New York the clock falls back from 02:00 EDT to 01:00 EST (2026-11-01), so 01:30 is
    // the ambiguous time there: it happens once, at 01:30 EDT.
    let new_york = Schedule::parse(
        "30 1 * * *",
        jiff::tz::TimeZone::get("America/New_York").unwrap(),
    )
    .unwrap();
    assert_eq!(
        new_york.next_after(ts("2026-10-31T06:00:00Z")),
        Some(ts("2026-11-01T05:30:00Z"))
    );
    assert_eq!(
        new_york.next_after(ts("2026-11-01T05:30:00Z")),
        Some(ts("2026-11-02T06:30:00Z"))
    );
    // The backward search used by `decide` agrees, also from inside the repeated hour.
    for (now, expected) in [
        ("2026-03-29T01:00:30Z", "2026-03-29T01:00:00Z"),
        ("2026-10-25T01:45:00Z", "2026-10-25T00:30:00Z"),
    ] {
        assert_eq!(
            daily.latest_at_or_before(ts(now)),
            Some(ts(expected)),
            "before {now}"
        );
    }
}

#[test]
fn a_rotation_on_a_dst_day_fires_once_at_the_documented_instant() {
    let spring = policy(serde_json::json!({"schedule": "30 2 29 3 *"}));
    assert_eq!(
        decide_at(&spring, "2026-03-29T00:59:59Z", &healthy()),
        wait("2026-03-29T01:00:00Z")
    );
    assert_eq!(
        decide_at(&spring, "2026-03-29T01:00:00Z", &healthy()),
        rotate("eu-central", "2026-03-29T01:00:00Z")
    );
    let fall = policy(serde_json::json!({"schedule": "30 2 25 10 *"}));
    let first = "2026-10-25T00:30:00Z";
    assert_eq!(
        decide_at(&fall, first, &healthy()),
        rotate("eu-central", first)
    );
    // When the clock reads 02:30 again, an hour later, nothing is due.
    let second = decide_with(
        &fall,
        ts("2026-10-25T01:30:00Z"),
        Some(ts(first)),
        &healthy(),
    );
    assert_eq!(second, wait("2027-10-25T00:30:00Z"));
}

/// Like a CronJob: after downtime only the latest missed time counts, and only within the
/// starting deadline.
#[test]
fn missed_schedules_behave_like_a_cronjob() {
    let run_once = policy(serde_json::json!({
        "missedSchedule": {"policy": "RunOnce", "startingDeadline": "2h"},
    }));
    let last = Some(ts("2026-01-01T01:00:00Z"));
    let q3 = "2026-07-01T00:00:00Z";
    // Down from January to an hour after the Q3 time: Q2 is dropped, Q3 runs once.
    let late = decide_with(&run_once, ts("2026-07-01T01:00:00Z"), last, &healthy());
    assert_eq!(late, rotate("eu-central", q3));
    let too_late = decide_with(&run_once, ts("2026-07-01T02:00:01Z"), last, &healthy());
    assert_eq!(
        too_late,
        skip(
            q3,
            SkipReason::MissedDeadline {
                deadline: ts("2026-07-01T02:00:00Z")
            }
        )
    );
    // Skip with a deadline of 15m: a blocker at the scheduled time skips it at once, but a
    // controller that comes back within the deadline still starts it.
    let skipping = policy(serde_json::json!({}));
    let mut busy = healthy();
    busy.operation_in_progress = true;
    assert_eq!(
        decide_at(&skipping, Q2, &busy),
        skip(Q2, SkipReason::OperationInProgress)
    );
    assert_eq!(
        decide_at(&skipping, "2026-04-01T00:14:00Z", &healthy()),
        rotate("eu-central", Q2)
    );
}

#[test]
fn a_new_policy_does_not_act_on_the_past() {
    let rotation = policy(serde_json::json!({}));
    let decision = rotation.decide(&RotationInput {
        now: ts("2026-04-01T00:05:00Z"),
        history: RotationHistory {
            last_handled: None,
            active_since: ts("2026-04-01T00:01:00Z"),
        },
        primary: "eu-west",
        members: &MEMBERS,
        facts: &healthy(),
    });
    assert_eq!(decision, wait("2026-07-01T00:00:00Z"));
}

#[test]
fn a_suspended_policy_skips_each_due_time_and_shows_no_next_rotation() {
    let rotation = policy(serde_json::json!({"suspend": true}));
    assert_eq!(
        decide_at(&rotation, "2026-03-31T00:00:00Z", &healthy()),
        wait(Q2)
    );
    assert_eq!(
        decide_at(&rotation, Q2, &healthy()),
        skip(Q2, SkipReason::Suspended)
    );
    assert_eq!(rotation.next_rotation_after(ts(Q2)), None);
}

#[test]
fn maintenance_windows_gate_the_start() {
    // Q2's 02:00 is a Wednesday; the window is weekends 01:00–05:00.
    let windows = serde_json::json!([
        {"days": ["Saturday", "Sunday"], "start": "01:00", "end": "05:00"},
    ]);
    let skipping = policy(serde_json::json!({"maintenanceWindows": windows}));
    assert_eq!(
        decide_at(&skipping, Q2, &healthy()),
        skip(Q2, SkipReason::OutsideMaintenanceWindow)
    );
    // RunOnce with a 4-day deadline: held until the window opens on Saturday 01:00 CEST.
    let run_once = policy(serde_json::json!({
        "maintenanceWindows": windows,
        "missedSchedule": {"policy": "RunOnce", "startingDeadline": "96h"},
    }));
    assert!(matches!(
        decide_at(&run_once, Q2, &healthy()),
        RotationDecision::Hold {
            reason: SkipReason::OutsideMaintenanceWindow,
            ..
        }
    ));
    let saturday = "2026-04-03T23:00:00Z";
    assert_eq!(
        decide_at(&run_once, saturday, &healthy()),
        rotate("eu-central", Q2)
    );
    assert_eq!(
        run_once.next_rotation_after(ts("2026-03-30T00:00:00Z")),
        Some(ts(saturday))
    );
}

#[test]
fn the_explicit_order_is_followed_and_skips_removed_members() {
    let rotation = policy(serde_json::json!({
        "order": {"explicit": ["us-east", "eu-west", "eu-central"]},
    }));
    assert_eq!(
        decide_at(&rotation, Q2, &healthy()),
        rotate("eu-central", Q2)
    );
    assert_eq!(rotation.target("eu-central", &MEMBERS), Some("us-east"));
    assert_eq!(rotation.target("us-east", &MEMBERS), Some("eu-west"));
    // eu-central left the topology after validation: it is passed over.
    assert_eq!(
        rotation.target("eu-west", &["eu-west", "us-east"]),
        Some("us-east")
    );
    assert_eq!(rotation.target("eu-west", &["eu-west"]), None);
}

/// The schema is what `kubectl explain` shows and what the apiserver enforces: every property
/// documented, and structural (no `oneOf`/`anyOf`, which a CRD schema rejects).
#[test]
fn the_schema_is_documented_and_structural() {
    fn walk(
        path: &str,
        schema: &serde_json::Value,
        defs: &serde_json::Value,
        out: &mut Vec<String>,
    ) {
        let schema = match schema["$ref"].as_str() {
            Some(r) => &defs[r.trim_start_matches("#/$defs/")],
            None => schema,
        };
        for key in ["oneOf", "anyOf"] {
            if schema.get(key).is_some() && schema["type"] != "null" {
                // `Option<T>` is rendered as anyOf [T, null] by schemars and flattened to
                // `nullable` by kube; any other union is not structural.
                let union = schema[key].as_array().unwrap();
                let nullable_pair = union.len() == 2 && union.iter().any(|s| s["type"] == "null");
                if !nullable_pair {
                    out.push(format!("{path}: {key}"));
                }
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, sub) in props {
                let here = format!("{path}.{name}");
                if sub["description"].as_str().unwrap_or_default().is_empty() {
                    out.push(format!("{here}: no description"));
                }
                walk(&here, sub, defs, out);
            }
        }
        if schema["items"].is_object() {
            walk(&format!("{path}[]"), &schema["items"], defs, out);
        }
    }
    let schema = serde_json::to_value(schemars::schema_for!(RotationPolicy)).unwrap();
    let mut problems = Vec::new();
    walk("rotation", &schema, &schema["$defs"], &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The example in docs/rotations.md parses and validates, so the documentation cannot drift.
#[test]
fn the_documented_example_is_valid() {
    let doc = include_str!("../../../docs/rotations.md");
    let start = doc
        .find("```yaml\n")
        .expect("docs/rotations.md has a yaml example")
        + 8;
    let yaml = &doc[start..start + doc[start..].find("```").unwrap()];
    #[derive(serde::Deserialize)]
    struct Spec {
        rotation: RotationPolicy,
    }
    #[derive(serde::Deserialize)]
    struct Example {
        spec: Spec,
    }
    let example: Example = serde_saphyr::from_str(yaml).unwrap();
    let rotation = example.spec.rotation.validate(&MEMBERS).unwrap();
    assert!(
        rotation
            .next_rotation_after(ts("2026-01-01T00:00:00Z"))
            .is_some()
    );
}

fn instant_in_2026() -> impl Strategy<Value = Timestamp> {
    let start = ts("2026-01-01T00:00:00Z").as_second();
    (start..start + 365 * 86_400).prop_map(|s| Timestamp::from_second(s).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// For any instant, the latest scheduled time at or before it and the next one after that
    /// bracket it, across both Berlin DST changes (a daily 02:30 hits the gap and the fold).
    #[test]
    fn schedule_searches_agree_in_both_directions(now in instant_in_2026()) {
        let daily = Schedule::parse("30 2 * * *", jiff::tz::TimeZone::get("Europe/Berlin").unwrap())
            .unwrap();
        let latest = daily.latest_at_or_before(now).unwrap();
        let next = daily.next_after(latest).unwrap();
        prop_assert!(latest <= now && now < next, "{latest} <= {now} < {next}");
        prop_assert!(next.duration_since(latest).as_hours() <= 25);
    }

    /// Whatever the facts and the time, a rotation starts only at or after its scheduled time,
    /// within the deadline, and never to the member that is already primary; waiting always
    /// points into the future.
    #[test]
    fn decisions_respect_time_and_never_target_the_primary(
        now in instant_in_2026(),
        primary in 0usize..3,
        handled_days_before in proptest::option::of(0i64..400),
        ready in proptest::collection::vec(any::<bool>(), 3),
        schedule in proptest::sample::select(vec!["0 2 1 * *", "30 2 * * *", "15 */6 * * 1-5"]),
        run_once in any::<bool>(),
    ) {
        let policy_name = if run_once { "RunOnce" } else { "Skip" };
        let rotation = policy(serde_json::json!({
            "schedule": schedule,
            "order": {"explicit": ["us-east", "eu-central", "eu-west"]},
            "missedSchedule": {"policy": policy_name, "startingDeadline": "1h"},
        }));
        let mut facts = healthy();
        for (member, ready) in MEMBERS.iter().zip(ready) {
            facts.members.get_mut(*member).unwrap().ready = ready;
        }
        let last_handled = handled_days_before
            .map(|days| Timestamp::from_second(now.as_second() - days * 86_400).unwrap());
        let decision = rotation.decide(&RotationInput {
            now,
            history: RotationHistory { last_handled, active_since: ts("2025-12-01T00:00:00Z") },
            primary: MEMBERS[primary],
            members: &MEMBERS,
            facts: &facts,
        });
        match decision {
            RotationDecision::Rotate { target, scheduled_for } => {
                prop_assert_ne!(target.as_str(), MEMBERS[primary]);
                prop_assert!(scheduled_for <= now);
                prop_assert!(now.duration_since(scheduled_for).as_secs() <= 3600);
                prop_assert!(last_handled.is_none_or(|h| scheduled_for > h));
                prop_assert!(facts.members.values().all(|m| m.ready));
            }
            RotationDecision::Wait { next_at } => {
                prop_assert!(next_at.is_some_and(|t| t > now));
            }
            RotationDecision::Hold { scheduled_for, deadline, .. } => {
                prop_assert!(run_once);
                prop_assert!(scheduled_for <= now && now <= deadline);
            }
            RotationDecision::Skip { scheduled_for, .. } => {
                prop_assert!(scheduled_for <= now);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The "next rotation" shown in status is a time at which `decide` really rotates (given
    /// healthy facts): never inside a freeze, never outside a window, never in the past.
    #[test]
    fn the_next_rotation_in_status_is_one_decide_would_start(
        now in instant_in_2026(),
        freeze_from_day in 0i64..365,
        freeze_days in 1i64..60,
        run_once in any::<bool>(),
    ) {
        let day = |d: i64| Timestamp::from_second(ts("2026-01-01T00:00:00Z").as_second() + d * 86_400).unwrap();
        let (freeze_start, freeze_end) = (day(freeze_from_day), day(freeze_from_day + freeze_days));
        let rotation = policy(serde_json::json!({
            "schedule": "0 3 * * *",
            "maintenanceWindows": [{"days": ["Saturday", "Sunday"], "start": "01:00", "end": "05:00"}],
            "freezePeriods": [{"start": freeze_start, "end": freeze_end, "reason": "freeze"}],
            "missedSchedule": {
                "policy": if run_once { "RunOnce" } else { "Skip" },
                "startingDeadline": "48h",
            },
        }));
        let next = rotation.next_rotation_after(now).unwrap();
        prop_assert!(next > now);
        prop_assert!(!(freeze_start <= next && next < freeze_end));
        let decision = rotation.decide(&RotationInput {
            now: next,
            history: RotationHistory { last_handled: None, active_since: now },
            primary: "eu-west",
            members: &MEMBERS,
            facts: &healthy(),
        });
        prop_assert!(matches!(decision, RotationDecision::Rotate { .. }), "{decision:?} at {next}");
    }
}

#[test]
fn facts_default_to_not_ready_so_missing_data_never_rotates() {
    let rotation = policy(serde_json::json!({}));
    let empty = RotationFacts {
        members: BTreeMap::new(),
        ..RotationFacts::default()
    };
    assert!(matches!(
        decide_at(&rotation, Q2, &empty),
        RotationDecision::Skip {
            reason: SkipReason::PreconditionFailed(_),
            ..
        }
    ));
}

#[test]
fn without_a_lag_source_the_lag_limits_are_not_checked_but_readiness_is() {
    let rotation = policy(serde_json::json!({"preconditions": {"maxReplayLagBytes": 1}}));
    let mut facts = healthy();
    for member in facts.members.values_mut() {
        member.replay_lag = None;
        member.replay_lag_bytes = None;
    }
    facts.replay_lag_unobservable = true;
    assert_eq!(decide_at(&rotation, Q2, &facts), rotate("eu-central", Q2));
    facts.members.get_mut("eu-central").unwrap().ready = false;
    let not_ready = SkipReason::PreconditionFailed(PreconditionFailure::MembersNotReady {
        members: vec!["eu-central".into()],
    });
    assert_eq!(decide_at(&rotation, Q2, &facts), skip(Q2, not_ready));
}

#[test]
fn an_invalid_topology_never_rotates_and_a_not_ready_member_is_named_first() {
    let rotation = policy(serde_json::json!({}));
    let mut facts = healthy();
    facts.topology_invalid = Some("spec.members[2]: could not be read".into());
    let invalid = SkipReason::TopologyInvalid {
        problems: "spec.members[2]: could not be read".into(),
    };
    assert_eq!(decide_at(&rotation, Q2, &facts), skip(Q2, invalid));
    facts.members.get_mut("us-east").unwrap().ready = false;
    let not_ready = SkipReason::PreconditionFailed(PreconditionFailure::MembersNotReady {
        members: vec!["us-east".into()],
    });
    assert_eq!(decide_at(&rotation, Q2, &facts), skip(Q2, not_ready));
}

#[test]
fn recheck_is_the_next_schedule_or_when_a_hold_can_clear() {
    let freeze_until = "2026-04-01T00:10:00Z";
    let run_once = policy(serde_json::json!({
        "missedSchedule": {"policy": "RunOnce"},
        "freezePeriods": [{"start": "2026-03-25T00:00:00Z", "end": freeze_until, "reason": "close"}],
    }));
    let now = ts(Q2);
    let frozen = decide_at(&run_once, Q2, &healthy());
    assert!(
        matches!(frozen, RotationDecision::Hold { .. }),
        "{frozen:?}"
    );
    assert_eq!(run_once.recheck_at(&frozen, now), Some(ts(freeze_until)));

    // Held by a fact: only the deadline is known in advance (facts wake the controller).
    let mut facts = healthy();
    facts.members.get_mut("us-east").unwrap().ready = false;
    let plain = policy(serde_json::json!({"missedSchedule": {"policy": "RunOnce"}}));
    let held = decide_at(&plain, Q2, &facts);
    assert!(matches!(held, RotationDecision::Hold { .. }), "{held:?}");
    assert_eq!(
        plain.recheck_at(&held, now),
        Some(ts("2026-04-01T00:15:00.001Z"))
    );

    // Outside the window: when the next one opens (Berlin 02:05 = 00:05 UTC).
    let windowed = policy(serde_json::json!({
        "missedSchedule": {"policy": "RunOnce"},
        "maintenanceWindows": [{"days": ["Wednesday"], "start": "02:05", "end": "03:00"}],
    }));
    let outside = decide_at(&windowed, Q2, &healthy());
    assert!(
        matches!(outside, RotationDecision::Hold { .. }),
        "{outside:?}"
    );
    assert_eq!(
        windowed.recheck_at(&outside, now),
        Some(ts("2026-04-01T00:05:00Z"))
    );

    let waiting = decide_at(&plain, "2026-03-31T00:00:00Z", &healthy());
    assert_eq!(
        plain.recheck_at(&waiting, ts("2026-03-31T00:00:00Z")),
        Some(ts(Q2))
    );
    let rotating = decide_at(&plain, Q2, &healthy());
    assert_eq!(plain.recheck_at(&rotating, now), None);
}
