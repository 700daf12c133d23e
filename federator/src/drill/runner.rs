//! One run of a drill, step by step, filling the report (the drill's status) as it goes.
//!
//! Safety: the only write a drill makes outside its own status is the topology's `spec.primary`
//! (merge patch, field manager `federator-drill`); the controller performs the switchover with
//! all its checks. A failed run says at which step and why, and sets `spec.primary` back only
//! when nothing was touched yet (no operation started, or the operation still at `Validate`,
//! which the controller then abandons); past that it leaves the operation to the controller.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use topology::StepKind;
use topology::drill_api::{
    Canary, DisasterRecoveryDrill, DisasterRecoveryDrillStatus, DrillFailure, DrillPhase,
    DrillStep, DrillStepName, SwitchoverMeasurement, WriteCounts, condition,
};

use super::hub::{Hub, Progress, await_ready, await_switchover, ready_with, succeeded};
use super::measure::{self, Attempt};
use super::postgres::{self, Dsns, Probe};

/// Default deadline of each switchover of a drill (`spec.timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the new primary may take to accept the drill's own write after the switchover.
const VERIFY_DEADLINE: Duration = Duration::from_secs(60);

/// How a run is started.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// `cli/<host>-<pid>` or `controller/<identity>`.
    pub runner: String,
    /// URIs given on the command line; they override the drill's `spec.connection`.
    pub dsns: Dsns,
    /// Print each finished step to stdout (the CLI).
    pub echo: bool,
    /// For a scheduled run: the scheduled instant it runs for.
    pub scheduled_for: Option<Timestamp>,
}

/// Why a step failed.
#[derive(Debug)]
struct Failure {
    reason: &'static str,
    message: String,
}

