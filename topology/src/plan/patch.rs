//! The exact JSON merge patches (RFC 7386) the planner sends. Every patch touches only
//! `spec.replica` (contract §6 "Full-object updates"), and applying one twice equals applying it
//! once, which is what makes a repeated step after a crash harmless.

use serde_json::{Map, Value, json};

use crate::cnpg::ReplicaSpec;

/// Old primary → replica of `new_primary`. Also clears a stale `promotionToken` from its own
/// earlier promotion in the same patch, or CNPG would reject the demotion (#9273).
pub fn demote(new_primary: &str, new_source: Option<&str>) -> Value {
    let mut replica = Map::new();
    replica.insert("primary".into(), json!(new_primary));
    if let Some(source) = new_source {
        replica.insert("source".into(), json!(source));
    }
    replica.insert("promotionToken".into(), Value::Null);
    wrap(replica)
}

/// Target → primary, in one patch (contract §5.2). `token` is `None` only for a failover.
/// `minApplyDelay` is removed because CNPG refuses it next to a token.
pub fn promote(target: &str, token: Option<&str>) -> Value {
    let mut replica = Map::new();
    replica.insert("primary".into(), json!(target));
    replica.insert(
        "promotionToken".into(),
        token.map_or(Value::Null, |t| json!(t)),
    );
    replica.insert("minApplyDelay".into(), Value::Null);
    wrap(replica)
}

/// A member that stays a replica: name the new primary, and its new source where the shape
/// re-roots (`None`: leave the source alone).
pub fn bookkeeping(primary: &str, source: Option<&str>) -> Value {
    let mut replica = Map::new();
    replica.insert("primary".into(), json!(primary));
    if let Some(source) = source {
        replica.insert("source".into(), json!(source));
    }
    wrap(replica)
}

/// Whether [`bookkeeping`]`(primary, source)` is already applied to `replica`: the answer of
/// [`is_applied`] without building the patch, since the planner asks it for every member.
pub fn bookkeeping_applied(
    replica: Option<&ReplicaSpec>,
    primary: &str,
    source: Option<&str>,
) -> bool {
    replica.is_some_and(|r| {
        r.primary.as_deref() == Some(primary) && source.is_none_or(|s| r.source == s)
    })
}

/// Remove the consumed token from the new primary (only after `lastPromotionToken` equals it).
pub fn clear_token() -> Value {
    let mut replica = Map::new();
    replica.insert("promotionToken".into(), Value::Null);
    wrap(replica)
}

/// Rollback after a fatal token error: the target becomes a replica of the old primary again
/// (allowed: the target's `inProgress` is false, contract §6 "Abort path").
pub fn rollback_target(old_primary: &str) -> Value {
    let mut replica = Map::new();
    replica.insert("primary".into(), json!(old_primary));
    replica.insert("promotionToken".into(), Value::Null);
    wrap(replica)
}

fn wrap(replica: Map<String, Value>) -> Value {
    json!({ "spec": { "replica": Value::Object(replica) } })
}

/// RFC 7386 JSON merge patch, in place.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// `spec.replica` after applying `patch` (which must be one of this module's patches).
pub fn apply(replica: Option<&ReplicaSpec>, patch: &Value) -> Option<ReplicaSpec> {
    let mut spec = json!({ "replica": replica });
    if spec["replica"].is_null() {
        spec = json!({});
    }
    merge(&mut spec, &patch["spec"]);
    serde_json::from_value(spec.get("replica")?.clone()).ok()
}

