//! The schedule of the automatic-failover nemesis (`e2e/tests/autofailover.rs`, `nemesis_*`):
//! a Jepsen-style sequence of faults — cut the primary's region, cut the hub, cut the link
//! between the two member regions, pause an API server for less than the detection time, kill -9
//! the controller or an agent and start a new one, heal everything — each with a bounded
//! duration and followed by a bounded healing pause, chosen purely from a seed so that a failing
//! run can be replayed (`FEDERATOR_NEMESIS_SEED`).
//!
//! Roles ("the primary's region", "the replica's agent") are resolved when a fault is injected,
//! from what the topology says then: the schedule itself knows no member.

use std::fmt;
use std::time::Duration;

/// Whose API server a pause freezes, resolved when injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Whose {
    Hub,
    Primary,
    Replica,
}

/// One fault of the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NemesisFault {
    /// The primary's region cut off from everything: the controller's link to it, its agent's
    /// links out, the other agents' links to it (PostgreSQL and the test's clients are not cut).
    CutPrimaryRegion,
    /// The hub alone cut off: the controller's links to the members, every agent's link to the
    /// hub.
    CutHub,
    /// The link between the two member regions (each agent's link to the other region).
    CutMemberLink,
    /// SIGSTOP to an API server, SIGCONT after the duration (shorter than the detection time).
    PauseApiserver(Whose),
    /// kill -9 the controller; a new one starts after the duration.
    KillController,
    /// kill -9 the agent of the primary (`true`) or of the replica; a new one starts after the
    /// duration (within the policy's `agentRestartBound`: the assumption the safety rests on).
    KillAgent { primary: bool },
    /// Everything healed for the duration (a quiet period of its own).
    HealAll,
}

impl fmt::Display for NemesisFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CutPrimaryRegion => write!(f, "cut the primary's region off"),
            Self::CutHub => write!(f, "cut the hub off"),
            Self::CutMemberLink => write!(f, "cut the link between the member regions"),
            Self::PauseApiserver(Whose::Hub) => write!(f, "pause the hub's API server"),
            Self::PauseApiserver(Whose::Primary) => write!(f, "pause the primary's API server"),
            Self::PauseApiserver(Whose::Replica) => write!(f, "pause the replica's API server"),
            Self::KillController => write!(f, "kill -9 the controller, start a new one"),
            Self::KillAgent { primary: true } => {
                write!(f, "kill -9 the primary's agent, start a new one")
            }
            Self::KillAgent { primary: false } => {
                write!(f, "kill -9 the replica's agent, start a new one")
            }
            Self::HealAll => write!(f, "heal all"),
        }
    }
}

/// Every kind of fault the nemesis picks from, with equal weight.
pub const FAULTS: [NemesisFault; 10] = [
    NemesisFault::CutPrimaryRegion,
    NemesisFault::CutHub,
    NemesisFault::CutMemberLink,
    NemesisFault::PauseApiserver(Whose::Hub),
    NemesisFault::PauseApiserver(Whose::Primary),
    NemesisFault::PauseApiserver(Whose::Replica),
    NemesisFault::KillController,
    NemesisFault::KillAgent { primary: true },
    NemesisFault::KillAgent { primary: false },
    NemesisFault::HealAll,
];

/// The bounds of every duration, from the policy under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// `detectionTime` (the lease).
    pub detection: Duration,
    /// `agentRestartBound`: how long an agent may stay dead.
    pub agent_restart: Duration,
}

impl Bounds {
    /// The shortest and longest duration of `fault`. A cut of the primary's region lasts from a
    /// quarter to one and a half detection times (shorter ones change nothing, longer ones fail
    /// over); other cuts up to two; a pause from 1 s to half of one (never a detection: "slow,
    /// not dead"); the controller stays dead up to half of one; an agent at most
    /// `agentRestartBound`.
    pub fn of(&self, fault: NemesisFault) -> (Duration, Duration) {
        let d = self.detection;
        match fault {
            NemesisFault::CutPrimaryRegion => (d / 4, d * 3 / 2),
            NemesisFault::CutHub | NemesisFault::CutMemberLink => (d / 4, d * 2),
            NemesisFault::PauseApiserver(_) => (Duration::from_secs(1).min(d / 2), d / 2),
            NemesisFault::KillController => (Duration::ZERO, d / 2),
            NemesisFault::KillAgent { .. } => (Duration::ZERO, self.agent_restart),
            NemesisFault::HealAll => (d / 4, d),
        }
    }

