//! CNPG v1.27.1's Cluster validation (`internal/webhook/v1/cluster_webhook.go`), restricted to
//! the rules of contract §4: bootstrap, name, external clusters, replica mode and the promotion
//! token, plus the update-only replica-role rule. Pure: JSON in, field errors out.
//!
//! Functions run in CNPG's order (`validate` then `validateClusterChanges`) and each reports the
//! same path, error type and bad value as CNPG, so the aggregated message is byte-for-byte
//! CNPG's for every object these rules reject.

use serde_json::Value;

use super::field::{BadValue, FieldError};
use super::{gojson, token};

/// Every §4 error for `new` (an update when `old` is given), in CNPG's order.
pub fn validate_cluster(old: Option<&Value>, new: &Value) -> Vec<FieldError> {
    let cluster = Cluster::new(new);
    let mut errors = Vec::new();
    errors.extend(bootstrap_method(&cluster));
    errors.extend(name(&cluster));
    errors.extend(pg_basebackup_source(&cluster));
    errors.extend(recovery_source(&cluster));
    errors.extend(external_clusters(&cluster));
    errors.extend(replica_mode(&cluster));
    errors.extend(promotion_token(&cluster));
    if let Some(old) = old {
        errors.extend(replica_role_change(&Cluster::new(old), &cluster));
    }
    errors
}

/// A view of a Cluster object with CNPG's defaulting of `spec.bootstrap` applied.
struct Cluster<'a> {
    object: &'a Value,
    /// `spec.bootstrap` after defaulting: CNPG's mutating webhook turns "no recovery and no
    /// pg_basebackup" into `initdb` before validation, so the emulator reads it that way too.
    bootstrap_methods: Vec<&'static str>,
}

impl<'a> Cluster<'a> {
    fn new(object: &'a Value) -> Self {
        let bootstrap = object.pointer("/spec/bootstrap");
        let mut bootstrap_methods: Vec<&'static str> = ["initdb", "recovery", "pg_basebackup"]
            .into_iter()
            .filter(|m| {
                bootstrap
                    .and_then(|b| b.get(*m))
                    .is_some_and(|v| !v.is_null())
            })
            .collect();
        if bootstrap_methods.is_empty() {
            bootstrap_methods.push("initdb");
        }
        Cluster {
            object,
            bootstrap_methods,
        }
    }

    fn name(&self) -> &str {
        self.str_at("/metadata/name")
    }

    fn str_at(&self, pointer: &str) -> &str {
        self.object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn has_bootstrap(&self, method: &str) -> bool {
        self.bootstrap_methods.contains(&method)
    }

    /// `spec.replica` unless absent or null (Go: a nil pointer).
    fn replica(&self) -> Option<&'a Value> {
        self.object
            .pointer("/spec/replica")
            .filter(|v| !v.is_null())
    }

    /// `Cluster.IsReplica()`, contract §1.1.
    fn is_replica(&self) -> bool {
        let Some(replica) = self.replica() else {
            return false;
        };
        if let Some(enabled) = replica.get("enabled").and_then(Value::as_bool) {
            return enabled;
        }
        let self_name = replica
            .get("self")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = if self_name.is_empty() {
            self.name()
        } else {
            self_name
        };
        name != replica
            .get("primary")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn external_clusters(&self) -> &'a [Value] {
        self.object
            .pointer("/spec/externalClusters")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// `Cluster.ExternalCluster(name)`: the first entry with that name.
    fn external_cluster(&self, name: &str) -> Option<&'a Value> {
        self.external_clusters()
            .iter()
            .find(|e| e.get("name").and_then(Value::as_str).unwrap_or_default() == name)
    }
}

