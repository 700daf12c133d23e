//! The kubelets' cgroup roots in every cgroup v1 hierarchy (this VM has no cgroup v2 for
//! controllers): created before a kubelet starts (it refuses a root with missing paths), and at
//! the end emptied (every process in them killed) and removed — also from the hybrid layout's
//! cgroup v2 mount (`/sys/fs/cgroup/unified`), where runc makes each container's cgroup too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lab::error::{LabError, Result};

const CGROUP_FS: &str = "/sys/fs/cgroup";

/// Every cgroup v1 hierarchy mount (`cpu`, `memory`, … and the named `systemd` one), once each:
/// `cpu` and `cpuacct` may be links to one `cpu,cpuacct` mount.
fn hierarchies() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let Ok(entries) = std::fs::read_dir(CGROUP_FS) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "unified" {
            continue;
        }
        let Ok(real) = entry.path().canonicalize() else {
            continue;
        };
        if real.join("cgroup.procs").exists() && !found.contains(&real) {
            found.push(real);
        }
    }
    found.sort();
    found
}

/// [`hierarchies`] and the hybrid layout's cgroup v2 mount, when there is one: the lab never
/// creates anything there, but runc does (`<root>/kubepods/…`), and `down` must leave no cgroup.
fn all_hierarchies() -> Vec<PathBuf> {
    let mut all = hierarchies();
    let unified = Path::new(CGROUP_FS).join("unified");
    if unified.join("cgroup.procs").exists() {
        all.push(unified);
    }
    all
}

/// Creates `/<root>` in every hierarchy; in `cpuset` it copies the parent's CPUs and memory
/// nodes (a new cpuset is empty, and a process cannot join an empty one).
pub fn create(root: &str) -> Result<()> {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(root);
        std::fs::create_dir_all(&dir).map_err(LabError::io("creating cgroup", &dir))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let parent = hierarchy.join(file);
            if parent.exists() {
                let value =
                    std::fs::read_to_string(&parent).map_err(LabError::io("reading", &parent))?;
                let target = dir.join(file);
                if std::fs::read_to_string(&target)
                    .unwrap_or_default()
                    .trim()
                    .is_empty()
                {
                    std::fs::write(&target, value.trim())
                        .map_err(LabError::io("writing", &target))?;
                }
            }
        }
    }
    Ok(())
}

/// Every pid in the cgroups under `/<prefix>*` (in any hierarchy).
fn pids_under(prefix: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for hierarchy in hierarchies() {
        for top in roots(&hierarchy, prefix) {
            walk(&top, &mut |dir| {
                let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            });
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn roots(hierarchy: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(hierarchy) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Calls `visit` on `dir` and every cgroup below it, children before parents.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), visit);
            }
        }
    }
    visit(dir);
}

/// Sends SIGKILL to each pid; returns how many signals were delivered.
pub(super) fn sigkill(pids: &[u32]) -> usize {
    pids.iter()
        .filter_map(|pid| rustix::process::Pid::from_raw(*pid as i32))
        .filter(|pid| rustix::process::kill_process(*pid, rustix::process::Signal::KILL).is_ok())
        .count()
}

/// SIGKILLs every process in the cgroups `/<prefix>*` until none is left (the cgroups stay).
/// Returns how many processes it killed.
pub async fn kill(prefix: &str, within: Duration) -> Result<usize> {
    let deadline = Instant::now() + within;
    let mut killed = 0;
    loop {
        let pids = pids_under(prefix);
        if pids.is_empty() {
            return Ok(killed);
        }
        killed += sigkill(&pids);
        if Instant::now() >= deadline {
            return Err(LabError::Timeout(
                format!("the processes in the cgroups /{prefix}* exiting ({pids:?})"),
                within.as_secs(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILLs every process in the cgroups `/<prefix>*` until none is left, then removes those
/// cgroups. Returns how many processes it killed.
pub async fn kill_and_remove(prefix: &str, within: Duration) -> Result<usize> {
    let deadline = Instant::now() + within;
    let killed = kill(prefix, within).await?;
    loop {
        let mut left = Vec::new();
        for hierarchy in all_hierarchies() {
            for top in roots(&hierarchy, prefix) {
                walk(&top, &mut |dir| {
                    if std::fs::remove_dir(dir).is_err() {
                        left.push(dir.to_path_buf());
                    }
                });
            }
        }
        if left.is_empty() {
            return Ok(killed);
        }
        if Instant::now() >= deadline {
            return Err(LabError::Config(format!(
                "cannot remove the cgroups {left:?} (a process still in them?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
