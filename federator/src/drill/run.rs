//! The executor of a drill's state machine: it asks [`machine::decide`] what to do next and does
//! it, one decision at a time. Every status write carries the `resourceVersion` it was read at
//! ([`Hub::save`]), and the write comes before the side effect it announces (setting
//! `spec.primary`, setting it back), so a process working from a stale copy, or whose run was
//! taken over, stops at its next write without acting.
//!
//! Safety: the only write a drill makes outside its own status is the topology's `spec.primary`
//! (field manager `federator-drill`); the controller performs the switchover with all its checks.
//! A failed run sets `spec.primary` back only when nothing was touched yet (no operation started,
//! or the operation still at `Validate`, which the controller then abandons).
//!
//! What lives only in this process (the probe writer and its log, the URIs read from Secrets) is
//! kept in [`Runs`]; a process that takes a run over starts them again (`status.resumes`).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Client, ResourceExt};
use topology::drill_api::{
    Canary, DisasterRecoveryDrill, DisasterRecoveryDrillStatus, DrillFailure, DrillPhase,
    DrillResume, DrillStep, DrillStepName, SwitchoverMeasurement, WriteCounts, condition,
};

use super::hub::{Hub, HubError};
use super::machine::{
    self, Decision, Failure, ProbeState, Verdict, VerifyFacts, View, current_step, fail,
};
use super::measure::{self, Attempt};
use super::postgres::{self, Dsns, Probe};

/// What to do after one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Decide again now.
    Continue,
    /// Nothing before this instant (or a change of the topology).
    Wait(Timestamp),
    /// The run ended.
    Done,
}

/// What this process holds for one run.
struct RunState {
    run_id: String,
    probe: Option<Probe>,
    dsns: Option<Dsns>,
    /// Probe counts of the run before this process's probe started (from the status).
    base: WriteCounts,
}

/// The runs this process drives, by `namespace/name`.
#[derive(Default)]
pub struct Runs(Mutex<HashMap<String, RunState>>);

fn key(drill: &DisasterRecoveryDrill) -> String {
    format!(
        "{}/{}",
        drill.namespace().unwrap_or_default(),
        drill.name_any()
    )
}

fn run_id(drill: &DisasterRecoveryDrill) -> String {
    drill
        .status
        .as_ref()
        .and_then(|s| s.run_id.clone())
        .unwrap_or_default()
}

/// The probe's counts: `base` (from the status) plus this process's `log`.
pub(crate) fn counts(log: &[Attempt], base: &WriteCounts) -> WriteCounts {
    let acknowledged = log.iter().filter(|a| a.acknowledged).count() as u64;
    WriteCounts {
        attempted: base.attempted + log.len() as u64,
        acknowledged: base.acknowledged + acknowledged,
        failed: base.failed + log.len() as u64 - acknowledged,
        acknowledged_seqs: measure::with_acknowledged(&base.acknowledged_seqs, log),
    }
}

impl Runs {
    fn with<T>(
        &self,
        drill: &DisasterRecoveryDrill,
        f: impl FnOnce(&mut RunState) -> T,
    ) -> Option<T> {
        let mut runs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let state = runs.get_mut(&key(drill))?;
        (state.run_id == run_id(drill)).then(|| f(state))
    }

    /// Whether this process drives the drill's current run.
    pub fn knows(&self, drill: &DisasterRecoveryDrill) -> bool {
        self.with(drill, |_| ()).is_some()
    }

