//! The steady state of a Cluster: the instance runs with the settings its state calls for,
//! a primary is restarted when `archive_mode` must change (after a promotion, contract §5.2
//! step 5), and the status shows what PostgreSQL reports (contract §2).

use std::collections::BTreeMap;

use kube::runtime::controller::Action;
use topology::cnpg::{InstanceReportedState, condition, phase};

use super::error::Result;
use super::pass::Pass;
use super::postgres::{Settings, sql};
use super::settings;
use super::status::{set_condition, set_operator_phase, text};

/// CNPG's timestamp format for `currentPrimaryTimestamp` (microseconds, UTC).
pub fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Writes the settings the instance's state calls for when they changed, reloading a running
/// instance (CNPG's instance manager refreshes its configuration on every loop). Returns them
/// and whether the instance runs.
pub async fn apply_settings(pass: &Pass<'_>, standby: bool) -> Result<(Settings, bool)> {
    let desired = settings::desired(pass, standby)?;
    let rendered = desired.render()?;
    let running = pass.instance.is_running().await;
    if pass.instance.current_settings().await.as_deref() != Some(rendered.as_str()) {
        pass.instance.write_settings(&desired).await?;
        if running {
            pass.instance.reload().await?;
        }
    }
    Ok((desired, running))
}

pub async fn run(pass: &mut Pass<'_>) -> Result<Action> {
    let timing = pass.config.timing;
    let standby = pass.instance.is_standby();
    let (desired, running) = apply_settings(pass, standby).await?;
    // CNPG's fencing (`cnpg.io/fencedInstances`, e.g. set by Federator's agent): PostgreSQL is
    // shut down (fast) and stays down while the annotation is on; the pods stay, not Ready.
    if running && pass.is_fenced() {
        tracing::info!(cluster = %pass.name, "fenced: shutting PostgreSQL down");
        pass.instance.stop().await?;
        pass.update_status(|s| s.ready_instances = Some(0)).await?;
        return Ok(Action::requeue(timing.resync()));
    }
    if !running {
        if pass.is_fenced() {
            return Ok(Action::requeue(timing.resync()));
        }
        pass.instance.start().await?;
    }
    let probe = sql::probe(pass.record.port).await?;
    let want_mode = if desired.archive_always {
        "always"
    } else {
        "on"
    };
    if !probe.in_recovery && probe.archive_mode != want_mode {
        tracing::info!(cluster = %pass.name, from = %probe.archive_mode, to = want_mode, "restarting the primary in place for archive_mode");
        pass.update_status(|s| set_operator_phase(s, phase::RESTARTING_IN_PLACE, ""))
            .await?;
        // CNPG's default window for the smart shutdown is 180 s (`spec.smartShutdownTimeout`).
        let smart = pass
            .cluster
            .spec
            .other
            .get("smartShutdownTimeout")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(180.0);
        pass.instance
            .restart_in_place(timing.smart_shutdown(smart))
            .await?;
        return Ok(Action::requeue(timing.operator()));
    }
    let system_id = pass
        .instance
        .controldata()
        .await?
        .system_identifier()?
        .to_owned();
    refresh(pass, probe, system_id).await?;
    Ok(Action::requeue(timing.resync()))
}

/// One real PostgreSQL stands for all `spec.instances`: they are reported consistently (all
/// Ready together, `<name>-1` the primary, the others replicating).
async fn refresh(pass: &mut Pass<'_>, probe: sql::Probe, system_id: String) -> Result<()> {
    let count = pass.instances();
    let names: Vec<String> = (1..=count).map(|i| format!("{}-{i}", pass.name)).collect();
    let pod = pass.primary_pod();
    let ip = super::pods::pod_ip(pass.record.port).to_string();
    let spec_token_empty = pass.spec_token().is_none();
    let keep_unrecoverable = pass.token_pending().is_some()
        && pass.status.phase.as_deref() == Some(phase::UNRECOVERABLE);
    pass.update_status(|s| {
        s.instances = Some(count);
        s.ready_instances = Some(count);
        s.instance_names = Some(names.clone());
        s.instances_status = Some(BTreeMap::from([("healthy".to_owned(), names.clone())]));
        s.instances_reported_state = Some(
            names
                .iter()
                .map(|n| {
                    let state = InstanceReportedState {
                        is_primary: *n == pod && !probe.in_recovery,
                        timeline_id: Some(probe.timeline),
                        ip: Some(ip.clone()),
                    };
                    (n.clone(), state)
                })
                .collect(),
        );
        s.current_primary.get_or_insert_with(|| pod.clone());
        s.target_primary.get_or_insert_with(|| pod.clone());
        if s.current_primary_timestamp.is_none() {
            s.current_primary_timestamp = Some(timestamp());
        }
        if s.target_primary_timestamp.is_none() {
            s.target_primary_timestamp = s.current_primary_timestamp.clone();
        }
        if !probe.in_recovery {
            // Only a primary reports its timeline, and a primary never keeps a demotion token.
            s.timeline_id = Some(probe.timeline);
            s.demotion_token = None;
        }
        if spec_token_empty {
            s.last_promotion_token = None;
        }
        s.system_id = Some(system_id.clone());
        set_condition(
            &mut s.conditions,
            condition::CONSISTENT_SYSTEM_ID,
            true,
            text::UNIQUE,
            "A single, unique system ID was found across reporting instances.",
        );
        // CNPG's WAL archiver reports each attempt (`webserver/local.go`,
        // getContinuousArchivingCondition): absent before the first one.
        match &probe.archiving {
            Some(sql::Archiving::Working) => set_condition(
                &mut s.conditions,
                text::CONTINUOUS_ARCHIVING,
                true,
                text::CONTINUOUS_ARCHIVING_SUCCESS,
                "Continuous archiving is working",
            ),
            Some(sql::Archiving::Failing { wal }) => set_condition(
                &mut s.conditions,
                text::CONTINUOUS_ARCHIVING,
                false,
                text::CONTINUOUS_ARCHIVING_FAILING,
                &format!("unexpected failure invoking the WAL archiver on {wal}"),
            ),
            None => {}
        }
        set_condition(
            &mut s.conditions,
            text::INITIALIZED,
            true,
            text::BOOTSTRAP_COMPLETED,
            "Cluster Is Ready",
        );
        if !keep_unrecoverable {
            set_operator_phase(s, phase::HEALTHY, "");
        }
    })
    .await
}
