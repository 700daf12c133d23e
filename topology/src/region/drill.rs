//! Region drills, the pure part: the order of a run's steps, which databases a drill measures
//! (those its first region switch selected to move), the evidence a region switch's status holds
//! (hook timings, the objects that moved), and the report's checks. The executor
//! (`federator::region::drill`) reads and writes the hub and PostgreSQL around these.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use crate::region_api::{RegionSwitchPhase, RegionSwitchStatus, TopologyState};
use crate::region_drill_api::{
    CheckResult, DatabaseEvidence, HookTiming, Leg, MovedObject, RegionDrillStep,
};

/// The names of the drill's region switches: there, and back.
pub fn leg_names(drill: &str) -> [String; 2] {
    [format!("{drill}-there"), format!("{drill}-back")]
}

/// The step after `step`; `None` after `Done`. Without `return`, `VerifyThere` ends the run.
pub fn next_step(step: RegionDrillStep, return_to_original: bool) -> Option<RegionDrillStep> {
    use RegionDrillStep::*;
    Some(match step {
        Select => WriteCanaries,
        WriteCanaries => SwitchThere,
        SwitchThere => VerifyThere,
        VerifyThere if return_to_original => SwitchBack,
        VerifyThere => Done,
        SwitchBack => VerifyBack,
        VerifyBack => Done,
        Done => return None,
    })
}

/// How many region switches a run makes.
pub fn leg_count(return_to_original: bool) -> usize {
    if return_to_original { 2 } else { 1 }
}

/// Whether a region switch's selection is done: `Some(databases)` once it selected (every
/// topology it moves, with its primary and target), `Err(message)` when it was refused,
/// `None` while it has not looked yet.
pub fn selection(status: &RegionSwitchStatus) -> Option<Result<Vec<DatabaseEvidence>, String>> {
    if status.phase == Some(RegionSwitchPhase::Refused) {
        return Some(Err(status.message.clone().unwrap_or_default()));
    }
    // Not looked at yet.
    status.phase?;
    let moving: Vec<DatabaseEvidence> = status
        .topologies
        .iter()
        .filter(|t| t.state != TopologyState::Skipped)
        .map(|t| DatabaseEvidence {
            topology: t.name.clone(),
            primary: t.from.clone(),
            target: t.to.clone(),
            canary: None,
            canary_found: vec![],
            switchovers: vec![],
            writes: None,
        })
        .collect();
    if moving.is_empty() {
        return Some(Err(
            "no topology has its primary in spec.from (every one was skipped; see the region \
             switch's status): nothing to drill"
                .into(),
        ));
    }
    Some(Ok(moving))
}

/// The phase a region switch ended in, `None` while it runs (or is paused).
pub fn ended(status: &RegionSwitchStatus) -> Option<RegionSwitchPhase> {
    status.phase.filter(|p| {
        matches!(
            p,
            RegionSwitchPhase::Succeeded
                | RegionSwitchPhase::Failed
                | RegionSwitchPhase::Holding
                | RegionSwitchPhase::Refused
        )
    })
}

fn millis_between(from: &MicroTime, to: &MicroTime) -> u64 {
    from.0
        .duration_until(to.0)
        .as_millis()
        .clamp(0, u64::MAX as i128) as u64
}

/// Every hook the region switch `name` ran, with its timing, in status order.
pub fn hook_timings(name: &str, status: &RegionSwitchStatus) -> Vec<HookTiming> {
    status
        .topologies
        .iter()
        .flat_map(|t| {
            t.hooks.iter().map(|h| HookTiming {
                region_switch: name.to_owned(),
                topology: t.name.clone(),
                hook: h.hook.clone(),
                millis: millis_between(&h.started_at, &h.finished_at),
                ok: h.ok,
                detail: h.detail.clone(),
            })
        })
        .collect()
}

/// The topologies the region switch `name` selected to move, with where they ended.
pub fn moved(name: &str, status: &RegionSwitchStatus) -> Vec<MovedObject> {
    status
        .topologies
        .iter()
        .filter(|t| t.state != TopologyState::Skipped)
        .map(|t| MovedObject {
            region_switch: name.to_owned(),
            object: format!("DistributedTopology/{}", t.name),
            from: t.from.clone(),
            to: t.to.clone(),
            operation: t.operation.clone(),
            state: format!("{:?}", t.state),
        })
        .collect()
}

/// Milliseconds between two instants (0 if `to` is before `from`).
pub fn elapsed_millis(from: &MicroTime, to: &MicroTime) -> u64 {
    millis_between(from, to)
}

