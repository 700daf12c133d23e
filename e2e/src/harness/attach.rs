//! Starting (or attaching to) the lab once per process, and collecting what earlier runs left.

use std::path::PathBuf;

use tokio::sync::OnceCell;

use super::fixture::{HARNESS_APISERVER_PORT, HARNESS_ETCD_PORT, SharedLab};
use super::gc;
use crate::lab::{self, LabLayout, Ports};

static LAB: OnceCell<Result<SharedLab, String>> = OnceCell::const_new();
static GC: OnceCell<()> = OnceCell::const_new();
static REAL_LAB: OnceCell<Result<SharedLab, String>> = OnceCell::const_new();
static REAL_GC: OnceCell<()> = OnceCell::const_new();

/// The real tier's lab takes the ports `REAL_PORT_OFFSET` above the emulator lab's, so both can
/// run at once from one set of port variables.
pub const REAL_PORT_OFFSET: u16 = 20;

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
    attach(&LAB, &GC, lab_dir(), 0, None).await.unwrap_or_else(|e| {
        panic!(
            "the e2e lab in {} could not start: {e}\n\
             The e2e tests need etcd (apt-get install etcd-server), Go (to build kube-apiserver) or \
             KUBEBUILDER_ASSETS/KUBE_APISERVER; `bash .ci/run` installs everything.",
            lab_dir().display()
        )
    })
}

/// The real tier's lab directory: `$FEDERATOR_REAL_LAB_DIR`, else
/// `<workspace>/target/e2e-lab-real`.
pub fn real_lab_dir() -> PathBuf {
    std::env::var_os("FEDERATOR_REAL_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-lab-real"))
}

/// As [`lab`], for the real-CNPG tier (docs/lab-real.md): real nodes in the three member
/// regions running the real CloudNativePG operator and one in the hub region, in [`real_lab_dir`], on the harness ports
/// plus [`REAL_PORT_OFFSET`]. Needs root and `make deps-real`; panics naming the cause otherwise.
pub async fn real_lab() -> &'static SharedLab {
    let real = Some(lab::real::RealOptions::all());
    attach(&REAL_LAB, &REAL_GC, real_lab_dir(), REAL_PORT_OFFSET, real)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the real-tier e2e lab in {} could not start: {e}\n\
                 It needs root and `make deps-real` (docs/lab-real.md).",
                real_lab_dir().display()
            )
        })
}

/// Brings the lab in `dir` up once per process (ports from the environment plus `offset`) and
/// collects what earlier runs left in it.
async fn attach(
    cell: &'static OnceCell<Result<SharedLab, String>>,
    gc_once: &'static OnceCell<()>,
    dir: PathBuf,
    offset: u16,
    real: Option<lab::real::RealOptions>,
) -> Result<&'static SharedLab, String> {
    let result = cell
        .get_or_init(|| async {
            let ports = Ports {
                etcd: env_port("FEDERATOR_LAB_ETCD_PORT", HARNESS_ETCD_PORT) + offset,
                apiserver: env_port("FEDERATOR_LAB_APISERVER_PORT", HARNESS_APISERVER_PORT)
                    + offset,
            };
            let is_real = real.is_some();
            if is_real {
                forget_other_real_tier(&dir, real.as_ref()).await?;
            }
            let options = lab::UpOptions { dir, ports, real };
            match lab::up(&options).await {
                Ok(report) => Ok(SharedLab {
                    layout: LabLayout::open(&report.status.dir).map_err(|e| e.to_string())?,
                    ports: report.status.ports,
                    real: is_real,
                }),
                Err(e) => Err(format!("{e}")),
            }
        })
        .await;
    let lab = result.as_ref().map_err(Clone::clone)?;
    gc_once
        .get_or_init(|| async {
            let collected = gc::collect(lab).await;
            if collected != gc::Collected::default() {
                eprintln!(
                    "e2e lab {}: collected what earlier runs left: {collected:?}",
                    lab.layout.root().display()
                );
            }
        })
        .await;
    Ok(lab)
}

/// The harness's real lab directory made for other nodes (e.g. before the hub got one) is the
/// harness's own: purged, so `up` starts it afresh instead of refusing.
async fn forget_other_real_tier(
    dir: &std::path::Path,
    real: Option<&lab::real::RealOptions>,
) -> Result<(), String> {
    let Ok(layout) = LabLayout::open(dir) else {
        return Ok(());
    };
    let Ok(Some(state)) = lab::state::LabState::load(&layout) else {
        return Ok(());
    };
    if state.bootstrapped_at.is_none() || state.real.as_ref() == real {
        return Ok(());
    }
    eprintln!(
        "e2e lab {}: made for other nodes ({:?}); purging it to start with {:?}",
        dir.display(),
        state.real.map(|r| r.members),
        real.map(|r| &r.members)
    );
    lab::down(dir, true)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
