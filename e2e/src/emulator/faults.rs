//! Fault injection, switched on per Cluster by annotations (contract §9). Each reproduces one
//! CNPG bug an orchestrator must survive.

use std::time::Duration;

use topology::cnpg::Cluster;

/// Prefix of every fault annotation.
pub const PREFIX: &str = "emulator.federator.dev/";
/// `"true"`: clean-up after demotion also empties `status.demotionToken` (#11074).
/// `"immediately"`: the token is emptied by the very next status write after the one that set
/// it, before unfencing: it is visible for one request's time only, so a controller that reads
/// the token when it reconciles (rather than from the watch event) misses it.
pub const WIPE_DEMOTION_TOKEN: &str = "emulator.federator.dev/wipe-demotion-token";
/// `"lsn-zero"` or `"foreign-sysid"`: the published `demotionToken` decodes and is well formed
/// but is wrong — its REDO location is `0/0` (every instance rejects it as fatal at promotion,
/// the old primary included), or its system identifier is not this cluster's. The `.partial` is
/// archived as usual. Stands for a token damaged or mixed up on its way to the orchestrator.
pub const CORRUPT_DEMOTION_TOKEN: &str = "emulator.federator.dev/corrupt-demotion-token";
/// `"true"` on a promotion target: its instance check finds its replay past the token's REDO
/// location and fails fatally (`promotion token LSN … is older than the last replay LSN`), as
/// for a replica that diverged from the old primary. A genuine token then passes the
/// orchestrator's checks but CNPG refuses it, and the old primary still accepts its own.
pub const REPLAYED_PAST_TOKEN: &str = "emulator.federator.dev/replayed-past-token";
/// `"true"`: the instance manager never sets `TransitionCompleted`; the demotion hangs fenced
/// with no token (#5754, #6317, #9591).
pub const HANG_BEFORE_TRANSITION: &str = "emulator.federator.dev/hang-before-transition-completed";
/// `"true"`: the demoting primary's instance manager restarts before `TransitionCompleted` and
/// then stalls, fenced, with no token, until the Cluster object changes (real CNPG 1.28.1 in the
/// lab, like #5754; `super::stall`): the runbook's annotation releases it.
pub const STALL_DEMOTION_UNTIL_CHANGED: &str =
    "emulator.federator.dev/stall-demotion-until-changed";
/// `"true"`: the role turns replica on paper but the demotion never starts, and the primary
/// keeps accepting writes (PR 11268).
pub const SKIP_DEMOTION: &str = "emulator.federator.dev/skip-demotion";
/// A duration (`1500ms`, `5s`): a fenced primary keeps running this long before its fast
/// shutdown and shutdown checkpoint start.
pub const SLOW_SHUTDOWN: &str = "emulator.federator.dev/slow-shutdown-checkpoint";
/// A duration: a promotion whose token checked out waits this long before `pg_ctl promote`
/// (a busy instance manager), so the target stays in its promoting phase that long.
pub const SLOW_PROMOTION: &str = "emulator.federator.dev/slow-promotion";
/// A duration: every WAL file `restore_command` finds takes this long to arrive (a slow object
/// store download: barman-cloud-wal-restore took 8–10 s per segment on a loaded lab machine), so
/// an archive-only replica lags its source by that much per segment.
pub const SLOW_WAL_RESTORE: &str = "emulator.federator.dev/slow-wal-restore";
/// `"true"` on a replica: its streaming connection to the source is down (a cut link between
/// regions, a refused replication user) while the object store stays reachable: it gets WAL
/// from the source's archive only, so the old primary's shutdown does not wait for it.
pub const STREAMING_DOWN: &str = "emulator.federator.dev/streaming-down";

/// When [`WIPE_DEMOTION_TOKEN`] empties the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wipe {
    /// With the clean-up, as #11074 does.
    AtCleanup,
    /// Right after writing it, before the clean-up starts.
    Immediately,
}

/// How [`CORRUPT_DEMOTION_TOKEN`] damages the published token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// `latestCheckpointREDOLocation: "0/0"` (CNPG's own e2e test forces the fatal path so).
    LsnZero,
    /// Another `databaseSystemIdentifier` than the cluster's.
    ForeignSysid,
}

