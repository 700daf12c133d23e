//! One watch task: the CNPG Clusters of one namespace on one member, fed into the pool.

use std::sync::Weak;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, ExponentialBackoff};
use kube::{Api, Client};
use topology::cnpg::Cluster;

use super::Inner;

/// Aborts the task when dropped, so replacing or removing a member's entry stops its watches.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reconnect backoff for member watches. Faster than kube-runtime's default (0.8 s doubling to
/// 30 s, tuned to spare a struggling apiserver): a member coming back should be seen within
/// seconds, and one watch per member namespace is little load. Never gives up.
fn backoff() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// Identifies the member entry a task was started for; a task whose entry was replaced (new
/// credential) writes nothing more.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub member: String,
    pub generation: u64,
    pub namespace: String,
}

pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    pool: Weak<Inner>,
    target: Target,
    client: Client,
) -> AbortOnDrop {
    AbortOnDrop(runtime.spawn(run(pool, target, client)))
}

async fn run(pool: Weak<Inner>, target: Target, client: Client) {
    let api: Api<Cluster> = Api::namespaced(client, &target.namespace);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .backoff(backoff())
        .boxed();
    // Objects of a (re)list, applied at once when it completes so readers never see half a list.
    let mut listing: Vec<Cluster> = Vec::new();
    while let Some(event) = events.next().await {
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.on_watch_event(&target, event, &mut listing);
    }
}
