//! How one emulator process is configured (flags of `federator-emulator run`).

use std::path::PathBuf;
use std::time::Duration;

use super::postgres::PgBin;

/// CNPG's requeue intervals, scaled. CNPG's operator requeues every 1 s during a switch and its
/// instance manager re-checks a waiting promotion token every 10 s; the lab runs them at
/// `scale` (0.05 by default: 50 ms and 500 ms) so tests are fast, and `--time-scale 1` gives
/// CNPG's own timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub scale: f64,
}

impl Timing {
    fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs * self.scale).max(0.01))
    }
    /// The operator's requeue while a demotion or promotion is in progress.
    pub fn operator(&self) -> Duration {
        self.scaled(1.0)
    }
    /// The instance manager's requeue while a promotion token waits, and while waiting for a
    /// shut-down `pg_controldata` before building the demotion token.
    pub fn instance_manager(&self) -> Duration {
        self.scaled(10.0)
    }
    /// How long an in-place restart's smart shutdown waits for client sessions before a fast
    /// one: the Cluster's `spec.smartShutdownTimeout` (CNPG's default 180 s), scaled.
    pub fn smart_shutdown(&self, secs: f64) -> Duration {
        self.scaled(secs)
    }
    /// Status refresh when nothing happens. Not scaled: every change that matters arrives as a
    /// watch event, and a lab holds dozens of Clusters (leftovers of failed tests included)
    /// whose refresh costs two process spawns and a connection each on a 2-core machine.
    pub fn resync(&self) -> Duration {
        Duration::from_secs(10)
    }
}

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub lab_dir: PathBuf,
    /// The member region whose apiserver this emulator watches (`eu-central`, …).
    pub member: String,
    pub pg_bin: PgBin,
    /// First PostgreSQL port of this member; Clusters take `base..base+100`.
    pub pg_port_base: u16,
    pub timing: Timing,
    pub wal_retrieve_retry_interval: Duration,
    /// WAL segment size of the instances it creates (`initdb --wal-segsize`, MB); `None`:
    /// PostgreSQL's 16.
    pub wal_segment_mb: Option<u32>,
}
