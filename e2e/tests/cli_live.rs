#![forbid(unsafe_code)]
//! The CLI as kubectl users expect it, against the lab: the namespace comes from the kubeconfig
//! context; `get`/`list` with `-A` and `-o name`; `plan NAME`, `validate NAME` and
//! `switchover --dry-run` on the live topology and its members' Clusters (nothing changed);
//! `version` with the hub's side; one `--timeout` duration syntax (a bare number is a usage
//! error, exit 2); completion; and the binary run as the kubectl plugin `kubectl-federator`.

use std::path::{Path, PathBuf};
use std::process::Output;

use e2e::harness::TestNamespace;
use e2e::harness::controller::{deploy, federator_binary, wide_timeouts};
use e2e::harness::testkit;
use serde_json::json;

/// The lab's kubeconfig with the `hub` context's namespace set to `namespace`.
fn kubeconfig_with_namespace(lab_kubeconfig: &Path, namespace: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(lab_kubeconfig).unwrap();
    let mut config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    for context in config["contexts"].as_array_mut().unwrap() {
        if context["name"] == "hub" {
            context["context"]["namespace"] = json!(namespace);
        }
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

async fn run(binary: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--context", "hub"])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("running federator");
    println!(
        "$ {} {}\n{}{}(exit {:?})",
        binary.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_the_live_hub_as_kubectl_would() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("cli-live").await;
    ns.grant_federator().await;
    let pair = testkit::Pair::create(lab, ns.name()).await;
    let members = [pair.a, pair.b];
    let hub = deploy(
        lab,
        ns.name(),
        &members,
        json!({"star": {}}),
        wide_timeouts(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_with_namespace(&lab.layout.lab_kubeconfig(), ns.name(), dir.path());
    let bin = federator_binary();
    let federator = |args: &'static [&'static str]| run(&bin, &kubeconfig, args);

    // No -n anywhere: the namespace is the context's.
    let got = federator(&["get"]).await;
    assert_eq!(got.status.code(), Some(0));
    let text = stdout(&got);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("pg ") && l.contains("pg-a")),
        "{text}"
    );
    let names = federator(&["list", "-o", "name"]).await;
    assert_eq!(stdout(&names), "distributedtopology/pg\n");
    let all = federator(&["get", "-A"]).await;
    let text = stdout(&all);
    assert!(text.starts_with("NAMESPACE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{} ", ns.name())) && l.contains(" pg ")),
        "{text}"
    );

    // Plan, validate and the switchover's dry run read the topology and the members' Clusters.
    let plan = federator(&["plan", "pg", "--to", "pg-b"]).await;
    assert_eq!(plan.status.code(), Some(0));
    let text = stdout(&plan);
    assert!(text.starts_with("switchover pg-a -> pg-b"), "{text}");
    assert!(
        text.contains("Patch (JSON merge, spec.replica only)"),
        "{text}"
    );
    let dry = federator(&["switchover", "pg", "--to", "pg-b", "--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(0));
    assert_eq!(stdout(&dry), text, "the dry run shows the same plan");
    let unchanged = hub.get("pg").await.unwrap();
    assert_eq!(
        unchanged.spec.primary, "pg-a",
        "the dry run changed nothing"
    );
    let valid = federator(&["validate", "pg"]).await;
    assert_eq!(valid.status.code(), Some(0));
    assert!(
        stdout(&valid).contains("2 Clusters consistent"),
        "{}",
        stdout(&valid)
    );
    let not_member = federator(&["plan", "pg", "--to", "pg-x"]).await;
    assert_eq!(not_member.status.code(), Some(1));

    // One duration syntax: a bare number is a usage error (2), never taken as seconds.
    let bare = federator(&[
        "switchover",
        "pg",
        "--to",
        "pg-b",
        "--wait",
        "--timeout",
        "180",
    ])
    .await;
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("a unit (h, m, s, ms)"));
    assert_eq!(hub.get("pg").await.unwrap().spec.primary, "pg-a");

    let version = federator(&["version"]).await;
    assert_eq!(version.status.code(), Some(0));
    let text = stdout(&version);
    assert!(
        text.contains(&format!("Client: federator {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("Hub Kubernetes: v1."), "{text}");
    assert!(text.contains("Federator CRDs: v1alpha1 served"), "{text}");

    let completion = federator(&["completion", "bash"]).await;
    assert_eq!(completion.status.code(), Some(0));
    assert!(stdout(&completion).contains("_federator()"));

    // As the kubectl plugin: the same binary under the name kubectl looks for.
    let plugin = dir.path().join("kubectl-federator");
    std::os::unix::fs::symlink(&bin, &plugin).unwrap();
    let help = run(&plugin, &kubeconfig, &["get", "--help"]).await;
    assert!(
        stdout(&help).contains("Usage: kubectl federator get"),
        "{}",
        stdout(&help)
    );
    let via_plugin = run(&plugin, &kubeconfig, &["get", "-o", "name"]).await;
    assert_eq!(stdout(&via_plugin), "distributedtopology/pg\n");

    pair.delete().await;
}
