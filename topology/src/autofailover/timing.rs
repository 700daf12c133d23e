//! The timing inequality between the agent's fence and the earliest promotion.
//!
//! Notation (real time, which no process can read; each process reads its own monotonic clock,
//! whose rate is within `1 ± ρ` of real time):
//! - `t0`: when the primary's agent *sent* its last renewal that a majority of voters accepted.
//!   Every voter that accepted it received it at or after `t0`.
//! - The agent fences once `fence_after` has passed on its clock since `t0` without a newer
//!   accepted renewal: at real time at most `t0 + fence_after / (1 − ρ)`. The fence takes effect
//!   (PostgreSQL refuses writes) at most `fence_bound` later.
//! - A voter declares the heartbeat expired once `lease` has passed on its clock since it
//!   received a renewal: for a voter that accepted the renewal sent at `t0`, at real time at least
//!   `t0 + lease / (1 + ρ)`. A promotion needs a majority of voters to declare expiry, and any two
//!   majorities share a voter, so no promotion starts before `t0 + lease / (1 + ρ)`.
//!
//! - An agent that crashes is back within `agent_restart_bound` (its Deployment restarts it; an
//!   assumption the `federator_agent_up` alert watches). A restarted agent of a primary does not
//!   know `t0`, so it fences unless a renewal is accepted within `renew_every` of its start.
//!   Worst case: the old agent dies just before its fence, at `t0 + fence_after / (1 − ρ)`.
//!
//! Safety: `(fence_after + renew_every) / (1 − ρ) + agent_restart_bound + fence_bound + margin <
//! lease / (1 + ρ)`, checked by [`Timing::check`] in integer nanoseconds rounded against us.

use std::time::Duration;

/// Clock rate drift bound, in parts per million (1 000 ppm = 0.1 %). Quartz clocks of servers
/// stay within ~100 ppm; NTP slewing adds at most 500 ppm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drift {
    pub ppm: u32,
}

/// The knobs of automatic failover that decide safety and detection time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often the agent renews its heartbeat with the voters.
    pub renew_every: Duration,
    /// How long a voter waits without a renewal before it counts the heartbeat as expired.
    pub lease: Duration,
    /// How long the agent of a primary waits without an accepted renewal before it fences.
    pub fence_after: Duration,
    /// The longest the fence may take to stop writes once the agent decided it.
    pub fence_bound: Duration,
    /// The longest a crashed agent stays down before its replacement runs (an assumption).
    pub agent_restart_bound: Duration,
    /// Clock rate drift bound of every process.
    pub drift: Drift,
    /// Real time kept between the latest fence and the earliest promotion.
    pub margin: Duration,
}

/// Why a [`Timing`] is refused; each names the field of `spec.automaticFailover` and the fix.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    #[error(
        "spec.automaticFailover.renewEvery ({renew_every:?}) must be at most half of fenceAfter \
         ({fence_after:?}): one lost renewal must not fence a healthy primary; lower renewEvery \
         or raise fenceAfter"
    )]
    RenewTooSlow {
        renew_every: Duration,
        fence_after: Duration,
    },
    #[error(
        "spec.automaticFailover.detectionTime ({lease:?}) is too short: the primary's agent may \
         still be fencing until {fenced_by:?} after its last renewal, and a promotion may start \
         {earliest_promotion:?} after it (margin {margin:?}); raise detectionTime to at least \
         {needed:?} or lower fenceAfter"
    )]
    FenceNotAheadOfPromotion {
        lease: Duration,
        fenced_by: Duration,
        earliest_promotion: Duration,
        margin: Duration,
        needed: Duration,
    },
    #[error(
        "spec.automaticFailover.clockDriftPPM ({ppm}) must be below 100000 (10 %); a clock that \
         drifts more is broken"
    )]
    DriftTooLarge { ppm: u32 },
    #[error("spec.automaticFailover.{field} must be greater than zero")]
    Zero { field: &'static str },
}

