//! The evaluator: given a validated policy, what was already handled, the facts and `now`,
//! decide whether a rotation starts. Pure: time is an argument, nothing is read or written.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use jiff::Timestamp;

use super::decision::{PreconditionFailure, RotationDecision, SkipReason};
use super::policy::MissedSchedulePolicy;
use super::target::next_in_order;
use super::validate::{Order, ValidatedRotation};
use crate::Duration;

/// How many scheduled times [`ValidatedRotation::next_rotation_after`] looks at before it
/// gives up; a freeze would have to swallow this many in a row.
const NEXT_ROTATION_SEARCH_LIMIT: usize = 1000;

/// What the controller observed, as far as rotations care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationFacts {
    /// Per member name. A member missing here counts as not Ready with an unknown lag.
    pub members: BTreeMap<String, MemberFacts>,
    /// A switchover, drill or failover is running.
    pub operation_in_progress: bool,
    /// When the last failed operation ended, if any.
    pub last_failure: Option<Timestamp>,
    /// True when the observer has no source of replay lag at all (Federator's controller reads
    /// CNPG `Cluster` objects, whose status does not publish it): the lag preconditions are then
    /// not checked, rather than holding every rotation as `ReplayLagUnknown`. The switchover
    /// still waits for the target to replay up to the demotion token (`promotionWait`).
    pub replay_lag_unobservable: bool,
    /// Why the topology fails validation, if it does: a rotation never starts while it does.
    pub topology_invalid: Option<String>,
}

/// One member's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFacts {
    pub ready: bool,
    /// How far behind the primary the member's replay is, in time.
    pub replay_lag: Option<StdDuration>,
    /// How far behind the primary the member's replay is, in bytes of WAL.
    pub replay_lag_bytes: Option<u64>,
}

/// Which scheduled times are already dealt with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationHistory {
    /// The scheduled time of the last `Rotate` or `Skip` decision that was recorded.
    pub last_handled: Option<Timestamp>,
    /// When the current schedule took effect (the policy was first seen, or last changed).
    /// Scheduled times at or before it are never due, so a new policy does not act on the past.
    pub active_since: Timestamp,
}

/// Everything one evaluation looks at.
#[derive(Clone, Copy, Debug)]
pub struct RotationInput<'a> {
    pub now: Timestamp,
    pub history: RotationHistory,
    /// The member that is primary now.
    pub primary: &'a str,
    /// The topology's member order: `spec.shape.ring` for a ring, else `spec.members` order.
    pub members: &'a [&'a str],
    pub facts: &'a RotationFacts,
}

impl ValidatedRotation {
    /// Decides what to do at `input.now`.
    ///
    /// Only the latest scheduled time not yet handled is considered: when several went by (the
    /// controller was down), the earlier ones are dropped, as a CronJob does.
    pub fn decide(&self, input: &RotationInput<'_>) -> RotationDecision {
        let handled_until = input
            .history
            .last_handled
            .map_or(input.history.active_since, |t| {
                t.max(input.history.active_since)
            });
        let due = self
            .schedule
            .latest_at_or_before(input.now)
            .filter(|t| *t > handled_until);
        let Some(scheduled_for) = due else {
            return RotationDecision::Wait {
                next_at: self.schedule.next_after(input.now.max(handled_until)),
            };
        };
        let skip = |reason| RotationDecision::Skip {
            scheduled_for,
            reason,
        };
        let deadline = add(scheduled_for, self.missed.starting_deadline);
        if self.suspend {
            return skip(SkipReason::Suspended);
        }
        if input.now > deadline {
            return skip(SkipReason::MissedDeadline { deadline });
        }
        let Some(target) = self.target(input.primary, input.members) else {
            return skip(SkipReason::NoTarget);
        };
        let blocker = self
            .calendar_blocker(input.now)
            .or_else(|| self.facts_blocker(input, target));
        match (blocker, self.missed.policy) {
            (None, _) => RotationDecision::Rotate {
                target: target.to_owned(),
                scheduled_for,
            },
            (Some(reason), MissedSchedulePolicy::Skip) => skip(reason),
            (Some(reason), MissedSchedulePolicy::RunOnce) => RotationDecision::Hold {
                scheduled_for,
                reason,
                deadline,
            },
        }
    }

