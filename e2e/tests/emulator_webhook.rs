//! The emulated `vcluster.cnpg.io` webhook behind a real member apiserver: every §4 rule comes
//! back to a kube client with CNPG's exact message, metadata-only updates are re-validated, and
//! the "webhook failing N times" fault fails exactly N requests.
//!
//! Each test runs its own webhook server (a free port, a serving certificate from the lab CA)
//! and registers it for its own namespace only, so tests do not disturb each other or the
//! emulators' member-wide registration (which, when present, answers the same).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use e2e::emulator::webhook::{
    self, FAIL_TIMES_ANNOTATION, Registration, RunningWebhook, WebhookConfig,
};
use e2e::harness::{TestNamespace, WAIT, cnpg_cluster, sample_cluster};
use e2e::lab::MEMBERS;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const MEMBER: &str = MEMBERS[0];

/// A test namespace with this test's webhook enforced in it.
struct Fixture {
    ns: TestNamespace,
    server: RunningWebhook,
    configuration: String,
    clusters: Api<DynamicObject>,
}

impl Fixture {
    async fn start(test: &str) -> Self {
        let ns = TestNamespace::create(test).await;
        let dir = ns.lab.layout.root().to_path_buf();
        let (cert_pem, key_pem) = e2e::lab::pki::issue_serving_cert(&dir, &["127.0.0.1"])
            .expect("a serving certificate from the lab CA");
        let bind = "127.0.0.1:0".parse().expect("an address");
        let server = webhook::serve(WebhookConfig::new(bind, cert_pem, key_pem))
            .await
            .expect("the webhook server starts");
        let client = ns.lab.admin(MEMBER).await;
        let registration = Registration {
            configuration_name: format!("vcluster-test-{}", ns.name()),
            url: server.url(),
            ca_bundle_pem: e2e::lab::pki::ca_pem(&dir).expect("the lab CA"),
            namespace: Some(ns.name().to_owned()),
        };
        webhook::register_with(client.clone(), &registration)
            .await
            .expect("the ValidatingWebhookConfiguration applies");
        webhook::wait_until_enforced(client.clone(), ns.name(), WAIT)
            .await
            .expect("the apiserver calls the webhook");
        let clusters = Api::namespaced_with(client, ns.name(), &cnpg_cluster());
        Fixture {
            ns,
            server,
            configuration: registration.configuration_name,
            clusters,
        }
    }

    async fn stop(self) {
        let client = self.ns.lab.admin(MEMBER).await;
        webhook::unregister(client, &self.configuration)
            .await
            .expect("the configuration is deleted");
        self.server.shutdown().await.expect("the server stops");
    }

    async fn create(&self, object: Value) -> Result<DynamicObject, kube::Error> {
        let object: DynamicObject = serde_json::from_value(object).expect("an object");
        self.clusters.create(&PostParams::default(), &object).await
    }

    async fn annotate(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<DynamicObject, kube::Error> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.clusters
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    }
}

/// The apiserver's 422 for a denial by `vcluster.cnpg.io`; returns the message.
fn denied(result: Result<DynamicObject, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert_eq!(status.reason, "Invalid", "{status:?}");
            status.message
        }
        other => panic!("expected a 422 from the webhook, got {other:?}"),
    }
}

fn on_create(name: &str, errors: &str) -> String {
    format!(
        "admission webhook \"vcluster.cnpg.io\" denied the request: \
         Cluster.postgresql.cnpg.io \"{name}\" is invalid: {errors}"
    )
}

fn on_update(name: &str, errors: &str) -> String {
    format!(
        "admission webhook \"vcluster.cnpg.io\" denied the request: \
         Cluster.cluster.cnpg.io \"{name}\" is invalid: {errors}"
    )
}

/// A valid primary `name` of the lab's topology: `self` and `primary` are [`MEMBER`].
fn primary(name: &str) -> Value {
    let mut value = serde_json::to_value(sample_cluster(name, MEMBER, MEMBER)).expect("json");
    value["spec"]["bootstrap"] = json!({"initdb": {}});
    value
}

/// `value` with the field at `pointer` set (added if missing; array items replaced).
fn set(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    match value.pointer_mut(parent).expect("the parent exists") {
        Value::Array(items) => items[key.parse::<usize>().expect("an index")] = new,
        parent => parent[key] = new,
    }
    value
}

