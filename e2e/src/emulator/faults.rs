//! Fault injection, switched on per Cluster by annotations (contract §9). Each reproduces one
//! CNPG bug an orchestrator must survive.

use std::time::Duration;

use topology::cnpg::Cluster;

/// Prefix of every fault annotation.
pub const PREFIX: &str = "emulator.federator.dev/";
/// `"true"`: clean-up after demotion also empties `status.demotionToken` (#11074).
pub const WIPE_DEMOTION_TOKEN: &str = "emulator.federator.dev/wipe-demotion-token";
/// `"true"`: the instance manager never sets `TransitionCompleted`; the demotion hangs fenced
/// with no token (#5754, #6317, #9591).
pub const HANG_BEFORE_TRANSITION: &str = "emulator.federator.dev/hang-before-transition-completed";
/// `"true"`: the role turns replica on paper but the demotion never starts, and the primary
/// keeps accepting writes (PR 11268).
pub const SKIP_DEMOTION: &str = "emulator.federator.dev/skip-demotion";
/// A duration (`1500ms`, `5s`): a fenced primary keeps running this long before its fast
/// shutdown and shutdown checkpoint start.
pub const SLOW_SHUTDOWN: &str = "emulator.federator.dev/slow-shutdown-checkpoint";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub wipe_demotion_token: bool,
    pub hang_before_transition: bool,
    pub skip_demotion: bool,
    pub slow_shutdown: Option<Duration>,
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
            wipe_demotion_token: on(WIPE_DEMOTION_TOKEN),
            hang_before_transition: on(HANG_BEFORE_TRANSITION),
            skip_demotion: on(SKIP_DEMOTION),
            slow_shutdown: get(SLOW_SHUTDOWN).and_then(parse_duration),
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
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
    }
}