impl Corruption {
    /// `token` (this cluster's real one) damaged this way.
    pub fn apply(self, token: &mut topology::token::PromotionToken) {
        match self {
            Corruption::LsnZero => token.latest_checkpoint_redo_location = "0/0".into(),
            Corruption::ForeignSysid => {
                // Deterministic, so a restarted emulator publishes the same (equal, not re-written).
                let own: u64 = token.database_system_identifier.parse().unwrap_or(0);
                token.database_system_identifier = own.wrapping_add(1).to_string();
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub wipe_demotion_token: Option<Wipe>,
    pub corrupt_demotion_token: Option<Corruption>,
    pub replayed_past_token: bool,
    pub hang_before_transition: bool,
    pub stall_until_changed: bool,
    pub skip_demotion: bool,
    pub slow_shutdown: Option<Duration>,
    pub slow_promotion: Option<Duration>,
    pub slow_wal_restore: Option<Duration>,
    pub streaming_down: bool,
}

impl Faults {
    pub fn of(cluster: &Cluster) -> Self {
        let get = |key: &str| {
            cluster
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(String::as_str)
        };
        let on = |key: &str| get(key) == Some("true");
        Self {
            wipe_demotion_token: match get(WIPE_DEMOTION_TOKEN) {
                Some("true") => Some(Wipe::AtCleanup),
                Some("immediately") => Some(Wipe::Immediately),
                _ => None,
            },
            corrupt_demotion_token: match get(CORRUPT_DEMOTION_TOKEN) {
                Some("lsn-zero") => Some(Corruption::LsnZero),
                Some("foreign-sysid") => Some(Corruption::ForeignSysid),
                _ => None,
            },
            replayed_past_token: on(REPLAYED_PAST_TOKEN),
            hang_before_transition: on(HANG_BEFORE_TRANSITION),
            stall_until_changed: on(STALL_DEMOTION_UNTIL_CHANGED),
            skip_demotion: on(SKIP_DEMOTION),
            slow_shutdown: get(SLOW_SHUTDOWN).and_then(parse_duration),
            slow_promotion: get(SLOW_PROMOTION).and_then(parse_duration),
            slow_wal_restore: get(SLOW_WAL_RESTORE).and_then(parse_duration),
            streaming_down: on(STREAMING_DOWN),
        }
    }
}

/// `250ms`, `3s`, `1m`; anything else is ignored (the fault stays off).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = text.strip_suffix('s') {
        return s.parse::<f64>().ok().map(Duration::from_secs_f64);
    }
    if let Some(m) = text.strip_suffix('m') {
        return m.parse::<u64>().ok().map(|m| Duration::from_secs(m * 60));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_faults_parse_and_corrupt_only_their_field() {
        let mut cluster = Cluster::new("pg", Default::default());
        let annotations = [
            (WIPE_DEMOTION_TOKEN, "immediately"),
            (CORRUPT_DEMOTION_TOKEN, "foreign-sysid"),
            (SLOW_PROMOTION, "1500ms"),
        ];
        cluster.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let faults = Faults::of(&cluster);
        assert_eq!(faults.wipe_demotion_token, Some(Wipe::Immediately));
        assert_eq!(faults.slow_promotion, Some(Duration::from_millis(1500)));
        assert_eq!(faults.slow_shutdown, None);
        assert_eq!(
            faults.corrupt_demotion_token,
            Some(Corruption::ForeignSysid)
        );

        let real = topology::token::PromotionToken {
            latest_checkpoint_timeline_id: "2".into(),
            redo_wal_file: "000000020000000000000005".into(),
            database_system_identifier: "7300000000000000001".into(),
            latest_checkpoint_redo_location: "0/5000028".into(),
            time_of_latest_checkpoint: "Mon Nov 23 09:00:00 2026".into(),
            operator_version: "federator-emulator".into(),
        };
        let mut foreign = real.clone();
        Corruption::ForeignSysid.apply(&mut foreign);
        assert_eq!(foreign.database_system_identifier, "7300000000000000002");
        let mut zero = real.clone();
        Corruption::LsnZero.apply(&mut zero);
        assert_eq!(zero.latest_checkpoint_redo_location, "0/0");
        for damaged in [foreign, zero] {
            assert!(damaged.validate().is_ok(), "still well formed: {damaged:?}");
            assert_eq!(damaged.redo_wal_file, real.redo_wal_file);
            assert_eq!(damaged.timeline(), real.timeline());
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
    }
}