    /// The next time after `now` at which a rotation would start if the facts allow it, for
    /// status: scheduled times that a freeze or the maintenance windows rule out are passed over
    /// (with `RunOnce`, the first instant within the deadline that they allow counts). `None`
    /// when suspended or when no such time is found.
    pub fn next_rotation_after(&self, now: Timestamp) -> Option<Timestamp> {
        if self.suspend {
            return None;
        }
        let mut after = now;
        for _ in 0..NEXT_ROTATION_SEARCH_LIMIT {
            let scheduled = self.schedule.next_after(after)?;
            if let Some(start) = self.first_calendar_chance(scheduled) {
                return Some(start);
            }
            after = scheduled;
        }
        None
    }

    /// When `decision` should be evaluated again, if time alone can change it: the next
    /// scheduled time after `Wait`; for `Hold`, the end of the freeze, the next window opening
    /// or the end of the cool-down, and at the latest just past the deadline (where it turns
    /// into a `MissedDeadline` skip). Facts (readiness, operations) wake the controller through
    /// watches instead. `None` after `Rotate` and `Skip`: the status write that records them
    /// triggers the next evaluation.
    pub fn recheck_at(&self, decision: &RotationDecision, now: Timestamp) -> Option<Timestamp> {
        match decision {
            RotationDecision::Wait { next_at } => *next_at,
            RotationDecision::Hold {
                reason, deadline, ..
            } => {
                let past_deadline = deadline
                    .saturating_add(StdDuration::from_millis(1))
                    .unwrap_or(Timestamp::MAX);
                let clears = match reason {
                    SkipReason::FreezePeriod { until, .. } => Some(*until),
                    SkipReason::OutsideMaintenanceWindow => {
                        let tz = self.schedule.time_zone();
                        self.windows
                            .iter()
                            .flat_map(|w| w.openings_between(tz, now, *deadline))
                            .min()
                    }
                    SkipReason::PreconditionFailed(PreconditionFailure::RecentFailure {
                        cooldown_until,
                        ..
                    }) => Some(*cooldown_until),
                    _ => None,
                };
                Some(clears.map_or(past_deadline, |at| at.min(past_deadline)))
            }
            RotationDecision::Rotate { .. } | RotationDecision::Skip { .. } => None,
        }
    }

