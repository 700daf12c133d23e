//! Assertions on a disaster-recovery drill's report shared by the emulator and real tiers
//! (`e2e/tests/drill.rs`, `real_drill.rs`).

use topology::drill_api::{Canary, DisasterRecoveryDrillStatus, DrillPhase, DrillStepName};

use crate::harness::testkit::Member;

/// A drill `a → b --return` that succeeded: every step in order, the canary written on `a`
/// found on `b` and after the return, both switchovers with their operation, a real
/// write-unavailability window, acknowledged writes and none lost (RPO 0). Prints each
/// switchover's figures; returns the canary.
pub fn assert_there_and_back(
    status: &DisasterRecoveryDrillStatus,
    a: Member<'_>,
    b: Member<'_>,
) -> Canary {
    assert_eq!(status.phase, Some(DrillPhase::Succeeded), "{status:#?}");
    assert_eq!(status.failure, None);
    assert_eq!(
        (status.from.as_deref(), status.to.as_deref()),
        (Some(a.name), Some(b.name))
    );
    let steps: Vec<(DrillStepName, DrillPhase)> =
        status.steps.iter().map(|s| (s.name, s.outcome)).collect();
    use DrillStepName::*;
    assert_eq!(
        steps,
        [
            Preflight,
            WriteCanary,
            Switchover,
            Verify,
            SwitchBack,
            VerifyReturn
        ]
        .map(|s| (s, DrillPhase::Succeeded))
        .to_vec()
    );
    for s in &status.steps {
        let end = s.finished_at.as_ref().expect("finished");
        assert!(end.0 >= s.started_at.0, "{s:?}");
    }
    let canary = status.canary.clone().expect("canary");
    assert_eq!(canary.written_on, a.name);
    assert_eq!(canary.found_on_new_primary, Some(true), "{canary:?}");
    assert_eq!(canary.found_after_return, Some(true), "{canary:?}");
    assert_eq!(status.switchovers.len(), 2, "{status:#?}");
    for (m, (from, to)) in status
        .switchovers
        .iter()
        .zip([(a.name, b.name), (b.name, a.name)])
    {
        assert_eq!((m.from.as_str(), m.to.as_str()), (from, to));
        assert!(
            m.operation_id
                .as_deref()
                .is_some_and(|id| id.ends_with(&format!("{from}-to-{to}"))),
            "{m:?}"
        );
        // A demoted primary refuses writes until the new one is promoted: the window is real.
        let unavailable = m.unavailable_millis.expect("write-unavailability measured");
        assert!(unavailable > 0, "{m:?}");
        assert!(
            m.first_failed_write_at.is_some() && m.first_successful_write_at.is_some(),
            "{m:?}"
        );
        assert!(m.acknowledged_writes > 0, "{m:?}");
        assert_eq!(
            (m.lost_writes, m.rpo_millis),
            (0, 0),
            "acknowledged writes lost: {m:?}"
        );
        println!(
            "{from} → {to}: operation {} ms, writes unavailable {unavailable} ms, {} acknowledged, RPO {} ms",
            m.operation_millis.unwrap_or_default(),
            m.acknowledged_writes,
            m.rpo_millis
        );
    }
    canary
}
