//! Where the lab's etcd keeps its data: in memory (`/dev/shm`) by default, on disk on request.
//!
//! etcd fsyncs its WAL on every write and wants storage of its own. On the one virtual disk of a
//! lab machine it shares the disk with every region's PostgreSQL, whose shutdown and
//! end-of-recovery checkpoints land exactly inside a switchover's outage: measured with the
//! switchover bench, etcd's WAL fsync reached 64–256 ms there (9 of 3,337), and the hub's
//! status write took the same tail. A memory-backed data directory is the lab's stand-in for the
//! dedicated etcd disk a production control plane has; the lab's Kubernetes state is disposable
//! (`lab up` rebuilds it after a reboot has emptied `/dev/shm`).
//!
//! `<lab>/etcd-data` is what etcd is given either way: a directory (disk) or a symlink to the
//! memory directory, so the lab root stays in etcd's command line (`process::is_ours`).

use std::path::{Path, PathBuf};

use super::error::{LabError, Result};
use super::layout::LabLayout;

/// Chooses the storage: `memory` or `disk`. Unset: memory where [`MEMORY_ROOT`] is usable.
pub const STORAGE_ENV: &str = "FEDERATOR_LAB_ETCD_STORAGE";
/// The memory-backed filesystem of a Linux machine.
pub const MEMORY_ROOT: &str = "/dev/shm";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Memory,
    Disk,
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::Memory => "memory",
            Storage::Disk => "disk",
        })
    }
}

/// The storage asked for by [`STORAGE_ENV`], or the default for this machine.
pub fn wanted() -> Result<Storage> {
    parse(
        std::env::var(STORAGE_ENV).ok().as_deref(),
        is_usable(Path::new(MEMORY_ROOT)),
    )
}

fn parse(value: Option<&str>, memory_usable: bool) -> Result<Storage> {
    match value.map(str::trim) {
        None | Some("") if memory_usable => Ok(Storage::Memory),
        None | Some("") => Ok(Storage::Disk),
        Some("memory") if memory_usable => Ok(Storage::Memory),
        Some("memory") => Err(LabError::Config(format!(
            "{STORAGE_ENV}=memory, but {MEMORY_ROOT} is not a writable directory on this \
             machine; unset it or set it to `disk`"
        ))),
        Some("disk") => Ok(Storage::Disk),
        Some(other) => Err(LabError::Config(format!(
            "{STORAGE_ENV}={other:?} is not a storage; use `memory` or `disk`"
        ))),
    }
}

fn is_usable(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && !m.permissions().readonly())
}

/// Makes `<lab>/etcd-data` ready for an etcd that is about to start, on `wanted` storage.
///
/// `may_switch` is true only when nothing of the lab runs: switching drops the lab's etcd data
/// (`lab up` then re-creates its objects). Otherwise the storage in place is kept, and only a
/// memory directory emptied by a reboot is re-created. Returns the storage in use.
pub fn prepare(layout: &LabLayout, wanted: Storage, may_switch: bool) -> Result<Storage> {
    prepare_in(layout, wanted, may_switch, Path::new(MEMORY_ROOT))
}

fn prepare_in(
    layout: &LabLayout,
    wanted: Storage,
    may_switch: bool,
    memory_root: &Path,
) -> Result<Storage> {
    let link = layout.etcd_data_dir();
    let current = in_place(&link)?;
    if let Some((storage, _)) = &current
        && (*storage == wanted || !may_switch)
    {
        if let Some((Storage::Memory, target)) = &current {
            create_private_dir(target)?;
        }
        return Ok(*storage);
    }
    if let Some((storage, target)) = current {
        if storage == Storage::Memory {
            remove_dir_if_present(&target)?;
        }
        remove_link_or_dir(&link)?;
    }
    match wanted {
        Storage::Disk => create_private_dir(&link)?,
        Storage::Memory => {
            let target = memory_dir(layout, memory_root);
            remove_dir_if_present(&target)?;
            create_private_dir(&target)?;
            std::os::unix::fs::symlink(&target, &link)
                .map_err(LabError::io("linking etcd's data directory", &link))?;
        }
    }
    Ok(wanted)
}

/// True if etcd has never written to `<lab>/etcd-data` (it creates `member/` on its first start):
/// a new lab, a switched storage, or a memory directory a reboot emptied. The lab's PostgreSQL
/// data and WAL archives then belong to Kubernetes objects that no longer exist.
pub fn holds_no_data(layout: &LabLayout) -> bool {
    !layout.etcd_data_dir().join("member").exists()
}

/// Removes the memory directory `<lab>/etcd-data` points to, if it is a link (`down --purge`).
pub fn remove_memory(layout: &LabLayout) -> Result<()> {
    if let Some((Storage::Memory, target)) = in_place(&layout.etcd_data_dir())? {
        remove_dir_if_present(&target)?;
    }
    Ok(())
}