    /// The member the primary moves to. Explicit entries that are no longer members are passed
    /// over, so removing a member from the topology never sends a rotation to it.
    pub fn target<'a>(&self, primary: &str, members: &[&'a str]) -> Option<&'a str> {
        match &self.order {
            Order::NextInRing => next_in_order(members, primary),
            Order::Explicit(list) => {
                let present: Vec<&'a str> = list
                    .iter()
                    .filter_map(|name| members.iter().copied().find(|m| *m == name.as_str()))
                    .collect();
                next_in_order(&present, primary)
            }
        }
    }

    /// What the calendar says against starting at `t`: a freeze, or no open window.
    fn calendar_blocker(&self, t: Timestamp) -> Option<SkipReason> {
        if let Some(freeze) = self.freezes.iter().find(|f| f.contains(t)) {
            return Some(SkipReason::FreezePeriod {
                reason: freeze.reason.clone(),
                until: freeze.end,
            });
        }
        let tz = self.schedule.time_zone();
        let outside = !self.windows.is_empty() && !self.windows.iter().any(|w| w.contains(tz, t));
        outside.then_some(SkipReason::OutsideMaintenanceWindow)
    }

    /// The first instant at which the calendar lets the rotation scheduled at `scheduled` start:
    /// `scheduled` itself, or with `RunOnce` the end of a freeze or the opening of a window
    /// before the deadline.
    fn first_calendar_chance(&self, scheduled: Timestamp) -> Option<Timestamp> {
        let mut candidates = vec![scheduled];
        if self.missed.policy == MissedSchedulePolicy::RunOnce {
            let deadline = add(scheduled, self.missed.starting_deadline);
            let tz = self.schedule.time_zone();
            candidates.extend(
                self.freezes
                    .iter()
                    .map(|f| f.end)
                    .filter(|end| scheduled < *end && *end <= deadline),
            );
            for window in &self.windows {
                candidates.extend(window.openings_between(tz, scheduled, deadline));
            }
            candidates.sort_unstable();
        }
        candidates
            .into_iter()
            .find(|t| self.calendar_blocker(*t).is_none())
    }

    /// What the observed state says against starting now.
    fn facts_blocker(&self, input: &RotationInput<'_>, target: &str) -> Option<SkipReason> {
        let facts = input.facts;
        if facts.operation_in_progress {
            return Some(SkipReason::OperationInProgress);
        }
        // After the preconditions, so that an unreachable member (which also fails live
        // validation) is reported as the precondition it breaks.
        self.failed_precondition(input, target)
            .map(SkipReason::PreconditionFailed)
            .or_else(|| {
                facts
                    .topology_invalid
                    .clone()
                    .map(|problems| SkipReason::TopologyInvalid { problems })
            })
    }

    fn failed_precondition(
        &self,
        input: &RotationInput<'_>,
        target: &str,
    ) -> Option<PreconditionFailure> {
        let pre = &self.preconditions;
        let facts = input.facts;
        if let Some(failed_at) = facts.last_failure {
            let cooldown_until = add(failed_at, pre.failure_cooldown);
            if input.now < cooldown_until {
                return Some(PreconditionFailure::RecentFailure {
                    failed_at,
                    cooldown_until,
                });
            }
        }
        let must_be_ready: Vec<&str> = if pre.all_members_ready {
            input.members.to_vec()
        } else {
            vec![target]
        };
        let not_ready: Vec<String> = must_be_ready
            .into_iter()
            .filter(|m| !facts.members.get(*m).is_some_and(|f| f.ready))
            .map(str::to_owned)
            .collect();
        if !not_ready.is_empty() {
            return Some(PreconditionFailure::MembersNotReady { members: not_ready });
        }
        if facts.replay_lag_unobservable {
            return None;
        }
        // Only the target's lag matters: it must replay up to the demotion token before it can
        // be promoted, so its lag is the write-unavailability; the others keep replaying.
        let lag = facts.members.get(target).cloned().unwrap_or_default();
        lag_within(
            target,
            Some(pre.max_replay_lag.as_std()),
            lag.replay_lag,
            |d| Duration(d).to_string(),
        )
        .or_else(|| {
            lag_within(
                target,
                pre.max_replay_lag_bytes,
                lag.replay_lag_bytes,
                |b| format!("{b} bytes"),
            )
        })
    }
}

/// Checks one replay-lag limit: none set passes; a set limit needs a known lag within it.
fn lag_within<T: PartialOrd + Copy>(
    member: &str,
    max: Option<T>,
    lag: Option<T>,
    show: impl Fn(T) -> String,
) -> Option<PreconditionFailure> {
    let max = max?;
    match lag {
        None => Some(PreconditionFailure::ReplayLagUnknown {
            member: member.to_owned(),
        }),
        Some(lag) if lag > max => Some(PreconditionFailure::ReplayLagTooHigh {
            member: member.to_owned(),
            lag: show(lag),
            max: show(max),
        }),
        Some(_) => None,
    }
}

/// `t + d`, saturating at jiff's maximum instant (a deadline that far away never passes).
fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d.as_std()).unwrap_or(Timestamp::MAX)
}
