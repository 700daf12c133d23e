//! Selection: every topology whose primary lives in the region being left, with the member that
//! takes over in the destination region, in the order they will move.

use std::collections::BTreeMap;

/// What a region switch asks for (the spec of the hub object, without its hooks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSwitchRequest {
    /// The member Kubernetes cluster (region) the primaries leave.
    pub from: String,
    /// The region they move to.
    pub to: String,
    /// Only topologies whose labels contain all of these.
    pub match_labels: BTreeMap<String, String>,
    /// Only topologies of these keys (empty: every one).
    pub names: std::collections::BTreeSet<String>,
    /// How many topologies move at once (≥ 1).
    pub concurrency: u32,
}

/// One topology as the selection needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyView {
    /// `namespace/name`.
    pub key: String,
    pub labels: BTreeMap<String, String>,
    /// Higher moves first; equal priorities move in key order.
    pub priority: i32,
    /// (member name, member cluster = region), in `spec.members` order.
    pub members: Vec<(String, String)>,
    /// `spec.primary`.
    pub primary: String,
    /// The region switch that already claims this topology, other than this one.
    pub claimed_by: Option<String>,
}

/// What the selection decided for one topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Move the primary to `member`.
    Move { key: String, member: String },
    /// Left alone, with the reason shown in the region switch's status.
    Skip { key: String, reason: String },
}

impl Choice {
    pub fn key(&self) -> &str {
        match self {
            Choice::Move { key, .. } | Choice::Skip { key, .. } => key,
        }
    }
}

/// Why a region switch is refused before anything moves; each names the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error(
        "spec.from and spec.to are both {0:?}: name the region the primaries leave and the one they move to"
    )]
    SameRegion(String),
    #[error("spec.concurrency must be at least 1")]
    ZeroConcurrency,
    #[error(
        "spec.{field}: no member of any topology runs in region {region:?} (regions in use: {known}); \
         check the spelling against spec.members[].cluster of your topologies"
    )]
    UnknownRegion {
        field: &'static str,
        region: String,
        known: String,
    },
    #[error(
        "spec.selector matches no DistributedTopology in this namespace; fix the labels or \
         remove the selector"
    )]
    SelectorMatchesNothing,
    #[error(
        "{key} is already being moved by region switch {other}; wait for it to finish or abort \
         it (spec.abort: true) before starting another over the same topology"
    )]
    AlreadyClaimed { key: String, other: String },
}

