//! The settings the emulator owns, written to `emulator.conf` inside the data directory and
//! included from `postgresql.conf`. pg_basebackup copies both files, and the emulator rewrites
//! `emulator.conf` on every role change, so the source's settings never leak into a copy.
//!
//! `archive_command` and `restore_command` are `/bin/sh` snippets rather than calls to the
//! emulator binary: a rebuild of the binary while PostgreSQL runs would otherwise make the
//! command briefly missing (exit 127), which makes a standby FATAL (contract §10).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::emulator::error::{EmulatorError, Result};

/// Everything that goes into `emulator.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub port: u16,
    /// `on` for a primary, `always` for a replica cluster (contract §1.1).
    pub archive_always: bool,
    /// This cluster's own object store folder.
    pub archive_dir: PathBuf,
    /// The source's object store folder, on a replica cluster whose source has one.
    pub restore_dir: Option<PathBuf>,
    /// Streaming from the source, when its connection parameters resolve to a lab instance.
    pub primary_conninfo: Option<String>,
    pub wal_retrieve_retry_interval: Duration,
}

/// Characters that would break out of the double-quoted shell words or be expanded by
/// PostgreSQL (`%`).
fn check_shell_safe(path: &Path) -> Result<String> {
    let text = path.display().to_string();
    if text.chars().any(|c| "\"'$`\\%\n".contains(c)) {
        return Err(EmulatorError::Config(format!(
            "path {text:?} contains a character the archive commands cannot quote"
        )));
    }
    Ok(text)
}

/// Atomic copy into the archive (temp file + rename). An existing file is accepted only if it
/// is identical: with `archive_mode=always` a waiting standby re-restores and re-archives the
/// same `.partial` content under the segment name on every retry (contract §10).
pub fn archive_command(dir: &Path) -> Result<String> {
    let dir = check_shell_safe(dir)?;
    Ok(format!(
        r#"f="{dir}/%f"; if [ -f "$f" ]; then cmp -s "%p" "$f"; else cp "%p" "$f.tmp$$" && mv -f "$f.tmp$$" "$f"; fi"#
    ))
}

/// Exact name, else `<name>.partial` (what barman-cloud's `download_wal` does), else exit 1 —
/// never 126/127, which make a standby FATAL (contract §10).
pub fn restore_command(dir: &Path) -> Result<String> {
    let dir = check_shell_safe(dir)?;
    Ok(format!(
        r#"f="{dir}/%f"; if [ -f "$f" ]; then cp "$f" "%p"; elif [ -f "$f.partial" ]; then cp "$f.partial" "%p"; else exit 1; fi"#
    ))
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl Settings {
    pub fn render(&self) -> Result<String> {
        let mut lines = vec![
            "# Written by federator-emulator; rewritten on every role change.".to_owned(),
            "listen_addresses = '127.0.0.1'".to_owned(),
            format!("port = {}", self.port),
            // No Unix socket: lab paths can exceed the 107-byte socket path limit.
            "unix_socket_directories = ''".to_owned(),
            "wal_level = replica".to_owned(),
            "hot_standby = on".to_owned(),
            "max_wal_senders = 10".to_owned(),
            format!(
                "archive_mode = {}",
                if self.archive_always { "always" } else { "on" }
            ),
            format!(
                "archive_command = {}",
                quote(&archive_command(&self.archive_dir)?)
            ),
            "recovery_target_timeline = 'latest'".to_owned(),
            format!(
                "wal_retrieve_retry_interval = '{}ms'",
                self.wal_retrieve_retry_interval.as_millis().max(1)
            ),
        ];
        match &self.restore_dir {
            Some(dir) => lines.push(format!(
                "restore_command = {}",
                quote(&restore_command(dir)?)
            )),
            None => lines.push("restore_command = ''".to_owned()),
        }
        lines.push(format!(
            "primary_conninfo = {}",
            quote(self.primary_conninfo.as_deref().unwrap_or_default())
        ));
        lines.push(String::new());
        Ok(lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_paths_and_refuse_unsafe_ones() {
        let cmd = restore_command(Path::new("/lab/object-stores/pg16-eu-south")).expect("safe");
        assert!(cmd.contains(r#"f="/lab/object-stores/pg16-eu-south/%f""#));
        assert!(cmd.ends_with("else exit 1; fi"));
        assert!(archive_command(Path::new("/tmp/it's")).is_err());
    }

    #[test]
    fn renders_role_dependent_settings() {
        let settings = Settings {
            port: 25543,
            archive_always: true,
            archive_dir: "/lab/a".into(),
            restore_dir: None,
            primary_conninfo: Some("host=127.0.0.1 port=25643".into()),
            wal_retrieve_retry_interval: Duration::from_millis(100),
        };
        let text = settings.render().expect("renders");
        assert!(text.contains("archive_mode = always"));
        assert!(text.contains("wal_retrieve_retry_interval = '100ms'"));
        assert!(text.contains("primary_conninfo = 'host=127.0.0.1 port=25643'"));
        assert!(text.contains("restore_command = ''"));
    }
}
