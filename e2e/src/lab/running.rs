//! Starting the lab's components and waiting until they are healthy, and the lab's lock: what
//! `lifecycle` and `emulators` both start components with.

use std::time::Duration;

use super::error::{LabError, Result};
use super::health::wait_healthy;
use super::layout::LabLayout;
use super::process;
use super::state::{Component, LabState};

/// Holds `DIR/lab.lock` until dropped (closing the file releases the lock).
pub(crate) async fn lock(layout: &LabLayout) -> Result<std::fs::File> {
    let path = layout.lock_file();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LabError::io("opening", &path))?;
        file.lock().map_err(LabError::io("locking", &path))?;
        Ok(file)
    })
    .await
    .expect("the lock task does not panic")
}

pub(crate) fn is_running(layout: &LabLayout, component: &Component) -> bool {
    component
        .pid
        .is_some_and(|pid| process::is_ours(pid, layout.root()))
}

/// Fails if a port of a component of `names` that is not running is taken.
pub(crate) fn check_ports(layout: &LabLayout, state: &LabState, names: &[&str]) -> Result<()> {
    let stopped = state
        .components
        .iter()
        .filter(|c| names.contains(&c.name.as_str()) && !is_running(layout, c));
    for component in stopped {
        for port in &component.ports {
            process::ensure_port_free(*port, &component.name)?;
        }
    }
    Ok(())
}

/// Starts the components of `names` (already in `state`) that are not running, and waits until
/// every one of `names` is healthy. Returns the names it started. Public so that modules adding
/// their own components (emulators, PostgreSQL) start them the same way: `state.upsert(..)`
/// first, then this.
pub async fn ensure_running(
    layout: &LabLayout,
    state: &mut LabState,
    names: &[&str],
    within: Duration,
) -> Result<Vec<String>> {
    check_ports(layout, state, names)?;
    let selected: Vec<Component> = state
        .components
        .iter()
        .filter(|c| names.contains(&c.name.as_str()))
        .cloned()
        .collect();
    let (running, to_start): (Vec<Component>, Vec<Component>) =
        selected.into_iter().partition(|c| is_running(layout, c));
    start_all(layout, state, &to_start, within).await?;
    futures::future::try_join_all(running.iter().map(|c| wait_healthy(layout, c, within))).await?;
    Ok(to_start.into_iter().map(|c| c.name).collect())
}

/// Spawns all components (pids saved at once, so `down` can stop them even if a later step
/// fails), then waits for all of them concurrently.
async fn start_all(
    layout: &LabLayout,
    state: &mut LabState,
    components: &[Component],
    within: Duration,
) -> Result<()> {
    let mut started = Vec::new();
    for component in components {
        let pid = process::spawn(component)?;
        state.set_pid(&component.name, Some(pid));
        state.save(layout)?;
        started.push(Component {
            pid: Some(pid),
            ..component.clone()
        });
    }
    let waits = started.iter().map(|c| wait_healthy(layout, c, within));
    futures::future::try_join_all(waits).await.map(drop)
}
