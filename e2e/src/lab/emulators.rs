//! The CNPG emulators of the lab: one `federator-emulator` process per member, recorded in
//! `state.json` like every other component (kind `emulator`, region = the member), so
//! `lab status`, `lab stop REGION` and `lab down` treat them like the apiservers. Their
//! PostgreSQL instances are started by the emulators through `pg_ctl` and outlive an emulator
//! restart; [`stop_postgres`] stops them all at `lab down`.
//!
//! Ports, derived from the lab's apiserver port so that two labs never share them:
//! member `i` (0-based in [`MEMBERS`]) serves its admission webhook on `apiserver + 31 + i`
//! (the emulator's health check) and gives its Clusters PostgreSQL ports in
//! `apiserver - 10000 + 300·i .. +100`.

use std::path::PathBuf;
use std::time::Duration;

use super::error::{LabError, Result};
use super::layout::LabLayout;
use super::state::{Component, HealthCheck, LabState};
use super::topology::{MEMBERS, Ports};
use crate::emulator::EmulatorLayout;
use crate::emulator::postgres::run::DEFAULT_PG_BIN;
use crate::emulator::postgres::{Instance, PgBin};

/// CNPG's requeue intervals run 20× faster in the lab (50 ms operator, 500 ms instance manager).
pub const LAB_TIME_SCALE: &str = "0.05";
/// `wal_retrieve_retry_interval` in the lab: a standby retries its restore_command every
/// 100 ms, so a switchover's floor is under a second (contract §10).
pub const LAB_WAL_RETRY_MS: &str = "100";
/// The emulator connects to its apiserver, serves and registers the webhook: seconds.
const EMULATOR_READY_WITHIN: Duration = Duration::from_secs(60);

pub fn component_name(member: &str) -> String {
    format!("{member}-emulator")
}

fn member_index(member: &str) -> u16 {
    MEMBERS
        .iter()
        .position(|m| *m == member)
        .unwrap_or_default() as u16
}

/// Port of the member's admission webhook, also its health check.
pub fn webhook_port(ports: Ports, member: &str) -> u16 {
    ports.apiserver + 31 + member_index(member)
}

/// First PostgreSQL port of the member's Clusters.
pub fn pg_port_base(ports: Ports, member: &str) -> u16 {
    ports.apiserver - 10_000 + 300 * member_index(member)
}

/// `$FEDERATOR_EMULATOR`, else `federator-emulator` next to the running binary (or one level up,
/// for test binaries in `target/<profile>/deps/`).
pub fn binary() -> Result<PathBuf> {
    super::binaries::sibling(
        "FEDERATOR_EMULATOR",
        "federator-emulator",
        "finding federator-emulator (build it: cargo build -p federator-e2e --bin federator-emulator, or set FEDERATOR_EMULATOR)",
    )
}

fn component(layout: &LabLayout, ports: Ports, member: &str, program: PathBuf) -> Component {
    let name = component_name(member);
    let port = webhook_port(ports, member);
    Component {
        kind: "emulator".into(),
        region: Some(member.into()),
        ports: vec![port],
        program,
        args: vec![
            "run".into(),
            format!("--lab-dir={}", layout.root().display()),
            format!("--member={member}"),
            format!("--pg-port-base={}", pg_port_base(ports, member)),
            format!("--time-scale={LAB_TIME_SCALE}"),
            format!("--wal-retrieve-retry-interval-ms={LAB_WAL_RETRY_MS}"),
            format!("--webhook-port={port}"),
        ],
        log: layout.log_file(&name),
        health: HealthCheck::Tcp { port },
        pid: None,
        name,
    }
}

/// An API server egress selector configuration sending `cluster` traffic (pods/proxy, service
/// webhooks) through the HTTP CONNECT proxy on the unix socket `socket`.
pub fn egress_selector_yaml(socket: &std::path::Path) -> String {
    format!(
        "apiVersion: apiserver.k8s.io/v1beta1\nkind: EgressSelectorConfiguration\n\
         egressSelections:\n- name: cluster\n  connection:\n    proxyProtocol: HTTPConnect\n    \
         transport:\n      uds:\n        udsName: {}\n",
        socket.display()
    )
}

/// Writes the egress selector configuration of member `member`'s API server on the emulator
/// tier: its `cluster` traffic goes to the member's emulator ([`crate::emulator::pods`]), which
/// answers pods/proxy requests to its instance pods. Returns the file's path.
pub fn write_egress_config(layout: &LabLayout, member: &str) -> Result<PathBuf> {
    let emulator = EmulatorLayout::new(layout.root());
    let socket = emulator.egress_socket(member);
    let dir = socket
        .parent()
        .expect("the socket is inside the lab directory")
        .to_path_buf();
    std::fs::create_dir_all(&dir).map_err(LabError::io("creating", &dir))?;
    let path = dir.join("egress-selector.yaml");
    std::fs::write(&path, egress_selector_yaml(&socket)).map_err(LabError::io("writing", &path))?;
    Ok(path)
}

