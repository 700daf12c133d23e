#![forbid(unsafe_code)]
//! Hostile and careless input, on the lab: what an attacker with write access to hub Secrets or
//! topologies, or a careless user, could write gets a clear answer naming the field and the fix,
//! changes nothing on the members, and never crashes the controller or the CLI.
//!
//! - Topologies the CRD refuses at admission (the hub answers 422 naming the field; nothing is
//!   stored).
//! - Member credentials in hub Secrets that would run programs, read local files, talk in clear
//!   text, skip TLS verification or go through a proxy: the controller refuses each, says so in
//!   the topology's Degraded condition (field and fix), and patches no Cluster while a switchover
//!   is asked for.
//! - Manifest files the CLI is given: deeply nested, alias bombs, endless, binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::harness::controller::{Controller, federator_binary, topology, wide_timeouts};
use e2e::harness::testkit::{self, DEADLINE, Member};
use e2e::harness::{self, TestNamespace};
use e2e::lab::health::wait_for;
use e2e::lab::{CLUSTER_NAME_LABEL, MEMBER_SECRET_LABEL};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use topology::DistributedTopology;
use topology::conditions::{kind, reason};

fn lab_kubeconfig(member: &str) -> Value {
    let path = harness::lab_dir().join(format!("{member}.federator.kubeconfig"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).expect("the lab writes valid kubeconfigs")
}

fn member_secret(name: &str, member: &str, kubeconfig: &str) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.labels = Some(BTreeMap::from([
        (MEMBER_SECRET_LABEL.to_owned(), "true".to_owned()),
        (CLUSTER_NAME_LABEL.to_owned(), member.to_owned()),
    ]));
    secret.data = Some(BTreeMap::from([(
        "kubeconfig".to_owned(),
        ByteString(kubeconfig.as_bytes().to_vec()),
    )]));
    secret
}

/// A hostile variant of a working kubeconfig: what it changes, the field the refusal must name
/// and a word of the fix.
struct Case {
    what: &'static str,
    edit: fn(&mut Value),
    field: &'static str,
    fix: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "an exec plugin",
        edit: |k| {
            k["users"][0]["user"]["exec"] = json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "/bin/sh",
                "args": ["-c", "cat /etc/shadow"],
            })
        },
        field: "users[0].user.exec",
        fix: "--allow-auth-plugins",
    },
    Case {
        what: "an auth-provider",
        edit: |k| {
            k["users"][0]["user"]["auth-provider"] =
                json!({"name": "oidc", "config": {"idp-issuer-url": "https://10.66.0.1"}})
        },
        field: "users[0].user.auth-provider",
        fix: "--allow-auth-plugins",
    },
    Case {
        what: "a token file on the controller's filesystem",
        edit: |k| {
            let user = k["users"][0]["user"].as_object_mut().unwrap();
            user.remove("token");
            user.insert("tokenFile".into(), "/etc/shadow".into());
        },
        field: "users[0].user.tokenFile",
        fix: "inline",
    },
    Case {
        what: "a CA file on the controller's filesystem",
        edit: |k| {
            let cluster = k["clusters"][0]["cluster"].as_object_mut().unwrap();
            cluster.remove("certificate-authority-data");
            cluster.insert(
                "certificate-authority".into(),
                "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            );
        },
        field: "clusters[0].cluster.certificate-authority",
        fix: "inline",
    },
    Case {
        what: "TLS verification turned off",
        edit: |k| {
            let cluster = k["clusters"][0]["cluster"].as_object_mut().unwrap();
            cluster.remove("certificate-authority-data");
            cluster.insert("insecure-skip-tls-verify".into(), true.into());
        },
        field: "clusters[0].cluster.insecure-skip-tls-verify",
        fix: "--allow-insecure-member-tls",
    },
    Case {
        what: "a clear-text server",
        edit: |k| {
            let server = k["clusters"][0]["cluster"]["server"].as_str().unwrap();
            k["clusters"][0]["cluster"]["server"] = server.replace("https://", "http://").into();
        },
        field: "clusters[0].cluster.server is an http:// URL",
        fix: "https://",
    },
    Case {
        what: "a proxy",
        edit: |k| k["clusters"][0]["cluster"]["proxy-url"] = "http://10.66.0.2:3128".into(),
        field: "clusters[0].cluster.proxy-url",
        fix: "remove proxy-url",
    },
    Case {
        what: "a second user of the same name",
        edit: |k| {
            let mut twin = k["users"][0].clone();
            twin["user"] = json!({"tokenFile": "/etc/shadow"});
            k["users"].as_array_mut().unwrap().push(twin);
        },
        field: "users[1].name repeats the name of users[0]",
        fix: "unique name",
    },
];