/// What the checks look at.
#[derive(Clone, Debug, Default)]
pub struct Evidence<'a> {
    /// How many region switches the run makes (2 with `return`).
    pub legs_expected: usize,
    pub legs: &'a [Leg],
    pub databases: &'a [DatabaseEvidence],
    pub hooks: &'a [HookTiming],
    pub moved: &'a [MovedObject],
    /// `spec.limits.maxWriteUnavailability`, in milliseconds.
    pub max_unavailable_millis: Option<u64>,
    /// `spec.limits.maxTotal`, in milliseconds.
    pub max_total_millis: Option<u64>,
    pub total_millis: Option<u64>,
}

pub const EVERY_DATABASE_MOVED: &str = "EveryDatabaseMoved";
pub const CANARIES_KEPT: &str = "CanariesKept";
pub const NO_ACKNOWLEDGED_WRITE_LOST: &str = "NoAcknowledgedWriteLost";
pub const HOOKS_SUCCEEDED: &str = "HooksSucceeded";
pub const WRITE_UNAVAILABILITY: &str = "WriteUnavailabilityWithinLimit";
pub const TOTAL_TIME: &str = "TotalTimeWithinLimit";

fn check(name: &str, failed: Vec<String>, ok: String) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        passed: failed.is_empty(),
        detail: if failed.is_empty() {
            ok
        } else {
            failed.join("; ")
        },
    }
}

/// The report's checks, in a fixed order; `TotalTimeWithinLimit` only with a limit. A database
/// with a leg not measured (the run stopped before it) fails the checks that need it.
pub fn checks(e: &Evidence<'_>) -> Vec<CheckResult> {
    let n = e.databases.len();
    let legs = e.legs_expected;

    let mut failed = Vec::new();
    for leg in 0..legs {
        match e.legs.get(leg) {
            Some(l) if l.outcome.as_deref() == Some("Succeeded") => {}
            Some(l) => failed.push(format!(
                "region switch {} ended {}",
                l.region_switch,
                l.outcome.as_deref().unwrap_or("not at all")
            )),
            None => failed.push(format!("region switch {} of {legs} never ran", leg + 1)),
        }
    }
    for m in e.moved.iter().filter(|m| m.state != "Moved") {
        failed.push(format!(
            "{} ({} → {}) is {} in {}",
            m.object, m.from, m.to, m.state, m.region_switch
        ));
    }
    let plural = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
    let moved_ok = format!(
        "{} moved {} each",
        plural(n, "database"),
        plural(legs, "time")
    );
    let moved = check(EVERY_DATABASE_MOVED, failed, moved_ok);

    let failed = e
        .databases
        .iter()
        .filter(|d| d.canary_found.len() < legs || d.canary_found.iter().any(|f| !f))
        .map(|d| {
            let found: Vec<String> = d.canary_found.iter().map(bool::to_string).collect();
            format!(
                "{}: canary found {} of {legs} times ([{}])",
                d.topology,
                d.canary_found.iter().filter(|f| **f).count(),
                found.join(", ")
            )
        })
        .collect();
    let canaries = check(
        CANARIES_KEPT,
        failed,
        format!("every database had its canary on each new primary ({n} × {legs})"),
    );

    let mut failed = Vec::new();
    let (mut acked, mut lost) = (0u64, 0u64);
    for d in e.databases {
        if d.switchovers.len() < legs {
            failed.push(format!(
                "{}: measured {} of {legs} switchovers",
                d.topology,
                d.switchovers.len()
            ));
        }
        for s in &d.switchovers {
            acked += s.acknowledged_writes;
            lost += s.lost_writes;
            if s.lost_writes > 0 {
                failed.push(format!(
                    "{}: {} of {} acknowledged writes missing on {} (RPO {} ms)",
                    d.topology, s.lost_writes, s.acknowledged_writes, s.to, s.rpo_millis
                ));
            }
        }
    }
    let rpo = check(
        NO_ACKNOWLEDGED_WRITE_LOST,
        failed,
        format!("{lost} of {acked} acknowledged writes lost (RPO 0 in every database)"),
    );

    let failed = e
        .hooks
        .iter()
        .filter(|h| !h.ok)
        .map(|h| {
            format!(
                "{} {} for {}: {}",
                h.region_switch, h.hook, h.topology, h.detail
            )
        })
        .collect();
    let hooks = check(
        HOOKS_SUCCEEDED,
        failed,
        if e.hooks.is_empty() {
            "no hook declared".into()
        } else {
            format!("{} hook runs, all done", e.hooks.len())
        },
    );

    let mut failed = Vec::new();
    let mut worst: Option<(u64, &str)> = None;
    for d in e.databases {
        for s in &d.switchovers {
            match s.unavailable_millis {
                None => failed.push(format!(
                    "{}: write-unavailability of {} → {} not measured",
                    d.topology, s.from, s.to
                )),
                Some(ms) => {
                    if worst.is_none_or(|(w, _)| ms > w) {
                        worst = Some((ms, &d.topology));
                    }
                    if let Some(limit) = e.max_unavailable_millis
                        && ms > limit
                    {
                        failed.push(format!(
                            "{}: writes refused {ms} ms ({} → {}), limit {limit} ms",
                            d.topology, s.from, s.to
                        ));
                    }
                }
            }
        }
    }
    let worst = worst
        .map(|(ms, db)| format!("longest {ms} ms ({db})"))
        .unwrap_or_else(|| "nothing measured".into());
    let unavailability = check(
        WRITE_UNAVAILABILITY,
        failed,
        match e.max_unavailable_millis {
            Some(limit) => format!("{worst}, limit {limit} ms"),
            None => format!("{worst}, no limit set"),
        },
    );

    let mut out = vec![moved, canaries, rpo, hooks, unavailability];
    if let Some(limit) = e.max_total_millis {
        let failed = match e.total_millis {
            Some(t) if t <= limit => vec![],
            Some(t) => vec![format!("the drill took {t} ms, limit {limit} ms")],
            None => vec!["the drill did not finish".into()],
        };
        let took = e.total_millis.unwrap_or_default();
        out.push(check(
            TOTAL_TIME,
            failed,
            format!("{took} ms, limit {limit} ms"),
        ));
    }
    out
}

