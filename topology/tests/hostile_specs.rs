//! Hostile and careless specs: whatever a `DistributedTopologySpec` holds (huge, duplicated,
//! non-DNS, unicode, self-referencing), validation answers with problems that name a field and a
//! fix, never panics, and accepts only specs whose every name is usable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use topology::api::{DistributedTopologySpec, Member, ShapeSpec, StarShape};
use topology::validate::validate_spec;

fn member(name: &str, cluster: &str, namespace: &str) -> Member {
    Member {
        name: name.into(),
        cluster: cluster.into(),
        namespace: namespace.into(),
        cluster_name: None,
    }
}

fn spec(members: Vec<Member>, shape: ShapeSpec, primary: &str) -> DistributedTopologySpec {
    DistributedTopologySpec {
        members,
        shape,
        primary: primary.into(),
        policies: Default::default(),
        rotation: None,
        failover: None,
        automatic_failover: None,
        hooks: Default::default(),
    }
}

fn star() -> ShapeSpec {
    ShapeSpec {
        star: Some(StarShape {}),
        ..ShapeSpec::default()
    }
}

/// Every problem for `spec`, as `path: message`.
fn problems(spec: &DistributedTopologySpec) -> Vec<String> {
    match validate_spec(spec) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .iter()
            .map(|p| {
                assert!(!p.fix.is_empty(), "a problem without a fix: {p:?}");
                format!("{}: {}", p.path, p.message)
            })
            .collect(),
    }
}

#[test]
fn member_cluster_and_namespace_must_be_dns_labels() {
    let s = spec(
        vec![
            member("a", "eu central", "databases"),
            member("b", "eu-western", "../kube-system"),
            member("c", &"x".repeat(64), "Databases"),
            member("d", "-eu", "db-"),
        ],
        star(),
        "a",
    );
    let found = problems(&s);
    for path in [
        "spec.members[0].cluster: \"eu central\" is not a DNS-1123 label",
        "spec.members[1].namespace: \"../kube-system\" is not a DNS-1123 label",
        "spec.members[2].cluster: ",
        "spec.members[2].namespace: \"Databases\" is not a DNS-1123 label",
        "spec.members[3].cluster: \"-eu\" is not",
        "spec.members[3].namespace: \"db-\" is not",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(path)),
            "{path} not in {found:#?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|p| p.contains("is 64 characters long (max 63)"))
    );
}

#[test]
fn duplicate_and_unknown_members_are_named() {
    let mut cascade = BTreeMap::new();
    cascade.insert("b".to_owned(), "a".to_owned());
    cascade.insert("ghost".to_owned(), "a".to_owned());
    let s = spec(
        vec![
            member("a", "eu-central", "db"),
            member("a", "eu-western", "db"),
            member("b", "eu-south", "db"),
        ],
        ShapeSpec {
            cascade: Some(cascade),
            ..ShapeSpec::default()
        },
        "nobody",
    );
    let found = problems(&s);
    for needle in [
        "spec.members[1].name: \"a\" is already used by spec.members[0]",
        "spec.primary: \"nobody\" is not a member",
        "spec.shape.cascade.ghost: member \"ghost\" is not a member",
    ] {
        assert!(
            found.iter().any(|p| p == needle),
            "{needle} not in {found:#?}"
        );
    }
}

/// Far over every CRD limit (64 members): validation stays linear and answers at once.
#[test]
fn a_huge_spec_is_answered_quickly() {
    let n = 20_000;
    let members: Vec<Member> = (0..n)
        .map(|i| member(&format!("m{i}"), &format!("c{}", i % 7), "db"))
        .collect();
    let ring: Vec<String> = (0..n).rev().map(|i| format!("m{i}")).collect();
    let cascade: BTreeMap<String, String> = (1..n)
        .map(|i| (format!("m{i}"), format!("m{}", i - 1)))
        .chain([("m0".to_owned(), format!("m{}", n - 1))])
        .collect();
    for shape in [
        star(),
        ShapeSpec {
            ring: Some(ring),
            ..ShapeSpec::default()
        },
        ShapeSpec {
            cascade: Some(cascade),
            ..ShapeSpec::default()
        },
    ] {
        let started = Instant::now();
        let found = problems(&spec(members.clone(), shape, "m0"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?} for {n} members",
            started.elapsed()
        );
        // The star and the ring are fine; the cascade closes a cycle and says where.
        assert!(found.len() <= 1, "{:?}", &found[..found.len().min(5)]);
    }
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}",
        "[a-z]{1,3}",
        ".{0,12}",
        "[A-Z_. /]{1,5}",
        Just(String::new()),
        Just("x".repeat(70)),
        Just("é".into()),
    ]
}

fn any_member() -> impl Strategy<Value = Member> {
    (
        any_name(),
        any_name(),
        any_name(),
        proptest::option::of(any_name()),
    )
        .prop_map(|(name, cluster, namespace, cluster_name)| Member {
            name,
            cluster,
            namespace,
            cluster_name,
        })
}

fn any_shape() -> impl Strategy<Value = ShapeSpec> {
    (
        proptest::option::of(Just(StarShape {})),
        proptest::option::of(proptest::collection::vec(any_name(), 0..8)),
        proptest::option::of(proptest::collection::btree_map(
            any_name(),
            any_name(),
            0..8,
        )),
    )
        .prop_map(|(star, ring, cascade)| ShapeSpec {
            star,
            ring,
            cascade,
        })
}

fn is_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never a panic; every problem has a path under `spec.` and a fix; an accepted spec has
    /// unique DNS names, a member as primary and exactly one shape.
    #[test]
    fn any_spec_gets_an_answer(
        members in proptest::collection::vec(any_member(), 0..10),
        shape in any_shape(),
        primary in any_name(),
    ) {
        let s = spec(members, shape, &primary);
        match validate_spec(&s) {
            Ok(_) => {
                let names: std::collections::HashSet<&str> =
                    s.members.iter().map(|m| m.name.as_str()).collect();
                prop_assert_eq!(names.len(), s.members.len());
                prop_assert!(s.members.len() >= 2);
                prop_assert!(names.contains(primary.as_str()));
                for m in &s.members {
                    prop_assert!(is_label(&m.name, 50) && m.name.as_bytes()[0].is_ascii_lowercase());
                    prop_assert!(is_label(&m.cluster, 63), "{:?}", m.cluster);
                    prop_assert!(is_label(&m.namespace, 63), "{:?}", m.namespace);
                }
                let shapes = [s.shape.star.is_some(), s.shape.ring.is_some(), s.shape.cascade.is_some()];
                prop_assert_eq!(shapes.iter().filter(|x| **x).count(), 1);
            }
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(p.path.starts_with("spec."), "{:?}", p);
                    prop_assert!(!p.fix.is_empty(), "{:?}", p);
                }
            }
        }
    }
}
