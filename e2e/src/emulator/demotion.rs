//! Demotion (contract §5.1, checklist §9), one step per pass so that a restarted emulator
//! continues from what the Cluster's status and the data directory show:
//!
//! 1. fencing annotation on, Ready instances → 0
//! 2. internal conditions and `inProgress=true`; PostgreSQL fast shutdown
//! 3. (instance manager) `standby.signal` + replica settings, `TransitionCompleted`
//! 4. `.partial` of the REDO segment archived, then `demotionToken` from real pg_controldata
//! 5. clean-up: annotation off, internal conditions removed, `ReplicaClusterSwitch` True,
//!    `inProgress=false`
//! 6. the steady state starts the instance as designated primary (pods Ready again)

use kube::runtime::controller::Action;
use topology::cnpg::{ClusterStatus, condition};

use super::error::Result;
use super::faults::Wipe;
use super::pass::Pass;
use super::settings;
use super::stall;
use super::status::{condition_is, remove_condition, set_condition, text};

/// Whether a demotion is due or underway. `standby` is whether the data directory already
/// holds `standby.signal` (the instance manager's step 3 happened).
pub fn underway(pass: &Pass<'_>, standby: bool) -> bool {
    due_or_underway(
        &pass.status,
        pass.is_fenced(),
        standby,
        pass.faults.skip_demotion,
    )
}

/// The pure rule behind [`underway`], for a Cluster whose role is replica: a primary instance
/// is to be demoted (unless the "probe fails", PR 11268), and a demotion recorded in status or
/// the fencing annotation is continued.
pub fn due_or_underway(
    status: &ClusterStatus,
    fenced: bool,
    standby: bool,
    skip_demotion: bool,
) -> bool {
    let started = status
        .switch_replica_cluster_status
        .as_ref()
        .is_some_and(|x| x.in_progress)
        || status.conditions.iter().any(|c| {
            c.type_ == condition::DESIGNATED_PRIMARY_TRANSITION
                || c.type_ == condition::REPLICA_CLUSTER_FENCING
        });
    (!standby && !skip_demotion) || started || (standby && fenced)
}

pub async fn step(pass: &mut Pass<'_>, standby: bool) -> Result<Action> {
    let timing = pass.config.timing;
    if !standby {
        return demote_primary(pass).await;
    }
    if !condition_is(&pass.status, condition::DESIGNATED_PRIMARY_TRANSITION, true)
        && pass
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == condition::DESIGNATED_PRIMARY_TRANSITION)
    {
        // Restarted between writing standby.signal and recording it.
        return complete_transition(pass).await;
    }
    let control = pass.instance.controldata().await?;
    if !control.is_shut_down() {
        tracing::info!(cluster = %pass.name, "waiting for PostgreSQL to be shut down before building the demotion token");
        return Ok(Action::requeue(timing.instance_manager()));
    }
    let token = control.token()?;
    let mut published = token.clone();
    if let Some(corruption) = pass.faults.corrupt_demotion_token {
        tracing::info!(cluster = %pass.name, ?corruption, "fault: publishing a corrupt demotion token");
        corruption.apply(&mut published);
    }
    let encoded = published.encode();
    if pass.status.demotion_token.as_deref() != Some(encoded.as_str()) && !cleanup_done(pass) {
        let dest = settings::own_archive(pass).join(format!("{}.partial", token.redo_wal_file));
        pass.instance
            .archive_copy(&token.redo_wal_file, &dest)
            .await?;
        tracing::info!(cluster = %pass.name, wal = %token.redo_wal_file, "archived the .partial; writing the demotion token");
        pass.update_status(|s| s.demotion_token = Some(encoded))
            .await?;
        if pass.faults.wipe_demotion_token == Some(Wipe::Immediately) {
            tracing::info!(cluster = %pass.name, "fault: wiping the demotion token right after writing it (#11074)");
            pass.update_status(|s| s.demotion_token = None).await?;
        }
    }
    cleanup(pass).await?;
    Ok(Action::requeue(timing.operator()))
}

/// Clean-up already happened (only a restart after it could bring us here).
fn cleanup_done(pass: &Pass<'_>) -> bool {
    !pass
        .status
        .switch_replica_cluster_status
        .as_ref()
        .is_some_and(|x| x.in_progress)
        && condition_is(&pass.status, condition::REPLICA_CLUSTER_SWITCH, true)
        && !pass.is_fenced()
}

async fn demote_primary(pass: &mut Pass<'_>) -> Result<Action> {
    let timing = pass.config.timing;
    if !pass.is_fenced() {
        tracing::info!(cluster = %pass.name, "starting the transition to replica cluster: fencing");
        pass.set_fenced(true).await?;
        pass.update_status(|s| s.ready_instances = Some(0)).await?;
        return Ok(Action::requeue(timing.operator()));
    }
    if !pass
        .status
        .switch_replica_cluster_status
        .as_ref()
        .is_some_and(|x| x.in_progress)
    {
        pass.update_status(|s| {
            s.ready_instances = Some(0);
            let c = &mut s.conditions;
            set_condition(
                c,
                condition::DESIGNATED_PRIMARY_TRANSITION,
                false,
                text::AFTER_CREATION,
                "Enabled external cluster after a node was generated",
            );
            set_condition(
                c,
                condition::REPLICA_CLUSTER_FENCING,
                true,
                text::AFTER_CREATION,
                "Enabled external cluster after a node was generated",
            );
            set_condition(
                c,
                condition::REPLICA_CLUSTER_SWITCH,
                false,
                text::REPLICA_ENABLED_SET_TRUE,
                text::SWITCH_STARTING_MSG,
            );
            s.switch_replica_cluster_status
                .get_or_insert_with(Default::default)
                .in_progress = true;
        })
        .await?;
    }
    // The fenced instance shuts down (fast), writing its shutdown checkpoint.
    if pass.instance.is_running().await {
        if let Some(delay) = pass.faults.slow_shutdown {
            tracing::info!(cluster = %pass.name, ?delay, "fault: slow shutdown checkpoint");
            tokio::time::sleep(delay).await;
        }
        pass.instance.stop().await?;
    }
    complete_transition(pass).await
}

