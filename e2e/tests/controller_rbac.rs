#![forbid(unsafe_code)]
//! The Helm chart's hub RBAC is exactly what the controller needs: with all of it the
//! controller's permission check finds nothing missing, and without any one rule of it the
//! controller names what is missing (verb, resource, namespace) as an error at start.
//!
//! Every other controller test already runs the controller as the chart's ServiceAccount
//! (`e2e::harness::controller::Controller::start_with`), so a switchover, a rotation, a drill and a
//! failover are proven to work with these permissions and no others.

use e2e::harness::TestNamespace;
use e2e::harness::controller::{Controller, chart_identity};
use e2e::harness::hub_identity::{render, rules};
use e2e::harness::testkit::DEADLINE;
use e2e::lab::health::wait_for;

const ALL_GRANTED: &str = "hub permissions: every one the controller uses is granted";

async fn wait_log(controller: &Controller, what: &str, needles: &[String]) {
    wait_for(what, DEADLINE, || async {
        let log = controller.log();
        needles
            .iter()
            .all(|n| log.contains(n.as_str()))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- controller log ---\n{}", controller.log()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_of_the_charts_hub_rbac_is_needed_and_its_absence_is_named() {
    let ns = TestNamespace::create("controller-rbac").await;
    let lab = ns.lab;

    let all = chart_identity(lab, ns.name(), None);
    let controller = Controller::start_as(lab, ns.name(), "-all", &[], Some(all));
    wait_log(
        &controller,
        "the permission check passing with the chart's RBAC",
        &[ALL_GRANTED.to_owned()],
    )
    .await;
    assert!(
        !controller.log().contains("missing hub permission"),
        "{}",
        controller.log()
    );
    drop(controller);

    let chart_rules = rules(&render(
        "e2e-list",
        ns.name(),
        &format!("federator-{}", ns.name()),
    ));
    assert!(chart_rules.len() >= 8, "the chart's rules: {chart_rules:?}");
    for (i, rule) in chart_rules.iter().enumerate() {
        // Release names differ per controller, so the rule is matched by position and content.
        let identity = chart_identity(lab, ns.name(), Some(rule.clone()));
        let user = identity.user();
        let controller = Controller::start_as(
            lab,
            ns.name(),
            &format!("-without-{i}"),
            &[],
            Some(identity),
        );
        let needles: Vec<String> = rule
            .verbs()
            .iter()
            .flat_map(|verb| {
                rule.resources()
                    .into_iter()
                    .map(move |resource| format!("missing hub permission: {verb} {resource}"))
            })
            .collect();
        wait_log(
            &controller,
            &format!("the controller ({user}) naming the missing {rule}"),
            &needles,
        )
        .await;
        let log = controller.log();
        assert!(
            !log.contains(ALL_GRANTED),
            "without {rule} the check passed:\n{log}"
        );
        // Nothing else is reported missing: each rule grants only what it names.
        let reported = log.matches("missing hub permission:").count();
        assert_eq!(reported, needles.len(), "without {rule}:\n{log}");
        println!("without {rule}: named ({reported} missing)");
    }
}
