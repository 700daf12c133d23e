//! `status.history`: a finished [`Operation`] folded into an [`OperationRecord`] (step timings as
//! one line), and unfolded again for whoever reads it as an operation (the CLI, drills, tests).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::status::{DistributedTopologyStatus, Operation, OperationRecord, StepKind, StepRecord};

const SEPARATOR: &str = ", ";
/// A step that was never seen to finish (only possible in a hand-edited record).
const UNFINISHED: &str = "-";

/// One step of a finished operation, as `stepTimings` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepTiming {
    pub step: StepKind,
    pub member: Option<String>,
    /// `None` if the step was never seen to finish.
    pub took: Option<Duration>,
}

impl std::fmt::Display for StepTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.step.as_str())?;
        if let Some(member) = &self.member {
            write!(f, " {member}")?;
        }
        match self.took {
            Some(took) => write!(f, " {:.1}ms", took.as_secs_f64() * 1000.0),
            None => write!(f, " {UNFINISHED}"),
        }
    }
}

impl std::str::FromStr for StepTiming {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (step, member, took) = match words.as_slice() {
            [step, took] => (*step, None, *took),
            [step, member, took] => (*step, Some((*member).to_owned()), *took),
            _ => return Err(format!("{text:?} is not `<Step>[ <member>] <ms>ms`")),
        };
        let step = StepKind::deserialize(step.into_deserializer())
            .map_err(|e: serde::de::value::Error| format!("{text:?}: {e}"))?;
        let took = match took {
            UNFINISHED => None,
            ms => {
                let ms: f64 = ms
                    .strip_suffix("ms")
                    .and_then(|n| n.parse().ok())
                    .filter(|n: &f64| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("{text:?}: {ms:?} is not a duration in ms"))?;
                // Whole microseconds, as `MicroTime` keeps them.
                Some(Duration::from_micros((ms * 1000.0).round() as u64))
            }
        };
        Ok(StepTiming { step, member, took })
    }
}

impl OperationRecord {
    /// The record `status.history` keeps of `op` (which has finished).
    pub fn of(op: &Operation) -> Self {
        let timings: Vec<String> = op
            .steps
            .iter()
            .map(|s| {
                StepTiming {
                    step: s.step,
                    member: s.member.clone(),
                    took: s
                        .finished_at
                        .as_ref()
                        .map(|end| end.0.duration_since(s.started_at.0).unsigned_abs()),
                }
                .to_string()
            })
            .collect();
        OperationRecord {
            id: op.id.clone(),
            kind: op.kind,
            from: op.from.clone(),
            to: op.to.clone(),
            rolled_back: op.rolled_back,
            started_at: op.started_at.clone(),
            finished_at: op.finished_at.clone(),
            outcome: op.outcome,
            step_timings: timings.join(SEPARATOR),
            hook_runs: op
                .hooks
                .as_ref()
                .map(|h| h.runs.clone())
                .unwrap_or_default(),
        }
    }

    /// The steps of `stepTimings`, in order. An entry that does not parse is an error naming it.
    pub fn steps(&self) -> Result<Vec<StepTiming>, String> {
        if self.step_timings.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.step_timings.split(SEPARATOR).map(str::parse).collect()
    }

    /// The record as an [`Operation`]: steps laid end to end from `startedAt` (to the rounding of
    /// `stepTimings`, 0.1 ms a step), no token. Unparseable timings give no steps.
    pub fn expand(&self) -> Operation {
        let mut at = self.started_at.0;
        let steps = self
            .steps()
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let started_at = MicroTime(at);
                let finished_at = t.took.map(|took| {
                    at = later(at, took);
                    MicroTime(at)
                });
                StepRecord {
                    step: t.step,
                    member: t.member,
                    started_at,
                    finished_at,
                }
            })
            .collect::<Vec<_>>();
        Operation {
            id: self.id.clone(),
            kind: self.kind,
            from: self.from.clone(),
            to: self.to.clone(),
            step: steps.last().map_or(StepKind::Done, |s| s.step),
            token: None,
            rolled_back: self.rolled_back,
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            steps,
            hold: None,
            outcome: self.outcome,
            hooks: (!self.hook_runs.is_empty()).then(|| super::status::OperationHooks {
                runs: self.hook_runs.clone(),
                ..Default::default()
            }),
        }
    }
}

impl DistributedTopologyStatus {
    /// The operation whose id `wanted` accepts: the running one, else the latest such in
    /// `history` (expanded). What a CLI following an operation it started needs to look up.
    pub fn operation_where(&self, wanted: impl Fn(&str) -> bool) -> Option<Operation> {
        self.operation
            .clone()
            .filter(|op| wanted(&op.id))
            .or_else(|| {
                self.history
                    .iter()
                    .rev()
                    .find(|r| wanted(&r.id))
                    .map(OperationRecord::expand)
            })
    }
}

