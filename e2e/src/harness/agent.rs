//! `federator agent` as a child process "in" a member region: it reaches its own region's
//! apiserver directly (same region), and the hub and every other region through fault proxies
//! of its own, so a test can cut one region off from everything — its agent's links out, the
//! other agents' links to it, the controller's link to it — without touching anything else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::faults::route::write_redirected;
use crate::faults::{Fault, FaultProxy};
use crate::harness::SharedLab;
use crate::harness::controller::federator_binary;
use crate::harness::testkit::Member;
use crate::lab::{HUB, MEMBERS};

/// One agent process and its outbound links.
pub struct AgentProcess {
    pub member: String,
    pub region: String,
    child: tokio::process::Child,
    log: PathBuf,
    /// Its link to the hub.
    pub hub: FaultProxy,
    /// Its links to the other member regions, by region.
    pub peers: BTreeMap<String, FaultProxy>,
    _dir: tempfile::TempDir,
}

fn loopback(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

impl AgentProcess {
    /// Starts the agent of `member` for topology `ns/pg`, with the lab's admin credentials
    /// (`agent_rbac.rs` runs it with its charts' RBAC: [`Self::start_as`]). `extra` flags are
    /// appended.
    pub async fn start(lab: &SharedLab, ns: &str, member: Member<'_>, extra: &[&str]) -> Self {
        Self::start_as(lab, ns, member, extra, None).await
    }

    /// As [`Self::start`], with the credentials in `credentials` (`hub.kubeconfig` and
    /// `regions/<region>.kubeconfig`, e.g. `agent_identity::AgentIdentity`) instead of the lab's
    /// admin; a region without a kubeconfig there is left out.
    pub async fn start_as(
        lab: &SharedLab,
        ns: &str,
        member: Member<'_>,
        extra: &[&str],
        credentials: Option<&std::path::Path>,
    ) -> Self {
        let source = |region: &str| match credentials {
            None => lab.layout.kubeconfig(region),
            Some(dir) if region == HUB => dir.join("hub.kubeconfig"),
            Some(dir) => dir.join(format!("regions/{region}.kubeconfig")),
        };
        let root = lab.layout.root().join("faults");
        std::fs::create_dir_all(&root).expect("the lab's faults directory");
        let dir = tempfile::Builder::new()
            .prefix(&format!("agent-{}-", member.region))
            .tempdir_in(&root)
            .expect("a directory for the agent's kubeconfigs");
        let upstream = |region: &str| {
            loopback(
                lab.ports
                    .apiserver_of(region)
                    .unwrap_or_else(|| panic!("no apiserver port for {region}")),
            )
        };
        let hub = FaultProxy::start(upstream(HUB)).await.expect("hub proxy");
        let hub_kubeconfig = dir.path().join("hub.kubeconfig");
        write_redirected(&source(HUB), &hub_kubeconfig, hub.addr())
            .expect("the agent's hub kubeconfig");
        let regions = dir.path().join("regions");
        std::fs::create_dir_all(&regions).expect("the agent's regions directory");
        let mut peers = BTreeMap::new();
        for region in MEMBERS {
            let file = regions.join(format!("{region}.kubeconfig"));
            if !source(region).exists() {
                continue;
            }
            if region == member.region {
                std::fs::copy(source(region), &file).expect("own kubeconfig");
                continue;
            }
            let proxy = FaultProxy::start(upstream(region))
                .await
                .expect("peer proxy");
            write_redirected(&source(region), &file, proxy.addr()).expect("a peer kubeconfig");
            peers.insert(region.to_owned(), proxy);
        }
        let postgres = crate::emulator::dsn(lab.layout.root(), member.region, ns, member.name)
            .expect("the member's PostgreSQL");
        let log = lab
            .layout
            .log_file(&format!("agent-{ns}-{}", member.region));
        let file = std::fs::File::create(&log).expect("agent log file");
        let child = tokio::process::Command::new(federator_binary())
            .args(["agent", "--topology", &format!("{ns}/pg")])
            .args(["--member", member.name, "--cluster", member.region])
            .args(["--namespace", ns, "--postgres", &postgres])
            .arg("--hub-kubeconfig")
            .arg(&hub_kubeconfig)
            .arg("--member-kubeconfigs")
            .arg(&regions)
            .args(extra)
            .env("RUST_LOG", "info,federator=debug,kube=warn")
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting federator agent");
        AgentProcess {
            member: member.name.to_owned(),
            region: member.region.to_owned(),
            child,
            log,
            hub,
            peers,
            _dir: dir,
        }
    }

    /// Every link out of this agent's region (to the hub and the other regions) set to `fault`.
    pub fn links_out(&self, fault: &Fault) {
        self.hub.set(fault.clone());
        for p in self.peers.values() {
            p.set(fault.clone());
        }
    }

    /// Its link to `region`'s apiserver.
    pub fn peer(&self, region: &str) -> &FaultProxy {
        self.peers
            .get(region)
            .unwrap_or_else(|| panic!("{region} is not a peer of {}", self.region))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where it serves `/metrics`, `/healthz` and `/readyz` when started with
    /// `--probe-addr 127.0.0.1:0` (a random port, which it logs).
    pub async fn probe_addr(&self) -> String {
        crate::harness::controller::logged_addr(
            "the agent serving its probes",
            "serving /healthz, /readyz and /metrics",
            || self.log(),
        )
        .await
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("killing the agent");
        let _ = self.child.wait().await;
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- agent {} log (last 60 lines) ---", self.region);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