/// The storage `<lab>/etcd-data` is on now, with the directory etcd writes to.
fn in_place(link: &Path) -> Result<Option<(Storage, PathBuf)>> {
    match std::fs::symlink_metadata(link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::io("inspecting", link)(e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(link).map_err(LabError::io("reading link", link))?;
            Ok(Some((Storage::Memory, target)))
        }
        Ok(_) => Ok(Some((Storage::Disk, link.to_path_buf()))),
    }
}

/// One directory per lab: two labs on one machine never share etcd data.
fn memory_dir(layout: &LabLayout, memory_root: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    layout.root().hash(&mut hasher);
    let base = layout
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    memory_root.join(format!(
        "federator-lab-{base}-{:016x}-etcd",
        hasher.finish()
    ))
}

/// etcd warns about (and newer versions refuse) a data directory others may read.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(LabError::io("creating etcd's data directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(LabError::io("restricting", dir))
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LabError::io("removing etcd data", dir)(e))
        }
        _ => Ok(()),
    }
}

fn remove_link_or_dir(path: &Path) -> Result<()> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let removed = if is_link {
        std::fs::remove_file(path)
    } else {
        std::fs::remove_dir_all(path)
    };
    removed.map_err(LabError::io("removing", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Dirs {
        _tmp: tempfile::TempDir,
        layout: LabLayout,
        memory: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LabLayout::create(tmp.path().join("lab")).unwrap();
        let memory = tmp.path().join("shm");
        std::fs::create_dir(&memory).unwrap();
        Dirs {
            _tmp: tmp,
            layout,
            memory,
        }
    }

    fn target(d: &Dirs) -> PathBuf {
        std::fs::read_link(d.layout.etcd_data_dir()).unwrap()
    }

    #[test]
    fn the_default_is_memory_where_it_exists_and_disk_elsewhere() {
        assert_eq!(parse(None, true).unwrap(), Storage::Memory);
        assert_eq!(parse(None, false).unwrap(), Storage::Disk);
        assert_eq!(parse(Some("disk"), true).unwrap(), Storage::Disk);
        assert_eq!(parse(Some(" memory "), true).unwrap(), Storage::Memory);
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_choices() {
        let message = parse(Some("ram"), true).unwrap_err().to_string();
        assert!(message.contains(STORAGE_ENV), "{message}");
        assert!(message.contains("`memory` or `disk`"), "{message}");
        let message = parse(Some("memory"), false).unwrap_err().to_string();
        assert!(message.contains(MEMORY_ROOT), "{message}");
    }

    #[test]
    fn memory_storage_links_a_private_directory_under_the_memory_root() {
        let d = dirs();
        let used = prepare_in(&d.layout, Storage::Memory, true, &d.memory).unwrap();
        assert_eq!(used, Storage::Memory);
        let target = target(&d);
        assert!(target.starts_with(&d.memory), "{}", target.display());
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn data_in_place_survives_a_restart_and_a_reboot_recreates_the_directory() {
        let d = dirs();
        prepare_in(&d.layout, Storage::Memory, true, &d.memory).unwrap();
        let kept = target(&d).join("member");
        std::fs::create_dir(&kept).unwrap();
        prepare_in(&d.layout, Storage::Memory, true, &d.memory).unwrap();
        assert!(kept.exists(), "a second `up` must not drop etcd's data");
        assert!(!holds_no_data(&d.layout));
        // A reboot empties the memory root: the link dangles.
        std::fs::remove_dir_all(target(&d)).unwrap();
        prepare_in(&d.layout, Storage::Memory, false, &d.memory).unwrap();
        assert!(target(&d).is_dir());
        assert!(holds_no_data(&d.layout), "etcd starts empty after a reboot");
    }

    #[test]
    fn storage_switches_only_when_nothing_runs() {
        let d = dirs();
        prepare_in(&d.layout, Storage::Disk, true, &d.memory).unwrap();
        let link = d.layout.etcd_data_dir();
        std::fs::create_dir(link.join("member")).unwrap();
        let kept = prepare_in(&d.layout, Storage::Memory, false, &d.memory).unwrap();
        assert_eq!(kept, Storage::Disk);
        assert!(link.join("member").exists());

        let switched = prepare_in(&d.layout, Storage::Memory, true, &d.memory).unwrap();
        assert_eq!(switched, Storage::Memory);
        let memory_target = target(&d);
        assert!(
            !memory_target.join("member").exists(),
            "a switch starts empty"
        );

        prepare_in(&d.layout, Storage::Disk, true, &d.memory).unwrap();
        assert!(link.is_dir() && !link.is_symlink());
        assert!(
            !memory_target.exists(),
            "switching to disk frees the memory"
        );
    }

    #[test]
    fn purge_frees_the_memory_directory() {
        let d = dirs();
        prepare_in(&d.layout, Storage::Memory, true, &d.memory).unwrap();
        let memory_target = target(&d);
        remove_memory(&d.layout).unwrap();
        assert!(!memory_target.exists());
    }

    #[test]
    fn two_labs_never_share_a_memory_directory() {
        let (a, b) = (dirs(), dirs());
        assert_ne!(
            memory_dir(&a.layout, &a.memory).file_name(),
            memory_dir(&b.layout, &a.memory).file_name()
        );
    }
}
