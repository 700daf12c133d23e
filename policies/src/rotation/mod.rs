//! Scheduled rotations of the primary (`spec.rotation`): the policy a user writes, its
//! validation, and a pure evaluator that decides, at an injected instant, whether a rotation
//! starts now, later, or not at all, and why.
//!
//! The pipeline is `RotationPolicy::validate` (against the topology's members) →
//! `ValidatedRotation::decide` (per reconcile) and `ValidatedRotation::next_rotation_after`
//! (for status). Nothing here reads a clock or a cluster; see `docs/rotations.md`.

mod calendar;
mod decision;
mod evaluate;
mod policy;
mod schedule;
mod target;
mod validate;

#[cfg(test)]
mod scenarios;

pub use decision::{PreconditionFailure, RotationDecision, SkipReason};
pub use evaluate::{MemberFacts, RotationFacts, RotationHistory, RotationInput};
pub use policy::{
    DEFAULT_FAILURE_COOLDOWN, DEFAULT_MAX_REPLAY_LAG, DEFAULT_STARTING_DEADLINE, FreezePeriod,
    MaintenanceWindow, MissedSchedule, MissedSchedulePolicy, NextInRing, Preconditions,
    RotationOrder, RotationPolicy, Weekday,
};
pub use target::next_in_order;
pub use validate::{
    FIELD_ROOT, MIN_STARTING_DEADLINE, Order, RotationError, RotationErrors, ValidatedRotation,
};
