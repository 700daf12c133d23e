//! One AdmissionReview v1 in, one out: what controller-runtime's validating handler does for
//! CNPG's `ClusterCustomValidator`, plus the emulator's "webhook failing N times" fault.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::field::invalid_status;
use super::rules::validate_cluster;

/// Annotation arming the fault: the next N admission requests for this Cluster, counted from
/// the first request whose *stored* object carries it, fail with HTTP 500. The request that
/// sets the annotation passes (it is validated normally); changing the value re-arms.
pub const FAIL_TIMES_ANNOTATION: &str = "emulator.federator.dev/webhook-fail-times";

/// What the HTTP layer should answer.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// 200 with this AdmissionReview.
    Review(Value),
    /// The injected fault: 500 with this plain-text body.
    Fail(String),
}

/// Per-Cluster counters shared by every connection.
#[derive(Debug, Default)]
pub struct Reviewer {
    state: Mutex<HashMap<ClusterKey, Counters>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClusterKey {
    namespace: String,
    name: String,
}

#[derive(Debug, Default)]
struct Counters {
    /// Admission requests seen for this Cluster, failed ones included.
    reviewed: u64,
    /// The annotation value the failures below were counted under.
    armed: Option<String>,
    failed: u64,
}

impl Reviewer {
    /// Admission requests seen so far for `namespace/name`.
    pub fn reviewed(&self, namespace: &str, name: &str) -> u64 {
        let key = ClusterKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.lock().get(&key).map_or(0, |c| c.reviewed)
    }

