//! The drill report as Markdown (`federator drill report`): what ran, the step timeline with
//! durations, the canary, write-unavailability and RPO per switchover, and the failure if any.
//! Pure: renders a status.

use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use topology::drill_api::{DisasterRecoveryDrill, DrillPhase};

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn clock(t: &MicroTime) -> String {
    t.0.strftime("%H:%M:%S%.3f").to_string()
}

fn seconds(from: &MicroTime, to: Option<&MicroTime>) -> String {
    match to {
        Some(end) => format!("{:.3} s", end.0.duration_since(from.0).as_secs_f64()),
        None => "running".into(),
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "not checked",
    }
}

fn millis(v: Option<u64>) -> String {
    v.map(|m| format!("{m} ms")).unwrap_or_else(|| "-".into())
}

/// Renders the report of the drill's last run.
pub fn markdown(drill: &DisasterRecoveryDrill) -> String {
    let name = format!(
        "{}/{}",
        drill.metadata.namespace.as_deref().unwrap_or_default(),
        drill.metadata.name.as_deref().unwrap_or_default()
    );
    let Some(status) = drill.status.as_ref().filter(|s| s.phase.is_some()) else {
        return format!("# Drill `{name}`\n\nNot run yet.\n");
    };
    let phase = match status.phase {
        Some(DrillPhase::Succeeded) => "Succeeded",
        Some(DrillPhase::Failed) => "Failed",
        _ => "Running",
    };
    let mut out = format!("# Drill `{name}`: {phase}\n\n| | |\n|---|---|\n");
    let from = status.from.as_deref().unwrap_or("?");
    let to = status.to.as_deref().unwrap_or(&drill.spec.to);
    let back = if drill.spec.return_to_original {
        ", and back"
    } else {
        ""
    };
    let _ = writeln!(out, "| Topology | `{}` |", drill.spec.topology);
    let _ = writeln!(out, "| Moves | {from} → {to}{back} |");
    let _ = writeln!(
        out,
        "| Run | `{}` by {} |",
        status.run_id.as_deref().unwrap_or("-"),
        status.runner.as_deref().unwrap_or("-")
    );
    if let Some(started) = &status.started_at {
        let _ = writeln!(out, "| Started | {} |", started.0);
        if let Some(finished) = &status.finished_at {
            let _ = writeln!(
                out,
                "| Finished | {} ({} in all) |",
                finished.0,
                seconds(started, Some(finished))
            );
        }
    }
    if let Some(at) = &status.last_schedule_time {
        let _ = writeln!(out, "| Scheduled for | {} |", at.0);
    }
    if let Some(at) = &status.next_schedule_time {
        let _ = writeln!(out, "| Next run | {} |", at.0);
    }
    for r in &status.resumes {
        let _ = writeln!(
            out,
            "| Resumed | at {} by {} ({}) |",
            r.step,
            r.runner,
            clock(&r.at)
        );
    }

    out.push_str("\n## Steps\n\n| # | Step | Started (UTC) | Duration | Result | Details |\n|---|---|---|---|---|---|\n");
    for (i, s) in status.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:?} | {} |",
            i + 1,
            s.name,
            clock(&s.started_at),
            seconds(&s.started_at, s.finished_at.as_ref()),
            s.outcome,
            cell(s.message.as_deref().unwrap_or(""))
        );
    }

    if let Some(c) = &status.canary {
        out.push_str("\n## Canary\n\n| Value | Written on | Acknowledged at (UTC) | On the new primary | After the return |\n|---|---|---|---|---|\n");
        let after = if drill.spec.return_to_original {
            yes_no(c.found_after_return)
        } else {
            "-"
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            c.value,
            c.written_on,
            clock(&c.written_at),
            yes_no(c.found_on_new_primary),
            after
        );
    }

    if !status.switchovers.is_empty() {
        out.push_str("\n## Switchovers\n\n| Move | Operation | Operation time | Writes unavailable | First failed write | First successful write | Acknowledged writes | Lost | RPO |\n|---|---|---|---|---|---|---|---|---|\n");
        for m in &status.switchovers {
            let _ = writeln!(
                out,
                "| {} → {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                m.from,
                m.to,
                m.operation_id
                    .as_deref()
                    .map(|id| format!("`{id}`"))
                    .unwrap_or_else(|| "-".into()),
                millis(m.operation_millis),
                millis(m.unavailable_millis),
                m.first_failed_write_at
                    .as_ref()
                    .map(clock)
                    .unwrap_or_else(|| "-".into()),
                m.first_successful_write_at
                    .as_ref()
                    .map(clock)
                    .unwrap_or_else(|| "-".into()),
                m.acknowledged_writes,
                m.lost_writes,
                format_args!("{} ms", m.rpo_millis)
            );
        }
        for m in &status.switchovers {
            if let Some(from) = &m.measured_from {
                let _ = writeln!(
                    out,
                    "\n{} → {}: the run was taken over during this switchover; write-unavailability is measured from {} on (acknowledged writes are checked from the whole run).",
                    m.from,
                    m.to,
                    clock(from)
                );
            }
        }
        out.push_str("\nWrites unavailable: from the probe's first refused write after `spec.primary` was set to its next acknowledged write (probe every 10 ms). RPO: acknowledged probe writes the new primary lacks, as the time between the newest kept and the newest lost one.\n");
    }

    if let Some(w) = &status.writes {
        let _ = writeln!(
            out,
            "\nProbe writes: {} attempted, {} acknowledged, {} failed.",
            w.attempted, w.acknowledged, w.failed
        );
    }

    if let Some(f) = &status.failure {
        let _ = write!(
            out,
            "\n## Failure\n\nStopped at **{}** ({}): {}\n",
            f.step, f.reason, f.message
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(status: serde_json::Value) -> DisasterRecoveryDrill {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "federator.dev/v1alpha1",
            "kind": "DisasterRecoveryDrill",
            "metadata": {"name": "pg", "namespace": "databases", "generation": 1},
            "spec": {"topology": "pg", "to": "pg-b", "return": true},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_successful_drill_renders_the_timeline_canary_and_measurements() {
        let d = drill(serde_json::json!({
            "phase": "Succeeded",
            "runner": "cli/host-1",
            "runId": "pg-1700000000000",
            "from": "pg-a",
            "to": "pg-b",
            "startedAt": "2026-11-23T09:00:00.000000Z",
            "finishedAt": "2026-11-23T09:00:05.250000Z",
            "steps": [
                {"name": "Preflight", "startedAt": "2026-11-23T09:00:00.000000Z", "finishedAt": "2026-11-23T09:00:00.040000Z", "outcome": "Succeeded", "message": "pg Ready"},
                {"name": "WriteCanary", "startedAt": "2026-11-23T09:00:00.040000Z", "finishedAt": "2026-11-23T09:00:00.100000Z", "outcome": "Succeeded", "message": "canary acknowledged"},
                {"name": "Switchover", "startedAt": "2026-11-23T09:00:00.100000Z", "finishedAt": "2026-11-23T09:00:02.100000Z", "outcome": "Succeeded", "message": "operation 2-pg-a-to-pg-b Succeeded"},
                {"name": "Verify", "startedAt": "2026-11-23T09:00:02.100000Z", "finishedAt": "2026-11-23T09:00:02.300000Z", "outcome": "Succeeded", "message": "pg-b writable | canary found"},
                {"name": "SwitchBack", "startedAt": "2026-11-23T09:00:02.300000Z", "finishedAt": "2026-11-23T09:00:05.000000Z", "outcome": "Succeeded"},
                {"name": "VerifyReturn", "startedAt": "2026-11-23T09:00:05.000000Z", "finishedAt": "2026-11-23T09:00:05.250000Z", "outcome": "Succeeded"}
            ],
            "canary": {"value": "pg-1700000000000-canary", "writtenOn": "pg-a", "writtenAt": "2026-11-23T09:00:00.090000Z", "foundOnNewPrimary": true, "foundAfterReturn": true},
            "switchovers": [
                {"from": "pg-a", "to": "pg-b", "operationId": "2-pg-a-to-pg-b", "operationMillis": 1800, "firstFailedWriteAt": "2026-11-23T09:00:00.500000Z", "firstSuccessfulWriteAt": "2026-11-23T09:00:01.700000Z", "unavailableMillis": 1200, "acknowledgedWrites": 40, "lostWrites": 0, "rpoMillis": 0},
                {"from": "pg-b", "to": "pg-a", "operationId": "3-pg-b-to-pg-a", "operationMillis": 2500, "unavailableMillis": 900, "acknowledgedWrites": 120, "lostWrites": 0, "rpoMillis": 0}
            ],
            "writes": {"attempted": 300, "acknowledged": 250, "failed": 50}
        }));
        insta::assert_snapshot!(markdown(&d));
    }

    #[test]
    fn a_failed_drill_names_the_step_and_why() {
        let d = drill(serde_json::json!({
            "phase": "Failed",
            "from": "pg-a",
            "to": "pg-b",
            "startedAt": "2026-11-23T09:00:00.000000Z",
            "finishedAt": "2026-11-23T09:00:03.000000Z",
            "steps": [
                {"name": "Preflight", "startedAt": "2026-11-23T09:00:00.000000Z", "finishedAt": "2026-11-23T09:00:03.000000Z", "outcome": "Failed", "message": "cannot connect to pg-b's PostgreSQL: connection refused; nothing was changed"}
            ],
            "failure": {"step": "Preflight", "reason": "TargetUnreachable", "message": "cannot connect to pg-b's PostgreSQL: connection refused; nothing was changed"}
        }));
        let md = markdown(&d);
        assert!(md.starts_with("# Drill `databases/pg`: Failed"), "{md}");
        assert!(
            md.contains("Stopped at **Preflight** (TargetUnreachable): cannot connect to pg-b"),
            "{md}"
        );
        assert!(
            md.contains("| 1 | Preflight | 09:00:00.000 | 3.000 s | Failed |"),
            "{md}"
        );
    }

    #[test]
    fn a_run_taken_over_says_where_and_what_it_measured() {
        let d = drill(serde_json::json!({
            "phase": "Succeeded",
            "from": "pg-a",
            "resumes": [{"at": "2026-11-23T09:00:03.000000Z", "runner": "controller/b-2", "step": "Switchover"}],
            "switchovers": [{"from": "pg-a", "to": "pg-b", "measuredFrom": "2026-11-23T09:00:03.500000Z",
                "unavailableMillis": 200, "acknowledgedWrites": 5, "lostWrites": 0, "rpoMillis": 0}]
        }));
        let md = markdown(&d);
        assert!(
            md.contains("| Resumed | at Switchover by controller/b-2 (09:00:03.000) |"),
            "{md}"
        );
        assert!(
            md.contains("pg-a → pg-b: the run was taken over during this switchover; write-unavailability is measured from 09:00:03.500 on"),
            "{md}"
        );
    }

    #[test]
    fn a_drill_never_run_says_so() {
        let d = drill(serde_json::json!({}));
        assert_eq!(markdown(&d), "# Drill `databases/pg`\n\nNot run yet.\n");
    }
}
