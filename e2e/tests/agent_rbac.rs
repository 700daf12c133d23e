#![forbid(unsafe_code)]
//! The agent's charts grant exactly what `federator agent` needs (docs/automatic-failover.md,
//! "Installing the agent"): run with tokens of those ServiceAccounts — the hub's agent Role
//! (`charts/federator`, `agents.hubAccess`), its own region's Role and the other region's peer
//! Role (`charts/federator-agent`), not the lab's admin — its permission check finds nothing
//! missing, it renews with every voter (the topology arms), and cut off from the majority it
//! fences its own primary and lifts the fence when the links return. Without any one rule of
//! those Roles the agent names what is missing (verb, resource, namespace, where) at start.

mod faults_support;

use std::time::Duration;

use e2e::faults::Fault;
use e2e::harness::agent::AgentProcess;
use e2e::harness::agent_identity::{AgentIdentity, agent_rules};
use e2e::lab::health::wait_for;
use faults_support::{Routed, observe_until};
use serde_json::json;
use topology::conditions::kind;

const ALL_GRANTED: &str = "agent permissions: every one the agent uses is granted";

async fn wait_log(agent: &AgentProcess, what: &str, needles: &[String]) {
    wait_for(what, Duration::from_secs(60), || async {
        let log = agent.log();
        needles
            .iter()
            .all(|n| log.contains(n.as_str()))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- agent log ---\n{}", agent.log()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fences_with_exactly_its_charts_rbac_and_names_each_missing_rule() {
    let s = Routed::start("agent-rbac", &[], &[]).await;
    let (ns, a, b) = (s.ns.name(), s.pair.a, s.pair.b);
    // Twice the defaults, as in autofailover.rs (a loaded two-core lab).
    let policy = json!({"dataLossBudget": "Any", "detectionTime": "20s", "renewEvery": "2s", "fenceAfter": "8s"});
    s.arm_automatic_failover(policy).await;
    let b_agent = AgentProcess::start(s.lab, ns, b, &[]).await;

    let identity = AgentIdentity::create(s.lab, ns, a, b, "", None).await;
    let agent = AgentProcess::start_as(s.lab, ns, a, &[], Some(identity.credentials())).await;
    wait_log(
        &agent,
        "the agent's permission check passing with its charts' RBAC",
        &[ALL_GRANTED.to_owned()],
    )
    .await;
    assert!(
        !agent.log().contains("missing agent permission"),
        "{}",
        agent.log()
    );
    let seen = observe_until(
        &s.hub,
        "AutomaticFailover armed with both agents renewing",
        Duration::from_secs(60),
        |seen| seen.now_has(kind::AUTOMATIC_FAILOVER, "True", "Armed", &["term 1"]),
    )
    .await;
    println!("armed with the charts' RBAC: {}", seen.summary());

    // Cut off from the hub and B's store, A's agent fences A (its own Role's patch).
    agent.links_out(&Fault::Blackhole);
    wait_for("A fenced by its agent", Duration::from_secs(60), || async {
        s.a_fenced_by_agent().await.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- agent log ---\n{}", agent.log()));
    println!("cut off: A fenced by its agent under its chart's Role");
    agent.links_out(&Fault::Pass);
    wait_for("A's fence lifted", Duration::from_secs(60), || async {
        (!s.a_fenced_by_agent().await).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- agent log ---\n{}", agent.log()));
    println!("links back: A's agent lifted its fence");
    let topo = s.hub.get("pg").await.expect("the topology");
    let status = topo.status.unwrap_or_default();
    assert!(status.history.is_empty(), "{:#?}", status.history);
    drop(agent);
    drop(identity);

    let all = agent_rules(ns, a, b);
    assert_eq!(all.len(), 5, "the agent's rules: {all:#?}");
    for (i, rule) in all.iter().enumerate() {
        let identity = AgentIdentity::create(s.lab, ns, a, b, &format!("-{i}"), Some(rule)).await;
        let agent = AgentProcess::start_as(s.lab, ns, a, &[], Some(identity.credentials())).await;
        let needles: Vec<String> = rule
            .rule
            .verbs()
            .iter()
            .flat_map(|verb| {
                rule.rule
                    .resources()
                    .into_iter()
                    .map(move |resource| format!("missing agent permission: {verb} {resource}"))
            })
            .collect();
        wait_log(
            &agent,
            &format!("the agent naming the missing {rule}"),
            &needles,
        )
        .await;
        let log = agent.log();
        assert!(
            !log.contains(ALL_GRANTED),
            "without {rule} the check passed:\n{log}"
        );
        let reported = log.matches("missing agent permission:").count();
        assert_eq!(reported, needles.len(), "without {rule}:\n{log}");
        println!("without {rule}: named ({reported} missing)");
    }
    drop(b_agent);
}