    fn adopt(&self, drill: &DisasterRecoveryDrill) {
        let base = drill
            .status
            .as_ref()
            .and_then(|s| s.writes.clone())
            .unwrap_or_default();
        let state = RunState {
            run_id: run_id(drill),
            probe: None,
            dsns: None,
            base,
        };
        let old = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(drill), state);
        if let Some(old) = old.and_then(|o| o.probe) {
            tokio::spawn(old.stop());
        }
    }

    /// Stops and forgets what this process holds for the drill (it no longer drives it).
    pub async fn forget(&self, drill: &DisasterRecoveryDrill) {
        let state = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(drill));
        if let Some(probe) = state.and_then(|s| s.probe) {
            probe.stop().await;
        }
    }

    fn probe_state(&self, drill: &DisasterRecoveryDrill) -> ProbeState {
        self.with(drill, |s| match &s.probe {
            None => ProbeState::Absent,
            Some(p) if p.log().iter().any(|a| a.acknowledged) => ProbeState::Writing,
            Some(_) => ProbeState::Starting,
        })
        .unwrap_or(ProbeState::Absent)
    }

    /// The run's probe counts so far (the status's before this process, plus this probe's).
    fn writes(&self, drill: &DisasterRecoveryDrill) -> Option<WriteCounts> {
        self.with(drill, |s| {
            s.probe
                .as_ref()
                .map(|p| counts(&p.log(), &s.base))
                .unwrap_or_else(|| s.base.clone())
        })
    }

    /// This probe's log, when it started, and the writes acknowledged before this process
    /// took the run over.
    fn probe_log(
        &self,
        drill: &DisasterRecoveryDrill,
    ) -> Option<(Vec<Attempt>, Timestamp, Vec<[i64; 2]>)> {
        self.with(drill, |s| {
            let earlier = s.base.acknowledged_seqs.clone();
            s.probe.as_ref().map(|p| (p.log(), p.started_at, earlier))
        })
        .flatten()
    }

    fn dsns(&self, drill: &DisasterRecoveryDrill) -> Option<Dsns> {
        self.with(drill, |s| s.dsns.clone()).flatten()
    }

    /// Stops the run's probe; the run's final counts.
    async fn stop_probe(&self, drill: &DisasterRecoveryDrill) -> Option<WriteCounts> {
        let taken = self.with(drill, |s| (s.probe.take(), s.base.clone()))?;
        match taken {
            (Some(probe), base) => Some(counts(&probe.stop().await, &base)),
            (None, base) => Some(base),
        }
    }

    fn keys(&self) -> Vec<String> {
        let runs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        runs.keys().cloned().collect()
    }
}

/// Why a decision could not be carried out (the run itself goes on: decide again).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Hub(#[from] HubError),
}

impl RunError {
    /// Another writer changed the drill: read it again before deciding.
    pub fn is_conflict(&self) -> bool {
        matches!(self, RunError::Hub(HubError::Conflict(_)))
    }
}

/// Runs drills: the CLI (one run, URIs from the command line) or the controller (every drill).
pub struct Executor {
    client: Client,
    /// `cli/<host>-<pid>` or `controller/<identity>`.
    pub runner: String,
    /// URIs given on the command line; they override the drill's `spec.connection`.
    pub overrides: Dsns,
    /// Print each finished step to stdout (the CLI).
    pub echo: bool,
    pub runs: Runs,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn condition(
    drill: &DisasterRecoveryDrill,
    status: &str,
    reason: &str,
    message: String,
) -> Condition {
    Condition {
        type_: condition::SUCCEEDED.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: drill.metadata.generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

impl Executor {
    pub fn new(client: Client, runner: String) -> Self {
        Executor {
            client,
            runner,
            overrides: Dsns::new(),
            echo: false,
            runs: Runs::default(),
        }
    }

    /// The hub side of `drill` (its namespace).
    pub fn hub(&self, drill: &DisasterRecoveryDrill) -> Hub {
        Hub::new(
            self.client.clone(),
            &drill.namespace().unwrap_or_default(),
            self.runner.clone(),
        )
    }

    /// Writes the status, with this run's probe counts so far.
    async fn save(
        &self,
        hub: &Hub,
        drill: &DisasterRecoveryDrill,
        mut status: DisasterRecoveryDrillStatus,
    ) -> Result<DisasterRecoveryDrill, RunError> {
        if let Some(writes) = self.runs.writes(drill) {
            status.writes = Some(writes);
        }
        Ok(hub.save(drill, &status).await?)
    }

    /// Starts a new run of `drill` (for the scheduled instant, if scheduled).
    pub async fn start(
        &self,
        drill: &DisasterRecoveryDrill,
        scheduled_for: Option<Timestamp>,
    ) -> Result<DisasterRecoveryDrill, RunError> {
        let previous = drill.status.clone().unwrap_or_default();
        let started = Timestamp::now();
        let status = DisasterRecoveryDrillStatus {
            observed_generation: drill.metadata.generation,
            phase: Some(DrillPhase::Running),
            runner: Some(self.runner.clone()),
            run_id: Some(format!("{}-{}", drill.name_any(), started.as_millisecond())),
            to: Some(drill.spec.to.clone()),
            started_at: Some(MicroTime(started)),
            last_schedule_time: scheduled_for.map(Time).or(previous.last_schedule_time),
            next_schedule_time: previous.next_schedule_time,
            conditions: vec![condition(
                drill,
                "Unknown",
                condition::REASON_RUNNING,
                "starting".into(),
            )],
            ..DisasterRecoveryDrillStatus::default()
        };
        let written = self.hub(drill).save(drill, &status).await?;
        self.runs.adopt(&written);
        Ok(written)
    }

    /// Takes over a run another process started (it stopped or crashed): recorded in
    /// `status.resumes`; the run goes on from the step its status records.
    pub async fn take_over(
        &self,
        drill: &DisasterRecoveryDrill,
    ) -> Result<DisasterRecoveryDrill, RunError> {
        let hub = self.hub(drill);
        let mut status = drill.status.clone().unwrap_or_default();
        let step = current_step(&status)
            .or_else(|| status.steps.last().map(|s| s.name))
            .unwrap_or(DrillStepName::Preflight);
        let previous = status.runner.clone().unwrap_or_default();
        status.resumes.push(DrillResume {
            at: now(),
            runner: self.runner.clone(),
            step,
        });
        status.runner = Some(self.runner.clone());
        let message = format!(
            "{} resumed the run at {step} (it was run by {previous})",
            self.runner
        );
        topology::conditions::set(
            &mut status.conditions,
            condition(drill, "Unknown", condition::REASON_RESUMED, message.clone()),
        );
        let written = hub.save(drill, &status).await?;
        self.runs.adopt(&written);
        tracing::info!(drill = %key(drill), %step, %previous, "resuming a drill");
        hub.event(&written, false, "DrillResumed", &message).await;
        Ok(written)
    }

    /// Records, for every run this process drives, that it stopped at its current step (the
    /// next leader resumes it), and stops the probe writers. For a graceful shutdown.
    pub async fn stop_all(&self) {
        for k in self.runs.keys() {
            let Some((ns, name)) = k.split_once('/') else {
                continue;
            };
            let hub = Hub::new(self.client.clone(), ns, self.runner.clone());
            let drill = match hub.drill(name).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, drill = %k, "reading a drill at shutdown");
                    continue;
                }
            };
            let writes = self.runs.stop_probe(&drill).await;
            let mut status = drill.status.clone().unwrap_or_default();
            if status.phase != Some(DrillPhase::Running)
                || status.runner.as_deref() != Some(&self.runner)
            {
                self.runs.forget(&drill).await;
                continue;
            }
            let step = current_step(&status)
                .or_else(|| status.steps.last().map(|s| s.name))
                .unwrap_or(DrillStepName::Preflight);
            let message = format!(
                "{} stopped (shutdown) at {step}; the next leading controller resumes the run from there",
                self.runner
            );
            status.writes = writes.or(status.writes);
            topology::conditions::set(
                &mut status.conditions,
                condition(
                    &drill,
                    "Unknown",
                    condition::REASON_STOPPED,
                    message.clone(),
                ),
            );
            match hub.save(&drill, &status).await {
                Ok(written) => {
                    tracing::info!(drill = %k, %step, "drill stopped; the next leader resumes it");
                    hub.event(&written, false, "DrillStopped", &message).await;
                }
                Err(e) => tracing::warn!(error = %e, drill = %k, "recording where a drill stopped"),
            }
            self.runs.forget(&drill).await;
        }
    }

