//! Leaves nothing of the real tier behind: processes (node components, containerd, its shims,
//! every container), cgroups, mounts, network namespaces, runtime files, and the VM-wide
//! sysctls the kubelet changed. Works from names alone (the lab directory and its id), so it
//! also cleans up after a lab killed with -9: `up` runs it before starting afresh, `down` after
//! stopping what it recorded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{cgroups, netns, sysctls};
use crate::lab::error::{LabError, Result};

const WITHIN: Duration = Duration::from_secs(30);

/// What a sweep found and removed (empty after a clean `down`).
#[derive(Debug, Default, Clone)]
pub struct Swept {
    pub processes: usize,
    pub container_processes: usize,
    pub mounts: usize,
    /// Log links and shim sockets.
    pub files: usize,
    pub namespaces: Vec<String>,
    pub sysctls: Vec<String>,
}

impl Swept {
    pub fn is_empty(&self) -> bool {
        self.processes == 0
            && self.container_processes == 0
            && self.mounts == 0
            && self.files == 0
            && self.namespaces.is_empty()
            && self.sysctls.is_empty()
    }
}

impl std::fmt::Display for Swept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} node processes, {} container processes, {} mounts, {} files, namespaces [{}], \
             sysctls restored [{}]",
            self.processes,
            self.container_processes,
            self.mounts,
            self.files,
            self.namespaces.join(", "),
            self.sysctls.join(", ")
        )
    }
}

/// The markers a process of this lab's real tier has in its command line.
fn markers(root: &Path, id: &str) -> [Vec<u8>; 2] {
    let real = format!("{}/real/", root.display());
    let run = format!("{}/", super::plan::run_dir(id).display());
    [real.into_bytes(), run.into_bytes()]
}

fn matching_pids(markers: &[Vec<u8>]) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && crate::lab::process::is_alive(*pid))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            markers
                .iter()
                .any(|m| cmdline.windows(m.len()).any(|w| w == m.as_slice()))
        })
        .collect()
}

/// SIGKILLs every process whose command line holds one of `markers` and waits until they are
/// gone.
async fn kill_processes(markers: &[Vec<u8>]) -> Result<usize> {
    let deadline = Instant::now() + WITHIN;
    let mut killed = 0;
    loop {
        let pids = matching_pids(markers);
        if pids.is_empty() {
            return Ok(killed);
        }
        killed += cgroups::sigkill(&pids);
        if Instant::now() >= deadline {
            return Err(LabError::Timeout(
                format!("the real tier's processes {pids:?} exiting"),
                WITHIN.as_secs(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mount points under any of `prefixes`, deepest first.
fn mounts_under(prefixes: &[PathBuf]) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .filter(|p| prefixes.iter().any(|prefix| p.starts_with(prefix)))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unmount_all(prefixes: &[PathBuf]) -> Result<usize> {
    let mut count = 0;
    // A mount can hide another at the same point: repeat until none is left.
    for _ in 0..10 {
        let mounts = mounts_under(prefixes);
        if mounts.is_empty() {
            return Ok(count);
        }
        for mount in mounts {
            if rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH).is_ok() {
                count += 1;
            }
        }
    }
    let left = mounts_under(prefixes);
    if left.is_empty() {
        Ok(count)
    } else {
        Err(LabError::Config(format!("cannot unmount {left:?}")))
    }
}

/// The kubelet's links in `/var/log/containers` (a fixed path) to logs of this lab's pods.
fn remove_container_log_links(root: &Path) -> usize {
    let real = root.join("real");
    let Ok(entries) = std::fs::read_dir("/var/log/containers") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|target| target.starts_with(&real)))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// containerd 1.6 puts its shims' sockets in `/run/containerd/s/` whatever its state directory;
/// a shim killed with -9 leaves its socket. Removes those nothing listens on any more.
fn remove_stale_shim_sockets() -> usize {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir("/run/containerd/s") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .filter(|e| {
            matches!(
                std::os::unix::net::UnixStream::connect(e.path()),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused
            )
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// A region lost at once (`lab stop REGION`): SIGKILLs what is left of its node once its
/// components are stopped — containerd's shims (their command line names the region's socket)
/// and every container process (in the region's cgroup root), as a power cut would. Mounts,
/// cgroups, the namespace and the node's state stay: `lab start REGION` brings the node back, and
/// its kubelet restarts the pods. Returns how many processes it killed.
pub async fn kill_region(region: &super::plan::RegionPlan) -> Result<usize> {
    let markers = [
        format!("{}/", region.dir().display()).into_bytes(),
        format!("{}/", region.run_dir().display()).into_bytes(),
    ];
    let processes = kill_processes(&markers).await?;
    let containers = cgroups::kill(&region.cgroup_root(), WITHIN).await?;
    Ok(processes + containers)
}

/// Everything of the real tier of the lab at `root` (id `id`), in order: processes, containers,
/// mounts, namespaces, runtime files, sysctls. `record` is the sysctl record.
pub async fn sweep(root: &Path, id: &str, record: &Path) -> Result<Swept> {
    let processes = kill_processes(&markers(root, id)).await?;
    let container_processes = cgroups::kill_and_remove(&format!("{id}-"), WITHIN).await?;
    let run = super::plan::run_dir(id);
    let mounts = unmount_all(&[root.join("real"), run.clone()])?;
    let namespaces = netns::delete_all(id)?;
    if run.exists() {
        std::fs::remove_dir_all(&run).map_err(LabError::io("removing", &run))?;
    }
    let files = remove_container_log_links(root) + remove_stale_shim_sockets();
    let sysctls = sysctls::restore(record)?;
    Ok(Swept {
        files,
        processes,
        container_processes,
        mounts,
        namespaces,
        sysctls,
    })
}
