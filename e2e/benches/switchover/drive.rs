//! The three ways the bench moves the primary, each with the exact JSON merge patches the
//! planner lays out (`topology::plan`), so they differ only in who sends them and when:
//!
//! - **Federator**: `spec.primary` of a `DistributedTopology` is changed (as `federator
//!   switchover` does) and `federator controller` does the rest.
//! - **Script**: the three documented manual steps as a shell loop with `kubectl` would do them —
//!   patch the old primary, read `status.demotionToken` every 2 s until it is there, patch the
//!   target with `primary` and `promotionToken`.
//! - **Floor**: the same three steps reacting at once, from a watch on the old primary: the
//!   best any orchestrator could do on this emulator.
//!
//! An archive-only target (no `connectionParameters` for its source) must have replayed past the
//! token's REDO location before the promote patch: CloudNativePG 1.28.1 restores from the
//! target's own bucket once it is a primary by spec, so an earlier promote waits forever
//! (docs/lab-real.md). Federator waits at `AwaitReplay`; the manual drivers read
//! `pg_last_wal_replay_lsn()` on the target between the token and the promote patch, the script
//! every 2 s, the floor every [`FLOOR_POLL`].
//!
//! After a manual switchover the bench also sends the planner's Bookkeeping and ClearToken
//! patches (untimed), so every round starts from the same conforming members.

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use e2e::harness::SharedLab;
use e2e::harness::testkit::{self, Member};
use e2e::lab::health::wait_for;
use futures::StreamExt;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use topology::api::Outcome;
use topology::cnpg::Cluster;
use topology::conditions::kind;
use topology::plan::{Desired, Plan};
use topology::token::{Lsn, PromotionToken};
use topology::{DistributedTopology, Observed, OperationKind, StepKind, Topology};

use e2e::harness::controller::{pg, topology as topology_object, wide_timeouts};

/// How long the script sleeps between two reads of the token (`sleep 2` in the loop).
pub const SCRIPT_POLL: Duration = Duration::from_secs(2);
/// How often the floor reads an archive-only target's replay position (no watch exposes it).
pub const FLOOR_POLL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Federator,
    Script,
    Floor,
}

impl Driver {
    pub const ALL: [Driver; 3] = [Driver::Federator, Driver::Script, Driver::Floor];

    /// `federator`, `script` or `floor` (the names `--drivers` takes).
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "federator" => Ok(Driver::Federator),
            "script" => Ok(Driver::Script),
            "floor" => Ok(Driver::Floor),
            other => bail!("--drivers: unknown driver {other:?} (federator, script, floor)"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Driver::Federator => "Federator",
            Driver::Script => "script (2 s poll)",
            Driver::Floor => "floor (watch)",
        }
    }
}

/// One switchover to run: the namespace's members, the shape, and the move.
pub struct Switch<'a> {
    pub lab: &'static SharedLab,
    pub ns: &'a str,
    pub members: &'a [Member<'static>],
    pub shape: &'a Value,
    pub from: usize,
    pub to: usize,
    /// How long any one wait may take (the tier's).
    pub within: Duration,
}

/// What a driver did: when it sent its first request, and the token it carried.
pub struct Driven {
    pub start: Instant,
    pub token: Option<String>,
    /// Patches still to send once the target is promoted (manual drivers only).
    follow_up: Vec<(usize, Value)>,
}

