//! Starting, recognising and stopping the lab's processes.
//!
//! Processes are started in their own process group, so a Ctrl-C in the terminal that ran
//! `federator-lab up` does not take the lab down, and they outlive the CLI. A recorded pid is
//! only trusted while `/proc/<pid>/cmdline` still mentions the lab directory: a pid reused by an
//! unrelated process is never signalled.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::{LabError, Result};
use super::state::Component;

/// How long a process gets between SIGTERM and SIGKILL. kube-apiserver's graceful shutdown
/// takes 6–9 s.
pub const STOP_GRACE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// Fails with [`LabError::PortInUse`] if something already listens on the port.
pub fn ensure_port_free(port: u16, component: &str) -> Result<()> {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|_| LabError::PortInUse {
            port,
            component: component.to_owned(),
        })
}

/// Starts the component detached, its stdout and stderr appended to its log. Returns the pid.
pub fn spawn(component: &Component) -> Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&component.log)
        .map_err(LabError::io("opening log", &component.log))?;
    let log_err = log
        .try_clone()
        .map_err(LabError::io("opening log", &component.log))?;
    let child = Command::new(&component.program)
        .args(&component.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(LabError::io("starting", &component.program))?;
    // Dropping the Child neither kills nor waits: the process is the lab's, not the CLI's.
    Ok(child.id())
}

/// True if `pid` is a live (not zombie) process whose command line mentions `marker` (the lab
/// directory).
pub fn is_ours(pid: u32, marker: &Path) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let marker = marker.as_os_str().as_encoded_bytes();
    cmdline.windows(marker.len()).any(|w| w == marker)
}

/// True if `pid` exists and is not a zombie. Only for a pid we just spawned: between fork and
/// exec its command line is still ours, so [`is_ours`] would not recognise it yet.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Sends SIGTERM, waits up to [`STOP_GRACE`] for exit, then SIGKILL. Returns whether SIGKILL was
/// needed. Does nothing if the pid is not one of ours any more.
///
/// "Exited" means the process is gone or a zombie *and* its ports are free again: a Go
/// program's main thread turns zombie while its other threads still hold the listening socket,
/// and a zombie whose parent is the current process (the test harness) never disappears.
pub async fn stop(pid: u32, marker: &Path, ports: &[u16]) -> bool {
    if !is_ours(pid, marker) {
        return false;
    }
    let Some(target) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    let _ = rustix::process::kill_process(target, rustix::process::Signal::TERM);
    if wait_exit(pid, ports, STOP_GRACE).await {
        return false;
    }
    let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
    wait_exit(pid, ports, Duration::from_secs(5)).await;
    true
}

async fn wait_exit(pid: u32, ports: &[u16], within: Duration) -> bool {
    let exited = || !is_alive(pid) && ports.iter().all(|p| ensure_port_free(*p, "").is_ok());
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if exited() {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    exited()
}

/// The last `lines` lines of a log, for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_reported_by_number_and_component() {
        let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let message = ensure_port_free(port, "eu-south").unwrap_err().to_string();
        assert!(
            message.contains(&port.to_string()) && message.contains("eu-south"),
            "{message}"
        );
        drop(taken);
        ensure_port_free(port, "eu-south").unwrap();
    }

    #[test]
    fn our_own_process_is_alive_but_not_a_lab_process() {
        assert!(is_alive(std::process::id()));
        assert!(!is_ours(std::process::id(), Path::new("/no/such/lab/dir")));
    }
}
