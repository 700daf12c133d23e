//! A region drill's evidence report as Markdown, from its status alone (pure): the result, the
//! checks, per-database write-unavailability and RPO, the region switches, the hook timings and
//! the objects that moved. `federator region report NAME -o json` prints the same facts as JSON.

use std::fmt::Write as _;

use kube::ResourceExt;
use topology::region_drill_api::RegionDrill;

fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{v} ms"))
        .unwrap_or_else(|| "not measured".into())
}

fn time(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>) -> String {
    t.map(|t| t.0.to_string()).unwrap_or_else(|| "-".into())
}

/// Table cells may not hold a `|` or a line break.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(drill: &RegionDrill) -> String {
    let s = drill.status.clone().unwrap_or_default();
    let spec = &drill.spec;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Region drill {}/{}: {} → {}{}\n",
        drill.namespace().unwrap_or_default(),
        drill.name_any(),
        spec.from,
        spec.to,
        if spec.return_to_original {
            " and back"
        } else {
            ""
        }
    );
    let result = match s.phase {
        Some(p) => format!("{p:?}"),
        None => "not run".into(),
    };
    let _ = writeln!(
        out,
        "- Result: **{result}** ({} checks passed)",
        s.summary.as_deref().unwrap_or("0/0")
    );
    let _ = writeln!(out, "- Run: {}", s.run_id.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "- Runner: {}", s.runner.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "- Started: {}", time(s.started_at.as_ref()));
    let _ = writeln!(out, "- Finished: {}", time(s.finished_at.as_ref()));
    let _ = writeln!(out, "- Total time: {}", ms(s.total_millis));
    if let Some(step) = s.step {
        let _ = writeln!(out, "- Step: {step}");
    }
    if let Some(f) = &s.failure {
        let _ = writeln!(out, "- Stopped: {f}");
    }
    for r in &s.resumes {
        let _ = writeln!(out, "- Resumed at {}", r.0);
    }

    let _ = writeln!(
        out,
        "\n## Checks\n\n| Check | Result | Detail |\n|---|---|---|"
    );
    for c in &s.checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            c.name,
            if c.passed { "PASS" } else { "FAIL" },
            cell(&c.detail)
        );
    }

    let _ = writeln!(
        out,
        "\n## Databases\n\n| Database | Switchover | Write-unavailability | Acknowledged writes | Lost | RPO | Canary |\n|---|---|---|---|---|---|---|"
    );
    for d in &s.databases {
        if d.switchovers.is_empty() {
            let _ = writeln!(
                out,
                "| {} | {} → {} | not measured | - | - | - | {} |",
                d.topology,
                d.primary,
                d.target,
                if d.canary.is_some() {
                    "written"
                } else {
                    "not written"
                }
            );
        }
        for (i, sw) in d.switchovers.iter().enumerate() {
            let canary = match d.canary_found.get(i) {
                Some(true) => "found",
                Some(false) => "MISSING",
                None => "not checked",
            };
            let _ = writeln!(
                out,
                "| {} | {} → {} | {} | {} | {} | {} ms | {canary} |",
                d.topology,
                sw.from,
                sw.to,
                ms(sw.unavailable_millis),
                sw.acknowledged_writes,
                sw.lost_writes,
                sw.rpo_millis
            );
        }
    }

    let _ = writeln!(
        out,
        "\n## Region switches\n\n| RegionSwitch | From | To | Started | Finished | Outcome |\n|---|---|---|---|---|---|"
    );
    for l in &s.legs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            l.region_switch,
            l.from,
            l.to,
            time(l.started_at.as_ref()),
            time(l.finished_at.as_ref()),
            l.outcome.as_deref().unwrap_or("running")
        );
    }

    let _ = writeln!(out, "\n## Hooks\n");
    if s.hooks.is_empty() {
        let _ = writeln!(out, "No hook ran.");
    } else {
        let _ = writeln!(
            out,
            "| RegionSwitch | Database | Hook | Time | Result | Detail |\n|---|---|---|---|---|---|"
        );
        for h in &s.hooks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} ms | {} | {} |",
                h.region_switch,
                h.topology,
                h.hook,
                h.millis,
                if h.ok { "done" } else { "FAILED" },
                cell(&h.detail)
            );
        }
    }

    let _ = writeln!(
        out,
        "\n## Objects moved\n\n| RegionSwitch | Object | From | To | State | Operation |\n|---|---|---|---|---|---|"
    );
    for m in &s.moved {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            m.region_switch,
            m.object,
            m.from,
            m.to,
            m.state,
            m.operation.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_every_check_database_hook_and_move() {
        let drill: RegionDrill = serde_json::from_value(serde_json::json!({
            "apiVersion": "federator.dev/v1alpha1",
            "kind": "RegionDrill",
            "metadata": {"name": "q4", "namespace": "databases"},
            "spec": {"from": "eu-central", "to": "eu-western"},
            "status": {
                "phase": "Failed", "summary": "4/5", "totalMillis": 61000, "runId": "q4-1",
                "checks": [
                    {"name": "CanariesKept", "passed": true, "detail": "every database had its canary"},
                    {"name": "WriteUnavailabilityWithinLimit", "passed": false,
                     "detail": "db1: writes refused 1200 ms (db1-c → db1-w), limit 1000 ms"}
                ],
                "databases": [{
                    "topology": "db1", "primary": "db1-c", "target": "db1-w",
                    "canary": "q4-1-db1-canary", "canaryFound": [true, true],
                    "switchovers": [
                        {"from": "db1-c", "to": "db1-w", "unavailableMillis": 1200,
                         "acknowledgedWrites": 900, "lostWrites": 0, "rpoMillis": 0},
                        {"from": "db1-w", "to": "db1-c",
                         "acknowledgedWrites": 1800, "lostWrites": 0, "rpoMillis": 0}
                    ]
                }],
                "hooks": [{"regionSwitch": "q4-there", "topology": "db1",
                           "hook": "beforeDemotion/stop-web", "millis": 412, "ok": true,
                           "detail": "Deployment web: 2 → 0"}],
                "moved": [{"regionSwitch": "q4-there", "object": "DistributedTopology/db1",
                           "from": "db1-c", "to": "db1-w", "state": "Moved",
                           "operation": "3-db1-c-to-db1-w"}]
            }
        }))
        .unwrap();
        let md = markdown(&drill);
        assert!(md.starts_with("# Region drill databases/q4: eu-central → eu-western and back"));
        assert!(
            md.contains("- Result: **Failed** (4/5 checks passed)"),
            "{md}"
        );
        assert!(md.contains("- Total time: 61000 ms"), "{md}");
        assert!(md.contains(
            "| WriteUnavailabilityWithinLimit | FAIL | db1: writes refused 1200 ms (db1-c → db1-w), limit 1000 ms |"
        ));
        assert!(
            md.contains("| db1 | db1-c → db1-w | 1200 ms | 900 | 0 | 0 ms | found |"),
            "{md}"
        );
        assert!(md.contains("| db1 | db1-w → db1-c | not measured | 1800 | 0 | 0 ms | found |"));
        assert!(md.contains(
            "| q4-there | db1 | beforeDemotion/stop-web | 412 ms | done | Deployment web: 2 → 0 |"
        ));
        assert!(md.contains(
            "| q4-there | DistributedTopology/db1 | db1-c | db1-w | Moved | 3-db1-c-to-db1-w |"
        ));
    }
}
