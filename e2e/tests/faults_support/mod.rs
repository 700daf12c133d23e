//! Shared by the `faults_*` e2e tests: a pair with a controller whose hub and member
//! connections go through fault proxies (`e2e::faults::Routes`), waiting for a step of the
//! switchover, and a record of what the topology's conditions said while a fault lasted.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use e2e::emulator::testkit::{self, Pair};
use e2e::faults::Routes;
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use kube::Api;
use serde_json::json;
use topology::DistributedTopology;
use topology::api::{Operation, OperationRecord};

use crate::controller_support::{Controller, deploy, wait_condition, wide_timeouts};

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

    /// Sets `spec.primary`; returns the new generation.
    pub async fn switch_to(&self, to: &str) -> i64 {
        crate::controller_support::set_primary(&self.hub, to).await
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
/// reason, message) and step seen, polled every 250 ms for `duration`.
#[derive(Debug, Default)]
pub struct Observed {
    pub conditions: Vec<(String, String, String, String)>,
    pub steps: Vec<String>,
    pub holds: Vec<String>,
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

pub async fn observe_for(hub: &Api<DistributedTopology>, duration: Duration) -> Observed {
    let mut seen = Observed::default();
    let until = Instant::now() + duration;
    while Instant::now() < until {
        if let Ok(topo) = hub.get("pg").await {
            let status = topo.status.unwrap_or_default();
            for c in &status.conditions {
                let entry = (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                );
                if !seen.conditions.contains(&entry) {
                    seen.conditions.push(entry);
                }
            }
            if let Some(op) = status.operation {
                let step = op.step.to_string();
                if seen.steps.last() != Some(&step) {
                    seen.steps.push(step);
                }
                if let Some(hold) = op.hold {
                    let h = format!("{}: {}", hold.reason, hold.message);
                    if !seen.holds.contains(&h) {
                        seen.holds.push(h);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}
