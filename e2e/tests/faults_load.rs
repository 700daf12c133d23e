#![forbid(unsafe_code)]
//! Load: 200 topologies (400 member Clusters) reconciled together by a controller that starts
//! while the hub answers its requests with 429 (API Priority and Fairness rejecting its flow).
//!
//! The member Clusters are the emulator's status-only kind (`emulator::status_only`: a healthy
//! status in their role, no PostgreSQL), so that 400 fit on the lab machine; nothing here
//! switches over. Two controllers in one run:
//! 1. the baseline: a controller with the chart's identity reconciles the 200 new topologies to
//!    Ready with the hub unthrottled; it is stopped (SIGTERM, as a rollout does);
//! 2. every topology's spec changes (a new generation each), the hub squeezes the flow of a
//!    second identity to a priority level of one concurrency share that rejects what does not
//!    fit (its topology and Event requests; its Lease requests stay unthrottled, as the hub's
//!    leader-election flows are), and a controller with that identity starts.
//!
//! Asserted: the hub rejected requests of the squeezed flow (the apiserver's own counter); every
//! topology Ready again at its new generation; and no error storm: no more failed reconciles
//! logged than requests the hub rejected. The times, the 429 count and the controller's memory
//! are printed (docs/faults.md, "Load").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::harness::TestNamespace;
use e2e::harness::controller::{Controller, chart_identity};
use e2e::harness::scale::{
    all_ready, create_status_only_pairs as create_pairs, name, rss_kib, tail,
};
use e2e::harness::testkit;
use e2e::lab::health::wait_for;
use futures::{StreamExt, stream};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use topology::DistributedTopology;

