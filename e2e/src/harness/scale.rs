//! Many topologies at once, for the controller's behaviour and footprint at scale: `n` pairs of
//! the emulator's **status-only** Clusters (`emulator::status_only`: the healthy status of their
//! role, no PostgreSQL, so that 400 fit on the lab machine; nothing can switch over), one star
//! topology over each, and what a test reads of the controller process (`/proc`: resident memory,
//! CPU time). Used by `e2e/tests/faults_load.rs` and the region switch bench's footprint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use topology::DistributedTopology;
use topology::conditions::kind;

use crate::emulator::status_only::STATUS_ONLY;
use crate::harness::SharedLab;
use crate::harness::controller::{Controller, topology_named, wide_timeouts};
use crate::harness::testkit::{self, Member};
use crate::lab::health::wait_for;

/// How long all of them may take to be Ready.
pub const ALL_READY_WITHIN: Duration = Duration::from_secs(600);

/// The topology of pair `i`; its members are `<name>-a` (eu-central, the primary) and
/// `<name>-b` (eu-western).
pub fn name(i: usize) -> String {
    format!("db{i:03}")
}

/// The system identifier of pair `i` (both members report it).
fn system_id(i: usize) -> String {
    format!("{}", 7_300_000_000_000_000_000u64 + i as u64)
}

/// `n` pairs of status-only Clusters (A in eu-central the primary, B in eu-western its replica)
/// and one star topology over each, 16 pairs at a time.
pub async fn create_status_only_pairs(lab: &'static SharedLab, ns: &str, n: usize) {
    let api_a = testkit::clusters(lab, "eu-central", ns).await;
    let api_b = testkit::clusters(lab, "eu-western", ns).await;
    let topos: Api<DistributedTopology> = Api::namespaced(lab.admin("hub").await, ns);
    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let (api_a, api_b, topos) = (api_a.clone(), api_b.clone(), topos.clone());
            async move {
                let (a, b) = (format!("{}-a", name(i)), format!("{}-b", name(i)));
                let members = [
                    Member {
                        name: &a,
                        region: "eu-central",
                    },
                    Member {
                        name: &b,
                        region: "eu-western",
                    },
                ];
                for (api, this, source) in [(&api_a, &a, &b), (&api_b, &b, &a)] {
                    let mut cluster = testkit::blog_cluster(ns, this, &a, source, &members, true);
                    cluster
                        .metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(STATUS_ONLY.to_owned(), system_id(i));
                    testkit::create(api, &cluster).await;
                }
                let topo = topology_named(
                    &name(i),
                    ns,
                    &members,
                    json!({"star": {}}),
                    &a,
                    wide_timeouts(),
                );
                topos
                    .create(&PostParams::default(), &topo)
                    .await
                    .expect("creating a topology");
            }
        })
        .await;
}

/// Waits until all `n` topologies are Ready at their current generation (printing the count as
/// it grows); the sum of those generations (a check that a later phase saw new ones).
pub async fn all_ready(topos: &Api<DistributedTopology>, n: usize, controller: &Controller) -> i64 {
    let last = AtomicUsize::new(0);
    let last = &last;
    let ready = wait_for(
        &format!("all {n} topologies Ready at their generation"),
        ALL_READY_WITHIN,
        || async move {
            let list = topos.list(&ListParams::default()).await.ok()?;
            let ready: Vec<i64> = list
                .items
                .iter()
                .filter_map(|t| {
                    let generation = t.metadata.generation?;
                    t.status
                        .as_ref()?
                        .conditions
                        .iter()
                        .any(|c| {
                            c.type_ == kind::READY
                                && c.status == "True"
                                && c.observed_generation == Some(generation)
                        })
                        .then_some(generation)
                })
                .collect();
            if last.swap(ready.len(), Ordering::Relaxed) != ready.len() {
                println!("{} of {n} Ready", ready.len());
            }
            (ready.len() == n).then(|| ready.iter().sum())
        },
    )
    .await;
    ready.unwrap_or_else(|e| panic!("{e}\ncontroller log (tail):\n{}", tail(&controller.log())))
}

/// The last 60 lines of a log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The resident memory of process `pid`, KiB (`VmRSS`; 0 when it cannot be read).
pub fn rss_kib(pid: Option<u32>) -> u64 {
    pid.map_or(0, |pid| status_kib(pid, "VmRSS"))
}

/// A memory line of `/proc/<pid>/status`, KiB: `VmRSS`, `VmHWM` (the highest RSS so far),
/// `RssAnon` (heap and stacks: what the process holds), `RssFile` (its binary's and libraries'
/// pages); 0 when it cannot be read.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.split(':').next() == Some(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The CPU time process `pid` used so far (user + system), `None` when it cannot be read.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command (in parentheses, which may hold spaces): fields 3…; utime and stime are
    // fields 14 and 15, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux the lab runs on (the kernel's `USER_HZ`, fixed
/// by its ABI whatever `HZ` it was built with).
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_memory_and_cpu() {
        let pid = std::process::id();
        assert!(rss_kib(Some(pid)) > 0);
        assert!(status_kib(pid, "RssAnon") > 0);
        assert!(status_kib(pid, "VmHWM") >= status_kib(pid, "VmRSS") / 2);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_time(pid).is_some_and(|t| t > Duration::ZERO));
        assert_eq!(rss_kib(None), 0);
    }
}