/// One topology, three members: `pg-a` (eu-central, primary) reached through a Secret that is
/// made hostile in turn, `pg-b` (eu-western) through a good Secret, `pg-c` on a member cluster
/// no Secret names. `spec.primary` asks for a switchover to `pg-b`. For every hostile variant the
/// Degraded condition must name the field and the fix; the Clusters must not change at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_member_credentials_are_refused_by_field_and_nothing_is_patched() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("hostile-secrets").await;
    ns.grant_federator().await;
    let (a, b) = (
        Member {
            name: "pg-a",
            region: "eu-central",
        },
        Member {
            name: "pg-b",
            region: "eu-western",
        },
    );
    let pair = [a, b];
    let a_api = testkit::clusters(lab, a.region, ns.name()).await;
    let b_api = testkit::clusters(lab, b.region, ns.name()).await;
    testkit::create(
        &a_api,
        &testkit::blog_cluster(ns.name(), a.name, a.name, a.name, &pair, true),
    )
    .await;
    testkit::create(
        &b_api,
        &testkit::blog_cluster(ns.name(), b.name, a.name, a.name, &pair, true),
    )
    .await;
    // What a patch would change (the emulator keeps writing status as the instances start).
    let specs = || async {
        let (a, b) = (
            a_api.get(a.name).await.unwrap(),
            b_api.get(b.name).await.unwrap(),
        );
        [
            (
                a.metadata.generation,
                serde_json::to_value(&a.spec).unwrap(),
            ),
            (
                b.metadata.generation,
                serde_json::to_value(&b.spec).unwrap(),
            ),
        ]
    };
    let before = specs().await;

    // Credentials: Secrets in the test namespace only (the controller reads no other).
    let hub = lab.admin("hub").await;
    let secrets: Api<Secret> = Api::namespaced(hub.clone(), ns.name());
    let central = lab_kubeconfig("eu-central");
    let token = central["users"][0]["user"]["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let western = serde_saphyr::to_string(&lab_kubeconfig("eu-western")).unwrap();
    secrets
        .create(
            &PostParams::default(),
            &member_secret("good-western", "good-western", &western),
        )
        .await
        .unwrap();
    let hostile = |case: &Case| {
        let mut k = central.clone();
        (case.edit)(&mut k);
        serde_saphyr::to_string(&k).unwrap()
    };
    secrets
        .create(
            &PostParams::default(),
            &member_secret("hostile", "h-central", &hostile(&CASES[0])),
        )
        .await
        .unwrap();

    let mut topo = topology(
        ns.name(),
        &pair,
        json!({"star": {}}),
        b.name,
        wide_timeouts(),
    );
    topo.spec.members[0].cluster = "h-central".into();
    topo.spec.members[1].cluster = "good-western".into();
    topo.spec.members.push(topology::api::Member {
        name: "pg-c".into(),
        cluster: "nowhere".into(),
        namespace: ns.name().into(),
        cluster_name: None,
    });
    let topologies: Api<DistributedTopology> = Api::namespaced(hub.clone(), ns.name());
    topologies
        .create(&PostParams::default(), &topo)
        .await
        .unwrap();

    let controller =
        Controller::start_as(lab, ns.name(), "", &["--secret-namespace", ns.name()], None);
    for (i, case) in CASES.iter().enumerate() {
        if i > 0 {
            let patch = json!({"stringData": {"kubeconfig": hostile(case)}});
            secrets
                .patch("hostile", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        let message = wait_for(
            &format!("Degraded naming {} ({})", case.field, case.what),
            DEADLINE,
            || async {
                let t = topologies.get("pg").await.ok()?;
                let degraded = t
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == kind::DEGRADED && c.status == "True")?;
                degraded
                    .message
                    .contains(case.field)
                    .then_some((degraded.reason, degraded.message))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\ncontroller log:\n{}", controller.log()));
        let (why, message) = message;
        println!("{}: {why}: {message}", case.what);
        // A Secret to fix, told apart from an outage.
        assert_eq!(why, reason::MEMBER_CREDENTIAL_REFUSED, "{}", case.what);
        for needle in [
            "pg-a",
            "h-central",
            &format!("Secret {}/hostile", ns.name()),
            case.fix,
            "pg-c: no credential for member cluster nowhere",
        ] {
            assert!(
                message.contains(needle),
                "{}: {needle:?} not in {message}",
                case.what
            );
        }
        for secret in [token.as_str(), "/etc/shadow", "10.66.0"] {
            assert!(
                !message.contains(secret),
                "{}: {secret:?} in {message}",
                case.what
            );
        }
    }

    // Nothing was patched: same generation and spec as before; no switchover step ran.
    assert_eq!(specs().await, before, "a member Cluster's spec changed");
    let status = topologies.get("pg").await.unwrap().status.unwrap();
    assert!(
        status.operation.is_none(),
        "no operation may start while pg-a cannot be read: {:?}",
        status.operation
    );
    let log = controller.log();
    assert!(!log.contains("panicked"), "the controller panicked:\n{log}");
    assert!(!log.contains(&token), "the token is in the log");
    testkit::delete_all(lab, ns.name(), &pair).await;
}

/// Each spec is refused by the hub at admission with a 422 naming the field; nothing is stored.
#[tokio::test]
async fn hostile_topologies_are_refused_at_admission_naming_the_field() {
    let lab = harness::lab().await;
    let ns = TestNamespace::create("hostile-specs").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        lab.admin("hub").await,
        ns.name(),
        &kube::discovery::ApiResource::erase::<DistributedTopology>(&()),
    );
    let member = |name: &str, cluster: &str, namespace: &str| json!({"name": name, "cluster": cluster, "namespace": namespace});
    let base = || {
        json!({
            "members": [member("a", "eu-central", "db"), member("b", "eu-western", "db")],
            "shape": {"star": {}},
            "primary": "a",
        })
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut spec = base();
        edit(&mut spec);
        spec
    };
    let many: Vec<Value> = (0..65)
        .map(|i| member(&format!("m{i}"), "eu-central", "db"))
        .collect();
    let cascade: serde_json::Map<String, Value> =
        (1..=65).map(|i| (format!("m{i}"), json!("m0"))).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a member name that is not a DNS label",
            with(&|s| s["members"][0]["name"] = "Bad_Name".into()),
            "spec.members[0].name",
        ),
        (
            "a member cluster that is not a DNS label",
            with(&|s| s["members"][1]["cluster"] = "eu central/../x".into()),
            "spec.members[1].cluster",
        ),
        (
            "a namespace that is not a DNS label",
            with(&|s| s["members"][1]["namespace"] = "../kube-system".into()),
            "spec.members[1].namespace",
        ),
        (
            "a duplicate member name",
            with(&|s| s["members"][1]["name"] = "a".into()),
            "spec.members[1]",
        ),
        (
            "a primary that is not a member",
            with(&|s| s["primary"] = "nobody".into()),
            "spec.primary",
        ),
        (
            "65 members",
            with(&|s| s["members"] = Value::Array(many.clone())),
            "spec.members",
        ),
        (
            "a 65-edge cascade",
            with(&|s| s["shape"] = json!({"cascade": cascade.clone()})),
            "spec.shape.cascade",
        ),
        (
            "a cascade key of 100 KiB",
            with(&|s| s["shape"] = json!({"cascade": {"x".repeat(100 * 1024): "a"}})),
            "spec.shape.cascade",
        ),
        (
            "a member name of 1 MiB",
            with(&|s| s["members"][0]["name"] = "a".repeat(1024 * 1024).into()),
            "spec.members[0].name",
        ),
        (
            "two shapes",
            with(&|s| s["shape"] = json!({"star": {}, "ring": ["a", "b"]})),
            "spec.shape",
        ),
    ];
    for (i, (what, spec, field)) in cases.into_iter().enumerate() {
        let name = format!("hostile-{i}");
        let object = json!({
            "apiVersion": "federator.dev/v1alpha1",
            "kind": "DistributedTopology",
            "metadata": {"name": name},
            "spec": spec,
        });
        let started = Instant::now();
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        match api.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                assert!(
                    status.message.contains(field),
                    "{what}: {field} not in {}",
                    status.message
                );
                println!(
                    "{what}: 422 in {:?}: {}",
                    started.elapsed(),
                    status.message.chars().take(300).collect::<String>()
                );
            }
            other => panic!("{what}: admitted or failed otherwise: {other:?}"),
        }
        match api.get_opt(&name).await {
            Ok(None) => {}
            other => panic!("{what}: stored anyway: {other:?}"),
        }
    }
}

