#![forbid(unsafe_code)]
//! `federator-lab up --cnpg real` when a node never gets Ready (issue #14, "bad input and
//! faults"): `up` fails naming the node, what the node last said about being Ready, the kubelet's
//! log and the usual fixes — and leaves nothing running: no process of the lab, no network
//! namespace, no cgroup, the VM-wide sysctls as they were.
//!
//! The node is made "never Ready" for a real cause: the lab withholds its CNI configuration
//! (`FEDERATOR_LAB_WITHHOLD_CNI=eu-central`, lab only), so its kubelet registers it and reports
//! the pod network not ready, as a node whose CNI is broken does. `up` waits 90 s for it
//! (`FEDERATOR_LAB_NODE_READY_WITHIN`): a kubelet on this machine reports within seconds, so the
//! failure names the kubelet's own words, not a node that had no time.
//!
//! Own lab directory (`target/e2e-lab-real-fail`) on the harness ports + 40. Needs root and
//! `make deps-real`; `make test-real` runs it.

use std::path::{Path, PathBuf};
use std::process::Output;

use e2e::lab::real::plan::lab_id;

const PORT_OFFSET: u16 = 40;
/// The sysctls the kubelet changes (docs/lab-real.md).
const SYSCTLS: [&str; 3] = [
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/kernel/panic",
    "/proc/sys/kernel/panic_on_oops",
];

fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        + PORT_OFFSET
}

fn lab(dir: &Path, args: &[&str]) -> Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_federator-lab"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("FEDERATOR_LAB_NODE_READY_WITHIN", "90")
        .env("FEDERATOR_LAB_WITHHOLD_CNI", "eu-central")
        .output()
        .expect("running federator-lab");
    println!(
        "$ federator-lab --dir {} {}\n{}{}({})",
        dir.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status
    );
    out
}

/// Processes whose command line names `dir` (every lab component does).
fn processes_of(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains(&needle).then_some(text)
        })
        .collect()
}

fn sysctls() -> Vec<String> {
    SYSCTLS
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
#[ignore = "real tier: needs root and `make deps-real`; run by `make test-real`"]
fn a_node_that_never_gets_ready_fails_up_naming_the_cause_and_leaves_nothing_running() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-lab-real-fail");
    let _ = lab(&dir, &["down", "--purge"]);
    std::fs::create_dir_all(&dir).expect("the lab directory");
    // Components name the directory as `up` resolves it.
    let dir = dir.canonicalize().expect("an absolute path");
    let before = sysctls();
    let etcd = port("FEDERATOR_LAB_ETCD_PORT", 23890).to_string();
    let apiserver = port("FEDERATOR_LAB_APISERVER_PORT", 26543).to_string();

    let out = lab(
        &dir,
        &[
            "up",
            "--cnpg",
            "real",
            "--nodes",
            "eu-central",
            "--etcd-port",
            &etcd,
            "--apiserver-port",
            &apiserver,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "up succeeded for a node without a pod network"
    );
    for needed in [
        "node eu-central-node Ready",
        // The kubelet's own report: it ran, registered the node and said why it is not Ready.
        "the node said: Ready=False",
        "NetworkReady=false",
        "Cause: FEDERATOR_LAB_WITHHOLD_CNI=eu-central withheld the node's CNI configuration",
        "Fix: unset FEDERATOR_LAB_WITHHOLD_CNI",
        "eu-central-kubelet.log",
        "nothing of the lab is left running",
    ] {
        assert!(
            stderr.contains(needed),
            "{needed:?} missing from:\n{stderr}"
        );
    }

    // Nothing left: no process, no namespace, the sysctls as they were.
    let left = processes_of(&dir);
    assert!(left.is_empty(), "still running: {left:#?}");
    let id = lab_id(&dir);
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&id))
        .collect();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    // No cgroup of the lab in any hierarchy, the hybrid layout's cgroup v2 mount included (runc
    // makes the kubelet's `kubepods` there too).
    let cgroups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|h| std::fs::read_dir(h.path()).into_iter().flatten().flatten())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(&id)))
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert_eq!(sysctls(), before, "{SYSCTLS:?}");
    let status = lab(&dir, &["status"]);
    assert!(
        !status.status.success(),
        "status says a failed lab is healthy"
    );

    let down = lab(&dir, &["down", "--purge"]);
    assert!(down.status.success());
}