fn fail(reason: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        reason,
        message: message.into(),
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Runs `drill` once; returns the final report (also written to the drill's status).
pub async fn run(
    hub: &Hub,
    drill: &DisasterRecoveryDrill,
    options: RunOptions,
) -> DisasterRecoveryDrillStatus {
    let previous = drill.status.clone().unwrap_or_default();
    let started = Timestamp::now();
    let status = DisasterRecoveryDrillStatus {
        observed_generation: drill.metadata.generation,
        phase: Some(DrillPhase::Running),
        runner: Some(options.runner.clone()),
        run_id: Some(format!("{}-{}", drill.name_any(), started.as_millisecond())),
        to: Some(drill.spec.to.clone()),
        started_at: Some(MicroTime(started)),
        last_schedule_time: options
            .scheduled_for
            .map(Time)
            .or(previous.last_schedule_time),
        next_schedule_time: previous.next_schedule_time,
        ..DisasterRecoveryDrillStatus::default()
    };
    let mut run = Run {
        hub,
        drill,
        status,
        echo: options.echo,
        probe: None,
        requested: Vec::new(),
    };
    run.save().await;
    let result = run.steps(&options.dsns).await;
    run.finish(result).await
}

struct Run<'a> {
    hub: &'a Hub,
    drill: &'a DisasterRecoveryDrill,
    status: DisasterRecoveryDrillStatus,
    echo: bool,
    probe: Option<Probe>,
    /// When each switchover of the run was asked for (index = `status.switchovers`).
    requested: Vec<Timestamp>,
}

impl Run<'_> {
    fn run_id(&self) -> String {
        self.status.run_id.clone().unwrap_or_default()
    }

    async fn save(&self) {
        if let Err(e) = self.hub.save(&self.drill.name_any(), &self.status).await {
            tracing::warn!(error = %e, "writing the drill report; going on");
        }
    }

    async fn begin(&mut self, name: DrillStepName) {
        self.status.steps.push(DrillStep {
            name,
            started_at: now(),
            finished_at: None,
            outcome: DrillPhase::Running,
            message: None,
        });
        self.save().await;
    }

    /// Closes the current step with the body's result; passes the value or the failure on.
    async fn end<T>(&mut self, result: Result<(T, String), Failure>) -> Result<T, Failure> {
        let step = self.status.steps.last_mut().expect("a step was begun");
        step.finished_at = Some(now());
        let (outcome, message, out) = match result {
            Ok((value, message)) => (DrillPhase::Succeeded, message, Ok(value)),
            Err(f) => (DrillPhase::Failed, f.message.clone(), Err(f)),
        };
        step.outcome = outcome;
        step.message = Some(message.clone());
        if self.echo {
            let secs = step
                .finished_at
                .as_ref()
                .map(|f| f.0.duration_since(step.started_at.0).as_secs_f64())
                .unwrap_or_default();
            let mark = if outcome == DrillPhase::Succeeded {
                "✓"
            } else {
                "✗"
            };
            println!(
                "  {mark} {:<13} {secs:>8.3}s  {message}",
                step.name.as_str()
            );
        }
        if out.is_ok() {
            // A failure is saved once, with the whole report, by `finish`.
            self.save().await;
        }
        out
    }

    async fn steps(&mut self, overrides: &Dsns) -> Result<(), Failure> {
        let drill = self.drill;
        self.begin(DrillStepName::Preflight).await;
        let result = self.preflight(overrides).await;
        let (from, dsns) = self.end(result).await?;
        self.status.from = Some(from.clone());
        let to = drill.spec.to.clone();

        self.begin(DrillStepName::WriteCanary).await;
        let result = self.write_canary(&from, &dsns).await;
        self.end(result).await?;

        self.begin(DrillStepName::Switchover).await;
        let result = self.switch(&from, &to).await;
        self.end(result).await?;

        self.begin(DrillStepName::Verify).await;
        let result = self.verify(&to, &dsns, false).await;
        self.end(result).await?;

        if drill.spec.return_to_original {
            self.begin(DrillStepName::SwitchBack).await;
            let result = self.switch(&to, &from).await;
            self.end(result).await?;

            self.begin(DrillStepName::VerifyReturn).await;
            let result = self.verify(&from, &dsns, true).await;
            self.end(result).await?;
        }
        Ok(())
    }

    /// The topology is Ready and idle, `to` is another member, the primary takes writes and
    /// `to` answers as a replica. Returns the primary and the URIs to use.
    async fn preflight(&mut self, overrides: &Dsns) -> Result<((String, Dsns), String), Failure> {
        let spec = &self.drill.spec;
        let topo = self
            .hub
            .topology(&spec.topology)
            .await
            .map_err(|e| fail("TopologyUnreadable", e.to_string()))?;
        if !topo.spec.members.iter().any(|m| m.name == spec.to) {
            let names: Vec<&str> = topo.spec.members.iter().map(|m| m.name.as_str()).collect();
            return Err(fail(
                "UnknownMember",
                format!(
                    "spec.to {} is not a member of {}; members: {}",
                    spec.to,
                    spec.topology,
                    names.join(", ")
                ),
            ));
        }
        let status = topo.status.clone().unwrap_or_default();
        let from = topo.spec.primary.clone();
        if let Some(op) = &status.operation {
            return Err(fail(
                "OperationInProgress",
                format!(
                    "{} has an operation in progress ({} → {}, at {}); a drill starts only on an idle topology",
                    spec.topology, op.from, op.to, op.step
                ),
            ));
        }
        if let Err(why) = ready_with(&topo, &from) {
            return Err(fail(
                "TopologyNotReady",
                format!(
                    "{} is {why}; a drill starts only on a healthy topology",
                    spec.topology
                ),
            ));
        }
        if from == spec.to {
            return Err(fail(
                "AlreadyPrimary",
                format!(
                    "{} already is the primary of {}; drill to another member",
                    spec.to, spec.topology
                ),
            ));
        }
        let mut dsns = self
            .hub
            .dsns(self.drill)
            .await
            .map_err(|e| fail("ConnectionUnreadable", e.to_string()))?;
        dsns.extend(overrides.clone());
        for member in [&from, &spec.to] {
            if !dsns.contains_key(member.as_str()) {
                return Err(fail(
                    "NoConnection",
                    format!(
                        "no URI for member {member}: add it to spec.connection (a Secret with key uri) or pass --dsn {member}=URI"
                    ),
                ));
            }
        }
        let primary = postgres::connect(&from, &dsns[&from])
            .await
            .map_err(|e| fail("PrimaryUnreachable", e.to_string()))?;
        if postgres::in_recovery(&from, &primary)
            .await
            .map_err(|e| fail("PrimaryUnreachable", e.to_string()))?
        {
            return Err(fail(
                "PrimaryNotWritable",
                format!(
                    "{from} is primary by spec but its PostgreSQL is in recovery; check the URI points at its primary service (-rw)"
                ),
            ));
        }
        let target = postgres::connect(&spec.to, &dsns[&spec.to])
            .await
            .map_err(|e| fail("TargetUnreachable", format!("{e}; nothing was changed")))?;
        postgres::in_recovery(&spec.to, &target)
            .await
            .map_err(|e| fail("TargetUnreachable", format!("{e}; nothing was changed")))?;
        let message = format!(
            "{} Ready, {from} primary and writable, {} reachable",
            spec.topology, spec.to
        );
        Ok(((from, dsns), message))
    }

    /// The canary row on the primary; then the probe writer, until its first acknowledged write.
    async fn write_canary(&mut self, from: &str, dsns: &Dsns) -> Result<((), String), Failure> {
        let run_id = self.run_id();
        let value = format!("{run_id}-canary");
        let client = postgres::connect(from, &dsns[from])
            .await
            .map_err(|e| fail("PrimaryUnreachable", e.to_string()))?;
        postgres::ensure_table(from, &client)
            .await
            .map_err(|e| fail("CanaryNotWritten", e.to_string()))?;
        postgres::insert(from, &client, &run_id, "canary", 0, &value)
            .await
            .map_err(|e| fail("CanaryNotWritten", e.to_string()))?;
        self.status.canary = Some(Canary {
            value: value.clone(),
            written_on: from.to_owned(),
            written_at: now(),
            found_on_new_primary: None,
            found_after_return: None,
        });
        let probe = Probe::start(dsns.clone(), run_id);
        let waited = wait_for(Duration::from_secs(10), || {
            probe.log().iter().any(|a| a.acknowledged).then_some(())
        })
        .await;
        self.probe = Some(probe);
        waited.ok_or_else(|| {
            fail(
                "ProbeNotWriting",
                "the probe writer got no write acknowledged within 10s before the switchover",
            )
        })?;
        Ok((
            (),
            format!("canary {value} acknowledged on {from}; probe writing every 10 ms"),
        ))
    }

    /// Sets `spec.primary` and waits for the controller's operation to end.
    async fn switch(&mut self, from: &str, to: &str) -> Result<((), String), Failure> {
        let name = self.drill.spec.topology.clone();
        let deadline = self
            .drill
            .spec
            .timeout
            .map(|d| d.as_std())
            .unwrap_or(DEFAULT_TIMEOUT);
        // After the first move the old primary rejoins as a replica; the controller refuses a
        // switchover to a member that is not ready yet, so wait for the topology to settle.
        let settled = await_ready(self.hub, &name, from, deadline)
            .await
            .map_err(|e| fail("TopologyUnreadable", e.to_string()))?;
        if let Err(why) = settled {
            return Err(fail(
                "TopologyNotReady",
                format!(
                    "{name} is {why} after {}s; nothing was changed",
                    deadline.as_secs()
                ),
            ));
        }
        self.requested.push(Timestamp::now());
        self.status.switchovers.push(SwitchoverMeasurement {
            from: from.to_owned(),
            to: to.to_owned(),
            operation_id: None,
            operation_millis: None,
            first_failed_write_at: None,
            first_successful_write_at: None,
            unavailable_millis: None,
            acknowledged_writes: 0,
            lost_writes: 0,
            rpo_millis: 0,
        });
        let generation = self
            .hub
            .set_primary(&name, to)
            .await
            .map_err(|e| fail("SwitchoverRefused", format!("{e}; nothing was changed")))?;
        let (progress, timed_out) =
            await_switchover(self.hub, &name, generation, from, to, deadline)
                .await
                .map_err(|e| fail("TopologyUnreadable", e.to_string()))?;
        let waited = format!("{}s", deadline.as_secs());
        match progress {
            Progress::Ended(op) if succeeded(&op) => {
                let millis = op
                    .finished_at
                    .as_ref()
                    .map(|f| measure::millis_between(op.started_at.0, f.0));
                let m = self.status.switchovers.last_mut().expect("pushed above");
                m.operation_id = Some(op.id.clone());
                m.operation_millis = millis;
                Ok((
                    (),
                    format!(
                        "operation {} {from} → {to} Succeeded in {} ms",
                        op.id,
                        millis.unwrap_or_default()
                    ),
                ))
            }
            Progress::Ended(op) => Err(fail(
                "SwitchoverFailed",
                format!(
                    "operation {} {from} → {to} ended {:?}; the controller left {from} primary (see `federator status {name}`)",
                    op.id, op.outcome
                ),
            )),
            Progress::Held {
                step,
                reason,
                message,
            } => {
                let after = self.back_off_if_untouched(&name, from, step).await;
                Err(fail(
                    "SwitchoverHeld",
                    format!(
                        "the switchover {from} → {to} holds at {step} ({reason}): {message}; {after}"
                    ),
                ))
            }
            Progress::NotStarted => {
                debug_assert!(timed_out);
                let after = self
                    .back_off_if_untouched(&name, from, StepKind::Validate)
                    .await;
                Err(fail(
                    "SwitchoverNotStarted",
                    format!(
                        "the controller did not start the switchover {from} → {to} within {waited} (is `federator controller` running and leading?); {after}"
                    ),
                ))
            }
            Progress::Running { step } => {
                let after = self.back_off_if_untouched(&name, from, step).await;
                Err(fail(
                    "SwitchoverTimedOut",
                    format!(
                        "the switchover {from} → {to} was still at {step} after {waited}; {after}"
                    ),
                ))
            }
        }
    }

    /// Sets `spec.primary` back to `from` when the operation has not touched a member yet;
    /// says what was done.
    async fn back_off_if_untouched(&self, name: &str, from: &str, step: StepKind) -> String {
        if step != StepKind::Validate {
            return format!(
                "the drill left the operation to the controller (members were already patched); see `federator status {name}`"
            );
        }
        match self.hub.set_primary(name, from).await {
            Ok(_) => format!("nothing was touched: spec.primary set back to {from}"),
            Err(e) => format!("setting spec.primary back to {from} failed ({e}); set it by hand"),
        }
    }

    /// The new primary takes the drill's own write, has the canary, the probe writes again, and
    /// every acknowledged probe write is there.
    async fn verify(
        &mut self,
        primary: &str,
        dsns: &Dsns,
        returned: bool,
    ) -> Result<((), String), Failure> {
        let run_id = self.run_id();
        let index = self.status.switchovers.len() - 1;
        let client = writable_with_own_write(primary, &dsns[primary], &run_id, index as i64)
            .await
            .ok_or_else(|| {
                fail(
                    "NewPrimaryNotWritable",
                    format!(
                        "{primary} did not accept a write within {}s after the switchover",
                        VERIFY_DEADLINE.as_secs()
                    ),
                )
            })?;
        let canary = self
            .status
            .canary
            .clone()
            .expect("written before any switchover");
        let found = postgres::has_value(primary, &client, &run_id, "canary", &canary.value)
            .await
            .map_err(|e| fail("CanaryUnreadable", e.to_string()))?;
        if let Some(c) = self.status.canary.as_mut() {
            if returned {
                c.found_after_return = Some(found);
            } else {
                c.found_on_new_primary = Some(found);
            }
        }
        if !found {
            return Err(fail(
                "CanaryMissing",
                format!(
                    "{primary} does not have the canary {} written on {}",
                    canary.value, canary.written_on
                ),
            ));
        }
        let since = self.requested[index];
        let probe = self.probe.as_ref().expect("started with the canary");
        let recovered = wait_for(Duration::from_secs(30), || {
            measure::unavailability(&probe.log(), since)
                .millis()
                .map(|_| ())
        })
        .await;
        let log: Vec<Attempt> = probe.log();
        let window = measure::unavailability(&log, since);
        let until = Timestamp::now();
        let present = postgres::probe_rows(primary, &client, &run_id)
            .await
            .map_err(|e| fail("ProbeRowsUnreadable", e.to_string()))?;
        let rpo = measure::rpo(&log, until, &present);
        let m = &mut self.status.switchovers[index];
        m.first_failed_write_at = window.first_failed.map(MicroTime);
        m.first_successful_write_at = window.first_succeeded.map(MicroTime);
        m.unavailable_millis = window.millis();
        m.acknowledged_writes = rpo.acknowledged;
        m.lost_writes = rpo.lost.len() as u64;
        m.rpo_millis = rpo.millis;
        if recovered.is_none() {
            return Err(fail(
                "WritesNotRecovered",
                format!(
                    "the probe writer got no write acknowledged within 30s after its first failure (on {primary})"
                ),
            ));
        }
        if !rpo.lost.is_empty() {
            return Err(fail(
                "AcknowledgedWritesLost",
                format!(
                    "{primary} lacks {} of {} acknowledged probe writes (seq {:?}…); RPO {} ms",
                    rpo.lost.len(),
                    rpo.acknowledged,
                    &rpo.lost[..rpo.lost.len().min(5)],
                    rpo.millis
                ),
            ));
        }
        Ok((
            (),
            format!(
                "{primary} writable, canary found, writes unavailable {} ms, {} acknowledged writes all present (RPO 0)",
                window.millis().unwrap_or_default(),
                rpo.acknowledged
            ),
        ))
    }

    async fn finish(mut self, result: Result<(), Failure>) -> DisasterRecoveryDrillStatus {
        if let Some(probe) = self.probe.take() {
            let log = probe.stop().await;
            let acknowledged = log.iter().filter(|a| a.acknowledged).count() as u64;
            self.status.writes = Some(WriteCounts {
                attempted: log.len() as u64,
                acknowledged,
                failed: log.len() as u64 - acknowledged,
            });
        }
        self.status.finished_at = Some(now());
        let (condition_status, reason, message) = match &result {
            Ok(()) => {
                self.status.phase = Some(DrillPhase::Succeeded);
                let message = summary(&self.status);
                ("True", condition::REASON_SUCCEEDED.to_owned(), message)
            }
            Err(f) => {
                let step = self
                    .status
                    .steps
                    .last()
                    .map(|s| s.name)
                    .unwrap_or(DrillStepName::Preflight);
                self.status.phase = Some(DrillPhase::Failed);
                self.status.failure = Some(DrillFailure {
                    step,
                    reason: f.reason.to_owned(),
                    message: f.message.clone(),
                });
                (
                    "False",
                    f.reason.to_owned(),
                    format!("failed at {step}: {}", f.message),
                )
            }
        };
        self.status.conditions = vec![Condition {
            type_: condition::SUCCEEDED.into(),
            status: condition_status.into(),
            reason: reason.clone(),
            message: message.clone(),
            observed_generation: self.drill.metadata.generation,
            last_transition_time: Time(Timestamp::now()),
        }];
        self.save().await;
        let warning = result.is_err();
        let event_reason = if warning {
            "DrillFailed"
        } else {
            "DrillSucceeded"
        };
        let note = format!("drill {}: {message}", self.drill.name_any());
        self.hub
            .event(self.drill, warning, event_reason, &note)
            .await;
        if let Ok(topo) = self.hub.topology(&self.drill.spec.topology).await {
            self.hub.event(&topo, warning, event_reason, &note).await;
        }
        self.status
    }
}

