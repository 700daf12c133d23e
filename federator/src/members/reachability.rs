//! Whether each member can be read, from what its watches last saw. A snapshot of this goes to
//! status (`Degraded`) and metrics; error texts are redacted before they get here.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// The state of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// It has a credential; no watch has completed its first list yet.
    Connecting,
    /// A watch on it is listing or watching successfully.
    Reachable,
    /// Every watch on it fails (connection refused, timeout, forbidden, ...).
    Unreachable { error: String },
    /// It has no usable credential (refused, unreadable, conflicting, or removed).
    NoCredential { error: String },
}

impl Reachability {
    pub fn is_reachable(&self) -> bool {
        matches!(self, Self::Reachable)
    }

    /// The error text, when there is one.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Unreachable { error } | Self::NoCredential { error } => Some(error),
            Self::Connecting | Self::Reachable => None,
        }
    }
}

/// A member's reachability and since when it has been so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHealth {
    pub reachability: Reachability,
    pub since: SystemTime,
    /// Where its credential came from (`Secret federator-system/member-eu-south`), if it has one.
    pub origin: Option<String>,
}

/// What one watch (one namespace of one member) last saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WatchHealth {
    /// Its first full list is done.
    pub synced: bool,
    /// Its last attempt failed with this (redacted) error; cleared by the next success.
    pub error: Option<String>,
}

/// A member's reachability from its watches: reachable while one of them lists or watches
/// successfully (a namespace the member's credential may not read is that namespace's problem,
/// reported by reads there, not the whole member's); unreachable when they all fail.
pub(crate) fn of_watches<'a>(watches: impl IntoIterator<Item = &'a WatchHealth>) -> Reachability {
    let mut first_error = None;
    for watch in watches {
        match &watch.error {
            None if watch.synced => return Reachability::Reachable,
            None => {}
            Some(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Reachability::Unreachable {
            error: error.clone(),
        },
        None => Reachability::Connecting,
    }
}

/// Replaces `health` for `member` if the reachability changed; returns whether it did.
pub(crate) fn update(
    table: &mut BTreeMap<String, MemberHealth>,
    member: &str,
    reachability: Reachability,
    origin: Option<String>,
) -> bool {
    if let Some(current) = table.get_mut(member)
        && current.reachability == reachability
    {
        current.origin = origin;
        return false;
    }
    table.insert(
        member.to_owned(),
        MemberHealth {
            reachability,
            since: SystemTime::now(),
            origin,
        },
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_reachable_while_one_watch_works() {
        let ok = WatchHealth {
            synced: true,
            error: None,
        };
        let pending = WatchHealth::default();
        let failing = WatchHealth {
            synced: true,
            error: Some("connection refused".into()),
        };
        let refused = Reachability::Unreachable {
            error: "connection refused".into(),
        };
        assert_eq!(of_watches([]), Reachability::Connecting);
        assert_eq!(of_watches([&pending]), Reachability::Connecting);
        assert_eq!(of_watches([&ok, &pending]), Reachability::Reachable);
        assert_eq!(of_watches([&failing, &ok]), Reachability::Reachable);
        assert_eq!(of_watches([&failing]), refused);
        assert_eq!(of_watches([&pending, &failing]), refused);
    }

    #[test]
    fn update_keeps_since_while_the_state_holds() {
        let mut table = BTreeMap::new();
        assert!(update(&mut table, "eu", Reachability::Connecting, None));
        let since = table["eu"].since;
        assert!(!update(&mut table, "eu", Reachability::Connecting, None));
        assert_eq!(table["eu"].since, since);
        assert!(update(&mut table, "eu", Reachability::Reachable, None));
    }
}