/// `FEDERATOR_E2E_LOAD_TOPOLOGIES` overrides the 200 for a quick run.
fn topologies() -> usize {
    std::env::var("FEDERATOR_E2E_LOAD_TOPOLOGIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Both tests measure how the controller copes with a hub that fails it: one at a time, so that
/// neither's load is in the other's figures.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_topologies_reconcile_through_a_hub_answering_429() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("flt-load").await;
    ns.grant_federator().await;
    let n = topologies();
    let hub = lab.admin("hub").await;
    let topos: Api<DistributedTopology> = Api::namespaced(hub.clone(), ns.name());

    let started = Instant::now();
    create_pairs(lab, ns.name(), n).await;
    println!(
        "{n} status-only pairs and topologies created in {:?}",
        started.elapsed()
    );

    // 1. The baseline, unthrottled.
    let started = Instant::now();
    let mut first = Controller::start(lab, ns.name());
    let baseline = all_ready(&topos, n, &first).await;
    let baseline_took = started.elapsed();
    let baseline_rss = rss_kib(first.pid());
    let baseline_failures = failures_logged(&first.log());
    let status = first.terminate().await;
    assert!(status.success(), "the first controller's exit: {status}");

    // 2. A new generation everywhere, and the hub squeezing the next controller's flow.
    new_generation_everywhere(&topos, n).await;
    let identity = chart_identity(lab, ns.name(), None);
    let squeeze = Squeeze::create(&hub, ns.name(), &identity.user()).await;
    let rejected_before = squeeze.rejected(&hub).await;
    let started = Instant::now();
    let second = Controller::start_as(lab, ns.name(), "-squeezed", &[], Some(identity));
    let squeezed = all_ready(&topos, n, &second).await;
    let squeezed_took = started.elapsed();
    let rejected = squeeze.rejected(&hub).await - rejected_before;
    let rss = rss_kib(second.pid());
    let log = second.log();
    let failures = failures_logged(&log);
    squeeze.delete(&hub).await;

    println!(
        "| phase | topologies | all Ready after | 429s from the hub | reconcile failures logged | controller RSS |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| baseline (unthrottled) | {n} | {:.1} s | 0 | {baseline_failures} | {} MiB |",
        baseline_took.as_secs_f64(),
        baseline_rss / 1024
    );
    println!(
        "| restart, flow squeezed | {n} | {:.1} s | {rejected} | {failures} | {} MiB |",
        squeezed_took.as_secs_f64(),
        rss / 1024
    );
    println!("(Ready at generation: baseline {baseline}, squeezed {squeezed})");

    assert!(
        rejected > 0,
        "the hub never rejected the squeezed flow: the test did not test backoff"
    );
    assert!(!log.contains("panicked"), "{log}");
    // No storm: every failed reconcile logged has a request the hub rejected behind it (a
    // reconcile that failed for another reason, or logged more than once per failure, breaks
    // this). The backoff's growth itself is unit-tested (`ledger::tests`): in this scenario the
    // squeezed level lets a few requests through, so failures rarely repeat for one topology,
    // and a flat 2 s retry logged about as many (docs/faults.md).
    println!("failures logged {failures}, requests rejected {rejected}");
    assert!(
        failures as u64 <= rejected,
        "{failures} failed reconciles logged for {rejected} rejected requests: failures not \
         caused by the squeeze, or logged more than once"
    );
}

/// How long the hub refuses every status write.
const REFUSE_FOR: Duration = Duration::from_secs(40);

/// A flat 2 s retry fails about 20 times per topology in [`REFUSE_FOR`]; the backoff (2 s
/// doubling up to 30 s, less up to a quarter of spread) 5 or 6 times.
const MAX_FAILURES_PER_TOPOLOGY: usize = 8;

/// The hub refuses every status write for a while (an admission policy denying them, as a
/// cluster's policy engine can): each topology's reconciles fail, and each topology retries less
/// and less often, instead of every topology retrying every 2 s for as long as the hub refuses.
///
/// API Priority and Fairness cannot make the hub admit nothing: a priority level of 0 seats
/// still dispatches a request whenever none of its requests is executing (its guarantee of
/// progress), so the 429 test above lets some requests through, and a failure rarely repeats for
/// one topology there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_refusing_every_status_write_sees_each_topology_retry_less_and_less_often() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("flt-refuse").await;
    ns.grant_federator().await;
    let n = topologies().min(20);
    let hub = lab.admin("hub").await;
    let topos: Api<DistributedTopology> = Api::namespaced(hub.clone(), ns.name());
    create_pairs(lab, ns.name(), n).await;
    let controller = Controller::start(lab, ns.name());
    all_ready(&topos, n, &controller).await;

    let refusal = Refusal::create(&hub, ns.name(), &topos).await;
    let log_before = controller.log().lines().count();
    new_generation_everywhere(&topos, n).await;
    let refused_at = Instant::now();
    tokio::time::sleep(REFUSE_FOR).await;
    let refused_for = refused_at.elapsed();
    let log = controller.log();
    let during: Vec<&str> = log.lines().skip(log_before).collect();
    refusal.delete(&hub).await;
    let lifted_at = Instant::now();
    all_ready(&topos, n, &controller).await;
    let recovered = lifted_at.elapsed();

    let per_topology = failures_per_topology(&during, ns.name());
    let failed: usize = per_topology.values().map(Vec::len).sum();
    let most = per_topology.values().map(Vec::len).max().unwrap_or(0);
    let reached = per_topology
        .values()
        .filter_map(|d| d.iter().copied().reduce(f64::max))
        .reduce(f64::min)
        .unwrap_or(0.0);
    println!(
        "| hub refuses status writes for | topologies | failed reconciles logged | most for one topology | the longest retry of every topology at least | Ready again after the hub accepts |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.0} s | {n} | {failed} | {most} | {reached:.1} s | {:.1} s |",
        refused_for.as_secs_f64(),
        recovered.as_secs_f64()
    );

    assert_eq!(
        per_topology.len(),
        n,
        "every topology's status write must have been refused at least once: {per_topology:?}"
    );
    assert!(
        most <= MAX_FAILURES_PER_TOPOLOGY,
        "a topology failed {most} times in {REFUSE_FOR:?} while the hub refused its status \
         (at most {MAX_FAILURES_PER_TOPOLOGY} with the backoff): {per_topology:?}"
    );
    assert!(
        reached >= 8.0,
        "some topology never waited 8 s or more before a retry: {per_topology:?}"
    );
    assert!(!log.contains("panicked"), "{}", tail(&log));
}

/// A merge patch of every topology's spec: a new generation each.
async fn new_generation_everywhere(topos: &Api<DistributedTopology>, n: usize) {
    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let topos = topos.clone();
            async move {
                let patch = json!({"spec": {"policies": {"timeouts": {"demotionStart": "100s"}}}});
                topos
                    .patch(&name(i), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("a new generation");
            }
        })
        .await;
}

