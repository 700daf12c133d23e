//! The CNPG Cluster CRD on a real member apiserver behaves as Federator relies on: pruning,
//! the status subresource, and JSON merge patches.
//!
//! The lab's CNPG emulator reconciles these Clusters too (it writes their status), so every
//! before/after comparison uses `patch_pinned`: the patch carries the resourceVersion just read,
//! so nothing else can have written in between.

use e2e::harness::{Subresource, TestNamespace, cnpg_cluster, patch_pinned, sample_cluster};
use e2e::lab::MEMBERS;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

async fn clusters(ns: &TestNamespace, member: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ns.lab.admin(member).await, ns.name(), &cnpg_cluster())
}

/// The object as JSON without the fields every write changes.
fn stable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).expect("serializes");
    let metadata = value["metadata"].as_object_mut().expect("has metadata");
    for volatile in ["resourceVersion", "managedFields", "generation"] {
        metadata.remove(volatile);
    }
    value
}

#[tokio::test]
async fn unknown_fields_are_pruned() {
    let ns = TestNamespace::create("crd-pruning").await;
    let api = clusters(&ns, MEMBERS[0]).await;
    let mut cluster = sample_cluster("pruned", MEMBERS[0], MEMBERS[0]);
    cluster.data["spec"]["notACnpgField"] = json!("dropped");
    cluster.data["spec"]["replica"]["alsoUnknown"] = json!(true);
    cluster.data["status"] = json!({"phase": "ignored on create"});
    let created = api
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create succeeds (unknown fields pruned, not rejected)");
    let stored = api.get("pruned").await.expect("get");
    for object in [&created, &stored] {
        let spec = &object.data["spec"];
        assert!(
            spec.get("notACnpgField").is_none(),
            "unknown spec field kept: {spec:#}"
        );
        assert!(
            spec["replica"].get("alsoUnknown").is_none(),
            "unknown replica field kept"
        );
        assert_eq!(
            spec["replica"]["self"], MEMBERS[0],
            "declared fields survive"
        );
    }
    let phase = created.data.get("status").and_then(|s| s.get("phase"));
    assert!(
        phase.is_none(),
        "status is not writable on create: {phase:?}"
    );
}

#[tokio::test]
async fn spec_patches_leave_status_alone_and_status_patches_leave_generation_alone() {
    let ns = TestNamespace::create("crd-subresources").await;
    let api = clusters(&ns, MEMBERS[1]).await;
    let created = api
        .create(
            &PostParams::default(),
            &sample_cluster("gen", MEMBERS[1], MEMBERS[1]),
        )
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));

    let status = json!({"status": {"phaseReason": "set by e2e", "lastPromotionToken": "e2e"}});
    let (before, after) = patch_pinned(&api, "gen", Subresource::Status, status).await;
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "a status patch must not bump generation"
    );
    assert_eq!(after.data["status"]["phaseReason"], "set by e2e");
    assert_eq!(
        after.data["spec"], before.data["spec"],
        "a status patch must not touch spec"
    );

    // Spec sent to /status is ignored.
    let spec_via_status = json!({"spec": {"instances": 5}});
    let (before, after) = patch_pinned(&api, "gen", Subresource::Status, spec_via_status).await;
    assert_eq!(after.data["spec"], before.data["spec"]);
    assert_eq!(after.metadata.generation, before.metadata.generation);

    // A spec patch bumps generation, and status sent with it is ignored.
    let spec =
        json!({"spec": {"instances": 2}, "status": {"phaseReason": "forged via main resource"}});
    let (before, after) = patch_pinned(&api, "gen", Subresource::Main, spec).await;
    assert_eq!(after.data["spec"]["instances"], 2);
    assert_eq!(
        after.metadata.generation,
        before.metadata.generation.map(|g| g + 1),
        "a spec patch bumps generation"
    );
    assert_eq!(
        after.data["status"], before.data["status"],
        "a spec patch must not touch status"
    );
}

#[tokio::test]
async fn a_merge_patch_of_spec_replica_changes_nothing_else() {
    let ns = TestNamespace::create("crd-merge-patch").await;
    let api = clusters(&ns, MEMBERS[2]).await;
    api.create(
        &PostParams::default(),
        &sample_cluster("merge", MEMBERS[2], MEMBERS[2]),
    )
    .await
    .expect("create");

    // The demotion patch Federator sends: only spec.replica.primary.
    let patch = json!({"spec": {"replica": {"primary": MEMBERS[0]}}});
    let (before, after) = patch_pinned(&api, "merge", Subresource::Main, patch).await;

    let mut expected = stable(&before);
    expected["spec"]["replica"]["primary"] = json!(MEMBERS[0]);
    assert_eq!(
        stable(&after),
        expected,
        "only spec.replica.primary may change"
    );
    assert_eq!(
        after.data["spec"]["replica"]["source"], MEMBERS[2],
        "merge keeps sibling keys of replica"
    );
}
