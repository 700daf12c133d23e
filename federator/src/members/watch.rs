//! One watch task: the CNPG Clusters of one namespace on one member, fed into the pool.
//!
//! The task paces its own retries instead of kube-runtime's `StreamBackoff`, which resets on
//! every `Ok` event: the watcher emits `Init` before each list attempt, so a list that always
//! fails (a namespace the credential may not read) was retried at the minimum delay forever, and
//! kube-runtime logged a warning per attempt (~10 per second with two members). Here only real
//! progress (a completed list, a change) resets the delay, and a refusal (401/403) backs off
//! slower: a human has to grant the permission.

use std::sync::Weak;
use std::time::Duration;

use backon::BackoffBuilder;
use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use topology::cnpg::Cluster;

use super::Inner;

/// Aborts the task when dropped, so replacing or removing a member's entry stops its watches.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    pub(crate) fn new(task: tokio::task::JoinHandle<()>) -> Self {
        Self(task)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A failure of the member's API server or network: retried fast (200 ms doubling to 5 s), so a
/// member coming back is seen within seconds; one watch per member namespace is little load.
const FAILURE_DELAYS: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));
/// A refusal (401/403): nothing changes until someone grants the permission, so 2 s doubling to
/// 60 s; a grant is picked up within a minute.
const REFUSAL_DELAYS: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(60));

/// How long to wait before the next attempt. Restarts only after real progress.
#[derive(Default)]
pub(crate) struct Retry {
    current: Option<(bool, backon::ExponentialBackoff)>,
}

impl Retry {
    /// The delay after a failed attempt; `refused`: the server answered 401 or 403.
    pub(crate) fn after_failure(&mut self, refused: bool) -> Duration {
        if self
            .current
            .as_ref()
            .is_none_or(|(kind, _)| *kind != refused)
        {
            let (min, max) = if refused {
                REFUSAL_DELAYS
            } else {
                FAILURE_DELAYS
            };
            let delays = backon::ExponentialBuilder::default()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build();
            self.current = Some((refused, delays));
        }
        let (_, delays) = self.current.as_mut().expect("set above");
        delays.next().unwrap_or(FAILURE_DELAYS.1)
    }

    /// A list completed or a change arrived.
    pub(crate) fn progressed(&mut self) {
        self.current = None;
    }
}

/// The HTTP status of a watch error answered by the API server, if it was.
pub(crate) fn status_code(error: &watcher::Error) -> Option<u16> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

/// The verb a failed watch step needed: the first list, or the watch that follows.
pub(crate) fn verb(error: &watcher::Error) -> &'static str {
    match error {
        watcher::Error::InitialListFailed(_) => "list",
        _ => "watch",
    }
}

/// Identifies the member entry a task was started for; a task whose entry was replaced (new
/// credential) writes nothing more.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub member: String,
    pub generation: u64,
    /// Which watch of that entry (a restarted watch gets a new one).
    pub watch: u64,
    pub namespace: String,
}

pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    pool: Weak<Inner>,
    target: Target,
    client: Client,
) -> AbortOnDrop {
    AbortOnDrop::new(runtime.spawn(run(pool, target, client)))
}

async fn run(pool: Weak<Inner>, target: Target, client: Client) {
    let api: Api<Cluster> = Api::namespaced(client, &target.namespace);
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut retry = Retry::default();
    // Objects of a (re)list, applied at once when it completes so readers never see half a list.
    let mut listing: Vec<Cluster> = Vec::new();
    while let Some(event) = events.next().await {
        let pause = match &event {
            // Emitted before each list attempt: no progress yet.
            Ok(watcher::Event::Init) => None,
            Ok(_) => {
                retry.progressed();
                None
            }
            Err(error) => Some(retry.after_failure(matches!(status_code(error), Some(401 | 403)))),
        };
        {
            let Some(pool) = pool.upgrade() else {
                return;
            };
            pool.on_watch_event(&target, event, &mut listing);
        }
        // The watcher is polled lazily: not polling it is the backoff.
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_back_off_to_a_minute_and_only_progress_restarts_the_delay() {
        let mut retry = Retry::default();
        let delays: Vec<Duration> = (0..12).map(|_| retry.after_failure(true)).collect();
        assert!(delays[0] >= REFUSAL_DELAYS.0, "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= REFUSAL_DELAYS.1 * 2),
            "{delays:?}"
        );
        assert!(
            delays[11] >= REFUSAL_DELAYS.1,
            "reaches the cap: {delays:?}"
        );
        // Attempts in the first 90 s: a handful, not hundreds.
        let mut elapsed = Duration::ZERO;
        let mut retry = Retry::default();
        let mut attempts = 0;
        while elapsed < Duration::from_secs(90) {
            elapsed += retry.after_failure(true);
            attempts += 1;
        }
        assert!(attempts <= 8, "{attempts} attempts in 90 s");

        let mut retry = Retry::default();
        let first = retry.after_failure(false);
        assert!(first < Duration::from_secs(1), "{first:?}");
        for _ in 0..10 {
            retry.after_failure(false);
        }
        assert!(retry.after_failure(false) >= FAILURE_DELAYS.1);
        retry.progressed();
        assert!(retry.after_failure(false) < Duration::from_secs(1));
    }

    #[test]
    fn the_status_and_the_verb_of_a_refused_list_are_read() {
        let forbidden = kube::core::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: "clusters.postgresql.cnpg.io is forbidden".into(),
            ..kube::core::Status::default()
        };
        let error = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(forbidden)));
        assert_eq!(status_code(&error), Some(403));
        assert_eq!(verb(&error), "list");
        assert_eq!(status_code(&watcher::Error::NoResourceVersion), None);
    }
}
