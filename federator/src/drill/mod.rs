//! Disaster-recovery drills (`DisasterRecoveryDrill`, types in `topology::drill_api`): a drill
//! is a client of the ordinary planned switchover. It writes a canary on the primary, runs a
//! probe writer, sets the topology's `spec.primary`, waits for the controller's operation to
//! succeed, checks the canary and every acknowledged write on the new primary, optionally
//! switches back, and writes what it measured into the drill's status. See `docs/drills.md`.
//!
//! | Module | Holds | I/O |
//! |---|---|---|
//! | `runner` | one run, step by step | hub, PostgreSQL |
//! | `hub` | `spec.primary`, topology progress (pure `progress`), drill status, Secrets, Events | hub |
//! | `postgres` | the `federator_drill` table, canary, probe writer | PostgreSQL |
//! | `measure` | write-unavailability and RPO from the probe's log | pure |
//! | `schedule` | cron + time zone → due or not at an instant | pure |
//! | `scheduler` | the controller's drill loop; `plan` decides per drill | hub |
//! | `report` | the Markdown report | pure |

pub mod hub;
pub mod measure;
pub mod postgres;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod scheduler;

pub use runner::{RunOptions, run};