/// One line: the moves, the canary, the unavailability and RPO of each switchover.
pub fn summary(status: &DisasterRecoveryDrillStatus) -> String {
    let moves: Vec<String> = status
        .switchovers
        .iter()
        .map(|m| {
            format!(
                "{} → {}: writes unavailable {} ms, {} lost (RPO {} ms)",
                m.from,
                m.to,
                m.unavailable_millis
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "?".into()),
                m.lost_writes,
                m.rpo_millis
            )
        })
        .collect();
    let canary = match &status.canary {
        Some(c) if c.found_on_new_primary == Some(true) => "canary found",
        Some(_) => "canary NOT verified",
        None => "no canary",
    };
    format!("{canary}; {}", moves.join("; "))
}

/// Polls `check` every 50 ms until it returns `Some` or `within` passes.
async fn wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects to `member` and inserts the drill's own `verify` row, retrying every 200 ms until
/// [`VERIFY_DEADLINE`]; the connection on success.
async fn writable_with_own_write(
    member: &str,
    uri: &str,
    run_id: &str,
    seq: i64,
) -> Option<tokio_postgres::Client> {
    let until = tokio::time::Instant::now() + VERIFY_DEADLINE;
    loop {
        if let Ok(c) = postgres::connect(member, uri).await
            && postgres::insert(member, &c, run_id, "verify", seq, member)
                .await
                .is_ok()
        {
            return Some(c);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