    /// Failures the `webhook-fail-times` fault injected so far for `namespace/name`.
    pub fn injected(&self, namespace: &str, name: &str) -> u64 {
        let key = ClusterKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.lock().get(&key).map_or(0, |c| c.failed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterKey, Counters>> {
        // A poisoned lock only means another request panicked mid-count; counts stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles a decoded AdmissionReview body.
    pub fn review(&self, body: &[u8]) -> Outcome {
        let review: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Outcome::Review(errored("", 400, &format!("{e}"))),
        };
        let request = &review["request"];
        let uid = request["uid"].as_str().unwrap_or_default();
        let Some(new) = request.get("object").filter(|o| o.is_object()) else {
            return Outcome::Review(errored(uid, 400, "there is no content to decode"));
        };
        let old = request.get("oldObject").filter(|o| o.is_object());
        let key = ClusterKey {
            namespace: request["namespace"].as_str().unwrap_or_default().to_owned(),
            name: request["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or_else(|| new.pointer("/metadata/name").and_then(Value::as_str))
                .unwrap_or_default()
                .to_owned(),
        };
        if let Some(failure) = self.count(key, old) {
            return Outcome::Fail(failure);
        }
        let operation = request["operation"].as_str().unwrap_or_default();
        let (old, group) = match operation {
            "CREATE" => (None, "postgresql.cnpg.io"),
            "UPDATE" => (old, "cluster.cnpg.io"),
            // Registered for CREATE and UPDATE only; anything else is let through like
            // controller-runtime's no-op ValidateDelete.
            _ => return Outcome::Review(allowed(uid, Vec::new())),
        };
        let errors = validate_cluster(old, new);
        if errors.is_empty() {
            return Outcome::Review(allowed(uid, warnings(new)));
        }
        let name = new
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Outcome::Review(response(
            uid,
            false,
            invalid_status(group, name, &errors),
            warnings(new),
        ))
    }

    /// Counts the request and decides whether the fault fails it.
    fn count(&self, key: ClusterKey, old: Option<&Value>) -> Option<String> {
        let armed = old
            .and_then(|o| o.pointer("/metadata/annotations"))
            .and_then(|a| a.get(FAIL_TIMES_ANNOTATION))
            .and_then(Value::as_str);
        let mut state = self.lock();
        let counters = state.entry(key.clone()).or_default();
        counters.reviewed += 1;
        let times: u64 = armed?.trim().parse().ok()?;
        if counters.armed.as_deref() != armed {
            counters.armed = armed.map(str::to_owned);
            counters.failed = 0;
        }
        (counters.failed < times).then(|| {
            counters.failed += 1;
            format!(
                "injected webhook failure {} of {times} for Cluster {}/{} ({FAIL_TIMES_ANNOTATION})",
                counters.failed, key.namespace, key.name
            )
        })
    }
}

/// CNPG v1.27's admission warning for in-tree Barman Cloud use in `externalClusters`.
fn warnings(object: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    if object
        .pointer("/spec/backup/barmanObjectStore")
        .is_some_and(|v| !v.is_null())
    {
        paths.push("spec.backup.barmanObjectStore".to_owned());
    }
    let externals = object
        .pointer("/spec/externalClusters")
        .and_then(Value::as_array);
    for (i, e) in externals.into_iter().flatten().enumerate() {
        if e.get("barmanObjectStore").is_some_and(|v| !v.is_null()) {
            paths.push(format!("spec.externalClusters.{i}.barmanObjectStore"));
        }
    }
    if paths.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "Native support for Barman Cloud backups and recovery is deprecated and will be \
         completely removed in CloudNativePG 1.29.0. Found usage in: {}. \
         Please migrate existing clusters to the new Barman Cloud Plugin to ensure a smooth transition.",
        paths.join(", ")
    )]
}

fn allowed(uid: &str, warnings: Vec<String>) -> Value {
    response(uid, true, json!({"metadata": {}, "code": 200}), warnings)
}

/// controller-runtime's `admission.Errored(code, err)`.
fn errored(uid: &str, code: u16, message: &str) -> Value {
    response(
        uid,
        false,
        json!({"metadata": {}, "message": message, "code": code}),
        Vec::new(),
    )
}

fn response(uid: &str, allowed: bool, status: Value, warnings: Vec<String>) -> Value {
    let mut response = json!({"uid": uid, "allowed": allowed, "status": status});
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(operation: &str, old: Option<Value>, new: Value) -> Vec<u8> {
        let mut request = json!({
            "uid": "u-1",
            "operation": operation,
            "namespace": "ns",
            "name": new["metadata"]["name"],
            "object": new,
        });
        if let Some(old) = old {
            request["oldObject"] = old;
        }
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .unwrap()
    }

    fn cluster(annotations: Value) -> Value {
        json!({
            "metadata": {"name": "pg", "resourceVersion": "7", "annotations": annotations},
            "spec": {"instances": 1},
        })
    }

    #[test]
    fn valid_objects_are_allowed_with_the_request_uid() {
        let Outcome::Review(r) =
            Reviewer::default().review(&request("CREATE", None, cluster(json!({}))))
        else {
            panic!("failed");
        };
        assert_eq!(r["response"]["uid"], "u-1");
        assert_eq!(r["response"]["allowed"], true);
    }

    #[test]
    fn creates_and_updates_name_different_groups() {
        let bad = json!({"metadata": {"name": "1pg"}, "spec": {}});
        let reviewer = Reviewer::default();
        let Outcome::Review(create) = reviewer.review(&request("CREATE", None, bad.clone())) else {
            panic!("failed");
        };
        assert_eq!(create["response"]["allowed"], false);
        assert_eq!(create["response"]["status"]["code"], 422);
        assert_eq!(
            create["response"]["status"]["message"],
            r#"Cluster.postgresql.cnpg.io "1pg" is invalid: metadata.name: Invalid value: "1pg": cluster name must be a valid DNS label"#
        );
        let Outcome::Review(update) = reviewer.review(&request("UPDATE", Some(bad.clone()), bad))
        else {
            panic!("failed");
        };
        assert!(
            update["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with(r#"Cluster.cluster.cnpg.io "1pg" is invalid: "#)
        );
        assert_eq!(reviewer.reviewed("ns", "1pg"), 2);
    }

    #[test]
    fn the_fault_fails_n_requests_after_the_annotation_is_stored() {
        let reviewer = Reviewer::default();
        let armed = cluster(json!({FAIL_TIMES_ANNOTATION: "2"}));
        let plain = cluster(json!({}));
        // The request that sets the annotation passes.
        assert!(matches!(
            reviewer.review(&request("UPDATE", Some(plain), armed.clone())),
            Outcome::Review(_)
        ));
        for attempt in 1..=2 {
            let Outcome::Fail(message) =
                reviewer.review(&request("UPDATE", Some(armed.clone()), armed.clone()))
            else {
                panic!("attempt {attempt} was not failed");
            };
            assert!(
                message.contains(&format!("failure {attempt} of 2")),
                "{message}"
            );
        }
        assert!(matches!(
            reviewer.review(&request("UPDATE", Some(armed.clone()), armed.clone())),
            Outcome::Review(_)
        ));
        // A new value re-arms.
        let rearmed = cluster(json!({FAIL_TIMES_ANNOTATION: "1"}));
        assert!(matches!(
            reviewer.review(&request("UPDATE", Some(rearmed.clone()), rearmed)),
            Outcome::Fail(_)
        ));
        assert_eq!(reviewer.reviewed("ns", "pg"), 5);
    }

    #[test]
    fn barman_object_stores_get_cnpgs_deprecation_warning() {
        let mut object = cluster(json!({}));
        object["spec"]["externalClusters"] =
            json!([{"name": "a", "barmanObjectStore": {"destinationPath": "s3://a/"}}]);
        let Outcome::Review(r) = Reviewer::default().review(&request("CREATE", None, object))
        else {
            panic!("failed");
        };
        assert!(
            r["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("Found usage in: spec.externalClusters.0.barmanObjectStore.")
        );
    }
}