    /// One decision of a running drill, carried out. Returns the drill as last written.
    pub async fn advance(
        &self,
        drill: DisasterRecoveryDrill,
    ) -> Result<(DisasterRecoveryDrill, Next), RunError> {
        if !self.runs.knows(&drill) {
            self.runs.adopt(&drill);
        }
        let hub = self.hub(&drill);
        let topology = hub.topology_opt(&drill.spec.topology).await?;
        let now = Timestamp::now();
        let view = View {
            drill: &drill,
            topology: topology.as_ref(),
            now,
            probe: self.runs.probe_state(&drill),
        };
        let decision = machine::decide(view);
        tracing::debug!(drill = %key(&drill), ?decision, "drill decision");
        let mut status = drill.status.clone().unwrap_or_default();
        match decision {
            Decision::Begin(step) => {
                status.steps.push(DrillStep {
                    name: step,
                    started_at: MicroTime(now),
                    finished_at: None,
                    outcome: DrillPhase::Running,
                    message: None,
                });
                topology::conditions::set(
                    &mut status.conditions,
                    condition(
                        &drill,
                        "Unknown",
                        condition::REASON_RUNNING,
                        format!("at {step}"),
                    ),
                );
                let written = self.save(&hub, &drill, status).await?;
                Ok((written, Next::Continue))
            }
            Decision::CheckDatabases { from } => {
                match self.check_databases(&hub, &drill, &from).await {
                    Ok(message) => {
                        status.from = Some(from);
                        self.complete(&mut status, message);
                        Ok((self.save(&hub, &drill, status).await?, Next::Continue))
                    }
                    Err(f) => self.finish(&hub, drill, Err(f)).await,
                }
            }
            Decision::WriteCanary { on } => match self.write_canary(&hub, &drill, &on).await {
                Ok(canary) => {
                    status.canary = Some(canary);
                    Ok((self.save(&hub, &drill, status).await?, Next::Continue))
                }
                Err(f) => self.finish(&hub, drill, Err(f)).await,
            },
            Decision::StartProbe => match self.dsns(&hub, &drill).await {
                Ok(dsns) => {
                    let probe = Probe::start(dsns, run_id(&drill));
                    self.runs.with(&drill, |s| s.probe = Some(probe));
                    Ok((drill, Next::Continue))
                }
                Err(f) => self.finish(&hub, drill, Err(f)).await,
            },
            Decision::Complete { message } => {
                self.complete(&mut status, message);
                Ok((self.save(&hub, &drill, status).await?, Next::Continue))
            }
            Decision::Wait { until } => Ok((drill, Next::Wait(until))),
            Decision::Request { leg, from, to } => {
                if status.switchovers.len() <= leg {
                    status.switchovers.push(SwitchoverMeasurement {
                        from: from.clone(),
                        to: to.clone(),
                        requested_at: Some(MicroTime(now)),
                        generation: None,
                        measured_from: None,
                        operation_id: None,
                        operation_millis: None,
                        first_failed_write_at: None,
                        first_successful_write_at: None,
                        unavailable_millis: None,
                        acknowledged_writes: 0,
                        lost_writes: 0,
                        rpo_millis: 0,
                    });
                }
                // Recorded before the side effect: whoever drives the run next knows it was
                // asked for, and a stale writer stops here.
                let drill = self.save(&hub, &drill, status.clone()).await?;
                let seen = topology
                    .as_ref()
                    .and_then(|t| t.metadata.resource_version.clone());
                match hub
                    .set_primary(&drill.spec.topology, &to, seen.as_deref())
                    .await
                {
                    Ok(generation) => {
                        status.switchovers[leg].generation = Some(generation);
                        Ok((self.save(&hub, &drill, status).await?, Next::Continue))
                    }
                    // The topology changed since it was judged Ready: decide again.
                    Err(e @ HubError::Conflict(_)) => Err(e.into()),
                    Err(e) => {
                        let f = fail("SwitchoverRefused", format!("{e}; nothing was changed"));
                        self.finish(&hub, drill, Err(f)).await
                    }
                }
            }
            Decision::RecordGeneration { leg, generation } => {
                status.switchovers[leg].generation = Some(generation);
                Ok((self.save(&hub, &drill, status).await?, Next::Continue))
            }
            Decision::Switched { leg, operation } => {
                let millis = operation
                    .finished_at
                    .as_ref()
                    .map(|f| measure::millis_between(operation.started_at.0, f.0));
                let m = &mut status.switchovers[leg];
                m.operation_id = Some(operation.id.clone());
                m.operation_millis = millis;
                let message = format!(
                    "operation {} {} → {} Succeeded in {} ms",
                    operation.id,
                    m.from,
                    m.to,
                    millis.unwrap_or_default()
                );
                self.complete(&mut status, message);
                Ok((self.save(&hub, &drill, status).await?, Next::Continue))
            }
            Decision::Verify {
                leg,
                primary,
                returned,
            } => self.verify(&hub, drill, leg, &primary, returned).await,
            Decision::Fail(f) => self.finish(&hub, drill, Err(f)).await,
            Decision::Succeed => self.finish(&hub, drill, Ok(())).await,
        }
    }

