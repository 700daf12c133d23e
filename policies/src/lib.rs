#![forbid(unsafe_code)]
//! Switchover policies: the knobs a `DistributedTopology` carries in `spec.policies`, and their
//! documented defaults (`policies/defaults.yaml`, compiled in).
//!
//! Every field is optional in a manifest: a field left out takes its value from the defaults
//! file, so the defaults live in exactly one reviewed place. New groups (rotation, drills, …)
//! are added as new optional fields of [`Policies`] with their own section in the defaults file.

mod duration;
pub mod rotation;

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use duration::{Duration, DurationError};

/// The committed defaults, as text.
pub const DEFAULTS_YAML: &str = include_str!("../defaults.yaml");

/// Policies of one distributed topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Policies {
    /// Deadlines and retry intervals of a switchover's steps. A deadline that passes makes the
    /// switchover hold (it never promotes without a demotion token).
    pub timeouts: Timeouts,
}

/// Deadlines and retry intervals of a switchover. Durations are written like `90s`, `1m30s`, `2h`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Timeouts {
    /// How long after the demote patch the old primary may take to show that its demotion started
    /// (`switchReplicaClusterStatus.inProgress` or a demotion token). Past it: hold.
    pub demotion_start: Duration,
    /// How long after the demotion started the old primary may take to publish
    /// `status.demotionToken`. Past it: hold; never promote without the token.
    pub token_wait: Duration,
    /// How long the target may take, once the promote patch is applied, to report
    /// `lastPromotionToken` equal to the token and a healthy phase. Past it: hold.
    pub promotion_wait: Duration,
    /// How long to wait before retrying a bookkeeping patch (`primary`/`source` of the members that
    /// neither lose nor gain the primary role).
    pub bookkeeping_retry: Duration,
}

/// Why the defaults file could not be read (a bug in the committed file, caught by tests).
#[derive(Debug, thiserror::Error)]
#[error("policies/defaults.yaml is invalid: {0}")]
pub struct DefaultsError(String);

/// The defaults file parsed strictly: every field must be present and no unknown field allowed,
/// so that the file documents every knob.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StrictDefaults {
    timeouts: StrictTimeouts,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StrictTimeouts {
    demotion_start: Duration,
    token_wait: Duration,
    promotion_wait: Duration,
    bookkeeping_retry: Duration,
}

/// Parses `policies/defaults.yaml`; fails if a field is missing, unknown or malformed.
pub fn load_defaults() -> Result<Policies, DefaultsError> {
    let strict: StrictDefaults =
        serde_saphyr::from_str(DEFAULTS_YAML).map_err(|e| DefaultsError(e.to_string()))?;
    let t = strict.timeouts;
    Ok(Policies {
        timeouts: Timeouts {
            demotion_start: t.demotion_start,
            token_wait: t.token_wait,
            promotion_wait: t.promotion_wait,
            bookkeeping_retry: t.bookkeeping_retry,
        },
    })
}

fn defaults() -> &'static Policies {
    static DEFAULTS: OnceLock<Policies> = OnceLock::new();
    // The file is compiled in and checked by `defaults_file_is_complete_and_valid`; a broken
    // file is a build-time bug, so failing loudly on first use is the honest behaviour.
    DEFAULTS.get_or_init(|| load_defaults().expect("compiled-in policies/defaults.yaml is valid"))
}

impl Default for Policies {
    fn default() -> Self {
        defaults().clone()
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        defaults().timeouts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_is_complete_and_valid() {
        let policies = load_defaults().unwrap();
        assert!(policies.timeouts.demotion_start < policies.timeouts.promotion_wait);
        assert!(policies.timeouts.bookkeeping_retry.as_std().as_secs() > 0);
    }

    #[test]
    fn a_partial_manifest_takes_the_rest_from_the_defaults() {
        let partial: Policies = serde_json::from_value(serde_json::json!({
            "timeouts": {"tokenWait": "42s"}
        }))
        .unwrap();
        let defaults = Policies::default();
        assert_eq!(partial.timeouts.token_wait, Duration::from_secs(42));
        assert_eq!(
            partial.timeouts.promotion_wait,
            defaults.timeouts.promotion_wait
        );
        let empty: Policies = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(empty, defaults);
    }

    #[test]
    fn malformed_durations_are_rejected_with_the_field() {
        let err = serde_json::from_value::<Policies>(serde_json::json!({
            "timeouts": {"tokenWait": "5 minutes"}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }
}
