#![forbid(unsafe_code)]
//! Entry points for fuzzing everything Federator parses from outside: each takes arbitrary bytes,
//! feeds them to the same functions the controller and the CLI use, and panics only when an
//! invariant breaks (a panic inside Federator's code is a bug to fix, whatever the input).
//!
//! The libFuzzer targets in `fuzz/` (nightly, `make fuzz`) call these; `tests/corpus.rs` replays
//! every committed corpus and crash file through them on stable, in `make test`, so anything a
//! fuzz run found stays a regression test.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

/// A fuzz entry point: arbitrary bytes in, a panic only on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target: its name (the directory under `fuzz/corpus/` and `fuzz/regressions/`) and its
/// entry point.
pub const TARGETS: &[(&str, Target)] = &[
    ("kubeconfig_secret", kubeconfig_secret),
    ("argocd_secret", argocd_secret),
    ("topology_manifest", topology_manifest),
    ("cluster_status", cluster_status),
    ("rotation_policy", rotation_policy),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

fn secret(labels: &[(&str, &str)], data: &[(&str, &[u8])]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some("fuzzed".into());
    s.metadata.namespace = Some("federator-system".into());
    s.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    s.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect::<BTreeMap<_, _>>(),
    );
    s
}

/// What a credential from a hub Secret must satisfy, whatever the Secret held: https only, and
/// a refusal that quotes no value.
fn check_credential(result: Option<kubeconfigs::Result<kubeconfigs::MemberCredential>>) {
    match result.expect("a labelled Secret is always read") {
        Ok(credential) => {
            let server = credential.server();
            assert!(
                server.starts_with("https://"),
                "a Secret gave a non-https credential: {server}"
            );
            // Building a client does no I/O and must not panic either. It spawns kube's request
            // buffer, so it needs a runtime, as everywhere in the controller (a fuzz run without
            // one found that: fuzz/regressions/argocd_secret/).
            let _runtime = runtime().enter();
            let _ = credential.client(kubeconfigs::Timeouts::REQUESTS);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// `data` as the kubeconfig of a Federator-format hub Secret (plugins refused, no files).
pub fn kubeconfig_secret(data: &[u8]) {
    let s = secret(
        &[
            (kubeconfigs::secrets::MEMBER_SECRET_LABEL, "true"),
            (kubeconfigs::secrets::CLUSTER_NAME_LABEL, "eu-fuzz"),
        ],
        &[(kubeconfigs::secrets::KUBECONFIG_KEY, data)],
    );
    let result = runtime().block_on(kubeconfigs::secrets::from_secret(
        &s,
        kubeconfigs::Trust::default(),
    ));
    check_credential(result);
}

/// `data` as an Argo CD cluster Secret: up to the first newline the `server`, after it `config`.
pub fn argocd_secret(data: &[u8]) {
    let (server, config) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"https://127.0.0.1:6443"[..], data),
    };
    let s = secret(
        &[(kubeconfigs::ARGOCD_SECRET_TYPE_LABEL, "cluster")],
        &[("name", b"eu-fuzz"), ("server", server), ("config", config)],
    );
    let result = runtime().block_on(kubeconfigs::secrets::from_secret(
        &s,
        kubeconfigs::Trust::default(),
    ));
    check_credential(result);
}

/// `data` as a manifest file (`federator validate -f`): parse every document, validate every
/// topology statically and against the Clusters given with it, and plan its switchover.
pub fn topology_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut manifests = topology::manifest::Manifests::default();
    let _ = manifests.add("fuzz.yaml", text);
    let clusters: Vec<topology::cnpg::Cluster> =
        manifests.clusters.iter().map(|(_, c)| c.clone()).collect();
    for (_, object) in &manifests.topologies {
        let spec = &object.spec;
        let Ok(model) = topology::validate::validate_spec(spec) else {
            continue;
        };
        for member in &spec.members {
            assert!(
                !member.name.is_empty() && member.name.len() <= 50,
                "accepted member name {:?}",
                member.name
            );
        }
        let _ = topology::validate::validate_clusters(&model, &clusters, None);
        let observed = topology::Observed::from_clusters(&clusters);
        for member in &spec.members {
            let desired = topology::Desired {
                topology: &model,
                to: &member.name,
                kind: topology::OperationKind::Switchover,
            };
            let _ = topology::plan(&observed, &desired);
        }
    }
}

/// `data` as a CNPG Cluster read from a member (any field of any type, huge or missing): decode
/// it as the controller does, derive what it observes, and decode the tokens it carries.
pub fn cluster_status(data: &[u8]) {
    let Ok(cluster) = serde_json::from_slice::<topology::cnpg::Cluster>(data) else {
        return;
    };
    let member = topology::ObservedMember::from_cluster(&cluster);
    let _ = (member.role(), member.is_healthy(), member.spec_primary());
    for token in [
        member.status.demotion_token.as_deref(),
        member.promotion_token(),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(parsed) = topology::token::PromotionToken::parse(token) {
            let _ = (parsed.timeline(), parsed.redo_lsn());
            // What decodes re-encodes to something that decodes to the same token.
            let again = topology::token::PromotionToken::decode(&parsed.encode())
                .expect("an encoded token decodes");
            assert_eq!(again, parsed);
        }
    }
    let observed = topology::Observed::from_clusters([&cluster]);
    let _ = (observed.primary(), observed.primaries().count());
}

/// `data` as `spec.rotation` (YAML or JSON): validate it (cron schedule, time zone, windows,
/// freezes, order) and evaluate it at a fixed instant.
pub fn rotation_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = serde_saphyr::from_str::<policies::rotation::RotationPolicy>(text) else {
        return;
    };
    let members = ["a", "b", "c"];
    let Ok(validated) = policy.validate(&members) else {
        return;
    };
    let now: jiff::Timestamp = "2026-03-29T01:30:00Z".parse().expect("a timestamp");
    let next = validated.next_rotation_after(now);
    if let Some(next) = next {
        assert!(next > now, "the next rotation {next} is not after {now}");
    }
    let facts = policies::rotation::RotationFacts::default();
    let input = policies::rotation::RotationInput {
        now,
        history: policies::rotation::RotationHistory {
            last_handled: None,
            active_since: "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
        },
        primary: "a",
        members: &members,
        facts: &facts,
    };
    let decision = validated.decide(&input);
    let _ = validated.recheck_at(&decision, now);
}