/// Per topology (its name), the retry delays (seconds) of the failed reconciles in `lines`.
fn failures_per_topology(lines: &[&str], ns: &str) -> BTreeMap<String, Vec<f64>> {
    let mut failures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let key = format!("{ns}/");
    for line in lines
        .iter()
        .filter(|l| l.contains("reconcile failed; retrying in "))
    {
        let Some(at) = line.find(&key) else { continue };
        let topology: String = line[at + key.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let delay = line
            .split("retrying in ")
            .nth(1)
            .and_then(|rest| rest.split('s').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        failures.entry(topology).or_default().push(delay);
    }
    failures
}

/// Failed reconciles the controller logged.
fn failures_logged(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("reconcile failed; retrying"))
        .count()
}

/// A priority level of one concurrency share that rejects what does not fit, and the flow
/// schema that puts one user's topology and Event requests there.
struct Squeeze {
    name: String,
}

impl Squeeze {
    async fn create(hub: &kube::Client, ns: &str, user: &str) -> Self {
        let name = format!("federator-e2e-squeeze-{ns}");
        let level = json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": name},
            "spec": {"type": "Limited", "limited": {
                "nominalConcurrencyShares": 1,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            }},
        });
        let schema = json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                "matchingPrecedence": 200,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{
                    "subjects": [{"kind": "User", "user": {"name": user}}],
                    "resourceRules": [{
                        "verbs": ["*"],
                        "apiGroups": ["federator.dev", "", "events.k8s.io"],
                        "resources": ["distributedtopologies", "distributedtopologies/status", "events"],
                        "namespaces": [ns],
                    }],
                }],
            },
        });
        let levels: Api<PriorityLevelConfiguration> = Api::all(hub.clone());
        let schemas: Api<FlowSchema> = Api::all(hub.clone());
        levels
            .create(
                &PostParams::default(),
                &serde_json::from_value(level).unwrap(),
            )
            .await
            .expect("creating the priority level");
        schemas
            .create(
                &PostParams::default(),
                &serde_json::from_value(schema).unwrap(),
            )
            .await
            .expect("creating the flow schema");
        // The hub applies flow control configuration asynchronously; its config controller marks
        // a schema it has digested (`Dangling`).
        wait_for(
            "the hub to put the squeeze in force",
            Duration::from_secs(30),
            || {
                let (schemas, name) = (schemas.clone(), name.clone());
                async move {
                    let schema = schemas.get(&name).await.ok()?;
                    let conditions = schema.status?.conditions?;
                    conditions
                        .iter()
                        .any(|c| c.type_.as_deref() == Some("Dangling"))
                        .then_some(())
                }
            },
        )
        .await
        .expect("the flow schema digested");
        Self { name }
    }

    /// Requests of this priority level the hub rejected so far (its
    /// `apiserver_flowcontrol_rejected_requests_total`).
    async fn rejected(&self, hub: &kube::Client) -> u64 {
        let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = hub.request_text(request).await.expect("the hub's /metrics");
        let label = format!("priority_level=\"{}\"", self.name);
        text.lines()
            .filter(|l| l.starts_with("apiserver_flowcontrol_rejected_requests_total{"))
            .filter(|l| l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    async fn delete(self, hub: &kube::Client) {
        let schemas: Api<FlowSchema> = Api::all(hub.clone());
        let levels: Api<PriorityLevelConfiguration> = Api::all(hub.clone());
        let _ = schemas.delete(&self.name, &DeleteParams::default()).await;
        let _ = levels.delete(&self.name, &DeleteParams::default()).await;
    }
}

/// A ValidatingAdmissionPolicy (and its binding) that denies every update of a topology's status
/// in one namespace.
struct Refusal {
    name: String,
}

impl Refusal {
    /// Creates it and waits until the hub enforces it (a no-op status write of the admin's is
    /// refused).
    async fn create(hub: &kube::Client, ns: &str, topos: &Api<DistributedTopology>) -> Self {
        let name = format!("federator-e2e-refuse-{ns}");
        let policy = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["federator.dev"],
                    "apiVersions": ["*"],
                    "operations": ["UPDATE"],
                    "resources": ["distributedtopologies/status"],
                }]},
                "validations": [{
                    "expression": "false",
                    "message": "e2e: this hub refuses every status write of a topology",
                }],
            },
        });
        let binding = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": ns,
                }}},
            },
        });
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(hub.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(hub.clone());
        policies
            .create(
                &PostParams::default(),
                &serde_json::from_value(policy).unwrap(),
            )
            .await
            .expect("creating the admission policy");
        bindings
            .create(
                &PostParams::default(),
                &serde_json::from_value(binding).unwrap(),
            )
            .await
            .expect("creating its binding");
        wait_for(
            "the hub to enforce the admission policy",
            Duration::from_secs(30),
            || async move {
                let list = topos.list(&ListParams::default()).await.ok()?;
                let topo = list.items.first()?;
                let name = topo.metadata.name.as_deref()?;
                topos
                    .replace_status(name, &PostParams::default(), topo)
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await
        .expect("the admission policy enforced");
        Self { name }
    }

    async fn delete(self, hub: &kube::Client) {
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(hub.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(hub.clone());
        let _ = bindings.delete(&self.name, &DeleteParams::default()).await;
        let _ = policies.delete(&self.name, &DeleteParams::default()).await;
    }
}
