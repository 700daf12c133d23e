//! The executor of a region drill (`RegionDrill`, types in `topology::region_drill_api`, rules in
//! `topology::region::drill`): a client of `RegionSwitch` that reuses the topology drill's
//! PostgreSQL machinery (`crate::drill::postgres`: table, canary, probe writer;
//! `crate::drill::measure`: write-unavailability and RPO).
//!
//! A run is a state machine whose step and facts live in the drill's status. Each step is
//! recorded (an update of the status carrying the `resourceVersion` it was read at) before the
//! side effect it announces: the first region switch is created *paused* (it selects, nothing
//! moves) and resumed only once the canaries are written and the probe writers run; the way back
//! is recorded before it is created. Creating a region switch that exists is not an error, and
//! resuming one is idempotent, so a run continued by another process (`--resume`) never starts a
//! region switch twice. What lives only in this process (the URIs, the probe writers and their
//! logs) is started again on a resume; the acknowledged sequence numbers are kept in the status
//! with every write, so the RPO check covers the writes before the resume too.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use topology::DistributedTopology;
use topology::drill_api::{DEFAULT_URI_KEY, DrillPhase, WriteCounts};
use topology::region::drill::{self as rules, Evidence};
use topology::region_api::{RegionSwitch, RegionSwitchSpec, RegionSwitchStatus};
use topology::region_drill_api::{
    DatabaseSwitchover, FIELD_MANAGER, Leg, RegionDrill, RegionDrillStatus, RegionDrillStep,
    condition,
};

use crate::controller::publish_best_effort;
use crate::drill::measure;
use crate::drill::postgres::{self, Dsns, Probe, Target};
use crate::drill::run::counts;

/// Label on the region switches a drill creates: the drill's name.
pub const DRILL_LABEL: &str = "federator.dev/region-drill";
/// How often a running region switch is looked at.
const POLL: Duration = Duration::from_millis(500);
/// How long a region switch may take to select, once created.
const SELECT_DEADLINE: Duration = Duration::from_secs(120);
/// How long, after a database's switchover, its probe may take to write again.
const WRITES_BACK_DEADLINE: Duration = Duration::from_secs(30);