    /// The healing pause after every fault: everything passes for a quarter to one detection
    /// time.
    pub fn heal(&self) -> (Duration, Duration) {
        (self.detection / 4, self.detection)
    }
}

/// One step of the schedule: `fault` for `lasts`, then everything healed for `then_heal`.
/// `at` is its nominal start (the sum of the steps before it); the run prints the real one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub fault: NemesisFault,
    pub lasts: Duration,
    pub then_heal: Duration,
}

/// SplitMix64: a small, well-mixed generator, so that the schedule needs no dependency and is
/// the same on every platform and version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`, to the millisecond.
    fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let (lo_ms, hi_ms) = (lo.as_millis() as u64, hi.as_millis() as u64);
        if hi_ms <= lo_ms {
            return lo;
        }
        Duration::from_millis(lo_ms + self.next() % (hi_ms - lo_ms + 1))
    }
}

/// The schedule for `seed`: steps until their nominal durations cover `total` (the last step
/// starts before `total` and may end after it). The same seed and bounds always give the same
/// schedule.
pub fn schedule(seed: u64, total: Duration, bounds: &Bounds) -> Vec<Step> {
    let mut rng = SplitMix64(seed);
    let mut steps = Vec::new();
    let mut at = Duration::ZERO;
    while at < total {
        let fault = FAULTS[(rng.next() % FAULTS.len() as u64) as usize];
        let lasts = rng.between(bounds.of(fault));
        let then_heal = rng.between(bounds.heal());
        steps.push(Step {
            at,
            fault,
            lasts,
            then_heal,
        });
        at += lasts + then_heal;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: Bounds = Bounds {
        detection: Duration::from_secs(20),
        agent_restart: Duration::from_secs(2),
    };

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let ten_minutes = Duration::from_secs(600);
        let first = schedule(42, ten_minutes, &LAB);
        assert_eq!(first, schedule(42, ten_minutes, &LAB));
        assert_ne!(first, schedule(43, ten_minutes, &LAB));
        // A shorter run is the start of the longer one: a failure replays with a shorter run.
        let short = schedule(42, Duration::from_secs(120), &LAB);
        assert_eq!(short[..], first[..short.len()]);
    }

    #[test]
    fn every_duration_is_within_its_bounds_and_the_schedule_covers_the_run() {
        for seed in 0..200 {
            let total = Duration::from_secs(600);
            let steps = schedule(seed, total, &LAB);
            let mut at = Duration::ZERO;
            for step in &steps {
                assert_eq!(step.at, at, "seed {seed}: {step:?}");
                let (lo, hi) = LAB.of(step.fault);
                assert!(
                    lo <= step.lasts && step.lasts <= hi,
                    "seed {seed}: {step:?}"
                );
                let (lo, hi) = LAB.heal();
                assert!(lo <= step.then_heal && step.then_heal <= hi, "{step:?}");
                at += step.lasts + step.then_heal;
            }
            assert!(at >= total, "seed {seed}: the schedule ends at {at:?}");
            assert!(steps.last().unwrap().at < total, "seed {seed}");
            // Safety rests on these: an agent is dead at most its restart bound, a pause is
            // shorter than the detection time.
            for step in &steps {
                match step.fault {
                    NemesisFault::KillAgent { .. } => assert!(step.lasts <= LAB.agent_restart),
                    NemesisFault::PauseApiserver(_) => assert!(step.lasts < LAB.detection),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn ten_minutes_pick_every_kind_of_fault() {
        let steps = schedule(7, Duration::from_secs(600), &LAB);
        for fault in FAULTS {
            assert!(
                steps.iter().any(|s| s.fault == fault),
                "{fault} never picked in {steps:#?}"
            );
        }
    }
}