/// Records the emulators and starts those that are not running, waiting until each serves its
/// webhook. Called by `lab up` once the member apiservers are bootstrapped.
pub async fn start_all(layout: &LabLayout, state: &mut LabState) -> Result<Vec<String>> {
    let program = binary()?;
    for member in MEMBERS {
        state.upsert(component(layout, state.ports, member, program.clone()));
    }
    // An emulator held down by `lab stop REGION` stays down until `lab start REGION`.
    let names: Vec<String> = MEMBERS
        .iter()
        .map(|m| component_name(m))
        .filter(|n| !state.held.contains(n))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    super::running::ensure_running(layout, state, &names, EMULATOR_READY_WITHIN).await
}

/// Stops every PostgreSQL instance the emulators started in this lab (fast shutdown). Run after
/// the emulators are stopped, so none is restarted behind our back.
pub async fn stop_postgres(layout: &LabLayout) -> Vec<String> {
    let mut stopped = Vec::new();
    for member in MEMBERS {
        stopped.extend(stop_postgres_of(layout, member).await);
    }
    stopped
}

/// Stops the PostgreSQL instances of one member region (fast shutdown: a clean shutdown
/// checkpoint, the data directory kept), e.g. for `lab stop eu-central`. Its emulator must be
/// stopped first. Returns `<member>/<namespace>/<name>` of each instance stopped.
pub async fn stop_postgres_of(layout: &LabLayout, member: &str) -> Vec<String> {
    let emulator_layout = EmulatorLayout::new(layout.root());
    let bin = PgBin::new(DEFAULT_PG_BIN);
    let mut stopped = Vec::new();
    for record in emulator_layout.records(member) {
        let dir = emulator_layout.cluster_dir(member, &record.namespace, &record.name);
        let instance = Instance::new(bin.clone(), dir);
        if instance.is_running().await {
            match instance.stop().await {
                Ok(()) => stopped.push(format!("{member}/{}/{}", record.namespace, record.name)),
                Err(error) => tracing::warn!(%error, "stopping PostgreSQL"),
            }
        }
    }
    stopped
}

/// Makes sure the emulators of a running lab run, under the lab's lock: for a lab brought up
/// before emulators existed, and for tests that need them.
pub async fn ensure(layout: &LabLayout) -> Result<Vec<String>> {
    let _lock = super::running::lock(layout).await?;
    let mut state =
        LabState::load(layout)?.ok_or_else(|| LabError::NotRunning(layout.root().to_path_buf()))?;
    start_all(layout, &mut state).await
}

/// Stops every PostgreSQL instance and removes the instances' data and the WAL archives
/// (`regions/<member>/clusters/`, `object-stores/`): what `up` does when etcd starts empty.
pub async fn forget_data_plane(layout: &LabLayout) -> Result<Vec<String>> {
    let stopped = stop_postgres(layout).await;
    let emulator = EmulatorLayout::new(layout.root());
    let doomed = MEMBERS
        .iter()
        .map(|m| emulator.member_dir(m))
        // The root of every bucket: an empty destination path.
        .chain(std::iter::once(emulator.object_store("")));
    for dir in doomed {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LabError::io("removing", &dir)(e));
            }
            _ => {}
        }
    }
    if !stopped.is_empty() {
        tracing::info!(
            ?stopped,
            "etcd starts empty: stopped the PostgreSQL instances of its old Clusters"
        );
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forgetting_the_data_plane_removes_instances_and_archives_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LabLayout::create(tmp.path().join("lab")).unwrap();
        let emulator = EmulatorLayout::new(layout.root());
        let pgdata = emulator
            .cluster_dir(MEMBERS[0], "databases", "pg-a")
            .join("pgdata");
        let archive = emulator.object_store("s3://pg-a/");
        for dir in [&pgdata, &archive] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(archive.join("000000010000000000000003.partial"), b"old").unwrap();
        let kept = layout.pki_dir().join("ca.crt");
        std::fs::write(&kept, b"ca").unwrap();

        let stopped = forget_data_plane(&layout).await.unwrap();
        assert!(stopped.is_empty(), "nothing was running: {stopped:?}");
        assert!(!emulator.member_dir(MEMBERS[0]).exists());
        assert!(!emulator.object_store("").exists());
        assert!(kept.exists(), "the CA and the rest of the lab stay");
        // A second run (nothing left) is not an error.
        forget_data_plane(&layout).await.unwrap();
    }
}