/// What a valid [`Timing`] guarantees, in real time after `t0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimingMargins {
    /// The latest moment the primary refuses writes if it loses its quorum.
    pub fenced_by: Duration,
    /// The earliest moment another member can be promoted.
    pub earliest_promotion: Duration,
    /// The latest moment a majority of voters counts a dead primary's heartbeat as expired,
    /// measured from its last renewal: the detection part of the RTO.
    pub detected_by: Duration,
}

const PPM: u128 = 1_000_000;

/// `d / (1 − ρ)`, rounded up: the longest real time a local duration can take.
fn stretched(d: Duration, drift: Drift) -> u128 {
    let n = d.as_nanos() * PPM;
    let den = PPM - u128::from(drift.ppm);
    n.div_ceil(den)
}

/// `d / (1 + ρ)`, rounded down: the shortest real time a local duration can take.
fn shrunk(d: Duration, drift: Drift) -> u128 {
    d.as_nanos() * PPM / (PPM + u128::from(drift.ppm))
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

impl Timing {
    /// The defaults: RTO well under 30 s on the lab (detection ≤ 10 s plus the promotion).
    pub const DEFAULT: Timing = Timing {
        renew_every: Duration::from_secs(1),
        lease: Duration::from_secs(10),
        fence_after: Duration::from_secs(4),
        fence_bound: Duration::from_secs(2),
        agent_restart_bound: Duration::from_secs(2),
        drift: Drift { ppm: 1_000 },
        margin: Duration::from_millis(400),
    };

    /// The tightest documented settings: detection ≤ 3 s.
    pub const TIGHT: Timing = Timing {
        renew_every: Duration::from_millis(250),
        lease: Duration::from_secs(3),
        fence_after: Duration::from_secs(1),
        fence_bound: Duration::from_millis(750),
        agent_restart_bound: Duration::from_millis(500),
        drift: Drift { ppm: 1_000 },
        margin: Duration::from_millis(200),
    };

    /// How long the hub's vote round waits for the primary's region to answer its reach probe
    /// (`GET /version` on the member's API server) before it counts the region unreachable:
    /// `fenceAfter` (a region silent for as long as its own agent waits before fencing), but at
    /// most half of `detectionTime − renewEvery`, so that a probe started just after a cut and
    /// the one after it both end before the lease does. Reach is not a term of the timing
    /// inequality (a "lost" ballot needs a whole lease without an accepted renewal whatever the
    /// probe says), so this bound decides only how soon after the lease the hub can vote.
    pub fn reach_probe_timeout(&self) -> Duration {
        let room = self.lease.saturating_sub(self.renew_every) / 2;
        self.fence_after
            .min(room)
            .max(self.renew_every.min(self.fence_after))
    }

    /// Checks the safety inequality and the sanity rules; returns the guaranteed margins.
    pub fn check(&self) -> Result<TimingMargins, TimingError> {
        for (field, d) in [
            ("renewEvery", self.renew_every),
            ("detectionTime", self.lease),
            ("fenceAfter", self.fence_after),
        ] {
            if d.is_zero() {
                return Err(TimingError::Zero { field });
            }
        }
        if self.drift.ppm >= 100_000 {
            return Err(TimingError::DriftTooLarge {
                ppm: self.drift.ppm,
            });
        }
        if self.renew_every * 2 > self.fence_after {
            return Err(TimingError::RenewTooSlow {
                renew_every: self.renew_every,
                fence_after: self.fence_after,
            });
        }
        let fenced_by = stretched(self.fence_after + self.renew_every, self.drift)
            + self.agent_restart_bound.as_nanos()
            + self.fence_bound.as_nanos();
        let earliest = shrunk(self.lease, self.drift);
        let margin = self.margin.as_nanos();
        if fenced_by + margin >= earliest {
            // The smallest lease whose shrunk value clears the fence by the margin.
            let want = fenced_by + margin + 1;
            let needed = (want * (PPM + u128::from(self.drift.ppm))).div_ceil(PPM);
            return Err(TimingError::FenceNotAheadOfPromotion {
                lease: self.lease,
                fenced_by: nanos(fenced_by),
                earliest_promotion: nanos(earliest),
                margin: self.margin,
                needed: nanos(needed),
            });
        }
        Ok(TimingMargins {
            fenced_by: nanos(fenced_by),
            earliest_promotion: nanos(earliest),
            detected_by: nanos(stretched(self.lease, self.drift)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_settings_are_safe() {
        let d = Timing::DEFAULT.check().expect("defaults");
        assert!(d.fenced_by < d.earliest_promotion);
        assert!(d.detected_by <= Duration::from_millis(10_011));
        let t = Timing::TIGHT.check().expect("tightest");
        assert!(t.fenced_by < t.earliest_promotion);
        assert!(t.detected_by <= Duration::from_millis(3_004));
    }

    #[test]
    fn the_reach_probe_ends_within_the_lease_and_the_fence_wait() {
        // Default: 4 s (fenceAfter); tightest: 1 s. Two probes and a round fit in the lease.
        assert_eq!(
            Timing::DEFAULT.reach_probe_timeout(),
            Duration::from_secs(4)
        );
        assert_eq!(Timing::TIGHT.reach_probe_timeout(), Duration::from_secs(1));
        for t in [Timing::DEFAULT, Timing::TIGHT] {
            let probe = t.reach_probe_timeout();
            assert!(probe * 2 + t.renew_every <= t.lease, "{t:?}");
        }
        // A long lease does not stretch it past fenceAfter.
        let long = Timing {
            lease: Duration::from_secs(60),
            ..Timing::DEFAULT
        };
        assert_eq!(long.reach_probe_timeout(), Duration::from_secs(4));
    }

    #[test]
    fn a_lease_shorter_than_the_fence_is_refused_with_the_lease_that_would_do() {
        let timing = Timing {
            lease: Duration::from_secs(9),
            ..Timing::DEFAULT
        };
        let err = timing.check().unwrap_err();
        let TimingError::FenceNotAheadOfPromotion { needed, .. } = err else {
            panic!("{err}");
        };
        assert!(err.to_string().contains("detectionTime"), "{err}");
        // The lease it names is enough, and just enough.
        let fixed = Timing {
            lease: needed,
            ..timing
        };
        fixed.check().expect("the suggested detectionTime");
        let short = Timing {
            lease: needed - Duration::from_millis(2),
            ..timing
        };
        assert!(short.check().is_err());
    }

    #[test]
    fn drift_counts_against_both_sides() {
        // Safe without drift by 1 ms (4 + 1 + 2 + 2 + 0.4 = 9.4 s), unsafe once clocks drift.
        let timing = Timing {
            renew_every: Duration::from_secs(1),
            lease: Duration::from_millis(9_401),
            fence_after: Duration::from_secs(4),
            fence_bound: Duration::from_secs(2),
            agent_restart_bound: Duration::from_secs(2),
            drift: Drift { ppm: 0 },
            margin: Duration::from_millis(400),
        };
        timing.check().expect("no drift");
        let drifting = Timing {
            drift: Drift { ppm: 500 },
            ..timing
        };
        assert!(matches!(
            drifting.check(),
            Err(TimingError::FenceNotAheadOfPromotion { .. })
        ));
    }

    #[test]
    fn a_renewal_period_that_one_loss_would_fence_is_refused() {
        let timing = Timing {
            renew_every: Duration::from_millis(2_500),
            ..Timing::DEFAULT
        };
        assert!(matches!(
            timing.check(),
            Err(TimingError::RenewTooSlow { .. })
        ));
        let zero = Timing {
            lease: Duration::ZERO,
            ..Timing::DEFAULT
        };
        assert_eq!(
            zero.check(),
            Err(TimingError::Zero {
                field: "detectionTime"
            })
        );
    }
}