/// True when the key is present and not null (a non-nil Go pointer or map).
fn present(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn not_found(path: &str, name: &str) -> FieldError {
    FieldError::invalid(
        path,
        BadValue::Str(name.to_owned()),
        format!("External cluster {name} not found"),
    )
}

/// `validateBootstrapMethod`.
fn bootstrap_method(c: &Cluster) -> Vec<FieldError> {
    if c.bootstrap_methods.len() > 1 {
        return vec![FieldError::forbidden(
            "spec.bootstrap",
            "Only one bootstrap method can be specified at a time",
        )];
    }
    Vec::new()
}

/// `validateName`: a DNS-1035 label of at most 50 characters.
fn name(c: &Cluster) -> Vec<FieldError> {
    let name = c.name();
    let mut errors = Vec::new();
    if !is_dns1035_label(name) {
        errors.push(FieldError::invalid(
            "metadata.name",
            BadValue::Str(name.to_owned()),
            "cluster name must be a valid DNS label",
        ));
    }
    if name.len() > 50 {
        errors.push(FieldError::invalid(
            "metadata.name",
            BadValue::Str(name.to_owned()),
            "the maximum length of a cluster name is 50 characters",
        ));
    }
    errors
}

/// `validation.IsDNS1035Label`: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// `validateBootstrapPgBaseBackupSource`.
fn pg_basebackup_source(c: &Cluster) -> Vec<FieldError> {
    if !c.has_bootstrap("pg_basebackup") {
        return Vec::new();
    }
    let source = c.str_at("/spec/bootstrap/pg_basebackup/source");
    match c.external_cluster(source) {
        Some(_) => Vec::new(),
        None => vec![not_found("spec.bootstrap.pg_basebackup.source", source)],
    }
}

/// `validateBootstrapRecoverySource` (v1.27 wording). An unknown source fails twice: not found,
/// and (being Go's zero value) without an object store or plugin.
fn recovery_source(c: &Cluster) -> Vec<FieldError> {
    let source = c.str_at("/spec/bootstrap/recovery/source");
    if !c.has_bootstrap("recovery") || source.is_empty() {
        return Vec::new();
    }
    let path = "spec.bootstrap.recovery.source";
    let found = c.external_cluster(source);
    let mut errors = Vec::new();
    if found.is_none() {
        errors.push(not_found(path, source));
    }
    if !found.is_some_and(|e| present(e, "barmanObjectStore") || present(e, "plugin")) {
        errors.push(FieldError::invalid(
            path,
            BadValue::Str(source.to_owned()),
            format!(
                "External cluster {source} cannot be used for recovery: \
                 both Barman and CNPG-i plugin configurations are missing"
            ),
        ));
    }
    errors
}

/// `validateExternalClusters`: each entry needs a method; names must be unique.
fn external_clusters(c: &Cluster) -> Vec<FieldError> {
    let list = c.external_clusters();
    let mut errors = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (index, entry) in list.iter().enumerate() {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !names.contains(&name) {
            names.push(name);
        }
        if !["connectionParameters", "barmanObjectStore", "plugin"]
            .iter()
            .any(|k| present(entry, k))
        {
            errors.push(FieldError::invalid(
                &format!("spec.externalClusters[{index}]"),
                BadValue::Json(gojson::external_cluster(entry)),
                "one of connectionParameters, plugin and barmanObjectStore is required",
            ));
        }
    }
    if names.len() != list.len() {
        errors.push(FieldError::invalid(
            "spec.externalClusters",
            BadValue::Json(gojson::external_clusters(
                c.object.pointer("/spec/externalClusters"),
            )),
            "the list of external clusters contains duplicate values",
        ));
    }
    errors
}

/// `validateReplicaMode` and `validateReplicaClusterExternalClusters`.
fn replica_mode(c: &Cluster) -> Vec<FieldError> {
    let Some(replica) = c.replica() else {
        return Vec::new();
    };
    let conf = || BadValue::Json(gojson::replica_cluster_configuration(replica));
    let field = |key: &str| replica.get(key).and_then(Value::as_str).unwrap_or_default();
    let mut errors = Vec::new();
    if present(replica, "enabled") && !field("primary").is_empty() {
        errors.push(FieldError::invalid(
            "spec.replicaCluster.enabled",
            conf(),
            "replica mode enabled is not compatible with the primary field",
        ));
    }
    // "bootstrap configuration is required for replica mode" cannot happen: defaulting always
    // leaves a bootstrap method (see `Cluster::bootstrap_methods`).
    let creating = c.str_at("/metadata/resourceVersion").is_empty();
    if c.is_replica()
        && creating
        && !c.has_bootstrap("pg_basebackup")
        && !c.has_bootstrap("recovery")
    {
        errors.push(FieldError::invalid(
            "spec.replicaCluster",
            conf(),
            "replica mode bootstrap is compatible only with pg_basebackup or recovery",
        ));
    }
    let source = field("source");
    if c.external_cluster(source).is_none() {
        errors.push(not_found("spec.replicaCluster.primaryServerName", source));
    }
    for key in ["self", "primary"] {
        let name = field(key);
        if !name.is_empty() && c.external_cluster(name).is_none() {
            errors.push(not_found(&format!("spec.replicaCluster.{key}"), name));
        }
    }
    errors
}

/// `validatePromotionToken`: each failure returns at once, so one token error at most.
fn promotion_token(c: &Cluster) -> Vec<FieldError> {
    let Some(replica) = c.replica() else {
        return Vec::new();
    };
    let token = replica
        .get("promotionToken")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if token.is_empty() {
        return Vec::new();
    }
    let value = || BadValue::Str(token.to_owned());
    if present(replica, "minApplyDelay") {
        return vec![FieldError::invalid(
            "spec.replicaCluster.minApplyDelay",
            value(),
            "minApplyDelay cannot be applied with a promotion token",
        )];
    }
    if c.is_replica() {
        return vec![FieldError::invalid(
            "spec.replicaCluster.token",
            value(),
            "promotionToken is only allowed for primary clusters",
        )];
    }
    match token::check(token) {
        Ok(()) => Vec::new(),
        Err(rejection) => vec![FieldError::invalid(
            "spec.replicaCluster.token",
            value(),
            rejection.detail(),
        )],
    }
}

/// `validateReplicaClusterChange`: the role may not flip while a replica switch is in progress.
/// CNPG reads `status` from the new object, which the apiserver copies from the stored one on
/// every update of the main resource; the old object is read here, which is the same thing.
fn replica_role_change(old: &Cluster, new: &Cluster) -> Vec<FieldError> {
    let in_progress = old
        .object
        .pointer("/status/switchReplicaClusterStatus/inProgress")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if old.is_replica() != new.is_replica() && in_progress {
        return vec![FieldError::forbidden(
            "spec.replica.enabled",
            "cannot modify the field while there is an ongoing operation to enable the replica cluster",
        )];
    }
    Vec::new()
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
