//! Shared by the `faults_*` e2e tests: a pair with a controller whose hub and member
//! connections go through fault proxies (`e2e::faults::Routes`), waiting for a step of the
//! switchover, and a record of what the topology's conditions said while a fault lasted.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use e2e::faults::Routes;
use e2e::harness::testkit::{self, Pair};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use kube::Api;
use serde_json::json;
use topology::api::{Operation, OperationRecord};
use topology::{DistributedTopology, DistributedTopologyStatus};

use e2e::harness::controller::{Controller, deploy, wait_condition, wide_timeouts};

/// Held by each test of a binary whose faults hit parts every test shares (the hub apiserver,
/// etcd, a region's apiserver): run in parallel, one test's freeze would starve another's
/// controller and watches and fail it for a reason that is not its own.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
}

/// A pair (A primary in eu-central, B in eu-western), its topology, and a controller routed
/// through fault proxies.
pub struct Routed {
    pub lab: &'static SharedLab,
    pub ns: TestNamespace,
    pub pair: Pair,
    pub routes: Routes,
    /// Admin on the hub, not through the proxy: the test's own view.
    pub hub: Api<DistributedTopology>,
    pub controller: Controller,
}

impl Routed {
    /// `annotate`: emulator faults put on A and B before the topology exists (e.g. a slow
    /// shutdown that widens AwaitToken).
    pub async fn start(test: &str, annotate: &[(&str, &str)], extra: &[&str]) -> Self {
        let lab = testkit::lab_with_emulators().await;
        let ns = TestNamespace::create(test).await;
        ns.grant_federator().await;
        let pair = Pair::create(lab, ns.name()).await;
        for (key, value) in annotate {
            for (api, name) in [(&pair.api_a, pair.a.name), (&pair.api_b, pair.b.name)] {
                testkit::annotate(api, name, key, Some(value)).await;
            }
        }
        let routes = Routes::start(lab).await.expect("fault proxies");
        let hub = deploy(
            lab,
            ns.name(),
            &[pair.a, pair.b],
            json!({"star": {}}),
            wide_timeouts(),
        )
        .await;
        let mut args: Vec<String> = routes.controller_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let controller = Controller::start_through(lab, ns.name(), "", &args, routes.hub.addr());
        wait_condition(&hub, topology::conditions::kind::READY).await;
        Routed {
            lab,
            ns,
            pair,
            routes,
            hub,
            controller,
        }
    }

    /// Whether A's Cluster carries its agent's fence marker (read as an admin of A's region).
    pub async fn a_fenced_by_agent(&self) -> bool {
        self.pair
            .api_a
            .get(self.pair.a.name)
            .await
            .ok()
            .and_then(|c| c.metadata.annotations)
            .is_some_and(|a| a.contains_key(topology::autofailover::record::FENCED_BY_AGENT))
    }

    /// Arms automatic failover on the topology with `policy` (`spec.automaticFailover`).
    pub async fn arm_automatic_failover(&self, policy: serde_json::Value) {
        self.hub
            .patch(
                "pg",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"automaticFailover": policy}})),
            )
            .await
            .expect("arming automatic failover");
    }

    /// Sets `spec.primary`; returns the new generation.
    pub async fn switch_to(&self, to: &str) -> i64 {
        e2e::harness::controller::set_primary(&self.hub, to).await
    }
}

/// The finished operation of `generation`, waiting up to `within`.
pub async fn finished(
    hub: &Api<DistributedTopology>,
    generation: i64,
    within: Duration,
) -> Operation {
    let prefix = format!("{generation}-");
    let prefix = &prefix;
    wait_for(
        &format!("the operation of generation {generation} to finish"),
        within,
        || async move {
            hub.get("pg")
                .await
                .ok()?
                .status?
                .history
                .iter()
                .find(|op| op.id.starts_with(prefix))
                .map(OperationRecord::expand)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// What the topology said while a fault lasted: every distinct (condition type, status,
/// reason, message), step and hold seen, and what it says now.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every distinct condition seen.
    pub conditions: Vec<(String, String, String, String)>,
    pub steps: Vec<String>,
    pub holds: Vec<String>,
    /// The conditions of the last poll.
    pub current: Vec<(String, String, String, String)>,
    /// The hold of the last poll: step, reason, message.
    pub hold: Option<(String, String, String)>,
}

impl Observed {
    pub fn has_reason(&self, type_: &str, reason: &str) -> bool {
        self.conditions
            .iter()
            .any(|(t, _, r, _)| t == type_ && r == reason)
    }

    pub fn summary(&self) -> String {
        let conditions: Vec<String> = self
            .conditions
            .iter()
            .map(|(t, s, r, m)| format!("{t}={s} {r}: {m}"))
            .collect();
        format!(
            "steps {:?}; holds {:?}; conditions:\n  {}",
            self.steps,
            self.holds,
            conditions.join("\n  ")
        )
    }
}

/// Polls the topology every 250 ms, recording what it said, until `done` holds for what was
/// seen so far; panics with the record after `within`.
pub async fn observe_until(
    hub: &Api<DistributedTopology>,
    what: &str,
    within: Duration,
    done: impl Fn(&Observed) -> bool,
) -> Observed {
    let mut seen = Observed::default();
    let until = Instant::now() + within;
    loop {
        if let Ok(topo) = hub.get("pg").await {
            seen.record(topo.status.unwrap_or_default());
        }
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "{what}: not seen within {within:?}; {}",
            seen.summary()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Observed {
    fn record(&mut self, status: DistributedTopologyStatus) {
        self.current.clear();
        for c in &status.conditions {
            let entry = (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            );
            self.current.push(entry.clone());
            if !self.conditions.contains(&entry) {
                self.conditions.push(entry);
            }
        }
        self.hold = None;
        if let Some(op) = status.operation {
            let step = op.step.to_string();
            if self.steps.last() != Some(&step) {
                self.steps.push(step);
            }
            if let Some(hold) = op.hold {
                let h = format!("{}: {}", hold.reason, hold.message);
                if !self.holds.contains(&h) {
                    self.holds.push(h);
                }
                self.hold = Some((op.step.to_string(), hold.reason, hold.message));
            }
        }
    }

    /// Whether the topology now has condition `type_` with `status` and `reason`, its message
    /// containing every one of `words`.
    pub fn now_has(&self, type_: &str, status: &str, reason: &str, words: &[&str]) -> bool {
        self.current.iter().any(|(t, s, r, m)| {
            t == type_ && s == status && r == reason && words.iter().all(|w| m.contains(w))
        })
    }

    /// Whether the operation now holds with `reason`, its message containing every one of
    /// `words`.
    pub fn now_held(&self, reason: &str, words: &[&str]) -> bool {
        self.hold
            .as_ref()
            .is_some_and(|(_, r, m)| r == reason && words.iter().all(|w| m.contains(w)))
    }
}
