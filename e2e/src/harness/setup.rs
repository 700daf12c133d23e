//! The set-up most controller tests start from, as one builder: the lab with its emulators, a
//! namespace of the test's own (the members' federator Role granted in it), the pair of Clusters
//! A (primary) and B, the topology `pg` over them, and `federator controller` for the namespace,
//! waited on until the topology is Ready.
//!
//! ```no_run
//! # async fn t() {
//! use e2e::harness::setup::Setup;
//! let t = Setup::pair("ctl-example").ready().await;
//! // t.hub: the topology's API; t.pair: the Clusters; t.controller: the running controller.
//! # }
//! ```

use kube::Api;
use serde_json::{Value, json};
use topology::DistributedTopology;
use topology::conditions::kind;

use super::controller::{Controller, deploy, wait_condition, wide_timeouts};
use super::testkit::{self, Member, Pair};
use super::{SharedLab, TestNamespace};

/// What to set up; [`Setup::ready`] does it.
#[must_use]
pub struct Setup {
    test: String,
    /// (on A, on B, annotation, value).
    faults: Vec<(bool, bool, &'static str, String)>,
    timeouts: Value,
    controller_args: Vec<String>,
}

/// A pair under a running controller, its topology Ready.
pub struct Running {
    pub lab: &'static SharedLab,
    pub pair: Pair,
    /// The topology `pg`'s API (as the lab's admin).
    pub hub: Api<DistributedTopology>,
    pub controller: Controller,
    /// The topology as it was when it first became Ready.
    pub ready: DistributedTopology,
    // Dropped last: the namespace outlives what lives in it.
    pub ns: TestNamespace,
}

impl Setup {
    /// A pair A/B as a star, A primary; `test` names the namespace.
    pub fn pair(test: &str) -> Self {
        Setup {
            test: test.to_owned(),
            faults: Vec::new(),
            timeouts: wide_timeouts(),
            controller_args: Vec::new(),
        }
    }

    /// An emulator fault annotation (`e2e::emulator::faults`) on both Clusters.
    pub fn fault(mut self, annotation: &'static str, value: &str) -> Self {
        self.faults.push((true, true, annotation, value.to_owned()));
        self
    }

    /// An emulator fault annotation on A (the first primary) only.
    pub fn fault_on_a(mut self, annotation: &'static str, value: &str) -> Self {
        self.faults
            .push((true, false, annotation, value.to_owned()));
        self
    }

    /// An emulator fault annotation on B (the first replica) only.
    pub fn fault_on_b(mut self, annotation: &'static str, value: &str) -> Self {
        self.faults
            .push((false, true, annotation, value.to_owned()));
        self
    }

    /// `spec.policies.timeouts` of the topology (default: wide, for a loaded machine).
    pub fn timeouts(mut self, timeouts: Value) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Extra flags of `federator controller`.
    pub fn controller_args(mut self, args: &[&str]) -> Self {
        self.controller_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Sets everything up and waits until the topology is Ready.
    pub async fn ready(self) -> Running {
        let lab = testkit::lab_with_emulators().await;
        let ns = TestNamespace::create(&self.test).await;
        ns.grant_federator().await;
        let pair = Pair::create(lab, ns.name()).await;
        for (on_a, on_b, annotation, value) in &self.faults {
            let sides = [
                (*on_a, &pair.api_a, pair.a.name),
                (*on_b, &pair.api_b, pair.b.name),
            ];
            for (_, api, name) in sides.into_iter().filter(|(on, _, _)| *on) {
                testkit::annotate(api, name, annotation, Some(value)).await;
            }
        }
        let members = [pair.a, pair.b];
        let hub = deploy(lab, ns.name(), &members, json!({"star": {}}), self.timeouts).await;
        let args: Vec<&str> = self.controller_args.iter().map(String::as_str).collect();
        let controller = Controller::start_with(lab, ns.name(), "", &args);
        let ready = wait_condition(&hub, kind::READY).await;
        Running {
            lab,
            pair,
            hub,
            controller,
            ready,
            ns,
        }
    }
}

impl Running {
    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// A and B, in that order.
    pub fn members(&self) -> [Member<'static>; 2] {
        [self.pair.a, self.pair.b]
    }

    /// Deletes the Clusters (their PostgreSQL stops); the namespace goes when dropped.
    pub async fn finish(self) {
        self.pair.delete().await;
    }
}
