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
    /// Where `restore_command` reads WAL: on a replica cluster the source's object store
    /// folder (when it has one); on a standby whose Cluster is primary by spec (a promotion
    /// waiting for its token) its own backup store, as CNPG's wal-restore does.
    pub restore_dir: Option<PathBuf>,
    /// Fault [`SLOW_WAL_RESTORE`](crate::emulator::faults::SLOW_WAL_RESTORE): each file found
    /// arrives this much later.
    pub restore_delay: Option<Duration>,
    /// Streaming from the source, when its connection parameters resolve to a lab instance.
    pub primary_conninfo: Option<String>,
    pub wal_retrieve_retry_interval: Duration,
    /// `spec.postgresql.parameters` without the ones CNPG fixes ([`is_fixed`]), in name order.
    pub parameters: Vec<(String, String)>,
}

/// CNPG's default parameters that matter here, written before the user's (who may override
/// them): `archive_timeout` is what makes an archive-only replica catch up when no segment fills.
pub const CNPG_DEFAULTS: &[(&str, &str)] = &[("archive_timeout", "5min")];

/// Parameters CNPG controls itself ("fixed parameters" of its PostgreSQL configuration docs):
/// its webhook refuses them in `spec.postgresql.parameters`, and its instance manager writes its
/// own values after the user's. The emulator, which does not model that refusal, drops them.
pub fn is_fixed(name: &str) -> bool {
    // CNPG 1.28.1 `FixedConfigurationParameters` (pkg/postgres/configuration.go), plus
    // `wal_level` and `full_page_writes`, which its webhook constrains (a replica cluster
    // needs WAL archiving) and the emulator keeps at its own values.
    const FIXED: &[&str] = &[
        "allow_system_table_mods",
        "archive_cleanup_command",
        "archive_command",
        "archive_mode",
        "bonjour",
        "bonjour_name",
        "cluster_name",
        "config_file",
        "data_directory",
        "data_sync_retry",
        "event_source",
        "external_pid_file",
        "full_page_writes",
        "hba_file",
        "hot_standby",
        "ident_file",
        "jit_provider",
        "listen_addresses",
        "log_destination",
        "log_directory",
        "log_file_mode",
        "log_filename",
        "log_rotation_age",
        "log_rotation_size",
        "log_truncate_on_rotation",
        "logging_collector",
        "port",
        "primary_conninfo",
        "primary_slot_name",
        "promote_trigger_file",
        "recovery_end_command",
        "recovery_min_apply_delay",
        "recovery_target",
        "recovery_target_action",
        "recovery_target_inclusive",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_timeline",
        "recovery_target_xid",
        "restart_after_crash",
        "restore_command",
        "shared_preload_libraries",
        "ssl",
        "ssl_ca_file",
        "ssl_cert_file",
        "ssl_crl_file",
        "ssl_dh_params_file",
        "ssl_ecdh_curve",
        "ssl_key_file",
        "ssl_passphrase_command",
        "ssl_passphrase_command_supports_reload",
        "ssl_prefer_server_ciphers",
        "stats_temp_directory",
        "synchronized_standby_slots",
        "synchronous_standby_names",
        "syslog_facility",
        "syslog_ident",
        "syslog_sequence_numbers",
        "syslog_split_messages",
        "temp_tablespaces",
        "unix_socket_directories",
        "unix_socket_group",
        "unix_socket_permissions",
        "wal_level",
    ];
    let name = name.to_ascii_lowercase();
    FIXED.contains(&name.as_str()) || name.starts_with("recovery_") || name.starts_with("ssl")
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

/// Atomic copy into the archive (temp file + rename) that replaces a file of the same name, as
/// barman-cloud-wal-archive's upload (an object-store PUT, no existence check) does under CNPG's
/// `wal-archive`. Refusing a different file would be wrong: with `archive_mode=always` one
/// standby archives the same segment name twice with different bytes past the end of WAL — the
/// copy its WAL receiver closed at "End of WAL reached on timeline N" (its own recycled tail)
/// and the copy it restored (another server's tail) — and a refusal then blocks its archiver on
/// that segment for good (docs/lab-real.md, fidelity table). An identical file is left as it
/// is: the same outcome as a replacement, without writing 16 MB again each time a waiting
/// standby re-archives the segment it re-restored.
pub fn archive_command(dir: &Path) -> Result<String> {
    let dir = check_shell_safe(dir)?;
    Ok(format!(
        r#"f="{dir}/%f"; if [ -f "$f" ] && cmp -s "%p" "$f"; then :; else cp "%p" "$f.tmp$$" && mv -f "$f.tmp$$" "$f"; fi"#
    ))
}

/// Exact name, else `<name>.partial` (what barman-cloud's `download_wal` does), else exit 1 —
/// never 126/127, which make a standby FATAL (contract §10).
///
/// A file identical to the copy already in `pg_wal` is not copied again: exit 1, and PostgreSQL
/// reads that copy instead (a failed restore falls back to `pg_wal`, `XLogFileReadAnyTLI`), so
/// it replays the same bytes. Why: a standby waiting for WAL re-requests the segment its WAL
/// ends in every `wal_retrieve_retry_interval` (100 ms in the lab); copying 16 MB each time
/// (then fsynced, and re-archived with `archive_mode=always`) was what made ten region switches
/// at once take 5–10× the slowest alone (docs/benchmarks.md "Region switches"). Real CNPG does
/// download it again each time, but at PostgreSQL's default 5 s interval.
pub fn restore_command(dir: &Path, delay: Option<Duration>) -> Result<String> {
    let dir = check_shell_safe(dir)?;
    let wait = delay
        .map(|d| format!("sleep {:.3}; ", d.as_secs_f64()))
        .unwrap_or_default();
    Ok(format!(
        r#"f="{dir}/%f"; if [ -f "$f" ]; then s="$f"; elif [ -f "$f.partial" ]; then s="$f.partial"; else exit 1; fi; if [ -f "pg_wal/%f" ] && cmp -s "$s" "pg_wal/%f"; then exit 1; fi; {wait}cp "$s" "%p""#
    ))
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl Settings {
    /// CNPG's order: defaults, then the user's parameters, then the fixed ones (last wins).
    pub fn render(&self) -> Result<String> {
        let mut lines =
            vec!["# Written by federator-emulator; rewritten on every role change.".to_owned()];
        lines.extend(
            CNPG_DEFAULTS
                .iter()
                .map(|(name, value)| format!("{name} = {}", quote(value))),
        );
        // The lab's own default (CNPG leaves PostgreSQL's 5 s): a replica retries its restore
        // at the lab's pace.
        lines.push(format!(
            "wal_retrieve_retry_interval = '{}ms'",
            self.wal_retrieve_retry_interval.as_millis().max(1)
        ));
        lines.push("max_wal_senders = 10".to_owned());
        for (name, value) in &self.parameters {
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(EmulatorError::Config(format!(
                    "parameter name {name:?} is not a PostgreSQL setting name"
                )));
            }
            lines.push(format!("{name} = {}", quote(value)));
        }
        lines.extend([
            "listen_addresses = '127.0.0.1'".to_owned(),
            format!("port = {}", self.port),
            // No Unix socket: lab paths can exceed the 107-byte socket path limit.
            "unix_socket_directories = ''".to_owned(),
            "wal_level = replica".to_owned(),
            "hot_standby = on".to_owned(),
            format!(
                "archive_mode = {}",
                if self.archive_always { "always" } else { "on" }
            ),
            format!(
                "archive_command = {}",
                quote(&archive_command(&self.archive_dir)?)
            ),
            "recovery_target_timeline = 'latest'".to_owned(),
        ]);
        match &self.restore_dir {
            Some(dir) => lines.push(format!(
                "restore_command = {}",
                quote(&restore_command(dir, self.restore_delay)?)
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
        let cmd =
            restore_command(Path::new("/lab/object-stores/pg16-eu-south"), None).expect("safe");
        assert!(cmd.contains(r#"f="/lab/object-stores/pg16-eu-south/%f""#));
        assert!(cmd.contains("else exit 1; fi"));
        assert!(archive_command(Path::new("/tmp/it's")).is_err());
    }

    /// Runs `command` as PostgreSQL would (`%p` relative to the data directory `cwd`, `%f` the
    /// file name) and returns its exit status.
    fn run_archive(command: &str, cwd: &Path, name: &str) -> std::process::ExitStatus {
        let command = command
            .replace("%p", &format!("pg_wal/{name}"))
            .replace("%f", name);
        std::process::Command::new("/bin/sh")
            .args(["-c", &command])
            .current_dir(cwd)
            .status()
            .expect("/bin/sh runs")
    }

    /// The session-8 ring stall: a segment already in the store with other bytes (a WAL
    /// receiver's copy, then a restored copy of the same segment) made every later archive of
    /// it fail, so the archiver never moved past it.
    #[test]
    fn archiving_a_segment_again_with_other_bytes_replaces_it() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let pgdata = tmp.path().join("pgdata");
        let store = tmp.path().join("store");
        std::fs::create_dir_all(pgdata.join("pg_wal")).expect("pg_wal");
        std::fs::create_dir_all(&store).expect("store");
        let name = "000000210000000000000042";
        std::fs::write(store.join(name), b"streamed prefix, own tail").expect("first copy");
        std::fs::write(
            pgdata.join("pg_wal").join(name),
            b"streamed prefix, other tail",
        )
        .expect("second copy");
        let command = archive_command(&store).expect("safe");

        assert!(run_archive(&command, &pgdata, name).success());
        assert_eq!(
            std::fs::read(store.join(name)).expect("archived"),
            b"streamed prefix, other tail"
        );
        // Identical again (a standby re-archiving what it re-restored): still accepted.
        assert!(run_archive(&command, &pgdata, name).success());
        let left: Vec<_> = std::fs::read_dir(&store)
            .expect("store")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from(name)],
            "no temp file left"
        );
    }

    /// Runs the restore command for `name` in the data directory `pgdata`, as PostgreSQL does
    /// (`%p` = `pg_wal/RECOVERYXLOG`); returns whether it succeeded and what it wrote.
    fn run_restore(command: &str, pgdata: &Path, name: &str) -> (bool, Option<Vec<u8>>) {
        let target = pgdata.join("pg_wal/RECOVERYXLOG");
        let _ = std::fs::remove_file(&target);
        let command = command
            .replace("%p", "pg_wal/RECOVERYXLOG")
            .replace("%f", name);
        let ok = std::process::Command::new("/bin/sh")
            .args(["-c", &command])
            .current_dir(pgdata)
            .status()
            .expect("/bin/sh runs")
            .success();
        (ok, std::fs::read(&target).ok())
    }

    #[test]
    fn a_restore_copies_what_is_new_and_fails_fast_on_what_pg_wal_already_holds() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let pgdata = tmp.path().join("pgdata");
        let store = tmp.path().join("store");
        std::fs::create_dir_all(pgdata.join("pg_wal")).expect("pg_wal");
        std::fs::create_dir_all(&store).expect("store");
        let command = restore_command(&store, None).expect("safe");
        let name = "000000090000000000000014";

        assert_eq!(
            run_restore(&command, &pgdata, name),
            (false, None),
            "absent"
        );
        // Only the demoted primary's `.partial`: served under the segment's name.
        std::fs::write(store.join(format!("{name}.partial")), b"end of WAL").expect("partial");
        assert_eq!(
            run_restore(&command, &pgdata, name),
            (true, Some(b"end of WAL".to_vec()))
        );
        // PostgreSQL kept it as pg_wal/<name>: the next retry copies nothing.
        std::fs::write(pgdata.join("pg_wal").join(name), b"end of WAL").expect("kept");
        assert_eq!(
            run_restore(&command, &pgdata, name),
            (false, None),
            "unchanged"
        );
        // The segment completed in the store (or pg_wal holds other bytes): copied again.
        std::fs::write(store.join(name), b"end of WAL, then more").expect("full");
        assert_eq!(
            run_restore(&command, &pgdata, name),
            (true, Some(b"end of WAL, then more".to_vec()))
        );
    }

    #[test]
    fn renders_role_dependent_settings() {
        let settings = Settings {
            port: 25543,
            archive_always: true,
            archive_dir: "/lab/a".into(),
            restore_dir: None,
            restore_delay: None,
            primary_conninfo: Some("host=127.0.0.1 port=25643".into()),
            wal_retrieve_retry_interval: Duration::from_millis(100),
            parameters: vec![("archive_timeout".into(), "1s".into())],
        };
        let text = settings.render().expect("renders");
        let default = text
            .find("archive_timeout = '5min'")
            .expect("CNPG's default");
        let user = text
            .find("archive_timeout = '1s'")
            .expect("the user's value");
        assert!(default < user, "the user's value must come last:\n{text}");
        assert!(text.contains("archive_mode = always"));
        assert!(text.contains("wal_retrieve_retry_interval = '100ms'"));
        assert!(text.contains("primary_conninfo = 'host=127.0.0.1 port=25643'"));
        assert!(text.contains("restore_command = ''"));
    }
}
