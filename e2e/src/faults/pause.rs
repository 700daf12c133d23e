//! Freezing a process of the lab (SIGSTOP) and thawing it (SIGCONT): an apiserver, etcd or an
//! emulator that stops answering while its sockets stay open — what a long GC pause, a stalled
//! VM or a saturated host looks like to its clients. Unlike a kill, nothing restarts and no
//! connection is closed.

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use crate::lab::state::LabState;
use crate::lab::{LabLayout, process};

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("the lab in {0} has no state.json: is it running?")]
    NotRunning(std::path::PathBuf),
    #[error("reading the lab's state: {0}")]
    State(String),
    #[error(
        "component {0:?} is not running in this lab (known: etcd, hub, a member, <member>-emulator)"
    )]
    NotFound(String),
    #[error("signalling pid {pid} ({component}): {source}")]
    Signal {
        pid: u32,
        component: String,
        source: rustix::io::Errno,
    },
}

/// A frozen process; thawed (SIGCONT) when dropped, so a failing test never leaves the lab
/// frozen.
#[derive(Debug)]
pub struct Paused {
    pid: u32,
    component: String,
    thawed: bool,
}

impl Paused {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGCONT now.
    pub fn resume(mut self) -> Result<(), PauseError> {
        self.thaw()
    }

    fn thaw(&mut self) -> Result<(), PauseError> {
        if self.thawed {
            return Ok(());
        }
        self.thawed = true;
        tracing::info!(component = %self.component, pid = self.pid, "fault: SIGCONT");
        signal(self.pid, &self.component, Signal::CONT)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = self.thaw();
    }
}

fn signal(pid: u32, component: &str, sig: Signal) -> Result<(), PauseError> {
    let target = Pid::from_raw(pid as i32).ok_or_else(|| PauseError::NotFound(component.into()))?;
    kill_process(target, sig).map_err(|source| PauseError::Signal {
        pid,
        component: component.into(),
        source,
    })
}

/// The pid of a running component of the lab (`etcd`, `hub`, `eu-central`,
/// `eu-central-emulator`, …), checked to be the lab's own process (its command line names the
/// lab directory), never a reused pid.
pub fn pid_of(layout: &LabLayout, component: &str) -> Result<u32, PauseError> {
    let state = LabState::load(layout)
        .map_err(|e| PauseError::State(e.to_string()))?
        .ok_or_else(|| PauseError::NotRunning(layout.root().to_path_buf()))?;
    state
        .components
        .iter()
        .find(|c| c.name == component)
        .and_then(|c| c.pid)
        .filter(|pid| process::is_ours(*pid, layout.root()))
        .ok_or_else(|| PauseError::NotFound(component.into()))
}

/// SIGSTOP to a component of the lab until the returned guard is dropped or resumed.
pub fn pause(layout: &LabLayout, component: &str) -> Result<Paused, PauseError> {
    let pid = pid_of(layout, component)?;
    pause_pid(pid, component)
}

/// SIGSTOP to any pid (e.g. a PostgreSQL postmaster or a controller the test started).
pub fn pause_pid(pid: u32, what: &str) -> Result<Paused, PauseError> {
    tracing::info!(component = %what, pid, "fault: SIGSTOP");
    signal(pid, what, Signal::STOP)?;
    Ok(Paused {
        pid,
        component: what.into(),
        thawed: false,
    })
}

/// Freezes the component for `duration`, then thaws it.
pub async fn pause_for(
    layout: &LabLayout,
    component: &str,
    duration: Duration,
) -> Result<(), PauseError> {
    let paused = pause(layout, component)?;
    tokio::time::sleep(duration).await;
    paused.resume()
}

/// The state letter of `/proc/<pid>/stat` (`T` while stopped).
pub fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_paused_process_is_stopped_until_the_guard_goes() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let paused = pause_pid(pid, "sleep").unwrap();
        let stopped =
            crate::lab::health::wait_for("the process to stop", Duration::from_secs(5), || async {
                (state_of(pid) == Some('T')).then_some(())
            })
            .await;
        assert!(stopped.is_ok(), "state {:?}", state_of(pid));
        drop(paused);
        let running = crate::lab::health::wait_for(
            "the process to run again",
            Duration::from_secs(5),
            || async { (state_of(pid) != Some('T')).then_some(()) },
        )
        .await;
        assert!(running.is_ok(), "state {:?}", state_of(pid));
        child.kill().await.unwrap();
    }

    #[test]
    fn an_unknown_component_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LabLayout::create(tmp.path()).unwrap();
        let err = pause(&layout, "hub").unwrap_err();
        assert!(matches!(err, PauseError::NotRunning(_)), "{err}");
    }
}
