//! Part 2: the controller's footprint holding M topologies (2 M member Clusters) of the
//! emulator's **status-only** kind — no PostgreSQL behind them, so this measures the controller
//! alone, and nothing can switch over. The target: 200 topologies / 400 Clusters held
//! with RSS ≤ 40 MB and an idle CPU near zero.

use std::time::{Duration, Instant};

use e2e::harness::controller::Controller;
use e2e::harness::scale::{self, all_ready, cpu_time, create_status_only_pairs, status_kib};
use e2e::harness::{SharedLab, TestNamespace};
use kube::Api;
use topology::DistributedTopology;

const RSS_TARGET_MIB: f64 = 40.0;
/// "Near zero": at most this share of one core.
const IDLE_CPU_TARGET: f64 = 0.5;
/// After all are Ready: the last status writes and their watch echoes settle before the idle
/// window opens.
const SETTLE: Duration = Duration::from_secs(15);

pub async fn run(lab: &'static SharedLab, m: usize, idle: Duration) -> anyhow::Result<bool> {
    let ns = TestNamespace::create_on(lab, "bench-scale").await;
    ns.grant_federator().await;
    let topos: Api<DistributedTopology> = Api::namespaced(lab.admin("hub").await, ns.name());
    let created = Instant::now();
    create_status_only_pairs(lab, ns.name(), m).await;
    println!(
        "{m} status-only pairs and topologies created in {:.0} s (untimed setup)",
        created.elapsed().as_secs_f64()
    );
    let controller = Controller::start(lab, ns.name());
    let started = Instant::now();
    all_ready(&topos, m, &controller).await;
    let ready_after = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let pid = controller.pid().ok_or_else(|| {
        anyhow::anyhow!("the controller exited: {}", scale::tail(&controller.log()))
    })?;
    let (cpu_before, clock) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(idle).await;
    let (cpu_after, window) = (cpu_time(pid), clock.elapsed());
    let mib = |field| status_kib(pid, field) as f64 / 1024.0;
    let (rss, peak, anon, file) = (mib("VmRSS"), mib("VmHWM"), mib("RssAnon"), mib("RssFile"));
    let cpu = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => 100.0 * (b - a).as_secs_f64() / window.as_secs_f64(),
        _ => anyhow::bail!("the controller's CPU time could not be read"),
    };
    let (rss_met, cpu_met) = (rss <= RSS_TARGET_MIB, cpu <= IDLE_CPU_TARGET);
    println!(
        "\n| topologies (status-only members) | member Clusters | all Ready after | RSS idle (≤ {RSS_TARGET_MIB} MiB) | of it heap and stacks | of it the binary's pages | peak RSS | CPU over {:.0} s idle (≤ {IDLE_CPU_TARGET} % of a core) |",
        window.as_secs_f64()
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {m} | {} | {:.1} s | {rss:.1} MiB {} | {anon:.1} MiB | {file:.1} MiB | {peak:.1} MiB | {cpu:.2} % {} |",
        2 * m,
        ready_after.as_secs_f64(),
        if rss_met { "met" } else { "NOT met" },
        if cpu_met { "met" } else { "NOT met" }
    );
    drop(controller);
    Ok(rss_met && cpu_met)
}