    /// Closes the current step as succeeded.
    fn complete(&self, status: &mut DisasterRecoveryDrillStatus, message: String) {
        if let Some(step) = status.steps.last_mut() {
            step.finished_at = Some(now());
            step.outcome = DrillPhase::Succeeded;
            step.message = Some(message);
            self.echo_step(step);
        }
    }

    fn echo_step(&self, step: &DrillStep) {
        if !self.echo {
            return;
        }
        let secs = step
            .finished_at
            .as_ref()
            .map(|f| f.0.duration_since(step.started_at.0).as_secs_f64())
            .unwrap_or_default();
        let mark = if step.outcome == DrillPhase::Succeeded {
            "✓"
        } else {
            "✗"
        };
        println!(
            "  {mark} {:<13} {secs:>8.3}s  {}",
            step.name.as_str(),
            step.message.as_deref().unwrap_or_default()
        );
    }

    /// The URIs of the run: the Secrets of `spec.connection` (read once per process), with the
    /// command line's on top.
    async fn dsns(&self, hub: &Hub, drill: &DisasterRecoveryDrill) -> Result<Dsns, Failure> {
        if let Some(dsns) = self.runs.dsns(drill) {
            return Ok(dsns);
        }
        let mut dsns = hub
            .dsns(drill)
            .await
            .map_err(|e| fail("ConnectionUnreadable", e.to_string()))?;
        dsns.extend(self.overrides.clone());
        self.runs.with(drill, |s| s.dsns = Some(dsns.clone()));
        Ok(dsns)
    }

