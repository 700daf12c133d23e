//! One region switch as the bench drives it: created, watched until it ended, timed on the
//! bench's clock.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use e2e::harness::SharedLab;
use futures::StreamExt;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use topology::region_api::{RegionSwitch, RegionSwitchPhase, RegionSwitchStatus};

/// How long one region switch may take, all its topologies included.
const WITHIN: Duration = Duration::from_secs(600);

/// A region switch that succeeded.
pub struct Switched {
    /// From its creation to the first version of it seen `Succeeded` (one watch delivery).
    pub took: Duration,
    /// Wall-clock bounds of the same span (to cut the writers' acknowledgements).
    pub started: SystemTime,
    pub ended: SystemTime,
    pub status: RegionSwitchStatus,
}

/// Creates region switch `name` moving `topologies` from `from` to `to`, all at once, and waits
/// until it succeeded (an error names its phase and status otherwise).
pub async fn run(
    lab: &SharedLab,
    ns: &str,
    name: &str,
    (from, to): (&str, &str),
    topologies: &[String],
) -> anyhow::Result<Switched> {
    let api: Api<RegionSwitch> = Api::namespaced(lab.admin("hub").await, ns);
    let rs: RegionSwitch = serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "RegionSwitch",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "from": from,
            "to": to,
            "topologies": topologies,
            "concurrency": topologies.len(),
            "timeout": "5m",
        },
    }))?;
    // The watch is open before the clock starts: its first delivery is the created object.
    let mut updates = e2e::harness::watch::updates(api.clone(), name);
    let (started, clock) = (SystemTime::now(), Instant::now());
    api.create(&PostParams::default(), &rs)
        .await
        .with_context(|| format!("creating region switch {name}"))?;
    let ended = tokio::time::timeout(WITHIN, async {
        while let Some(rs) = updates.next().await {
            let status = rs.status.clone().unwrap_or_default();
            match status.phase {
                Some(RegionSwitchPhase::Succeeded) => return Ok(status),
                Some(
                    phase @ (RegionSwitchPhase::Failed
                    | RegionSwitchPhase::Holding
                    | RegionSwitchPhase::Refused),
                ) => bail!("region switch {name} ended {phase:?}: {status:#?}"),
                _ => {}
            }
        }
        bail!("the watch of region switch {name} ended")
    })
    .await
    .with_context(|| format!("region switch {name} did not end within {WITHIN:?}"))??;
    Ok(Switched {
        took: clock.elapsed(),
        started,
        ended: SystemTime::now(),
        status: ended,
    })
}