/// Why a run could not go on (it is not a failed check: those are in the report).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Someone else wrote the drill's status since it was read (another runner).
    #[error(
        "RegionDrill {0} was changed by someone else since it was read (another runner?); nothing was written"
    )]
    Conflict(String),
    #[error("{0}")]
    Refused(String),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> DrillError {
    let what = what.into();
    move |source| DrillError::Kube { what, source }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// What this process holds for one database: its URIs and its probe writer.
struct Database {
    dsns: Dsns,
    probe: Probe,
    /// The counts of the run before this process's probe started (from the status).
    base: WriteCounts,
}

/// Runs one region drill in this process.
pub struct Runner {
    drills: Api<RegionDrill>,
    switches: Api<RegionSwitch>,
    topologies: Api<DistributedTopology>,
    secrets: Api<Secret>,
    recorder: Recorder,
    runner: String,
    databases: BTreeMap<String, Database>,
    /// Told each step as it finishes (the CLI prints it).
    say: Box<dyn Fn(&str) + Send + Sync>,
}

impl Runner {
    pub fn new(
        client: Client,
        namespace: &str,
        runner: String,
        say: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        Runner {
            drills: Api::namespaced(client.clone(), namespace),
            switches: Api::namespaced(client.clone(), namespace),
            topologies: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: FIELD_MANAGER.into(),
                    instance: Some(runner.clone()),
                },
            ),
            runner,
            databases: BTreeMap::new(),
            say,
        }
    }

    async fn get(&self, name: &str) -> Result<RegionDrill, DrillError> {
        self.drills
            .get(name)
            .await
            .map_err(kube_err(format!("reading RegionDrill {name}")))
    }

    /// Replaces the status, on the condition that the drill is still at the `resourceVersion`
    /// it was read at.
    async fn save(
        &self,
        drill: &RegionDrill,
        status: RegionDrillStatus,
    ) -> Result<RegionDrill, DrillError> {
        let name = drill.name_any();
        let mut next = drill.clone();
        next.status = Some(status);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match self.drills.replace_status(&name, &params, &next).await {
            Ok(written) => Ok(written),
            Err(kube::Error::Api(e)) if e.code == 409 => Err(DrillError::Conflict(name)),
            Err(e) => Err(kube_err(format!(
                "writing the status of RegionDrill {name}"
            ))(e)),
        }
    }

    async fn event(&self, drill: &RegionDrill, warning: bool, reason: &str, note: &str) {
        publish_best_effort(&self.recorder, drill, "RegionDrill", warning, reason, note).await;
    }

    /// Runs the drill `name` to its end: a fresh run, or (`resume`) the run its status records.
    /// Returns the drill as last written (its status is the report).
    pub async fn run(&mut self, name: &str, resume: bool) -> Result<RegionDrill, DrillError> {
        let mut drill = self.get(name).await?;
        let status = drill.status.clone().unwrap_or_default();
        match (status.phase, resume) {
            (Some(DrillPhase::Running), false) => {
                return Err(DrillError::Refused(format!(
                    "RegionDrill {name} is already running (runner {}, at {}); continue it with \
                     --resume if that runner is gone",
                    status.runner.unwrap_or_default(),
                    status.step.map(|s| s.as_str()).unwrap_or("Select")
                )));
            }
            (Some(DrillPhase::Running), true) => {
                let mut status = status;
                status.resumes.push(now());
                status.runner = Some(self.runner.clone());
                drill = self.save(&drill, status).await?;
                self.event(
                    &drill,
                    false,
                    "RegionDrillResumed",
                    &format!("{} continues the run", self.runner),
                )
                .await;
            }
            (Some(_), true) => return Ok(drill),
            (Some(_), false) => {
                return Err(DrillError::Refused(format!(
                    "RegionDrill {name} already ran (phase {:?}); read its report with \
                     `federator region report {name}`, or start another drill under a new name",
                    status.phase.unwrap_or(DrillPhase::Failed)
                )));
            }
            (None, true) => {
                return Err(DrillError::Refused(format!(
                    "RegionDrill {name} has not started: run it without --resume"
                )));
            }
            (None, false) => {
                let started = now();
                let status = RegionDrillStatus {
                    observed_generation: drill.metadata.generation,
                    phase: Some(DrillPhase::Running),
                    step: Some(RegionDrillStep::Select),
                    runner: Some(self.runner.clone()),
                    run_id: Some(format!(
                        "{}-{}",
                        name,
                        started.0.as_millisecond().rem_euclid(1_000_000_000)
                    )),
                    started_at: Some(started),
                    conditions: vec![condition_of(
                        "Unknown",
                        condition::REASON_RUNNING,
                        "the drill runs",
                        drill.metadata.generation,
                    )],
                    ..RegionDrillStatus::default()
                };
                drill = self.save(&drill, status).await?;
                self.event(
                    &drill,
                    false,
                    "RegionDrillStarted",
                    &format!(
                        "{} → {} and {}",
                        drill.spec.from,
                        drill.spec.to,
                        if drill.spec.return_to_original {
                            "back"
                        } else {
                            "not back"
                        }
                    ),
                )
                .await;
            }
        }
        loop {
            let status = drill.status.clone().unwrap_or_default();
            if status.phase != Some(DrillPhase::Running) {
                self.stop_probes().await;
                return Ok(drill);
            }
            let step = status.step.unwrap_or(RegionDrillStep::Select);
            drill = match step {
                RegionDrillStep::Select => self.select(drill).await?,
                RegionDrillStep::WriteCanaries => self.write_canaries(drill).await?,
                RegionDrillStep::SwitchThere => self.switch(drill, 0).await?,
                RegionDrillStep::VerifyThere => self.verify(drill, 0).await?,
                RegionDrillStep::SwitchBack => self.switch(drill, 1).await?,
                RegionDrillStep::VerifyBack => self.verify(drill, 1).await?,
                RegionDrillStep::Done => self.finish(drill, None).await?,
            };
        }
    }

    /// The status with the step after `step`, told to the user.
    fn advance(&self, drill: &RegionDrill, mut status: RegionDrillStatus) -> RegionDrillStatus {
        let step = status.step.unwrap_or(RegionDrillStep::Select);
        (self.say)(&format!("{step}: done"));
        status.step = rules::next_step(step, drill.spec.return_to_original);
        status
    }

    fn leg_switch(&self, drill: &RegionDrill, leg: usize) -> RegionSwitch {
        let [there, back] = rules::leg_names(&drill.name_any());
        let spec = &drill.spec;
        let (name, from, to, topologies) = if leg == 0 {
            (there, spec.from.clone(), spec.to.clone(), vec![])
        } else {
            let status = drill.status.clone().unwrap_or_default();
            let names = status
                .databases
                .iter()
                .map(|d| d.topology.clone())
                .collect();
            (back, spec.to.clone(), spec.from.clone(), names)
        };
        let mut rs = RegionSwitch::new(
            &name,
            RegionSwitchSpec {
                from,
                to,
                // The way there selects first and moves once the canaries are written.
                paused: leg == 0,
                abort: false,
                topologies,
                moves: spec.moves.clone(),
            },
        );
        rs.metadata.namespace = drill.namespace();
        rs.metadata.labels = Some([(DRILL_LABEL.to_owned(), drill.name_any())].into());
        rs.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "federator.dev/v1alpha1".into(),
            kind: "RegionDrill".into(),
            name: drill.name_any(),
            uid: drill.uid().unwrap_or_default(),
            ..OwnerReference::default()
        }]);
        rs
    }

    /// Creates the leg's region switch unless it exists.
    async fn ensure_switch(&self, drill: &RegionDrill, leg: usize) -> Result<(), DrillError> {
        let rs = self.leg_switch(drill, leg);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match self.switches.create(&params, &rs).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(kube_err(format!("creating RegionSwitch {}", rs.name_any()))(e)),
        }
    }

    async fn switch_status(&self, name: &str) -> Result<RegionSwitchStatus, DrillError> {
        Ok(self
            .switches
            .get(name)
            .await
            .map_err(kube_err(format!("reading RegionSwitch {name}")))?
            .status
            .unwrap_or_default())
    }

    /// Select: the way there is created paused; once it selected, the drill's databases are the
    /// topologies it moves, each with the URIs of its members.
    async fn select(&mut self, drill: RegionDrill) -> Result<RegionDrill, DrillError> {
        self.ensure_switch(&drill, 0).await?;
        let there = rules::leg_names(&drill.name_any())[0].clone();
        let deadline = tokio::time::Instant::now() + SELECT_DEADLINE;
        let selected = loop {
            if let Some(selected) = rules::selection(&self.switch_status(&there).await?) {
                break selected;
            }
            if tokio::time::Instant::now() > deadline {
                break Err(format!(
                    "RegionSwitch {there} did not select within {}s: is `federator controller` \
                     running and leading?",
                    SELECT_DEADLINE.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        let databases = match selected {
            Ok(d) => d,
            Err(why) => {
                return self
                    .finish(drill, Some(format!("RegionSwitch {there} refused: {why}")))
                    .await;
            }
        };
        let mut status = drill.status.clone().unwrap_or_default();
        status.databases = databases;
        status.legs = vec![Leg {
            region_switch: there,
            from: drill.spec.from.clone(),
            to: drill.spec.to.clone(),
            started_at: None,
            finished_at: None,
            outcome: None,
        }];
        let status = self.advance(&drill, status);
        self.save(&drill, status).await
    }

    /// The URIs of every member of `topology`, from the hub Secrets `spec.connection` names.
    async fn dsns(&self, drill: &RegionDrill, topology: &str) -> Result<Dsns, String> {
        let topo = self
            .topologies
            .get(topology)
            .await
            .map_err(|e| format!("reading DistributedTopology {topology}: {e}"))?;
        let key = drill
            .spec
            .connection
            .key
            .clone()
            .unwrap_or_else(|| DEFAULT_URI_KEY.into());
        let mut dsns = Dsns::new();
        for m in &topo.spec.members {
            let secret = drill.spec.connection.secret_of(&m.name);
            let fix = format!(
                "create the hub Secret {secret} (key {key}: the libpq URI of member {}) or set \
                 spec.connection.secretName",
                m.name
            );
            let s = self.secrets.get(&secret).await.map_err(|e| {
                let why = match e {
                    kube::Error::Api(e) => e.message,
                    other => other.to_string(),
                };
                format!("reading Secret {secret} ({topology}): {why}; {fix}")
            })?;
            let uri = s
                .data
                .as_ref()
                .and_then(|d| d.get(&key))
                .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
                .ok_or_else(|| format!("Secret {secret} has no key {key}; {fix}"))?;
            dsns.insert(m.name.clone(), Target::from(uri));
        }
        Ok(dsns)
    }

    /// Starts what this process needs for every database (URIs, probe writer) if it has not
    /// yet: at WriteCanaries, or on a resume. `Err` names the database that cannot be reached.
    async fn ensure_databases(&mut self, drill: &RegionDrill) -> Result<(), String> {
        let status = drill.status.clone().unwrap_or_default();
        let run_id = status.run_id.clone().unwrap_or_default();
        for db in &status.databases {
            if self.databases.contains_key(&db.topology) {
                continue;
            }
            let dsns = self.dsns(drill, &db.topology).await?;
            let probe = Probe::start(dsns.clone(), run_id.clone());
            let base = db.writes.clone().unwrap_or_default();
            self.databases
                .insert(db.topology.clone(), Database { dsns, probe, base });
        }
        Ok(())
    }

    async fn stop_probes(&mut self) {
        for (_, db) in std::mem::take(&mut self.databases) {
            db.probe.stop().await;
        }
    }

    /// The probe counts of every database as of now, in `status`.
    fn record_writes(&self, status: &mut RegionDrillStatus) {
        for d in &mut status.databases {
            if let Some(db) = self.databases.get(&d.topology) {
                d.writes = Some(counts(&db.probe.log(), &db.base));
            }
        }
    }

    /// WriteCanaries: a canary on every primary, a probe writer in every database; then the way
    /// there is recorded as started (and resumed by [`Self::switch`]).
    async fn write_canaries(&mut self, drill: RegionDrill) -> Result<RegionDrill, DrillError> {
        if let Err(why) = self.ensure_databases(&drill).await {
            return self.finish(drill, Some(why)).await;
        }
        let mut status = drill.status.clone().unwrap_or_default();
        let run_id = status.run_id.clone().unwrap_or_default();
        for d in &mut status.databases {
            let target = &self.databases[&d.topology].dsns;
            let value = format!("{run_id}-{}-canary", d.topology);
            let written = async {
                let t = target.get(&d.primary).ok_or_else(|| {
                    format!("{}: no URI for its primary {}", d.topology, d.primary)
                })?;
                let c = postgres::connect(&d.primary, t)
                    .await
                    .map_err(|e| e.to_string())?;
                if postgres::in_recovery(&d.primary, &c)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Err(format!(
                        "{}: its primary {} is in recovery (not writable)",
                        d.topology, d.primary
                    ));
                }
                postgres::ensure_table(&d.primary, &c)
                    .await
                    .map_err(|e| e.to_string())?;
                postgres::insert(&d.primary, &c, &run_id, "canary", 0, &value)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            if let Err(why) = written {
                return self
                    .finish(
                        drill,
                        Some(format!("writing the canary of {}: {why}", d.topology)),
                    )
                    .await;
            }
            d.canary = Some(value);
        }
        if let Some(leg) = status.legs.first_mut() {
            leg.started_at = Some(now());
        }
        self.record_writes(&mut status);
        let status = self.advance(&drill, status);
        self.save(&drill, status).await
    }

    /// SwitchThere / SwitchBack: the leg's region switch exists and is not paused (both
    /// idempotent), until it ended; its hooks and moves go into the report.
    async fn switch(&mut self, drill: RegionDrill, leg: usize) -> Result<RegionDrill, DrillError> {
        if let Err(why) = self.ensure_databases(&drill).await {
            return self.finish(drill, Some(why)).await;
        }
        let mut drill = drill;
        let name = rules::leg_names(&drill.name_any())[leg].clone();
        let status = drill.status.clone().unwrap_or_default();
        if status.legs.len() <= leg {
            // Recorded before the region switch is created.
            let mut status = status;
            status.legs.push(Leg {
                region_switch: name.clone(),
                from: drill.spec.to.clone(),
                to: drill.spec.from.clone(),
                started_at: Some(now()),
                finished_at: None,
                outcome: None,
            });
            self.record_writes(&mut status);
            drill = self.save(&drill, status).await?;
        }
        self.ensure_switch(&drill, leg).await?;
        if leg == 0 {
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            self.switches
                .patch(
                    &name,
                    &params,
                    &Patch::Merge(json!({"spec": {"paused": false}})),
                )
                .await
                .map_err(kube_err(format!("resuming RegionSwitch {name}")))?;
        }
        let (phase, rs) = loop {
            let rs = self.switch_status(&name).await?;
            if let Some(phase) = rules::ended(&rs) {
                break (phase, rs);
            }
            tokio::time::sleep(POLL).await;
        };
        let mut status = drill.status.clone().unwrap_or_default();
        if let Some(l) = status.legs.get_mut(leg) {
            l.finished_at = Some(now());
            l.outcome = Some(format!("{phase:?}"));
        }
        status.hooks.retain(|h| h.region_switch != name);
        status.hooks.extend(rules::hook_timings(&name, &rs));
        status.moved.retain(|m| m.region_switch != name);
        status.moved.extend(rules::moved(&name, &rs));
        self.record_writes(&mut status);
        (self.say)(&format!(
            "RegionSwitch {name}: {phase:?} ({} moved)",
            rs.summary.as_deref().unwrap_or("0/0")
        ));
        if phase != topology::region_api::RegionSwitchPhase::Succeeded {
            let why = format!(
                "RegionSwitch {name} ended {phase:?}{}",
                rs.message.map(|m| format!(": {m}")).unwrap_or_default()
            );
            let drill = self.save(&drill, status).await?;
            return self.finish(drill, Some(why)).await;
        }
        let status = self.advance(&drill, status);
        self.save(&drill, status).await
    }

    /// VerifyThere / VerifyBack: on every database's new primary, the canary and every
    /// acknowledged probe write; write-unavailability from the moment its switchover was asked.
    async fn verify(&mut self, drill: RegionDrill, leg: usize) -> Result<RegionDrill, DrillError> {
        if let Err(why) = self.ensure_databases(&drill).await {
            return self.finish(drill, Some(why)).await;
        }
        let mut status = drill.status.clone().unwrap_or_default();
        let run_id = status.run_id.clone().unwrap_or_default();
        let switch_name = rules::leg_names(&drill.name_any())[leg].clone();
        let rs = self.switch_status(&switch_name).await?;
        let leg_started = status
            .legs
            .get(leg)
            .and_then(|l| l.started_at.clone())
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        let mut stopped = None;
        for d in &mut status.databases {
            let db = &self.databases[&d.topology];
            let (from, to) = if leg == 0 {
                (d.primary.clone(), d.target.clone())
            } else {
                (d.target.clone(), d.primary.clone())
            };
            let asked = rs
                .topologies
                .iter()
                .find(|t| t.name == d.topology)
                .and_then(|t| t.requested_at.clone())
                .map(|t| t.0)
                .unwrap_or(leg_started);
            // Writes come back on the new primary within a moment of the switchover's end.
            let deadline = tokio::time::Instant::now() + WRITES_BACK_DEADLINE;
            let unavailable = loop {
                let u = measure::unavailability(&db.probe.log(), asked).millis();
                if u.is_some() || tokio::time::Instant::now() > deadline {
                    break u;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            // A probe started after the switchover was asked (a resumed run) did not see it.
            let unavailable = unavailable.filter(|_| db.probe.started_at <= asked);
            let until = Timestamp::now();
            let log = db.probe.log();
            let found = async {
                let t = db
                    .dsns
                    .get(&to)
                    .ok_or_else(|| format!("no URI for member {to}"))?;
                let c = postgres::connect(&to, t).await.map_err(|e| e.to_string())?;
                let canary = d.canary.clone().unwrap_or_default();
                let has = postgres::has_value(&to, &c, &run_id, "canary", &canary)
                    .await
                    .map_err(|e| e.to_string())?;
                let rows = postgres::probe_rows(&to, &c, &run_id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((has, rows))
            }
            .await;
            let (has, rows) = match found {
                Ok(found) => found,
                Err(why) => {
                    stopped = Some(format!("verifying {} on {to}: {why}", d.topology));
                    break;
                }
            };
            let earlier = &db.base.acknowledged_seqs;
            let rpo = measure::rpo_with_earlier(&log, earlier, until, &rows);
            d.canary_found.truncate(leg);
            d.canary_found.push(has);
            d.switchovers.truncate(leg);
            d.switchovers.push(DatabaseSwitchover {
                from,
                to,
                unavailable_millis: unavailable,
                acknowledged_writes: rpo.acknowledged,
                lost_writes: rpo.lost.len() as u64,
                rpo_millis: rpo.millis,
            });
        }
        self.record_writes(&mut status);
        if let Some(why) = stopped {
            let drill = self.save(&drill, status).await?;
            return self.finish(drill, Some(why)).await;
        }
        let status = self.advance(&drill, status);
        self.save(&drill, status).await
    }

    /// A run that stops before its way there was resumed aborts that region switch (created
    /// paused): nothing of it moved, and it no longer holds the drill's topologies, so another
    /// region switch may move them.
    async fn abort_unstarted(
        &self,
        drill: &RegionDrill,
        status: &RegionDrillStatus,
    ) -> Result<(), DrillError> {
        if status.legs.first().is_some_and(|l| l.started_at.is_some()) {
            return Ok(());
        }
        let name = rules::leg_names(&drill.name_any())[0].clone();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let abort = Patch::Merge(json!({"spec": {"abort": true}}));
        match self.switches.patch(&name, &params, &abort).await {
            Ok(_) => {
                (self.say)(&format!("RegionSwitch {name}: aborted (it never moved)"));
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(kube_err(format!("aborting RegionSwitch {name}"))(e)),
        }
    }

    /// Ends the run: the probe writers stop, the checks are computed, the phase and condition
    /// say whether every check passed, and an Event tells it. `failure`: why the run stopped
    /// early.
    async fn finish(
        &mut self,
        drill: RegionDrill,
        failure: Option<String>,
    ) -> Result<RegionDrill, DrillError> {
        let mut status = drill.status.clone().unwrap_or_default();
        self.record_writes(&mut status);
        self.stop_probes().await;
        if failure.is_some() {
            self.abort_unstarted(&drill, &status).await?;
        }
        let finished = now();
        let total = status
            .started_at
            .as_ref()
            .map(|s| rules::elapsed_millis(s, &finished));
        if let Some(why) = &failure {
            (self.say)(&format!("stopped: {why}"));
            status.failure = Some(why.clone());
        }
        let limits = &drill.spec.limits;
        let checks = rules::checks(&Evidence {
            legs_expected: rules::leg_count(drill.spec.return_to_original),
            legs: &status.legs,
            databases: &status.databases,
            hooks: &status.hooks,
            moved: &status.moved,
            max_unavailable_millis: limits
                .max_write_unavailability
                .map(|d| d.as_std().as_millis() as u64),
            max_total_millis: limits.max_total.map(|d| d.as_std().as_millis() as u64),
            total_millis: total,
        });
        let passed = checks.iter().all(|c| c.passed) && status.failure.is_none();
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        let message = if passed {
            format!("every check passed ({})", rules::summary(&checks))
        } else {
            format!(
                "failed: {}{}",
                failed.join(", "),
                status
                    .failure
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            )
        };
        status.summary = Some(rules::summary(&checks));
        status.checks = checks;
        status.total_millis = total;
        status.finished_at = Some(finished);
        status.step = Some(RegionDrillStep::Done);
        status.phase = Some(if passed {
            DrillPhase::Succeeded
        } else {
            DrillPhase::Failed
        });
        let (value, reason) = if passed {
            ("True", condition::REASON_PASSED)
        } else {
            ("False", condition::REASON_FAILED)
        };
        topology::conditions::set(
            &mut status.conditions,
            condition_of(value, reason, &message, drill.metadata.generation),
        );
        let drill = self.save(&drill, status).await?;
        let reason = if passed {
            "RegionDrillSucceeded"
        } else {
            "RegionDrillFailed"
        };
        self.event(&drill, !passed, reason, &message).await;
        Ok(drill)
    }
}

fn condition_of(status: &str, reason: &str, message: &str, generation: Option<i64>) -> Condition {
    Condition {
        type_: condition::SUCCEEDED.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
    }
}