    /// Preflight's databases: URIs for both, the primary answers and is not in recovery, `to`
    /// answers.
    async fn check_databases(
        &self,
        hub: &Hub,
        drill: &DisasterRecoveryDrill,
        from: &str,
    ) -> Result<String, Failure> {
        let to = &drill.spec.to;
        let dsns = self.dsns(hub, drill).await?;
        for member in [from, to.as_str()] {
            if !dsns.contains_key(member) {
                return Err(fail(
                    "NoConnection",
                    format!(
                        "no URI for member {member}: add it to spec.connection (a Secret with key uri) or pass --dsn {member}=URI"
                    ),
                ));
            }
        }
        let primary = postgres::connect(from, &dsns[from])
            .await
            .map_err(|e| fail("PrimaryUnreachable", e.to_string()))?;
        if postgres::in_recovery(from, &primary)
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
        let target = postgres::connect(to, &dsns[to])
            .await
            .map_err(|e| fail("TargetUnreachable", format!("{e}; nothing was changed")))?;
        postgres::in_recovery(to, &target)
            .await
            .map_err(|e| fail("TargetUnreachable", format!("{e}; nothing was changed")))?;
        Ok(format!(
            "{} Ready, {from} primary and writable, {to} reachable",
            drill.spec.topology
        ))
    }

    /// The canary row on the primary (a rewrite after a takeover changes nothing).
    async fn write_canary(
        &self,
        hub: &Hub,
        drill: &DisasterRecoveryDrill,
        on: &str,
    ) -> Result<Canary, Failure> {
        let run_id = run_id(drill);
        let value = format!("{run_id}-canary");
        let dsns = self.dsns(hub, drill).await?;
        let target = dsns
            .get(on)
            .ok_or_else(|| fail("NoConnection", format!("no URI for member {on}")))?;
        let client = postgres::connect(on, target)
            .await
            .map_err(|e| fail("PrimaryUnreachable", e.to_string()))?;
        postgres::ensure_table(on, &client)
            .await
            .map_err(|e| fail("CanaryNotWritten", e.to_string()))?;
        postgres::insert(on, &client, &run_id, "canary", 0, &value)
            .await
            .map_err(|e| fail("CanaryNotWritten", e.to_string()))?;
        Ok(Canary {
            value,
            written_on: on.to_owned(),
            written_at: now(),
            found_on_new_primary: None,
            found_after_return: None,
        })
    }

