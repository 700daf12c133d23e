#![forbid(unsafe_code)]
//! A topology whose Clusters live in a namespace the member credentials may not read (no Role
//! there): the controller says so at once — Ready=False and Degraded=True with reason
//! `MemberForbidden`, the message naming the member, the namespace, the verb and the fix — emits
//! exactly one Warning Event for it, and backs its watches off instead of retrying several times
//! a second (the log does not flood).

use std::time::Duration;

use e2e::harness::controller::{Controller, deploy, http_get, sample, wait_metric, wide_timeouts};
use e2e::harness::testkit::{DEADLINE, Member};
use e2e::harness::{self, TestNamespace};
use e2e::lab::health::wait_for;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use topology::conditions::{kind, reason};

/// The window over which the log is counted once the condition is there.
const WINDOW: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_namespace_the_credential_cannot_read_is_named_once_and_backed_off() {
    let lab = harness::lab().await;
    // No grant_federator: the members' credentials have no Role in this namespace.
    let ns = TestNamespace::create("ctl-forbidden").await;
    let members = [
        Member {
            name: "pg-a",
            region: "eu-central",
        },
        Member {
            name: "pg-b",
            region: "eu-western",
        },
    ];
    let hub = deploy(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        wide_timeouts(),
    )
    .await;
    let controller = Controller::start(lab, ns.name());

    let topo = wait_for("Degraded=True MemberForbidden", DEADLINE, || async {
        let t = hub.get("pg").await.ok()?;
        let forbidden = t.status.as_ref()?.conditions.iter().any(|c| {
            c.type_ == kind::DEGRADED && c.status == "True" && c.reason == reason::MEMBER_FORBIDDEN
        });
        forbidden.then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\ncontroller log:\n{}", controller.log()));
    let status = topo.status.expect("status");
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("condition {type_}: {:#?}", status.conditions))
            .clone()
    };
    let degraded = condition(kind::DEGRADED);
    for needed in ["eu-central", ns.name(), "list", "federator member join"] {
        assert!(
            degraded.message.contains(needed),
            "the message names {needed:?}: {}",
            degraded.message
        );
    }
    assert_eq!(degraded.observed_generation, topo.metadata.generation);
    let ready = condition(kind::READY);
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reason::MEMBER_FORBIDDEN);

    // What an alert sees: a credential problem per member, the refusals counted by status code,
    // and the topology not Ready for that reason.
    let metrics = controller.probe_addr().await;
    for member in ["eu-central", "eu-western"] {
        let labels = format!(r#"member="{member}""#);
        wait_metric(
            &metrics,
            "federator_member_credential_problems",
            &labels,
            1.0,
        )
        .await;
    }
    let not_ready = format!(
        r#"namespace="{}",topology="pg",reason="MemberForbidden""#,
        ns.name()
    );
    wait_metric(&metrics, "federator_topology_ready", &not_ready, 0.0).await;
    let (_, text) = http_get(&metrics, "/metrics").await.expect("/metrics");
    let refusals = sample(
        &text,
        "federator_member_credential_failures_total",
        r#"member="eu-central",code="403""#,
    );
    assert!(refusals.is_some_and(|n| n >= 1.0), "{text}");

    // Exactly one Warning Event, not repeated, over the window; the log stays quiet meanwhile.
    let events: Api<Event> = Api::namespaced(lab.admin("hub").await, ns.name());
    let lines_before = controller.log().lines().count();
    tokio::time::sleep(WINDOW).await;
    let log = controller.log();
    let lines: Vec<&str> = log.lines().skip(lines_before).collect();
    let refused: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("403") || l.to_lowercase().contains("forbidden"))
        .collect();
    println!(
        "{} log lines in {WINDOW:?}, {} about the refusal",
        lines.len(),
        refused.len()
    );
    // Two members, each retried at most every 2 s doubling to 60 s: a handful, not hundreds.
    assert!(
        refused.len() <= 12,
        "{} refusal lines in {WINDOW:?}:\n{}",
        refused.len(),
        lines.join("\n")
    );
    let list = events.list(&ListParams::default()).await.expect("events");
    let forbidden: Vec<&Event> = list
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason::MEMBER_FORBIDDEN))
        .collect();
    assert_eq!(
        forbidden.len(),
        1,
        "one Event: {:#?}",
        list.items
            .iter()
            .map(|e| (&e.reason, &e.note, &e.series))
            .collect::<Vec<_>>()
    );
    assert_eq!(forbidden[0].type_.as_deref(), Some("Warning"));
    assert!(
        forbidden[0].series.is_none(),
        "published once: {:?}",
        forbidden[0].series
    );
}
