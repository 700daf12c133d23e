//! One row per §4 rule: the object, and CNPG v1.27.1's exact error strings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::validate_cluster;

const TOKEN_JSON: &str = r#"{"latestCheckpointTimelineID":"1","redoWalFile":"000000010000000000000004","databaseSystemIdentifier":"7400000000000000001","latestCheckpointREDOLocation":"0/4000028","timeOfLatestCheckpoint":"Mon 01 Jan 2024","operatorVersion":"1.27.1"}"#;

fn token() -> String {
    STANDARD.encode(TOKEN_JSON)
}

/// A valid primary of a distributed topology `pg-a` / `pg-b`.
fn primary() -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg-a", "namespace": "db"},
        "spec": {
            "instances": 1,
            "replica": {"self": "pg-a", "primary": "pg-a", "source": "pg-b"},
            "externalClusters": [
                {"name": "pg-a", "connectionParameters": {"host": "a"}},
                {"name": "pg-b", "connectionParameters": {"host": "b"}},
            ],
        },
    })
}

fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = object.pointer_mut(parent).unwrap();
    match (parent, key.parse::<usize>()) {
        (Value::Array(items), Ok(index)) => items[index] = value,
        (parent, _) if value.is_null() => {
            parent.as_object_mut().unwrap().remove(key);
        }
        (parent, _) => parent[key] = value,
    }
    object
}

