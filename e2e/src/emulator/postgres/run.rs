//! Running PostgreSQL's programs. PostgreSQL refuses to run as root, and the lab usually runs as
//! root, so every program is then started as the `postgres` OS user through `setpriv`, and the
//! directories it writes are handed to that user.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::emulator::error::{EmulatorError, Result};

/// The OS user PostgreSQL runs as when the emulator itself runs as root.
pub const OS_USER: &str = "postgres";

/// Where Debian's PostgreSQL 15 binaries live; overridable with `--pg-bin`.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// uid and gid of [`OS_USER`], from `/etc/passwd`.
fn os_user_ids() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(EmulatorError::io("reading", "/etc/passwd"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&OS_USER) && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| {
            EmulatorError::Config(format!(
                "running as root needs the OS user {OS_USER:?} (Debian's postgresql package creates it)"
            ))
        })
}

/// Creates `dir` (and parents) and, when running as root, gives it to the PostgreSQL user.
pub fn create_owned_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(EmulatorError::io("creating directory", dir))?;
    hand_over(dir)
}

/// Gives a file or directory to the PostgreSQL user when running as root; no-op otherwise.
pub fn hand_over(path: &Path) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let (uid, gid) = os_user_ids()?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(EmulatorError::io("chown", path))
}

/// The first directory on the way to `dir` (itself included) that the PostgreSQL user cannot
/// enter (search permission), when the emulator runs PostgreSQL as that user (running as root);
/// `None` when it can, or when PostgreSQL runs as the current user. Asked of the kernel by
/// running `test -x` as that user, so ACLs and supplementary groups count as they will for
/// PostgreSQL.
pub fn first_unenterable(dir: &Path) -> Result<Option<PathBuf>> {
    if !running_as_root() {
        return Ok(None);
    }
    os_user_ids()?;
    let can_enter = |d: &Path| -> Result<bool> {
        std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={OS_USER}"),
                &format!("--regid={OS_USER}"),
                "--init-groups",
                "--",
                "test",
                "-x",
            ])
            .arg(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .map_err(EmulatorError::io("starting setpriv for", d))
    };
    if can_enter(dir)? {
        return Ok(None);
    }
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    for d in ancestors {
        if !can_enter(d)? {
            return Ok(Some(d.to_path_buf()));
        }
    }
    Ok(Some(dir.to_path_buf()))
}

/// PostgreSQL's programs in one directory.
#[derive(Clone, Debug)]
pub struct PgBin {
    dir: PathBuf,
}

impl PgBin {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// A command for `program` that runs as the PostgreSQL user, in the C locale (so
    /// pg_controldata's labels and dates parse), from `/` (a cwd it can always read).
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let path = self.dir.join(program);
        let mut cmd = if running_as_root() {
            let mut c = tokio::process::Command::new("setpriv");
            c.args([
                &format!("--reuid={OS_USER}"),
                &format!("--regid={OS_USER}"),
                "--init-groups",
                "--",
            ])
            .arg(&path);
            c
        } else {
            tokio::process::Command::new(&path)
        };
        cmd.env("LC_ALL", "C")
            .env_remove("PGDATA")
            .current_dir("/")
            .stdin(Stdio::null())
            .kill_on_drop(false);
        cmd
    }

    /// Runs `program args…` to completion; its stdout on success, an error with stderr otherwise.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let output = self
            .command(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(EmulatorError::io("starting", self.dir.join(program)))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(EmulatorError::Command {
                program: format!("{program} {}", args.join(" ")),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}