    /// One look at the new primary after switchover `leg`.
    async fn verify(
        &self,
        hub: &Hub,
        drill: DisasterRecoveryDrill,
        leg: usize,
        primary: &str,
        returned: bool,
    ) -> Result<(DisasterRecoveryDrill, Next), RunError> {
        let mut status = drill.status.clone().unwrap_or_default();
        let run_id = run_id(&drill);
        let (Some(canary), Some(asked), Some(step)) = (
            status.canary.clone(),
            status.switchovers.get(leg).cloned(),
            status.steps.last().cloned(),
        ) else {
            let f = fail(
                "Inconsistent",
                "Verify without a canary or a switchover in the status",
            );
            return self.finish(hub, drill, Err(f)).await;
        };
        let dsns = match self.dsns(hub, &drill).await {
            Ok(d) => d,
            Err(f) => return self.finish(hub, drill, Err(f)).await,
        };
        let Some(target) = dsns.get(primary) else {
            let f = fail("NoConnection", format!("no URI for member {primary}"));
            return self.finish(hub, drill, Err(f)).await;
        };
        let mut facts = VerifyFacts {
            writable: false,
            canary_found: None,
            recovered: false,
            acknowledged: 0,
            lost: Vec::new(),
            rpo_millis: 0,
        };
        let client = match postgres::connect(primary, target).await {
            Ok(c) => postgres::insert(primary, &c, &run_id, "verify", leg as i64, primary)
                .await
                .is_ok()
                .then_some(c),
            Err(_) => None,
        };
        let (log, probe_started, earlier) = self
            .runs
            .probe_log(&drill)
            .unwrap_or_else(|| (Vec::new(), Timestamp::now(), Vec::new()));
        let requested = asked
            .requested_at
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(step.started_at.0);
        // A probe started after the switchover was asked for (the run was taken over) sees
        // only the rest of it.
        let since = requested.max(probe_started);
        let window = measure::unavailability(&log, since);
        if let Some(client) = &client {
            facts.writable = true;
            match postgres::has_value(primary, client, &run_id, "canary", &canary.value).await {
                Ok(found) => facts.canary_found = Some(found),
                Err(e) => {
                    let f = fail("CanaryUnreadable", e.to_string());
                    return self.finish(hub, drill, Err(f)).await;
                }
            }
            facts.recovered = window.millis().is_some();
            if facts.recovered {
                let present = match postgres::probe_rows(primary, client, &run_id).await {
                    Ok(p) => p,
                    Err(e) => {
                        let f = fail("ProbeRowsUnreadable", e.to_string());
                        return self.finish(hub, drill, Err(f)).await;
                    }
                };
                let rpo = measure::rpo_with_earlier(&log, &earlier, Timestamp::now(), &present);
                facts.acknowledged = rpo.acknowledged;
                facts.lost = rpo.lost;
                facts.rpo_millis = rpo.millis;
            }
        }
        let verdict = machine::judge_verify(
            &facts,
            primary,
            &canary,
            step.started_at.0,
            Timestamp::now(),
        );
        if let Verdict::Retry { until } = verdict {
            return Ok((drill, Next::Wait(until)));
        }
        if let (Some(c), Some(found)) = (status.canary.as_mut(), facts.canary_found) {
            if returned {
                c.found_after_return = Some(found);
            } else {
                c.found_on_new_primary = Some(found);
            }
        }
        let m = &mut status.switchovers[leg];
        m.measured_from = (probe_started > requested).then_some(MicroTime(probe_started));
        m.first_failed_write_at = window.first_failed.map(MicroTime);
        m.first_successful_write_at = window.first_succeeded.map(MicroTime);
        m.unavailable_millis = window.millis();
        m.acknowledged_writes = facts.acknowledged;
        m.lost_writes = facts.lost.len() as u64;
        m.rpo_millis = facts.rpo_millis;
        let partial = if m.measured_from.is_some() {
            " (measured from the takeover on)"
        } else {
            ""
        };
        let message = format!(
            "{primary} writable, canary found, writes unavailable {} ms{partial}, {} acknowledged writes all present (RPO 0)",
            window.millis().unwrap_or_default(),
            facts.acknowledged
        );
        let drill = DisasterRecoveryDrill {
            status: Some(status.clone()),
            ..drill
        };
        match verdict {
            Verdict::Pass => {
                self.complete(&mut status, message);
                Ok((self.save(hub, &drill, status).await?, Next::Continue))
            }
            Verdict::Fail(f) => self.finish(hub, drill, Err(f)).await,
            Verdict::Retry { .. } => unreachable!("returned above"),
        }
    }

