//! Disaster-recovery drills (`DisasterRecoveryDrill`, types in `topology::drill_api`): a drill
//! is a client of the ordinary planned switchover. It writes a canary on the primary, runs a
//! probe writer, sets the topology's `spec.primary`, waits for the controller's operation to
//! succeed, checks the canary and every acknowledged write on the new primary, optionally
//! switches back, and writes what it measured into the drill's status. A run is a state machine
//! whose step and facts live in that status, so another controller process can resume it. See
//! `docs/drills.md`.
//!
//! | Module | Holds | I/O |
//! |---|---|---|
//! | `machine` | what a running drill does next, from its status, the topology and "now" | pure |
//! | `run` | the executor: does what `machine` decides, status written first | hub, PostgreSQL |
//! | `controller` | the kube-runtime controller on drills (leader only, resumes runs) | hub |
//! | `scheduler` | when a drill that is not running starts (`plan`) | pure |
//! | `schedule` | cron + time zone → due or not at an instant | pure |
//! | `hub` | `spec.primary`, topology progress (pure `progress`), drill status, Secrets, Events | hub |
//! | `postgres` | the `federator_drill` table, canary, probe writer | PostgreSQL |
//! | `tls` | `sslmode` and rustls for PostgreSQL connections | (TLS handshake) |
//! | `measure` | write-unavailability and RPO from the probe's log | pure |
//! | `report` | the Markdown report | pure |

pub mod controller;
#[cfg(test)]
mod fixtures;
pub mod hub;
pub mod machine;
pub mod measure;
pub mod postgres;
pub mod report;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod tls;

pub use run::{Executor, Next};
