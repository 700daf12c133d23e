//! Static and live validation: every rule fires with a path and a fix, and all problems of an
//! input are reported together.

use std::collections::BTreeMap;

use topology::api::{DistributedTopologySpec, ShapeSpec};
use topology::cnpg::Cluster;
use topology::manifest::Manifests;
use topology::validate::{Problem, validate_clusters, validate_spec};

const RING: &str = include_str!("../../examples/ring-of-three.yaml");
const CASCADE: &str = include_str!("../../examples/cascade.yaml");

fn load(text: &str) -> (DistributedTopologySpec, Vec<Cluster>) {
    let mut m = Manifests::default();
    m.add("example.yaml", text).expect("examples parse");
    let spec = m.topologies.remove(0).1.spec;
    (spec, m.clusters.into_iter().map(|(_, c)| c).collect())
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

fn cluster<'a>(clusters: &'a mut [Cluster], name: &str) -> &'a mut Cluster {
    clusters
        .iter_mut()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .expect("example cluster")
}

#[test]
fn examples_are_valid_statically_and_live() {
    for text in [RING, CASCADE, include_str!("../../examples/pair.yaml")] {
        let (spec, clusters) = load(text);
        let topology = validate_spec(&spec).expect("example spec is valid");
        validate_clusters(&topology, &clusters, None).expect("example clusters are consistent");
    }
}

#[test]
fn static_rules_report_every_problem_at_once() {
    let (mut spec, _) = load(RING);
    spec.members[1].name = "pg16-eu-central".into(); // duplicate
    spec.members[2].namespace.clear();
    spec.members.push(spec.members[0].clone());
    spec.members[3].name = "Bad_Name".into();
    spec.members[3].cluster = "elsewhere".into();
    spec.primary = "pg16-eu-north".into();
    spec.shape.ring = Some(vec![
        "pg16-eu-central".into(),
        "pg16-eu-central".into(),
        "nobody".into(),
    ]);
    let err = validate_spec(&spec).unwrap_err();
    assert_eq!(
        paths(&err.problems),
        [
            "spec.members[1].name",
            "spec.members[2].namespace",
            "spec.members[3].name",
            "spec.primary",
            "spec.shape.ring[1]",
            "spec.shape.ring[2]",
            "spec.shape.ring",
        ]
    );
    assert!(err.problems.iter().all(|p| !p.fix.is_empty()));
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn a_shape_must_be_exactly_one_and_a_cascade_a_spanning_tree() {
    let (mut spec, _) = load(CASCADE);
    spec.shape.star = Some(Default::default());
    let err = validate_spec(&spec).unwrap_err();
    assert_eq!(paths(&err.problems), ["spec.shape"]);

    spec.shape = ShapeSpec {
        cascade: Some(BTreeMap::from([
            ("pg16-eu-western".into(), "pg16-eu-south".into()),
            ("pg16-eu-south".into(), "pg16-eu-western".into()),
            ("pg16-eu-north".into(), "pg16-eu-north".into()),
        ])),
        ..ShapeSpec::default()
    };
    let err = validate_spec(&spec).unwrap_err();
    let messages: Vec<&str> = err.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("own source")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("closes a cycle")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("does not connect all members")),
        "{messages:?}"
    );
}

#[test]
fn live_rules_report_every_problem_with_its_cluster_path() {
    let (spec, mut clusters) = load(RING);
    let topology = validate_spec(&spec).unwrap();
    {
        let south = cluster(&mut clusters, "pg16-eu-south");
        south.spec.replica.as_mut().unwrap().enabled = Some(true);
    }
    {
        let western = cluster(&mut clusters, "pg16-eu-western");
        let r = western.spec.replica.as_mut().unwrap();
        r.source = "pg16-eu-east".into();
        r.min_apply_delay = Some("1h".into());
        western.metadata.namespace = Some("other".into());
    }
    {
        let central = cluster(&mut clusters, "pg16-eu-central");
        central
            .spec
            .external_clusters
            .retain(|e| e.name != "pg16-eu-south");
    }
    let err = validate_clusters(&topology, &clusters, Some("pg16-eu-western")).unwrap_err();
    let found = paths(&err.problems);
    for expected in [
        "Cluster databases/pg16-eu-south: spec.replica.enabled",
        "Cluster other/pg16-eu-western: metadata.namespace",
        "Cluster other/pg16-eu-western: spec.replica.source",
        "Cluster databases/pg16-eu-central: spec.replica.source",
        "Cluster databases/pg16-eu-central: spec.externalClusters",
        "Cluster other/pg16-eu-western: spec.replica.minApplyDelay",
    ] {
        assert!(
            found.contains(&expected),
            "missing {expected:?} in {found:#?}"
        );
    }
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn two_primaries_and_a_source_cycle_are_found() {
    let (spec, mut clusters) = load(CASCADE);
    let topology = validate_spec(&spec).unwrap();
    cluster(&mut clusters, "pg16-eu-north")
        .spec
        .replica
        .as_mut()
        .unwrap()
        .primary = Some("pg16-eu-north".into());
    let err = validate_clusters(&topology, &clusters, None).unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.message.contains("2 members are primary")),
        "{err}"
    );

    let (_, mut clusters) = load(CASCADE);
    cluster(&mut clusters, "pg16-eu-western")
        .spec
        .replica
        .as_mut()
        .unwrap()
        .source = "pg16-eu-south".into();
    let err = validate_clusters(&topology, &clusters, None).unwrap_err();
    let chain = err
        .problems
        .iter()
        .find(|p| p.message.contains("never reaches the primary"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        chain
            .message
            .contains("pg16-eu-western -> pg16-eu-south -> pg16-eu-western"),
        "{chain}"
    );
}

#[test]
fn stray_and_duplicate_clusters_and_a_missing_member_are_reported() {
    let (spec, mut clusters) = load(RING);
    let topology = validate_spec(&spec).unwrap();
    let mut stray = clusters[0].clone();
    stray.metadata.name = Some("pg16-us-east".into());
    stray.spec.replica.as_mut().unwrap().self_name = None;
    let duplicate = clusters[1].clone();
    clusters.remove(2);
    clusters.push(stray);
    clusters.push(duplicate);
    let err = validate_clusters(&topology, &clusters, None).unwrap_err();
    let messages: Vec<&str> = err.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("is not a member")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("second Cluster")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("no CNPG Cluster databases/pg16-eu-south")),
        "{messages:#?}"
    );
}