impl Switch<'_> {
    fn name(&self, i: usize) -> &'static str {
        self.members[i].name
    }

    async fn api(&self, i: usize) -> Api<Cluster> {
        testkit::clusters(self.lab, self.members[i].region, self.ns).await
    }

    fn hub_object(&self, primary: usize) -> DistributedTopology {
        topology_object(
            self.ns,
            self.members,
            self.shape.clone(),
            self.name(primary),
            wide_timeouts(),
        )
    }

    async fn hub(&self) -> Api<DistributedTopology> {
        Api::namespaced(self.lab.admin("hub").await, self.ns)
    }

    /// The planner's switchover from the members as they are now, and whether the target's
    /// channel has an object store (it must replay past the token before the promote patch, as
    /// Federator's AwaitReplay waits).
    async fn plan(&self) -> anyhow::Result<(Plan, bool)> {
        let mut clusters = Vec::new();
        for i in 0..self.members.len() {
            clusters.push(self.api(i).await.get(self.name(i)).await?);
        }
        let spec = self.hub_object(self.from).spec;
        let topology = Topology::from_spec(&spec).map_err(|e| anyhow!("{e}"))?;
        let desired = Desired {
            topology: &topology,
            to: self.name(self.to),
            kind: OperationKind::Switchover,
        };
        let observed = Observed::from_clusters(&clusters);
        let archive = observed
            .get(self.name(self.to))
            .is_some_and(|m| m.source.has_archive());
        let plan = topology::plan(&observed, &desired).map_err(|e| anyhow!("{e}"))?;
        Ok((plan, archive))
    }

    /// Until member `i` has replayed past `token`'s REDO location, read every `every`.
    async fn await_replay(&self, i: usize, token: &str, every: Duration) -> anyhow::Result<()> {
        let redo = PromotionToken::decode(token)
            .map_err(|e| anyhow!("{e}"))?
            .redo_lsn()
            .context("the token has no REDO location")?;
        let deadline = Instant::now() + self.within;
        let member = self.members[i];
        let mut client = None;
        loop {
            if client.is_none() {
                client = pg(self.lab, self.ns, member, Duration::from_secs(2)).await;
            }
            if let Some(c) = &client {
                match c
                    .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
                    .await
                {
                    Ok(row) => {
                        let replayed: Option<String> = row.get(0);
                        let replayed = replayed.and_then(|l| l.parse::<Lsn>().ok());
                        if replayed.is_some_and(|l| l > redo) {
                            return Ok(());
                        }
                    }
                    Err(_) => client = None,
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not replay past the token's REDO location in time",
                    member.name
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    fn index(&self, member: &str) -> anyhow::Result<usize> {
        self.members
            .iter()
            .position(|m| m.name == member)
            .ok_or_else(|| anyhow!("{member} is not a member"))
    }

    async fn patch(&self, i: usize, patch: &Value) -> anyhow::Result<()> {
        self.api(i)
            .await
            .patch(self.name(i), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patching {}", self.name(i)))?;
        Ok(())
    }

    /// Untimed preparation: for Federator, the topology on the hub, Ready.
    pub async fn prepare(&self, driver: Driver) -> anyhow::Result<()> {
        if driver != Driver::Federator {
            return Ok(());
        }
        let hub = self.hub().await;
        hub.create(&PostParams::default(), &self.hub_object(self.from))
            .await
            .context("creating the topology")?;
        let hub = &hub;
        wait_for("the topology Ready", self.within, || async move {
            let t = hub.get("pg").await.ok()?;
            let status = t.status.as_ref()?;
            let ready = status.conditions.iter().any(|c| {
                c.type_ == kind::READY
                    && c.status == "True"
                    && c.observed_generation == t.metadata.generation
            });
            ready.then_some(())
        })
        .await?;
        Ok(())
    }

    /// Runs the switchover with `driver` until the target has its promotion patch (manual) or
    /// the operation ended (Federator).
    pub async fn drive(&self, driver: Driver) -> anyhow::Result<Driven> {
        match driver {
            Driver::Federator => self.federator().await,
            Driver::Script => self.manual(Some(SCRIPT_POLL)).await,
            Driver::Floor => self.manual(None).await,
        }
    }

    async fn federator(&self) -> anyhow::Result<Driven> {
        let hub = self.hub().await;
        let start = Instant::now();
        hub.patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"primary": self.name(self.to)}})),
        )
        .await
        .context("changing spec.primary")?;
        let hub = &hub;
        let to = self.name(self.to);
        let outcome = wait_for(
            "the switchover in status.history",
            self.within,
            || async move {
                let t = hub.get("pg").await.ok()?;
                let op = t.status?.history.into_iter().find(|op| op.to == to)?;
                op.outcome
            },
        )
        .await?;
        match outcome {
            // Federator already cleared the token (and the emulator `lastPromotionToken` with it).
            Outcome::Succeeded => Ok(Driven {
                start,
                token: None,
                follow_up: Vec::new(),
            }),
            other => bail!("Federator's switchover to {to} ended {other:?}"),
        }
    }

    async fn manual(&self, poll: Option<Duration>) -> anyhow::Result<Driven> {
        let (plan, archive) = self.plan().await?;
        let step = |kind: StepKind| plan.steps.iter().filter(move |s| s.step == kind);
        let one = |kind: StepKind| -> anyhow::Result<(usize, Value)> {
            let s = step(kind)
                .next()
                .ok_or_else(|| anyhow!("the plan has no {kind:?}"))?;
            let member = s.member.as_deref().unwrap_or_default();
            Ok((self.index(member)?, s.patch.clone().unwrap_or_default()))
        };
        let (old, demote) = one(StepKind::Demote)?;
        let (target, mut promote) = one(StepKind::Promote)?;
        let mut follow_up = Vec::new();
        for s in step(StepKind::Bookkeeping).chain(step(StepKind::ClearToken)) {
            // A step with nothing to patch (no other member to tell) is only listed.
            if let (Some(member), Some(patch)) = (&s.member, &s.patch) {
                follow_up.push((self.index(member)?, patch.clone()));
            }
        }

        let api = self.api(old).await;
        // The floor's watch is established before the clock starts, as an orchestrator's would be.
        let mut tokens = match poll {
            Some(_) => None,
            None => Some(token_watch(&api, self.name(old)).await?),
        };
        let start = Instant::now();
        self.patch(old, &demote).await?;
        let token = match (&mut tokens, poll) {
            (Some(events), _) => tokio::time::timeout(self.within, events.next())
                .await
                .context("no demotion token in time")?
                .ok_or_else(|| anyhow!("the token watch ended"))?,
            (None, Some(every)) => {
                let deadline = Instant::now() + self.within;
                loop {
                    // `kubectl get cluster … -o jsonpath='{.status.demotionToken}'`
                    if let Some(token) = testkit::demotion_token(&api.get(self.name(old)).await?) {
                        break token;
                    }
                    if Instant::now() > deadline {
                        bail!("no demotion token in time");
                    }
                    tokio::time::sleep(every).await;
                }
            }
            (None, None) => unreachable!("a driver either polls or watches"),
        };
        if archive {
            self.await_replay(target, &token, poll.unwrap_or(FLOOR_POLL))
                .await?;
        }
        promote["spec"]["replica"]["promotionToken"] = json!(token);
        self.patch(target, &promote).await?;
        Ok(Driven {
            start,
            token: Some(token),
            follow_up,
        })
    }

    /// Untimed: the manual drivers' bookkeeping and token clean-up; the topology removed after
    /// a Federator round (the next round may be manual, which it must not fight).
    pub async fn finish(&self, driven: &Driven) -> anyhow::Result<()> {
        for (member, patch) in &driven.follow_up {
            self.patch(*member, patch).await?;
        }
        let hub = self.hub().await;
        if hub.get_opt("pg").await?.is_some() {
            hub.delete("pg", &DeleteParams::default()).await?;
            let hub = &hub;
            wait_for("the topology deleted", self.within, || async move {
                hub.get_opt("pg").await.ok()?.is_none().then_some(())
            })
            .await?;
        }
        Ok(())
    }

    /// Untimed: every member healthy, the target promoted with `token` (if given).
    pub async fn settled(&self, token: Option<&str>) -> anyhow::Result<()> {
        for i in 0..self.members.len() {
            let api = self.api(i).await;
            let (api, name, is_target) = (&api, self.name(i), i == self.to);
            wait_for(&format!("{name} healthy"), self.within, || async move {
                let c = api.get(name).await.ok()?;
                // A primary's stale demotion token would mislead the next round's drivers.
                let promoted = !is_target
                    || (testkit::demotion_token(&c).is_none()
                        && token.is_none_or(|t| testkit::last_promotion_token(&c) == Some(t)));
                (testkit::healthy(&c) && promoted).then_some(())
            })
            .await?;
        }
        Ok(())
    }
}

/// The demotion tokens of Cluster `name`, from a watch that is already running.
async fn token_watch(
    api: &Api<Cluster>,
    name: &str,
) -> anyhow::Result<impl futures::Stream<Item = String> + Unpin + use<>> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api.clone(), config).boxed();
    // Past the initial list: from here on every event is a change.
    loop {
        match events.next().await {
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(_) => {}
            None => bail!("the watch on {name} ended"),
        }
    }
    Ok(events
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::Apply(c)) => testkit::demotion_token(&c),
                _ => None,
            }
        })
        .boxed())
}