/// `passed/checks`.
pub fn summary(checks: &[CheckResult]) -> String {
    format!(
        "{}/{}",
        checks.iter().filter(|c| c.passed).count(),
        checks.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_drill_api::DatabaseSwitchover;
    use proptest::prelude::*;

    fn switchover(unavailable: Option<u64>, lost: u64) -> DatabaseSwitchover {
        DatabaseSwitchover {
            from: "a".into(),
            to: "b".into(),
            unavailable_millis: unavailable,
            acknowledged_writes: 100,
            lost_writes: lost,
            rpo_millis: if lost > 0 { 30 } else { 0 },
        }
    }

    fn database(name: &str, found: Vec<bool>, sw: Vec<DatabaseSwitchover>) -> DatabaseEvidence {
        DatabaseEvidence {
            topology: name.into(),
            primary: format!("{name}-c"),
            target: format!("{name}-w"),
            canary: Some(format!("run-{name}-canary")),
            canary_found: found,
            switchovers: sw,
            writes: None,
        }
    }

    fn leg(name: &str, outcome: &str) -> Leg {
        Leg {
            region_switch: name.into(),
            from: "eu-central".into(),
            to: "eu-western".into(),
            started_at: None,
            finished_at: None,
            outcome: Some(outcome.into()),
        }
    }

    fn by_name<'a>(checks: &'a [CheckResult], name: &str) -> &'a CheckResult {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn steps_run_there_and_back_or_stop_after_the_first_verify() {
        use RegionDrillStep::*;
        let mut step = Select;
        let mut seen = vec![step];
        while let Some(next) = next_step(step, true) {
            seen.push(next);
            step = next;
        }
        assert_eq!(
            seen,
            [
                Select,
                WriteCanaries,
                SwitchThere,
                VerifyThere,
                SwitchBack,
                VerifyBack,
                Done
            ]
        );
        assert_eq!(next_step(VerifyThere, false), Some(Done));
        assert_eq!(leg_names("q4"), ["q4-there", "q4-back"]);
    }

    #[test]
    fn a_clean_run_passes_every_check_and_a_slow_one_fails_only_the_limit() {
        let legs = [leg("d-there", "Succeeded"), leg("d-back", "Succeeded")];
        let dbs = [
            database(
                "db1",
                vec![true, true],
                vec![switchover(Some(800), 0), switchover(Some(900), 0)],
            ),
            database(
                "db2",
                vec![true, true],
                vec![switchover(Some(0), 0), switchover(Some(1200), 0)],
            ),
        ];
        let mut e = Evidence {
            legs_expected: 2,
            legs: &legs,
            databases: &dbs,
            max_total_millis: Some(60_000),
            total_millis: Some(30_000),
            ..Evidence::default()
        };
        let all = checks(&e);
        assert_eq!(summary(&all), "6/6", "{all:#?}");
        assert_eq!(
            by_name(&all, EVERY_DATABASE_MOVED).detail,
            "2 databases moved 2 times each"
        );
        assert!(
            by_name(&all, WRITE_UNAVAILABILITY)
                .detail
                .contains("longest 1200 ms (db2)")
        );
        e.max_unavailable_millis = Some(1000);
        let all = checks(&e);
        assert_eq!(summary(&all), "5/6");
        let failed = by_name(&all, WRITE_UNAVAILABILITY);
        assert!(!failed.passed);
        assert_eq!(
            failed.detail,
            "db2: writes refused 1200 ms (a → b), limit 1000 ms"
        );
    }

    #[test]
    fn a_run_that_stopped_fails_what_it_could_not_measure() {
        let legs = [leg("d-there", "Failed")];
        let dbs = [database("db1", vec![], vec![])];
        let moved = [MovedObject {
            region_switch: "d-there".into(),
            object: "DistributedTopology/db1".into(),
            from: "db1-c".into(),
            to: "db1-w".into(),
            operation: None,
            state: "Failed".into(),
        }];
        let e = Evidence {
            legs_expected: 2,
            legs: &legs,
            databases: &dbs,
            moved: &moved,
            ..Evidence::default()
        };
        let all = checks(&e);
        let moved = by_name(&all, EVERY_DATABASE_MOVED);
        assert!(!moved.passed);
        assert!(moved.detail.contains("region switch d-there ended Failed"));
        assert!(moved.detail.contains("region switch 2 of 2 never ran"));
        assert!(
            moved
                .detail
                .contains("DistributedTopology/db1 (db1-c → db1-w) is Failed")
        );
        assert!(!by_name(&all, CANARIES_KEPT).passed);
        assert!(!by_name(&all, NO_ACKNOWLEDGED_WRITE_LOST).passed);
        assert!(by_name(&all, HOOKS_SUCCEEDED).passed);
    }

    proptest! {
        /// Whatever was measured: a database with a lost acknowledged write or a missing canary
        /// fails its check and names itself, and the drill passes only when every check does.
        #[test]
        fn a_loss_or_a_missing_canary_is_always_reported_failed(
            dbs in proptest::collection::vec(
                (proptest::collection::vec(any::<bool>(), 2),
                 proptest::collection::vec((proptest::option::of(0u64..10_000), 0u64..3), 2)),
                1..6),
            limit in proptest::option::of(0u64..10_000),
        ) {
            let dbs: Vec<DatabaseEvidence> = dbs
                .into_iter()
                .enumerate()
                .map(|(i, (found, sw))| database(
                    &format!("db{i}"),
                    found,
                    sw.into_iter().map(|(u, l)| switchover(u, l)).collect(),
                ))
                .collect();
            let legs = [leg("d-there", "Succeeded"), leg("d-back", "Succeeded")];
            let e = Evidence {
                legs_expected: 2,
                legs: &legs,
                databases: &dbs,
                max_unavailable_millis: limit,
                ..Evidence::default()
            };
            let all = checks(&e);
            let lost = by_name(&all, NO_ACKNOWLEDGED_WRITE_LOST);
            let canaries = by_name(&all, CANARIES_KEPT);
            for d in &dbs {
                if d.switchovers.iter().any(|s| s.lost_writes > 0) {
                    prop_assert!(!lost.passed);
                    prop_assert!(lost.detail.contains(&d.topology));
                }
                if d.canary_found.iter().any(|f| !f) {
                    prop_assert!(!canaries.passed);
                    prop_assert!(canaries.detail.contains(&d.topology));
                }
            }
            let too_slow = dbs.iter().flat_map(|d| &d.switchovers).any(|s| match s.unavailable_millis {
                None => true,
                Some(ms) => limit.is_some_and(|l| ms > l),
            });
            prop_assert_eq!(by_name(&all, WRITE_UNAVAILABILITY).passed, !too_slow);
            let clean = dbs.iter().all(|d| {
                d.canary_found.iter().all(|f| *f)
                    && d.switchovers.iter().all(|s| s.lost_writes == 0)
            }) && !too_slow;
            prop_assert_eq!(all.iter().all(|c| c.passed), clean);
        }
    }
}
