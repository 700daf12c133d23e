//! Starting (or attaching to) the lab once per process, and collecting what earlier runs left.

use std::path::PathBuf;

use tokio::sync::OnceCell;

use super::fixture::{HARNESS_APISERVER_PORT, HARNESS_ETCD_PORT, SharedLab};
use super::gc;
use crate::lab::{self, LabLayout, Ports};

static LAB: OnceCell<Result<SharedLab, String>> = OnceCell::const_new();
static GC: OnceCell<()> = OnceCell::const_new();

fn env_port(name: &str, default: u16) -> u16 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a port number")),
        Err(_) => default,
    }
}

/// The lab directory the harness uses: `$FEDERATOR_LAB_DIR`, else `<workspace>/target/e2e-lab`.
pub fn lab_dir() -> PathBuf {
    std::env::var_os("FEDERATOR_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-lab"))
}

/// Starts the lab, or attaches to the one already running in [`lab_dir`]. `up` is idempotent and
/// takes a file lock, so concurrent test binaries share one lab. Panics — failing the test, never
/// skipping it — with the reason if the lab cannot run (a missing etcd, Go, a taken port...).
pub async fn lab() -> &'static SharedLab {
    let result = LAB
        .get_or_init(|| async {
            let ports = Ports {
                etcd: env_port("FEDERATOR_LAB_ETCD_PORT", HARNESS_ETCD_PORT),
                apiserver: env_port("FEDERATOR_LAB_APISERVER_PORT", HARNESS_APISERVER_PORT),
            };
            let options = lab::UpOptions {
                dir: lab_dir(),
                ports,
                real: None,
            };
            match lab::up(&options).await {
                Ok(report) => Ok(SharedLab {
                    layout: LabLayout::open(&report.status.dir).map_err(|e| e.to_string())?,
                    ports: report.status.ports,
                }),
                Err(e) => Err(format!("{e}")),
            }
        })
        .await;
    match result {
        Ok(lab) => {
            GC.get_or_init(|| async {
                let collected = gc::collect(lab).await;
                if collected != gc::Collected::default() {
                    eprintln!("e2e lab: collected what earlier runs left: {collected:?}");
                }
            })
            .await;
            lab
        }
        Err(e) => panic!(
            "the e2e lab in {} could not start: {e}\n\
             The e2e tests need etcd (apt-get install etcd-server), Go (to build kube-apiserver) or \
             KUBEBUILDER_ASSETS/KUBE_APISERVER; `bash .ci/run` installs everything.",
            lab_dir().display()
        ),
    }
}
