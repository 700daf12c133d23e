//! Replays every committed fuzz input on stable: `fuzz/seeds/<target>/*` (hand-written starting
//! points), `fuzz/corpus/<target>/*` (what the fuzzer kept for coverage) and `fuzz/regressions/<target>/*` (inputs that once crashed,
//! copied from `fuzz/artifacts/`). A crash found by `make fuzz` becomes a failing test here until
//! it is fixed, and stays a regression test afterwards.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_file_replays_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (target, run) in fuzzing::TARGETS {
        let seeds = files(&fuzz.join("seeds").join(target));
        let corpus = files(&fuzz.join("corpus").join(target));
        let regressions = files(&fuzz.join("regressions").join(target));
        assert!(
            !seeds.is_empty(),
            "no seeds for {target} in {}: they are committed",
            fuzz.display()
        );
        for file in seeds.iter().chain(&corpus).chain(&regressions) {
            let data = std::fs::read(file).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} panicked (replay: cargo test -p federator-fuzzing)",
                file.display()
            );
        }
        println!(
            "{target}: {} seeds, {} corpus and {} regression inputs replayed",
            seeds.len(),
            corpus.len(),
            regressions.len()
        );
    }
}

/// The seeds get past decoding, so the fuzzer starts from inputs that reach the checks behind
/// it (a harness that returned early on everything would prove nothing).
#[test]
fn the_seeds_reach_past_decoding() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let read = |path: &str| std::fs::read_to_string(corpus.join(path)).expect("a seed");

    let cluster: topology::cnpg::Cluster =
        serde_json::from_str(&read("cluster_status/cluster.json")).expect("the seed Cluster");
    let member = topology::ObservedMember::from_cluster(&cluster);
    let token = member.status.demotion_token.as_deref().expect("a token");
    topology::token::PromotionToken::parse(token).expect("the seed token parses");

    let policy: policies::rotation::RotationPolicy =
        serde_saphyr::from_str(&read("rotation_policy/example.yaml")).expect("the seed policy");
    policy
        .validate(&["a", "b", "c"])
        .expect("the seed policy is valid");

    let mut manifests = topology::manifest::Manifests::default();
    manifests
        .add("pair.yaml", &read("topology_manifest/pair.yaml"))
        .expect("the example parses");
    topology::validate::validate_spec(&manifests.topologies[0].1.spec).expect("a valid example");
}