/// The instance manager's part: a fenced, shut-down former primary becomes a designated
/// primary (standby.signal + replica settings) and says so.
async fn complete_transition(pass: &mut Pass<'_>) -> Result<Action> {
    let timing = pass.config.timing;
    if pass.faults.hang_before_transition {
        tracing::info!(cluster = %pass.name, "fault: waiting for the instance manager to transition the primary instance to a designated primary");
        return Ok(Action::requeue(timing.operator()));
    }
    if pass.faults.stall_until_changed {
        let file = stall_file(pass);
        let version = pass
            .cluster
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let (verdict, next) = stall::decide(&stall::read(&file), &version);
        if let Some(marker) = next {
            stall::write(&file, &marker)?;
        }
        match verdict {
            stall::Verdict::RestartNow => {
                tracing::info!(cluster = %pass.name, "fault: the instance manager restarts mid-demotion");
                return Ok(Action::requeue(timing.operator()));
            }
            stall::Verdict::Stalled => {
                tracing::info!(cluster = %pass.name, resource_version = %version, "fault: the demotion stalls until the Cluster changes (#5754)");
                return Ok(Action::await_change());
            }
            stall::Verdict::Proceed => {}
        }
    }
    if !pass.instance.controldata().await?.is_shut_down() {
        return Ok(Action::requeue(timing.instance_manager()));
    }
    pass.instance
        .write_settings(&settings::desired(pass, true)?)
        .await?;
    pass.instance.make_standby().await?;
    let pod = pass.primary_pod();
    pass.update_status(|s| {
        s.current_primary = Some(pod);
        s.current_primary_timestamp = Some(super::steady::timestamp());
        set_condition(
            &mut s.conditions,
            condition::DESIGNATED_PRIMARY_TRANSITION,
            true,
            text::TRANSITION_COMPLETED,
            text::TRANSITION_COMPLETED_MSG,
        );
    })
    .await?;
    Ok(Action::requeue(timing.operator()))
}

fn stall_file(pass: &Pass<'_>) -> std::path::PathBuf {
    let dir = pass
        .layout
        .cluster_dir(&pass.config.member, pass.namespace(), &pass.name);
    stall::marker_file(&dir)
}

async fn cleanup(pass: &mut Pass<'_>) -> Result<()> {
    // The next demotion stalls again, as each one did on real CNPG.
    stall::clear(&stall_file(pass))?;
    if pass.is_fenced() {
        pass.set_fenced(false).await?;
    }
    let wipe = pass.faults.wipe_demotion_token.is_some();
    if wipe {
        tracing::info!(cluster = %pass.name, "fault: wiping the demotion token (#11074)");
    }
    pass.update_status(|s| {
        remove_condition(&mut s.conditions, condition::DESIGNATED_PRIMARY_TRANSITION);
        remove_condition(&mut s.conditions, condition::REPLICA_CLUSTER_FENCING);
        set_condition(
            &mut s.conditions,
            condition::REPLICA_CLUSTER_SWITCH,
            true,
            text::REPLICA_ENABLED_SET_TRUE,
            text::SWITCH_COMPLETED_MSG,
        );
        s.switch_replica_cluster_status
            .get_or_insert_with(Default::default)
            .in_progress = false;
        if wipe {
            s.demotion_token = None;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_progress() -> ClusterStatus {
        let mut status = ClusterStatus::default();
        set_condition(
            &mut status.conditions,
            condition::DESIGNATED_PRIMARY_TRANSITION,
            true,
            text::TRANSITION_COMPLETED,
            text::TRANSITION_COMPLETED_MSG,
        );
        status
            .switch_replica_cluster_status
            .get_or_insert_with(Default::default)
            .in_progress = true;
        status
    }

    #[test]
    fn a_primary_instance_is_demoted_unless_the_probe_fails() {
        let idle = ClusterStatus::default();
        assert!(due_or_underway(&idle, false, false, false));
        assert!(!due_or_underway(&idle, false, false, true));
        // A designated primary with nothing recorded: nothing to do (§5.1 step 7).
        assert!(!due_or_underway(&idle, false, true, false));
    }

    #[test]
    fn a_recorded_demotion_is_continued_after_a_restart() {
        // Restarted after standby.signal: status says in progress.
        assert!(due_or_underway(&in_progress(), true, true, false));
        // Restarted after the status clean-up but before unfencing.
        assert!(due_or_underway(
            &ClusterStatus::default(),
            true,
            true,
            false
        ));
    }
}