/// `federator validate -f` on files no one should feed it: an error naming the file (and line
/// where there is one), exit code 1, within seconds, never a crash or a hang.
#[tokio::test]
async fn the_cli_answers_hostile_manifest_files_without_crashing_or_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let head =
        "apiVersion: federator.dev/v1alpha1\nkind: DistributedTopology\nmetadata:\n  name: x\n";
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut laughs = vec!["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]".to_owned()];
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push(format!("  a{i}: &a{i} [{refs}]"));
    }
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "200 000 nested sequences",
            write(
                "deep.yaml",
                format!(
                    "{head}spec: {}{}\n",
                    "[".repeat(200_000),
                    "]".repeat(200_000)
                ),
            ),
            "deep.yaml:5:",
        ),
        (
            "3 000 nested maps",
            write(
                "deepmap.yaml",
                format!(
                    "{head}spec:\n{}",
                    (1..3000)
                        .map(|i| format!("{}a:\n", "  ".repeat(i)))
                        .collect::<String>()
                ),
            ),
            "deepmap.yaml:",
        ),
        (
            "an alias bomb (10^12 nodes)",
            write(
                "laughs.yaml",
                format!("{head}spec:\n{}\n", laughs.join("\n")),
            ),
            "laughs.yaml:",
        ),
        (
            "binary",
            write(
                "binary.yaml",
                String::from_utf8_lossy(&[0u8, 159, 146, 150, 255, 1, 2]).repeat(1000),
            ),
            "binary.yaml",
        ),
        (
            "a document storm",
            write("docs.yaml", "---\n".repeat(200_000)),
            "no DistributedTopology",
        ),
        (
            "an endless file",
            Path::new("/dev/zero").to_path_buf(),
            "/dev/zero: larger than 16 MiB",
        ),
    ];
    for (what, path, expected) in cases {
        let started = Instant::now();
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(federator_binary())
                .arg("validate")
                .arg("-f")
                .arg(&path)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: `federator validate` still running after 60 s"))
        .expect("running federator");
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!(
            "{what}: exit {:?} in {:?}: {}",
            output.status.code(),
            started.elapsed(),
            stderr.lines().last().unwrap_or_default()
        );
        assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{what}: {expected:?} not in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}