/// Decides, for every topology, whether it moves and where, in the order moves start. Refuses
/// the whole request (nothing moves) on any error.
pub fn select(
    req: &RegionSwitchRequest,
    topologies: &[TopologyView],
) -> Result<Vec<Choice>, SelectError> {
    if req.from == req.to {
        return Err(SelectError::SameRegion(req.from.clone()));
    }
    if req.concurrency == 0 {
        return Err(SelectError::ZeroConcurrency);
    }
    let regions: std::collections::BTreeSet<&str> = topologies
        .iter()
        .flat_map(|t| t.members.iter().map(|(_, c)| c.as_str()))
        .collect();
    for (field, region) in [("from", &req.from), ("to", &req.to)] {
        if !regions.contains(region.as_str()) {
            return Err(SelectError::UnknownRegion {
                field,
                region: region.clone(),
                known: regions.iter().copied().collect::<Vec<_>>().join(", "),
            });
        }
    }
    let mut matched: Vec<&TopologyView> = topologies
        .iter()
        .filter(|t| req.names.is_empty() || req.names.contains(&t.key))
        .filter(|t| {
            req.match_labels
                .iter()
                .all(|(k, v)| t.labels.get(k) == Some(v))
        })
        .collect();
    if matched.is_empty() {
        return Err(SelectError::SelectorMatchesNothing);
    }
    matched.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.key.cmp(&b.key)));
    let mut out = Vec::with_capacity(matched.len());
    for t in matched {
        let region_of = |member: &str| {
            t.members
                .iter()
                .find(|(m, _)| m == member)
                .map(|(_, c)| c.as_str())
        };
        let key = t.key.clone();
        if region_of(&t.primary) != Some(req.from.as_str()) {
            out.push(Choice::Skip {
                key,
                reason: format!(
                    "its primary {} is in {}, not in {}",
                    t.primary,
                    region_of(&t.primary).unwrap_or("no known region"),
                    req.from
                ),
            });
            continue;
        }
        let targets: Vec<&str> = t
            .members
            .iter()
            .filter(|(_, c)| *c == req.to)
            .map(|(m, _)| m.as_str())
            .collect();
        match targets.as_slice() {
            [] => out.push(Choice::Skip {
                key,
                reason: format!("no member in region {}", req.to),
            }),
            [member] => {
                if let Some(other) = &t.claimed_by {
                    return Err(SelectError::AlreadyClaimed {
                        key,
                        other: other.clone(),
                    });
                }
                out.push(Choice::Move {
                    key,
                    member: (*member).to_owned(),
                })
            }
            several => out.push(Choice::Skip {
                key,
                reason: format!(
                    "several members in region {} ({}): move it with `federator switchover`",
                    req.to,
                    several.join(", ")
                ),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(key: &str, primary: &str, members: &[(&str, &str)], priority: i32) -> TopologyView {
        TopologyView {
            key: key.to_owned(),
            labels: BTreeMap::from([("tier".to_owned(), "web".to_owned())]),
            priority,
            members: members
                .iter()
                .map(|(m, c)| ((*m).to_owned(), (*c).to_owned()))
                .collect(),
            primary: primary.to_owned(),
            claimed_by: None,
        }
    }

    fn request() -> RegionSwitchRequest {
        RegionSwitchRequest {
            from: "eu-central".into(),
            to: "eu-western".into(),
            match_labels: BTreeMap::new(),
            names: Default::default(),
            concurrency: 2,
        }
    }

    const PAIR: &[(&str, &str)] = &[("a", "eu-central"), ("b", "eu-western")];

    #[test]
    fn moves_primaries_in_the_region_by_priority_and_skips_the_rest_with_a_reason() {
        let ts = [
            view("db/low", "a", PAIR, 0),
            view("db/high", "a", PAIR, 10),
            view("db/elsewhere", "b", PAIR, 5),
            view(
                "db/nowhere",
                "a",
                &[("a", "eu-central"), ("c", "eu-south")],
                0,
            ),
            view(
                "db/two",
                "a",
                &[
                    ("a", "eu-central"),
                    ("b", "eu-western"),
                    ("b2", "eu-western"),
                ],
                0,
            ),
        ];
        let got = select(&request(), &ts).unwrap();
        let keys: Vec<&str> = got.iter().map(Choice::key).collect();
        assert_eq!(
            keys,
            ["db/high", "db/elsewhere", "db/low", "db/nowhere", "db/two"]
        );
        assert_eq!(
            got[0],
            Choice::Move {
                key: "db/high".into(),
                member: "b".into()
            }
        );
        let reason = |i: usize| match &got[i] {
            Choice::Skip { reason, .. } => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(1),
            "its primary b is in eu-western, not in eu-central"
        );
        assert_eq!(reason(3), "no member in region eu-western");
        assert!(reason(4).contains("several members in region eu-western (b, b2)"));
    }

    #[test]
    fn named_topologies_limit_the_selection_and_the_rest_are_not_looked_at() {
        // The way back of a region drill: only the databases its way there moved, not one whose
        // primary was in eu-western before the drill.
        let ts = [
            view("db/moved", "b", PAIR, 0),
            view("db/was-there-before", "b", PAIR, 0),
        ];
        let mut r = request();
        std::mem::swap(&mut r.from, &mut r.to);
        r.names.insert("db/moved".into());
        assert_eq!(
            select(&r, &ts).unwrap(),
            [Choice::Move {
                key: "db/moved".into(),
                member: "a".into()
            }]
        );
        r.names = ["db/gone".to_owned()].into();
        assert_eq!(select(&r, &ts), Err(SelectError::SelectorMatchesNothing));
    }

    #[test]
    fn bad_requests_are_refused_naming_the_field() {
        let ts = [view("db/x", "a", PAIR, 0)];
        let mut r = request();
        r.to = "eu-westren".into();
        let err = select(&r, &ts).unwrap_err();
        assert!(err.to_string().starts_with("spec.to: no member"), "{err}");
        assert!(err.to_string().contains("eu-central, eu-western"), "{err}");

        let mut r = request();
        r.match_labels.insert("tier".into(), "batch".into());
        assert_eq!(select(&r, &ts), Err(SelectError::SelectorMatchesNothing));

        let mut r = request();
        r.to = r.from.clone();
        assert!(matches!(select(&r, &ts), Err(SelectError::SameRegion(_))));

        let mut claimed = view("db/x", "a", PAIR, 0);
        claimed.claimed_by = Some("db/other-switch".into());
        assert_eq!(
            select(&request(), &[claimed]),
            Err(SelectError::AlreadyClaimed {
                key: "db/x".into(),
                other: "db/other-switch".into()
            })
        );
    }
}