fn later(at: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OperationKind, Outcome};

    fn at(ms: i64) -> MicroTime {
        MicroTime(Timestamp::from_millisecond(1_800_000_000_000 + ms).unwrap())
    }

    fn step(step: StepKind, member: Option<&str>, from_ms: i64, to_ms: Option<i64>) -> StepRecord {
        StepRecord {
            step,
            member: member.map(str::to_owned),
            started_at: at(from_ms),
            finished_at: to_ms.map(at),
        }
    }

    fn finished() -> Operation {
        Operation {
            id: "3-pg-a-to-pg-b".into(),
            kind: OperationKind::Switchover,
            from: "pg-a".into(),
            to: "pg-b".into(),
            step: StepKind::Done,
            token: Some("eyJ0b2tlbiI6dHJ1ZX0=".into()),
            rolled_back: false,
            started_at: at(0),
            finished_at: Some(at(480)),
            steps: vec![
                step(StepKind::Validate, None, 0, Some(2)),
                step(StepKind::Demote, Some("pg-a"), 2, Some(43)),
                step(StepKind::AwaitToken, Some("pg-a"), 43, Some(223)),
                step(StepKind::Promote, Some("pg-b"), 223, Some(480)),
                step(StepKind::Done, None, 480, Some(480)),
            ],
            hold: None,
            outcome: Some(Outcome::Succeeded),
            hooks: None,
        }
    }

    #[test]
    fn a_record_keeps_every_step_in_one_line_and_drops_the_token() {
        let record = OperationRecord::of(&finished());
        assert_eq!(
            record.step_timings,
            "Validate 2.0ms, Demote pg-a 41.0ms, AwaitToken pg-a 180.0ms, Promote pg-b 257.0ms, Done 0.0ms"
        );
        let json = serde_json::to_string(&record).unwrap();
        assert!(
            !json.contains("eyJ0"),
            "the token stays out of history: {json}"
        );
    }

    #[test]
    fn expanding_a_record_gives_back_the_operation_without_its_token() {
        let op = finished();
        let back = OperationRecord::of(&op).expand();
        assert_eq!(back, Operation { token: None, ..op });
    }

    #[test]
    fn an_unfinished_step_survives_the_round_trip() {
        let mut op = finished();
        op.steps
            .push(step(StepKind::ClearToken, Some("pg-b"), 480, None));
        let record = OperationRecord::of(&op);
        assert!(record.step_timings.ends_with("ClearToken pg-b -"));
        let steps = record.steps().unwrap();
        assert_eq!(steps.last().unwrap().took, None);
        assert_eq!(record.expand().steps.last().unwrap().finished_at, None);
    }

    #[test]
    fn the_running_operation_wins_then_the_latest_record() {
        let mut status = DistributedTopologyStatus::default();
        let mut older = finished();
        older.id = "3-pg-b-to-pg-a".into();
        (older.from, older.to) = ("pg-b".into(), "pg-a".into());
        status.history = vec![
            OperationRecord::of(&older),
            OperationRecord::of(&finished()),
        ];
        let of_3 = |id: &str| id.starts_with("3-");
        assert_eq!(status.operation_where(of_3).unwrap().id, "3-pg-a-to-pg-b");
        let mut running = finished();
        running.id = "3-pg-a-to-pg-c".into();
        running.outcome = None;
        status.operation = Some(running);
        assert_eq!(status.operation_where(of_3).unwrap().id, "3-pg-a-to-pg-c");
        assert_eq!(
            status
                .operation_where(|id| id == "3-pg-b-to-pg-a")
                .unwrap()
                .from,
            "pg-b"
        );
        assert!(status.operation_where(|id| id.starts_with("4-")).is_none());
    }

    #[test]
    fn a_bad_entry_is_named() {
        let mut record = OperationRecord::of(&finished());
        record.step_timings = "Validate 2.0ms, Teleport pg-a 4ms".into();
        let error = record.steps().unwrap_err();
        assert!(error.contains("Teleport"), "{error}");
        record.step_timings = "Validate soon".into();
        assert!(record.steps().unwrap_err().contains("soon"));
        assert!(record.expand().steps.is_empty());
    }

    #[test]
    fn a_record_written_before_step_timings_existed_still_reads() {
        // The history of PR-era objects: `steps` objects and a token, no `stepTimings`.
        let old = serde_json::json!({
            "id": "2-pg-b-to-pg-a", "kind": "switchover", "from": "pg-b", "to": "pg-a",
            "step": "Done", "token": "eyJ0", "startedAt": "2026-12-01T10:00:00.000000Z",
            "finishedAt": "2026-12-01T10:00:01.000000Z", "outcome": "Succeeded",
            "steps": [{"step": "Validate", "startedAt": "2026-12-01T10:00:00.000000Z"}]
        });
        let record: OperationRecord = serde_json::from_value(old).unwrap();
        assert_eq!(record.outcome, Some(Outcome::Succeeded));
        assert!(record.steps().unwrap().is_empty());
    }
}