fn messages(old: Option<&Value>, new: &Value) -> Vec<String> {
    validate_cluster(old, new)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn valid_objects_pass() {
    let stored = with(primary(), "/metadata/resourceVersion", json!("9"));
    let cases = [
        ("primary", primary()),
        (
            "primary with a token",
            with(primary(), "/spec/replica/promotionToken", json!(token())),
        ),
        (
            "no replica section",
            with(primary(), "/spec/replica", Value::Null),
        ),
        (
            "stored replica demoted from initdb",
            with(stored.clone(), "/spec/replica/primary", json!("pg-b")),
        ),
        (
            "replica created by pg_basebackup",
            with(
                with(primary(), "/spec/replica/primary", json!("pg-b")),
                "/spec/bootstrap",
                json!({"pg_basebackup": {"source": "pg-b"}}),
            ),
        ),
        (
            "empty connectionParameters still count",
            with(
                primary(),
                "/spec/externalClusters/1/connectionParameters",
                json!({}),
            ),
        ),
    ];
    for (case, object) in cases {
        assert_eq!(messages(None, &object), Vec::<String>::new(), "{case}");
    }
    // Role flips are fine while no switch is in progress.
    let demoted = with(stored.clone(), "/spec/replica/primary", json!("pg-b"));
    assert_eq!(messages(Some(&stored), &demoted), Vec::<String>::new());
}

/// (test name, object, expected errors in order).
fn create_cases() -> Vec<(&'static str, Value, Vec<String>)> {
    let t = token();
    let replica_of_b = with(primary(), "/spec/replica/primary", json!("pg-b"));
    vec![
        (
            "enabled_with_primary",
            with(primary(), "/spec/replica/enabled", json!(false)),
            vec![r#"spec.replicaCluster.enabled: Invalid value: {"self":"pg-a","primary":"pg-a","source":"pg-b","enabled":false}: replica mode enabled is not compatible with the primary field"#.into()],
        ),
        (
            "replica_created_with_initdb",
            replica_of_b.clone(),
            vec![r#"spec.replicaCluster: Invalid value: {"self":"pg-a","primary":"pg-b","source":"pg-b"}: replica mode bootstrap is compatible only with pg_basebackup or recovery"#.into()],
        ),
        (
            "source_not_in_external_clusters",
            with(primary(), "/spec/replica/source", json!("pg-x")),
            vec![r#"spec.replicaCluster.primaryServerName: Invalid value: "pg-x": External cluster pg-x not found"#.into()],
        ),
        (
            "self_not_in_external_clusters",
            with(with(primary(), "/spec/replica/self", json!("pg-s")), "/spec/replica/primary", json!("pg-s")),
            vec![
                r#"spec.replicaCluster.self: Invalid value: "pg-s": External cluster pg-s not found"#.into(),
                r#"spec.replicaCluster.primary: Invalid value: "pg-s": External cluster pg-s not found"#.into(),
            ],
        ),
        (
            "primary_not_in_external_clusters",
            with(
                with(primary(), "/spec/replica/primary", json!("pg-x")),
                "/metadata/resourceVersion",
                json!("3"),
            ),
            vec![r#"spec.replicaCluster.primary: Invalid value: "pg-x": External cluster pg-x not found"#.into()],
        ),
        (
            "token_with_min_apply_delay",
            with(
                with(primary(), "/spec/replica/promotionToken", json!(t)),
                "/spec/replica/minApplyDelay",
                json!("8h"),
            ),
            vec![format!(r#"spec.replicaCluster.minApplyDelay: Invalid value: "{t}": minApplyDelay cannot be applied with a promotion token"#)],
        ),
        (
            "token_on_a_replica",
            with(
                with(replica_of_b.clone(), "/spec/replica/promotionToken", json!(t)),
                "/metadata/resourceVersion",
                json!("3"),
            ),
            vec![format!(r#"spec.replicaCluster.token: Invalid value: "{t}": promotionToken is only allowed for primary clusters"#)],
        ),
        (
            "token_not_base64",
            with(primary(), "/spec/replica/promotionToken", json!("not a token")),
            vec![r#"spec.replicaCluster.token: Invalid value: "not a token": Invalid promotionToken format: invalid promotion token (Base64 decoding failed): illegal base64 data at input byte 3"#.into()],
        ),
        (
            "token_not_json",
            with(primary(), "/spec/replica/promotionToken", json!(STANDARD.encode("hello"))),
            vec![r#"spec.replicaCluster.token: Invalid value: "aGVsbG8=": Invalid promotionToken format: invalid promotion token (JSON decoding failed): invalid character 'h' looking for beginning of value"#.into()],
        ),
        (
            "token_field_empty",
            with(
                primary(),
                "/spec/replica/promotionToken",
                json!(STANDARD.encode(TOKEN_JSON.replace("\"1.27.1\"", "\"\""))),
            ),
            vec![format!(
                r#"spec.replicaCluster.token: Invalid value: "{}": Invalid promotionToken content: invalid promotion token (OperatorVersion is empty)"#,
                STANDARD.encode(TOKEN_JSON.replace("\"1.27.1\"", "\"\""))
            )],
        ),
        (
            "duplicate_external_names",
            with(
                primary(),
                "/spec/externalClusters",
                json!([{"name": "pg-a", "connectionParameters": {"host": "a"}}, {"name": "pg-a", "connectionParameters": {"host": "b"}}, {"name": "pg-b", "plugin": {"name": "barman-cloud.cloudnative-pg.io", "parameters": {"barmanObjectName": "b"}}}]),
            ),
            vec![r#"spec.externalClusters: Invalid value: [{"name":"pg-a","connectionParameters":{"host":"a"}},{"name":"pg-a","connectionParameters":{"host":"b"}},{"name":"pg-b","plugin":{"name":"barman-cloud.cloudnative-pg.io","parameters":{"barmanObjectName":"b"}}}]: the list of external clusters contains duplicate values"#.into()],
        ),
        (
            "external_cluster_without_method",
            with(
                primary(),
                "/spec/externalClusters/1",
                json!({"name": "pg-b", "password": {"name": "pg-b-app", "key": "password"}}),
            ),
            vec![r#"spec.externalClusters[1]: Invalid value: {"name":"pg-b","password":{"name":"pg-b-app","key":"password"}}: one of connectionParameters, plugin and barmanObjectStore is required"#.into()],
        ),
        (
            "pg_basebackup_source_unknown",
            with(primary(), "/spec/bootstrap", json!({"pg_basebackup": {"source": "pg-x"}})),
            vec![r#"spec.bootstrap.pg_basebackup.source: Invalid value: "pg-x": External cluster pg-x not found"#.into()],
        ),
        (
            "recovery_source_unknown",
            with(primary(), "/spec/bootstrap", json!({"recovery": {"source": "pg-x"}})),
            vec![
                r#"spec.bootstrap.recovery.source: Invalid value: "pg-x": External cluster pg-x not found"#.into(),
                r#"spec.bootstrap.recovery.source: Invalid value: "pg-x": External cluster pg-x cannot be used for recovery: both Barman and CNPG-i plugin configurations are missing"#.into(),
            ],
        ),
        (
            "recovery_source_without_object_store",
            with(primary(), "/spec/bootstrap", json!({"recovery": {"source": "pg-b"}})),
            vec![r#"spec.bootstrap.recovery.source: Invalid value: "pg-b": External cluster pg-b cannot be used for recovery: both Barman and CNPG-i plugin configurations are missing"#.into()],
        ),
        (
            "two_bootstrap_methods",
            with(primary(), "/spec/bootstrap", json!({"initdb": {}, "pg_basebackup": {"source": "pg-b"}})),
            vec!["spec.bootstrap: Forbidden: Only one bootstrap method can be specified at a time".into()],
        ),
        (
            "name_not_a_dns_label",
            with(with(primary(), "/metadata/name", json!("1pg")), "/spec/replica", Value::Null),
            vec![r#"metadata.name: Invalid value: "1pg": cluster name must be a valid DNS label"#.into()],
        ),
        (
            "name_longer_than_50",
            with(primary(), "/metadata/name", json!("p".repeat(51))),
            vec![format!(r#"metadata.name: Invalid value: "{}": the maximum length of a cluster name is 50 characters"#, "p".repeat(51))],
        ),
    ]
}

#[test]
fn every_rule_reports_cnpgs_exact_error() {
    for (case, object, expected) in create_cases() {
        assert_eq!(messages(None, &object), expected, "{case}");
    }
}

#[test]
fn several_errors_come_in_cnpgs_order() {
    let object = with(
        with(
            with(primary(), "/metadata/name", json!("Pg")),
            "/spec/replica/enabled",
            json!(true),
        ),
        "/spec/replica/source",
        json!("pg-x"),
    );
    assert_eq!(
        messages(None, &object),
        [
            r#"metadata.name: Invalid value: "Pg": cluster name must be a valid DNS label"#,
            r#"spec.replicaCluster.enabled: Invalid value: {"self":"pg-a","primary":"pg-a","source":"pg-x","enabled":true}: replica mode enabled is not compatible with the primary field"#,
            r#"spec.replicaCluster: Invalid value: {"self":"pg-a","primary":"pg-a","source":"pg-x","enabled":true}: replica mode bootstrap is compatible only with pg_basebackup or recovery"#,
            r#"spec.replicaCluster.primaryServerName: Invalid value: "pg-x": External cluster pg-x not found"#,
        ]
    );
}

#[test]
fn the_role_cannot_flip_while_a_switch_is_in_progress() {
    let mut stored = with(primary(), "/metadata/resourceVersion", json!("9"));
    stored["status"] = json!({"switchReplicaClusterStatus": {"inProgress": true}});
    let forbidden = "spec.replica.enabled: Forbidden: cannot modify the field while there is an ongoing operation to enable the replica cluster";
    // primary → replica
    let demoted = with(stored.clone(), "/spec/replica/primary", json!("pg-b"));
    assert_eq!(messages(Some(&stored), &demoted), [forbidden]);
    // replica → primary (the legacy switch counts too)
    let replica = with(stored.clone(), "/spec/replica/primary", json!("pg-b"));
    let promoted = with(replica.clone(), "/spec/replica/primary", json!("pg-a"));
    assert_eq!(messages(Some(&replica), &promoted), [forbidden]);
    // Same role: no error, whatever else changes (metadata-only updates included).
    let annotated = with(stored.clone(), "/metadata/annotations", json!({"a": "b"}));
    assert_eq!(messages(Some(&stored), &annotated), Vec::<String>::new());
    let resourced = with(replica.clone(), "/spec/replica/source", json!("pg-a"));
    assert_eq!(messages(Some(&replica), &resourced), Vec::<String>::new());
}