/// True when `patch` would not change `replica`: the step's effect is already there.
pub fn is_applied(replica: Option<&ReplicaSpec>, patch: &Value) -> bool {
    let Some(replica) = replica else {
        return false;
    };
    let Some(fields) = patch["spec"]["replica"].as_object() else {
        return apply(Some(replica), patch).as_ref() == Some(replica);
    };
    // Field by field for the keys this module writes: the controller asks this for every member
    // on every reconcile, so it avoids a JSON round trip per member.
    let optional = |have: &Option<String>, want: &Value| match want {
        Value::Null => have.is_none(),
        Value::String(w) => have.as_deref() == Some(w.as_str()),
        _ => false,
    };
    fields.iter().all(|(key, want)| match key.as_str() {
        "primary" => optional(&replica.primary, want),
        "source" => want.as_str() == Some(replica.source.as_str()),
        "promotionToken" => optional(&replica.promotion_token, want),
        "minApplyDelay" => optional(&replica.min_apply_delay, want),
        "self" => optional(&replica.self_name, want),
        _ => apply(Some(replica), patch).as_ref() == Some(replica),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(primary: &str, source: &str) -> ReplicaSpec {
        ReplicaSpec {
            primary: Some(primary.into()),
            source: source.into(),
            ..Default::default()
        }
    }

    #[test]
    fn merge_follows_rfc7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [3]}));
    }

    #[test]
    fn patches_touch_only_spec_replica() {
        for patch in [
            demote("b", Some("b")),
            promote("b", Some("T")),
            promote("b", None),
            bookkeeping("b", None),
            clear_token(),
            rollback_target("a"),
        ] {
            let spec = patch.as_object().unwrap();
            assert_eq!(spec.keys().collect::<Vec<_>>(), ["spec"]);
            assert_eq!(
                patch["spec"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect::<Vec<_>>(),
                ["replica"]
            );
        }
    }

    #[test]
    fn promotion_sets_primary_and_token_and_drops_delay_at_once() {
        let mut delayed = replica("a", "a");
        delayed.min_apply_delay = Some("8h".into());
        let after = apply(Some(&delayed), &promote("b", Some("T"))).unwrap();
        assert_eq!(after.primary.as_deref(), Some("b"));
        assert_eq!(after.promotion_token.as_deref(), Some("T"));
        assert_eq!(after.min_apply_delay, None);
        assert_eq!(
            after.source, "a",
            "the docs keep source pointing at the old primary"
        );
    }

    #[test]
    fn field_check_agrees_with_applying_the_patch() {
        let mut base = replica("a", "c");
        base.promotion_token = Some("T".into());
        let patches = [
            demote("b", Some("b")),
            demote("a", None),
            promote("a", Some("T")),
            promote("a", None),
            bookkeeping("a", Some("c")),
            bookkeeping("b", None),
            clear_token(),
            rollback_target("a"),
        ];
        for candidate in [base.clone(), replica("b", "b"), replica("a", "a")] {
            for patch in &patches {
                let generic = apply(Some(&candidate), patch).as_ref() == Some(&candidate);
                assert_eq!(
                    is_applied(Some(&candidate), patch),
                    generic,
                    "{patch} on {candidate:?}"
                );
            }
        }
    }

    #[test]
    fn bookkeeping_check_agrees_with_the_patch() {
        let mut with_token = replica("a", "c");
        with_token.promotion_token = Some("T".into());
        let candidates = [
            None,
            Some(replica("a", "c")),
            Some(replica("a", "a")),
            Some(replica("b", "c")),
            Some(ReplicaSpec::default()),
            Some(with_token),
        ];
        for candidate in &candidates {
            for (primary, source) in [("a", None), ("a", Some("c")), ("a", Some("a")), ("b", None)]
            {
                assert_eq!(
                    bookkeeping_applied(candidate.as_ref(), primary, source),
                    is_applied(candidate.as_ref(), &bookkeeping(primary, source)),
                    "{primary} {source:?} on {candidate:?}"
                );
            }
        }
    }

    #[test]
    fn applied_means_a_second_application_changes_nothing() {
        let before = replica("a", "c");
        let patch = demote("b", Some("b"));
        assert!(!is_applied(Some(&before), &patch));
        let once = apply(Some(&before), &patch).unwrap();
        assert!(is_applied(Some(&once), &patch));
        assert_eq!(apply(Some(&once), &patch), Some(once));
    }
}
