//! One real PostgreSQL instance: its data directory, its process (through `pg_ctl`, so the
//! postmaster outlives the emulator and a restarted emulator finds it running) and SQL on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::conf::Settings;
use super::controldata::ControlData;
use super::run::{PgBin, create_owned_dir, hand_over};
use crate::emulator::error::{EmulatorError, Result};

/// The include line the emulator appends to `postgresql.conf` once.
const INCLUDE_LINE: &str = "include_if_exists = 'emulator.conf'";
/// `pg_ctl` waits this long for start, stop and promote. Generous: two cores, five engineers.
const PG_CTL_TIMEOUT_SECS: &str = "300";

/// The instance of one Cluster, living in `dir` (`pgdata/`, `postgres.log`).
#[derive(Clone, Debug)]
pub struct Instance {
    bin: PgBin,
    dir: PathBuf,
}

impl Instance {
    pub fn new(bin: PgBin, dir: impl Into<PathBuf>) -> Self {
        Self {
            bin,
            dir: dir.into(),
        }
    }

    pub fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }
    /// Where a bootstrap builds the data directory before renaming it into place, so a crash
    /// mid-bootstrap never leaves a half-made `pgdata`.
    fn staging(&self) -> PathBuf {
        self.dir.join("pgdata.bootstrap")
    }
    fn standby_signal(&self) -> PathBuf {
        self.pgdata().join("standby.signal")
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.pgdata().join("PG_VERSION").exists()
    }

    pub fn is_standby(&self) -> bool {
        self.standby_signal().exists()
    }

    fn pgdata_arg(&self) -> String {
        self.pgdata().display().to_string()
    }

    async fn prepare_staging(&self) -> Result<String> {
        create_owned_dir(&self.dir)?;
        let staging = self.staging();
        if staging.exists() {
            tokio::fs::remove_dir_all(&staging)
                .await
                .map_err(EmulatorError::io("removing", &staging))?;
        }
        Ok(staging.display().to_string())
    }

    async fn commit_staging(&self) -> Result<()> {
        let staging = self.staging();
        let conf = staging.join("postgresql.conf");
        let mut text = tokio::fs::read_to_string(&conf)
            .await
            .map_err(EmulatorError::io("reading", &conf))?;
        if !text.contains(INCLUDE_LINE) {
            text.push_str(&format!("\n{INCLUDE_LINE}\n"));
            tokio::fs::write(&conf, text)
                .await
                .map_err(EmulatorError::io("writing", &conf))?;
        }
        // pg_basebackup copies the source's standby.signal, if any; the role decides later.
        let _ = tokio::fs::remove_file(staging.join("standby.signal")).await;
        tokio::fs::rename(&staging, self.pgdata())
            .await
            .map_err(EmulatorError::io("renaming into place", self.pgdata()))
    }

    /// `initdb` for a cluster created as primary. Trust authentication on loopback only: the
    /// lab has no secrets to protect and tests connect as `postgres` without a password.
    /// `wal_segment_mb`: `--wal-segsize` (PostgreSQL's default 16 when `None`).
    pub async fn initdb(&self, wal_segment_mb: Option<u32>) -> Result<()> {
        let staging = self.prepare_staging().await?;
        let segsize = wal_segment_mb.map(|mb| format!("--wal-segsize={mb}"));
        let mut args = vec![
            "-D",
            &staging,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        args.extend(segsize.as_deref());
        self.bin.run("initdb", &args).await?;
        self.commit_staging().await
    }

    /// A physical copy of a running source instance, for a cluster created as a replica.
    pub async fn basebackup(&self, source_port: u16) -> Result<()> {
        let staging = self.prepare_staging().await?;
        let port = source_port.to_string();
        self.bin
            .run(
                "pg_basebackup",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-D",
                    &staging,
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
            )
            .await?;
        self.commit_staging().await
    }

    pub async fn write_settings(&self, settings: &Settings) -> Result<()> {
        let path = self.pgdata().join("emulator.conf");
        tokio::fs::write(&path, settings.render()?)
            .await
            .map_err(EmulatorError::io("writing", &path))?;
        hand_over(&path)
    }

    pub async fn current_settings(&self) -> Option<String> {
        tokio::fs::read_to_string(self.pgdata().join("emulator.conf"))
            .await
            .ok()
    }

    /// Writes `standby.signal`: from the next start the instance is a (designated primary)
    /// standby.
    pub async fn make_standby(&self) -> Result<()> {
        let path = self.standby_signal();
        tokio::fs::write(&path, b"")
            .await
            .map_err(EmulatorError::io("writing", &path))?;
        hand_over(&path)
    }

    pub async fn is_running(&self) -> bool {
        self.bin
            .run("pg_ctl", &["status", "-D", &self.pgdata_arg()])
            .await
            .is_ok()
    }

    pub async fn start(&self) -> Result<()> {
        let log = self.log_file().display().to_string();
        self.bin
            .run(
                "pg_ctl",
                &[
                    "start",
                    "-D",
                    &self.pgdata_arg(),
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    PG_CTL_TIMEOUT_SECS,
                ],
            )
            .await
            .map(drop)
    }

    /// Fast shutdown: PostgreSQL writes its shutdown checkpoint (and, with archiving on,
    /// switches segment) before exiting.
    pub async fn stop(&self) -> Result<()> {
        if !self.is_running().await {
            return Ok(());
        }
        self.pg_ctl_stop("fast", PG_CTL_TIMEOUT_SECS).await
    }

    /// `pg_ctl stop -m <mode>`, waiting up to `seconds`.
    async fn pg_ctl_stop(&self, mode: &str, seconds: &str) -> Result<()> {
        self.bin
            .run(
                "pg_ctl",
                &[
                    "stop",
                    "-D",
                    &self.pgdata_arg(),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    seconds,
                ],
            )
            .await
            .map(drop)
    }

    /// Re-reads the configuration (`primary_conninfo`, `restore_command` need no restart).
    pub async fn reload(&self) -> Result<()> {
        self.bin
            .run("pg_ctl", &["reload", "-D", &self.pgdata_arg()])
            .await
            .map(drop)
    }

    pub async fn restart(&self) -> Result<()> {
        self.stop().await?;
        self.start().await
    }

    /// What CNPG does to restart a primary in place: a smart shutdown, which lets every client
    /// session finish, for at most `smart` (whole seconds, at least one), then a fast one; then a
    /// start. Meanwhile new connections are refused ("the database system is shutting down").
    pub async fn restart_in_place(&self, smart: Duration) -> Result<()> {
        if self.is_running().await {
            let seconds = smart.as_secs_f64().ceil().max(1.0).to_string();
            let smart_stop = self.pg_ctl_stop("smart", &seconds).await;
            if let Err(e) = smart_stop {
                tracing::info!(
                    "smart shutdown did not finish within {seconds} s ({e}); fast shutdown"
                );
            }
        }
        self.restart().await
    }

    /// `pg_ctl promote` and wait until `standby.signal` is gone (CNPG waits up to a minute).
    pub async fn promote(&self) -> Result<()> {
        self.bin
            .run(
                "pg_ctl",
                &[
                    "promote",
                    "-D",
                    &self.pgdata_arg(),
                    "-w",
                    "-t",
                    PG_CTL_TIMEOUT_SECS,
                ],
            )
            .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.is_standby() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn controldata(&self) -> Result<ControlData> {
        let text = self
            .bin
            .run("pg_controldata", &["-D", &self.pgdata_arg()])
            .await?;
        Ok(ControlData::parse(&text))
    }

    /// Copies a WAL segment of this instance into `dest` atomically, replacing a file of that
    /// name as the archive command does (CNPG archives the `.partial` through the same
    /// `wal-archive`, an object-store upload).
    pub async fn archive_copy(&self, wal_file: &str, dest: &Path) -> Result<()> {
        let source = self.pgdata().join("pg_wal").join(wal_file);
        let bytes = tokio::fs::read(&source)
            .await
            .map_err(EmulatorError::io("reading", &source))?;
        let tmp = dest.with_extension("tmp-emulator");
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(EmulatorError::io("writing", &tmp))?;
        hand_over(&tmp)?;
        tokio::fs::rename(&tmp, dest)
            .await
            .map_err(EmulatorError::io("renaming into place", dest))
    }
}