    /// Ends the run: the probe's counts, the phase, the failure, the condition, Events. A failure
    /// that asks for it sets `spec.primary` back, announced in the status first.
    async fn finish(
        &self,
        hub: &Hub,
        drill: DisasterRecoveryDrill,
        result: Result<(), Failure>,
    ) -> Result<(DisasterRecoveryDrill, Next), RunError> {
        let mut drill = drill;
        let mut status = drill.status.clone().unwrap_or_default();
        let name = drill.spec.topology.clone();
        let result = match result {
            Err(mut f) => {
                let after = if let Some(back) = f.set_back.clone() {
                    let to = back.to;
                    topology::conditions::set(
                        &mut status.conditions,
                        condition(
                            &drill,
                            "Unknown",
                            condition::REASON_RUNNING,
                            format!("{}: setting spec.primary of {name} back to {to}", f.reason),
                        ),
                    );
                    drill = self.save(hub, &drill, status.clone()).await?;
                    match hub.set_primary(&name, &to, back.seen.as_deref()).await {
                        Ok(_) => format!("nothing was touched: spec.primary set back to {to}"),
                        // The operation moved on since it was seen at Validate: decide again
                        // (past Validate it is the controller's to finish).
                        Err(e @ HubError::Conflict(_)) => return Err(e.into()),
                        Err(e) => format!(
                            "setting spec.primary back to {to} failed ({e}); set it by hand"
                        ),
                    }
                } else if f.left_to_controller {
                    format!(
                        "the drill left the operation to the controller (members were already patched); see `federator status {name}`"
                    )
                } else {
                    String::new()
                };
                if !after.is_empty() {
                    f.message = format!("{}; {after}", f.message);
                }
                Err(f)
            }
            ok => ok,
        };
        status.writes = self.runs.stop_probe(&drill).await.or(status.writes);
        status.finished_at = Some(now());
        let (condition_status, reason, message) = match &result {
            Ok(()) => {
                status.phase = Some(DrillPhase::Succeeded);
                (
                    "True",
                    condition::REASON_SUCCEEDED.to_owned(),
                    summary(&status),
                )
            }
            Err(f) => {
                let step = status
                    .steps
                    .last()
                    .map(|s| s.name)
                    .unwrap_or(DrillStepName::Preflight);
                if let Some(last) = status.steps.last_mut().filter(|s| s.finished_at.is_none()) {
                    last.finished_at = status.finished_at.clone();
                    last.outcome = DrillPhase::Failed;
                    last.message = Some(f.message.clone());
                    self.echo_step(last);
                }
                status.phase = Some(DrillPhase::Failed);
                status.failure = Some(DrillFailure {
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
        topology::conditions::set(
            &mut status.conditions,
            condition(&drill, condition_status, &reason, message.clone()),
        );
        let written = hub.save(&drill, &status).await?;
        self.runs.forget(&written).await;
        let warning = result.is_err();
        let event_reason = if warning {
            "DrillFailed"
        } else {
            "DrillSucceeded"
        };
        let note = format!("drill {}: {message}", drill.name_any());
        hub.event(&written, warning, event_reason, &note).await;
        if let Ok(topo) = hub.topology(&name).await {
            hub.event(&topo, warning, event_reason, &note).await;
        }
        Ok((written, Next::Done))
    }

    /// Records the schedule's complaint: the drill fails at Preflight with `InvalidSchedule`.
    pub async fn invalid_schedule(
        &self,
        drill: &DisasterRecoveryDrill,
        message: &str,
    ) -> Result<(), RunError> {
        let hub = self.hub(drill);
        let mut status = drill.status.clone().unwrap_or_default();
        status.phase = Some(DrillPhase::Failed);
        status.finished_at = Some(now());
        status.failure = Some(DrillFailure {
            step: DrillStepName::Preflight,
            reason: "InvalidSchedule".into(),
            message: message.to_owned(),
        });
        topology::conditions::set(
            &mut status.conditions,
            condition(drill, "False", "InvalidSchedule", message.to_owned()),
        );
        let written = hub.save(drill, &status).await?;
        hub.event(&written, true, "InvalidSchedule", message).await;
        Ok(())
    }

    /// Records the next scheduled time.
    pub async fn set_next(
        &self,
        drill: &DisasterRecoveryDrill,
        next: Option<Timestamp>,
    ) -> Result<(), RunError> {
        let mut status = drill.status.clone().unwrap_or_default();
        status.next_schedule_time = next.map(Time);
        self.hub(drill).save(drill, &status).await?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::drill::fixtures::{drill, micro, op, running, topo};
    use crate::fake_api::{self, conflict};

    /// What the executor sent: method, path, body.
    type Sent = Arc<Mutex<Vec<(String, String, Value)>>>;

    const DRILL_STATUS: &str =
        "/apis/federator.dev/v1alpha1/namespaces/ns/disasterrecoverydrills/d/status";
    const TOPOLOGY: &str = "/apis/federator.dev/v1alpha1/namespaces/ns/distributedtopologies/pg";

    /// The hub's answer to a status write it accepts: the drill at its next resourceVersion.
    fn written(body: &Value) -> (u16, Value) {
        let mut written = body.clone();
        written["metadata"]["resourceVersion"] = json!("2");
        (200, written)
    }

    /// A hub that answers with `respond` and records every request.
    fn fake_hub(
        respond: impl Fn(&str, &str, &Value) -> (u16, Value) + Send + Sync + 'static,
    ) -> (Executor, Sent) {
        let sent: Sent = Arc::default();
        let log = sent.clone();
        let client = fake_api::client(move |call| {
            let answer = respond(&call.method, &call.path, &call.body);
            log.lock()
                .unwrap()
                .push((call.method, call.path, call.body));
            answer
        });
        (Executor::new(client, "controller/test".into()), sent)
    }

    fn calls(sent: &Sent) -> Vec<(String, String)> {
        let sent = sent.lock().unwrap();
        sent.iter()
            .map(|(m, p, _)| (m.clone(), p.clone()))
            .collect()
    }

    /// A drill at Switchover with its probe running here (a probe with no URIs: it only fails).
    async fn at_switchover(executor: &Executor, switchovers: Value) -> DisasterRecoveryDrill {
        let mut status = running(&["Preflight", "WriteCanary", "Switchover"], switchovers);
        status["runner"] = json!("controller/test");
        let d = drill(false, status);
        executor.runs.adopt(&d);
        let probe = Probe::start(Dsns::new(), run_id(&d));
        executor.runs.with(&d, |s| s.probe = Some(probe));
        d
    }

    #[tokio::test]
    async fn the_switchover_is_recorded_before_spec_primary_is_set_and_only_on_the_topology_seen() {
        let (executor, sent) = fake_hub(|method, path, body| match (method, path) {
            ("GET", TOPOLOGY) => (
                200,
                serde_json::to_value(topo(2, "pg-a", Value::Null, json!([]))).unwrap(),
            ),
            ("PUT", DRILL_STATUS) => written(body),
            ("PATCH", TOPOLOGY) => (
                200,
                serde_json::to_value(topo(3, "pg-b", Value::Null, json!([]))).unwrap(),
            ),
            _ => (404, json!({})),
        });
        let d = at_switchover(&executor, json!([])).await;
        let (written, next) = executor.advance(d).await.expect("the request");
        assert_eq!(next, Next::Continue);
        assert_eq!(
            calls(&sent),
            [
                ("GET".into(), TOPOLOGY.into()),
                ("PUT".into(), DRILL_STATUS.into()),
                ("PATCH".into(), TOPOLOGY.into()),
                ("PUT".into(), DRILL_STATUS.into()),
            ]
        );
        let sent = sent.lock().unwrap();
        // 1. The request is recorded, on the drill as read (resourceVersion 1), before the patch.
        let first = &sent[1].2;
        assert_eq!(first["metadata"]["resourceVersion"], "1");
        assert!(
            first["status"]["switchovers"][0]["requestedAt"].is_string(),
            "{first}"
        );
        assert!(
            first["status"]["switchovers"][0]
                .get("generation")
                .is_none(),
            "{first}"
        );
        // 2. The patch only applies to the topology the decision saw.
        assert_eq!(
            sent[2].2,
            json!({"metadata": {"resourceVersion": "200"}, "spec": {"primary": "pg-b"}})
        );
        // 3. Then the generation, on the drill as last written.
        assert_eq!(sent[3].2["metadata"]["resourceVersion"], "2");
        assert_eq!(sent[3].2["status"]["switchovers"][0]["generation"], 3);
        let status = written.status.expect("status");
        assert_eq!(status.switchovers[0].generation, Some(3));
        assert!(status.writes.is_some(), "probe counts go with every write");
    }

    #[tokio::test]
    async fn a_stale_writer_stops_at_its_status_write_before_setting_spec_primary() {
        let (executor, sent) = fake_hub(|method, path, _| match (method, path) {
            ("GET", TOPOLOGY) => (
                200,
                serde_json::to_value(topo(2, "pg-a", Value::Null, json!([]))).unwrap(),
            ),
            ("PUT", DRILL_STATUS) => conflict(),
            _ => (200, json!({})),
        });
        let d = at_switchover(&executor, json!([])).await;
        let error = executor.advance(d).await.expect_err("a conflict");
        assert!(error.is_conflict(), "{error}");
        assert!(
            !calls(&sent).iter().any(|(m, _)| m == "PATCH"),
            "spec.primary was set by a stale writer: {:?}",
            calls(&sent)
        );
    }

    #[tokio::test]
    async fn setting_spec_primary_back_is_announced_first_and_only_on_the_topology_seen_held() {
        // The switchover holds at Validate: the drill fails and sets spec.primary back, but the
        // topology changed since it was read (the operation may have moved on): nothing is
        // ended, the next look decides again.
        let held = topo(
            3,
            "pg-b",
            op(
                3,
                "Validate",
                json!({"hold": {"reason": "MemberNotReady", "message": "m"}}),
            ),
            json!([]),
        );
        let (executor, sent) = fake_hub(move |method, path, body| match (method, path) {
            ("GET", TOPOLOGY) => (200, serde_json::to_value(&held).unwrap()),
            ("PUT", DRILL_STATUS) => written(body),
            ("PATCH", TOPOLOGY) => conflict(),
            _ => (404, json!({})),
        });
        let asked = json!([{"from": "pg-a", "to": "pg-b", "requestedAt": micro(3), "generation": 3,
            "acknowledgedWrites": 0, "lostWrites": 0, "rpoMillis": 0}]);
        let d = at_switchover(&executor, asked).await;
        let error = executor.advance(d).await.expect_err("a conflict");
        assert!(error.is_conflict(), "{error}");
        let sent = sent.lock().unwrap();
        let methods: Vec<&str> = sent.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(methods, ["GET", "PUT", "PATCH"]);
        let announced = &sent[1].2["status"];
        assert_eq!(announced["phase"], "Running", "{announced}");
        assert!(
            announced["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("setting spec.primary of pg back to pg-a")),
            "{announced}"
        );
        assert_eq!(
            sent[2].2,
            json!({"metadata": {"resourceVersion": "300"}, "spec": {"primary": "pg-a"}})
        );
    }
}
