//! The CNPG Cluster CRD on a real member apiserver behaves as Federator relies on: pruning,
//! the status subresource, and JSON merge patches.

use e2e::harness::{TestNamespace, cnpg_cluster, sample_cluster};
use e2e::lab::MEMBERS;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
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
        assert!(
            object.data["spec"].get("notACnpgField").is_none(),
            "unknown spec field kept: {:#}",
            object.data
        );
        assert!(
            object.data["spec"]["replica"].get("alsoUnknown").is_none(),
            "unknown replica field kept"
        );
        assert_eq!(
            object.data["spec"]["replica"]["self"], MEMBERS[0],
            "declared fields survive"
        );
        assert!(
            object
                .data
                .get("status")
                .is_none_or(|s| s.get("phase").is_none()),
            "status is not writable on create"
        );
    }
}

#[tokio::test]
async fn spec_patches_leave_status_alone_and_status_patches_leave_generation_alone() {
    let ns = TestNamespace::create("crd-subresources").await;
    let api = clusters(&ns, MEMBERS[1]).await;
    let created = api
        .create(
            &PostParams::default(),
            &sample_cluster("gen", MEMBERS[1], MEMBERS[0]),
        )
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));

    let status = json!({"status": {"phase": "Cluster in healthy state", "demotionToken": "dG9rZW4=", "timelineID": 3}});
    let after_status = api
        .patch_status("gen", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    assert_eq!(
        after_status.metadata.generation,
        Some(1),
        "a status patch must not bump generation"
    );
    assert_eq!(after_status.data["status"]["demotionToken"], "dG9rZW4=");
    assert_eq!(
        after_status.data["spec"], created.data["spec"],
        "a status patch must not touch spec"
    );

    // Spec sent to /status is ignored, and so is status sent to the main resource.
    let spec_via_status = json!({"spec": {"instances": 5}});
    let ignored = api
        .patch_status(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(&spec_via_status),
        )
        .await
        .expect("patch");
    assert_eq!(ignored.data["spec"]["instances"], 3);
    assert_eq!(ignored.metadata.generation, Some(1));

    let spec = json!({"spec": {"instances": 2}, "status": {"phase": "forged via main resource"}});
    let after_spec = api
        .patch("gen", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .expect("spec patch");
    assert_eq!(
        after_spec.metadata.generation,
        Some(2),
        "a spec patch bumps generation"
    );
    assert_eq!(
        after_spec.data["status"], after_status.data["status"],
        "a spec patch must not touch status"
    );
}

#[tokio::test]
async fn a_merge_patch_of_spec_replica_changes_nothing_else() {
    let ns = TestNamespace::create("crd-merge-patch").await;
    let api = clusters(&ns, MEMBERS[2]).await;
    api.create(
        &PostParams::default(),
        &sample_cluster("merge", MEMBERS[2], MEMBERS[0]),
    )
    .await
    .expect("create");
    let status =
        json!({"status": {"phase": "Cluster in healthy state", "currentPrimary": "merge-1"}});
    let before = api
        .patch_status("merge", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");

    let patch = json!({"spec": {"replica": {"primary": MEMBERS[2], "promotionToken": "dG9rZW4="}}});
    let after = api
        .patch("merge", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("merge patch");

    let mut expected = stable(&before);
    expected["spec"]["replica"]["primary"] = json!(MEMBERS[2]);
    expected["spec"]["replica"]["promotionToken"] = json!("dG9rZW4=");
    assert_eq!(
        stable(&after),
        expected,
        "only spec.replica.primary and promotionToken may change"
    );
    assert_eq!(
        after.data["spec"]["replica"]["source"], MEMBERS[0],
        "merge keeps sibling keys of replica"
    );
}