fn token(json: &str) -> String {
    STANDARD.encode(json)
}

const TOKEN: &str = r#"{"latestCheckpointTimelineID":"1","redoWalFile":"000000010000000000000004","databaseSystemIdentifier":"7400000000000000001","latestCheckpointREDOLocation":"0/4000028","timeOfLatestCheckpoint":"Mon 01 Jan 2024","operatorVersion":"1.27.1"}"#;

/// Contract §4, one row each: (Cluster name, how to break a valid primary, CNPG's errors).
fn rules() -> Vec<(String, Value, String)> {
    let good = token(TOKEN);
    let empty_field =
        token(&TOKEN.replace(r#""operatorVersion":"1.27.1""#, r#""operatorVersion":"""#));
    let replica = |name| set(primary(name), "/spec/replica/primary", json!(MEMBERS[1]));
    let long = "p".repeat(51);
    vec![
        (
            "enabled-with-primary".into(),
            set(primary("enabled-with-primary"), "/spec/replica/enabled", json!(true)),
            format!(
                "[spec.replicaCluster.enabled: Invalid value: {{\"self\":\"{MEMBER}\",\"primary\":\"{MEMBER}\",\"source\":\"{MEMBER}\",\"enabled\":true}}: replica mode enabled is not compatible with the primary field, \
                 spec.replicaCluster: Invalid value: {{\"self\":\"{MEMBER}\",\"primary\":\"{MEMBER}\",\"source\":\"{MEMBER}\",\"enabled\":true}}: replica mode bootstrap is compatible only with pg_basebackup or recovery]"
            ),
        ),
        (
            "replica-with-initdb".into(),
            replica("replica-with-initdb"),
            format!(
                "spec.replicaCluster: Invalid value: {{\"self\":\"{MEMBER}\",\"primary\":\"{}\",\"source\":\"{MEMBER}\"}}: replica mode bootstrap is compatible only with pg_basebackup or recovery",
                MEMBERS[1]
            ),
        ),
        (
            "source-unknown".into(),
            set(primary("source-unknown"), "/spec/replica/source", json!("nowhere")),
            r#"spec.replicaCluster.primaryServerName: Invalid value: "nowhere": External cluster nowhere not found"#.into(),
        ),
        (
            "self-unknown".into(),
            set(
                set(primary("self-unknown"), "/spec/replica/self", json!("nowhere")),
                "/spec/replica/primary",
                json!("nowhere"),
            ),
            r#"[spec.replicaCluster.self: Invalid value: "nowhere": External cluster nowhere not found, spec.replicaCluster.primary: Invalid value: "nowhere": External cluster nowhere not found]"#.into(),
        ),
        (
            "primary-unknown".into(),
            set(
                set(replica("primary-unknown"), "/spec/replica/primary", json!("nowhere")),
                "/spec/bootstrap",
                json!({"pg_basebackup": {"source": MEMBERS[1]}}),
            ),
            r#"spec.replicaCluster.primary: Invalid value: "nowhere": External cluster nowhere not found"#.into(),
        ),
        (
            "token-with-delay".into(),
            set(
                set(primary("token-with-delay"), "/spec/replica/promotionToken", json!(good)),
                "/spec/replica/minApplyDelay",
                json!("8h"),
            ),
            format!(r#"spec.replicaCluster.minApplyDelay: Invalid value: "{good}": minApplyDelay cannot be applied with a promotion token"#),
        ),
        (
            "token-on-replica".into(),
            set(
                set(replica("token-on-replica"), "/spec/replica/promotionToken", json!(good)),
                "/spec/bootstrap",
                json!({"pg_basebackup": {"source": MEMBERS[1]}}),
            ),
            format!(r#"spec.replicaCluster.token: Invalid value: "{good}": promotionToken is only allowed for primary clusters"#),
        ),
        (
            "token-not-base64".into(),
            set(primary("token-not-base64"), "/spec/replica/promotionToken", json!("not a token")),
            r#"spec.replicaCluster.token: Invalid value: "not a token": Invalid promotionToken format: invalid promotion token (Base64 decoding failed): illegal base64 data at input byte 3"#.into(),
        ),
        (
            "token-not-json".into(),
            set(primary("token-not-json"), "/spec/replica/promotionToken", json!(token("{"))),
            r#"spec.replicaCluster.token: Invalid value: "ew==": Invalid promotionToken format: invalid promotion token (JSON decoding failed): unexpected end of JSON input"#.into(),
        ),
        (
            "token-field-empty".into(),
            set(primary("token-field-empty"), "/spec/replica/promotionToken", json!(empty_field)),
            format!(r#"spec.replicaCluster.token: Invalid value: "{empty_field}": Invalid promotionToken content: invalid promotion token (OperatorVersion is empty)"#),
        ),
        (
            "duplicate-externals".into(),
            set(
                primary("duplicate-externals"),
                "/spec/externalClusters",
                json!([
                    {"name": MEMBER, "connectionParameters": {"host": "a"}},
                    {"name": MEMBER, "connectionParameters": {"host": "b"}},
                ]),
            ),
            format!(r#"spec.externalClusters: Invalid value: [{{"name":"{MEMBER}","connectionParameters":{{"host":"a"}}}},{{"name":"{MEMBER}","connectionParameters":{{"host":"b"}}}}]: the list of external clusters contains duplicate values"#),
        ),
        (
            "external-without-method".into(),
            set(
                primary("external-without-method"),
                "/spec/externalClusters/1",
                json!({"name": MEMBERS[1], "password": {"name": "app", "key": "password"}}),
            ),
            format!(r#"spec.externalClusters[1]: Invalid value: {{"name":"{}","password":{{"name":"app","key":"password"}}}}: one of connectionParameters, plugin and barmanObjectStore is required"#, MEMBERS[1]),
        ),
        (
            "basebackup-unknown".into(),
            set(primary("basebackup-unknown"), "/spec/bootstrap", json!({"pg_basebackup": {"source": "nowhere"}})),
            r#"spec.bootstrap.pg_basebackup.source: Invalid value: "nowhere": External cluster nowhere not found"#.into(),
        ),
        (
            "recovery-unknown".into(),
            set(primary("recovery-unknown"), "/spec/bootstrap", json!({"recovery": {"source": "nowhere"}})),
            r#"[spec.bootstrap.recovery.source: Invalid value: "nowhere": External cluster nowhere not found, spec.bootstrap.recovery.source: Invalid value: "nowhere": External cluster nowhere cannot be used for recovery: both Barman and CNPG-i plugin configurations are missing]"#.into(),
        ),
        (
            "recovery-no-store".into(),
            set(primary("recovery-no-store"), "/spec/bootstrap", json!({"recovery": {"source": MEMBER}})),
            format!(r#"spec.bootstrap.recovery.source: Invalid value: "{MEMBER}": External cluster {MEMBER} cannot be used for recovery: both Barman and CNPG-i plugin configurations are missing"#),
        ),
        (
            "two-bootstraps".into(),
            set(
                primary("two-bootstraps"),
                "/spec/bootstrap",
                json!({"initdb": {}, "pg_basebackup": {"source": MEMBER}}),
            ),
            "spec.bootstrap: Forbidden: Only one bootstrap method can be specified at a time".into(),
        ),
        (
            "1-not-a-label".into(),
            primary("1-not-a-label"),
            r#"metadata.name: Invalid value: "1-not-a-label": cluster name must be a valid DNS label"#.into(),
        ),
        (
            long.clone(),
            primary(&long),
            format!(r#"metadata.name: Invalid value: "{long}": the maximum length of a cluster name is 50 characters"#),
        ),
    ]
}

#[tokio::test]
async fn every_webhook_rule_is_rejected_with_its_exact_message() {
    let fx = Fixture::start("webhook-rules").await;
    for (name, object, errors) in rules() {
        assert_eq!(
            denied(fx.create(object).await),
            on_create(&name, &errors),
            "rule {name}"
        );
    }
    fx.stop().await;
}

#[tokio::test]
async fn the_role_cannot_flip_while_a_replica_switch_is_in_progress() {
    let fx = Fixture::start("webhook-in-progress").await;
    fx.create(primary("pg"))
        .await
        .expect("a valid primary is admitted");
    let status = json!({"status": {"switchReplicaClusterStatus": {"inProgress": true}}});
    fx.clusters
        .patch_status("pg", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status is written through the subresource, without the webhook");
    let demote = json!({"spec": {"replica": {"primary": MEMBERS[1]}}});
    let result = fx
        .clusters
        .patch("pg", &PatchParams::default(), &Patch::Merge(&demote))
        .await;
    assert_eq!(
        denied(result),
        on_update(
            "pg",
            "spec.replica.enabled: Forbidden: cannot modify the field while there is an ongoing operation to enable the replica cluster"
        )
    );
    // Changes that keep the role stay allowed during the switch.
    let source = json!({"spec": {"replica": {"source": MEMBERS[1]}}});
    fx.clusters
        .patch("pg", &PatchParams::default(), &Patch::Merge(&source))
        .await
        .expect("a source change keeps the role");
    fx.stop().await;
}

#[tokio::test]
async fn metadata_only_updates_are_revalidated() {
    let fx = Fixture::start("webhook-metadata").await;
    let ns = fx.ns.name().to_owned();
    fx.create(primary("pg"))
        .await
        .expect("a valid primary is admitted");
    // The lab's emulator may write to the Cluster too, so count what happens around our patch.
    let before = fx.server.reviewed(&ns, "pg");
    assert!(before >= 1, "the create was reviewed");
    fx.annotate("pg", "example.com/touched", "yes")
        .await
        .expect("an annotation on a valid Cluster passes");
    assert!(
        fx.server.reviewed(&ns, "pg") > before,
        "the annotation-only patch went through the webhook"
    );
    // The #9273 trap: a primary holding a token is valid; demoting it with the token left in
    // place is not, and neither is the "metadata-only" retry of a client that put both in one
    // object (the whole object is re-validated).
    let with_token = json!({"spec": {"replica": {"promotionToken": token(TOKEN)}}});
    fx.clusters
        .patch("pg", &PatchParams::default(), &Patch::Merge(&with_token))
        .await
        .expect("a valid token on a primary is admitted");
    let demote = json!({"metadata": {"annotations": {"example.com/touched": "again"}}, "spec": {"replica": {"primary": MEMBERS[1]}}});
    let message = denied(
        fx.clusters
            .patch("pg", &PatchParams::default(), &Patch::Merge(&demote))
            .await,
    );
    assert_eq!(
        message,
        on_update(
            "pg",
            &format!(
                r#"spec.replicaCluster.token: Invalid value: "{}": promotionToken is only allowed for primary clusters"#,
                token(TOKEN)
            )
        )
    );
    fx.stop().await;
}

/// The fault counts every request for the Cluster, whoever sends it (the lab's emulator writes
/// to Clusters too), so the client keeps retrying until the N failures are used up.
#[tokio::test]
async fn the_webhook_fails_n_times_when_annotated() {
    let fx = Fixture::start("webhook-fail-times").await;
    let ns = fx.ns.name().to_owned();
    let mut cluster = primary("pg");
    cluster["metadata"]["annotations"][FAIL_TIMES_ANNOTATION] = json!("2");
    fx.create(cluster)
        .await
        .expect("the request that stores the annotation passes");
    let mut seen = Vec::new();
    for attempt in 1..=3 {
        match fx
            .annotate("pg", "example.com/attempt", &attempt.to_string())
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 500, "{status:?}");
                assert!(
                    status.message.starts_with(
                        "Internal error occurred: failed calling webhook \"vcluster.cnpg.io\""
                    ),
                    "{}",
                    status.message
                );
                let k = (1..=2)
                    .find(|k| {
                        status.message.contains(&format!(
                            "injected webhook failure {k} of 2 for Cluster {ns}/pg"
                        ))
                    })
                    .unwrap_or_else(|| panic!("not an injected failure: {}", status.message));
                seen.push(k);
            }
            Err(other) => panic!("attempt {attempt}: {other}"),
        }
    }
    assert!(
        seen.len() <= 2 && seen.windows(2).all(|w| w[0] < w[1]),
        "{seen:?}"
    );
    assert_eq!(
        fx.server.injected(&ns, "pg"),
        2,
        "exactly N requests were failed"
    );
    fx.annotate("pg", "example.com/attempt", "after")
        .await
        .expect("requests pass once the N failures are used");
    fx.stop().await;
}
