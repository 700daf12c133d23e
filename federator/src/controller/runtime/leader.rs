//! Leader election on the hub: a `Lease` held with kube-lease-manager. Only the holder writes;
//! the flag is checked right before every write. Two controllers that both believe they lead are
//! still safe: every status write carries a resourceVersion precondition on the step log, and a
//! member patch is sent only after such a write succeeded.
//!
//! kube-lease-manager alone notices a lost lease only when it next renews (or never, while the
//! hub cannot be reached: a failed renewal is retried, the flag stays up). So this module also
//! watches the Lease object itself: leadership needs the manager's word **and** a Lease that
//! names this identity with a renewal young enough. Handing the Lease to another holder ends it
//! at the watch event; an unreachable hub ends it `margin` before the Lease could expire, which
//! is before any contender may take it (contenders wait for expiry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::clock::{Monotonic, SystemMonotonic};

/// Whether this process currently holds the lease.
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    /// Past this instant the flag no longer counts, even if no task updated it yet (`None`:
    /// no deadline, [`Leadership::always`]).
    until: Arc<Mutex<Option<Instant>>>,
    /// Keeps the channel open when no election task owns the sender ([`Leadership::always`]).
    _sender: Option<Arc<watch::Sender<bool>>>,
    /// Whether this process knows who leads: the Lease watch has answered once (`/readyz`).
    known: Arc<AtomicBool>,
    /// Ends the election and releases the Lease ([`Leadership::release`]); taken once.
    release: Arc<Mutex<Option<Release>>>,
    /// Where the deadline's instants come from (the controller's one monotonic clock).
    clock: Arc<dyn Monotonic>,
}

#[derive(Debug)]
struct Release {
    /// Tells the guard to stop, which drops the manager's receiver: the manager then clears
    /// the Lease's holder and returns.
    stop: oneshot::Sender<()>,
    /// The manager's task.
    done: JoinHandle<()>,
}

/// How long a shutdown waits for the Lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to take part in the election.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub duration: Duration,
    /// How long before expiry the holder renews.
    pub grace: Duration,
}

impl LeaseOptions {
    /// How long before the Lease expires this controller stops acting if no renewal was seen:
    /// half the renewal grace, so a renewal that lands normally never interrupts leadership.
    fn margin(&self) -> Duration {
        self.grace / 2
    }
}

impl Leadership {
    /// Always the leader: for a single controller without a Lease (tests, `--leader-election=false`).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Leadership {
            rx,
            until: Arc::new(Mutex::new(None)),
            _sender: Some(Arc::new(tx)),
            known: Arc::new(AtomicBool::new(true)),
            release: Arc::default(),
            clock: Arc::new(SystemMonotonic),
        }
    }

    /// Leading or following for good, known: for unit tests.
    #[cfg(test)]
    pub(crate) fn fixed(leader: bool) -> Self {
        let mut fixed = Self::always();
        let (tx, rx) = watch::channel(leader);
        fixed.rx = rx;
        fixed._sender = Some(Arc::new(tx));
        fixed
    }

    /// Leading while the returned sender says so (unit tests of the reconcile).
    #[cfg(test)]
    pub fn switched(leading: bool) -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(leading);
        let leadership = Leadership {
            rx,
            until: Arc::new(Mutex::new(None)),
            _sender: None,
            known: Arc::new(AtomicBool::new(true)),
            release: Arc::default(),
            clock: Arc::new(SystemMonotonic),
        };
        (leadership, tx)
    }

    /// Joins the election; the returned handle follows the lease until the process exits.
    /// `clock` is the controller's monotonic clock: the Lease's deadline is measured on it.
    pub async fn elect(
        hub: Client,
        options: LeaseOptions,
        clock: Arc<dyn Monotonic>,
    ) -> Result<Self, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(hub.clone(), &options.name)
            .with_namespace(&options.namespace)
            .with_identity(&options.identity)
            .with_field_manager("federator")
            .with_duration(options.duration.as_secs())
            .with_grace(options.grace.as_secs())
            .build()
            .await?;
        let (manager_rx, task) = manager.watch().await;
        let done = tokio::spawn(async move {
            match task.await {
                Ok(Ok(_)) => tracing::info!("leader election stopped"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "leader election failed; this controller no longer writes")
                }
                Err(e) => tracing::error!(error = %e, "leader election task panicked"),
            }
        });
        let (tx, rx) = watch::channel(false);
        let until = Arc::new(Mutex::new(Some(clock.now())));
        let known = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(guard(
            hub,
            options,
            manager_rx,
            tx,
            Shared {
                until: until.clone(),
                known: known.clone(),
                clock: clock.clone(),
            },
            stopped,
        ));
        Ok(Leadership {
            rx,
            until,
            _sender: None,
            known,
            release: Arc::new(Mutex::new(Some(Release { stop, done }))),
            clock,
        })
    }

    /// Whether this process knows who leads (itself or another): false until the Lease watch
    /// first answered.
    pub fn known(&self) -> bool {
        self.known.load(Ordering::SeqCst)
    }

    /// Stops leading at once and releases the Lease (clears its holder), so that another
    /// controller takes it without waiting for it to expire. For a graceful shutdown; waits at
    /// most a few seconds for the hub.
    pub async fn release(&self) {
        let taken = self
            .release
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(Release { stop, done }) = taken else {
            return;
        };
        *self.until.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.clock.now());
        let _ = stop.send(());
        match tokio::time::timeout(RELEASE_TIMEOUT, done).await {
            Ok(_) => tracing::info!("Lease released"),
            Err(_) => {
                tracing::warn!("the Lease could not be released in time; it expires on its own")
            }
        }
    }

    /// True while the lease is held (false once the election task ended).
    pub fn is_leader(&self) -> bool {
        let in_time = self
            .until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|until| self.clock.now() < until);
        in_time && self.rx.has_changed().is_ok() && *self.rx.borrow()
    }

    /// Emits once each time this process becomes the leader, to re-reconcile everything.
    pub fn gained(&self) -> impl Stream<Item = ()> + Send + 'static {
        values(self.rx.clone()).filter_map(|leader| async move { leader.then_some(()) })
    }
}

/// What the guard task shares with the [`Leadership`] handles.
struct Shared {
    until: Arc<Mutex<Option<Instant>>>,
    known: Arc<AtomicBool>,
    clock: Arc<dyn Monotonic>,
}

/// Combines the manager's flag with what the Lease object says, until the manager stops.
async fn guard(
    hub: Client,
    options: LeaseOptions,
    mut manager: watch::Receiver<bool>,
    tx: watch::Sender<bool>,
    shared: Shared,
    mut stopped: oneshot::Receiver<()>,
) {
    let Shared {
        until,
        known,
        clock,
    } = shared;
    let api: Api<Lease> = Api::namespaced(hub, &options.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", options.name));
    let mut leases = watcher(api, config).default_backoff().boxed();
    let mut manager_says = *manager.borrow_and_update();
    let mut lease_until: Option<Instant> = None;
    loop {
        let now = clock.now();
        let leading = manager_says && lease_until.is_some_and(|u| now < u);
        *until.lock().unwrap_or_else(PoisonError::into_inner) = Some(if leading {
            lease_until.unwrap_or(now)
        } else {
            now
        });
        tx.send_if_modified(|current| {
            if *current == leading {
                return false;
            }
            tracing::info!(leading, identity = %options.identity, "leadership changed");
            *current = leading;
            true
        });
        let deadline = lease_until.filter(|_| leading);
        let expiry = async move {
            match deadline {
                Some(u) => tokio::time::sleep_until(u.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stopped => break,
            changed = manager.changed() => {
                if changed.is_err() {
                    break;
                }
                manager_says = *manager.borrow_and_update();
            }
            event = leases.next() => match event {
                Some(Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease))) => {
                    lease_until = valid_until(&lease, &options, SystemTime::now(), clock.now());
                    known.store(true, Ordering::SeqCst);
                }
                Some(Ok(watcher::Event::Delete(_))) => lease_until = None,
                Some(Ok(watcher::Event::InitDone)) => known.store(true, Ordering::SeqCst),
                Some(Ok(watcher::Event::Init)) => {}
                // The hub cannot be read: nothing new is learnt, and the deadline runs out.
                Some(Err(e)) => tracing::debug!(error = %e, "watching the Lease"),
                None => break,
            },
            () = expiry => {
                tracing::warn!(identity = %options.identity, "no renewal of the Lease seen in time; stopping all writes until one is");
            }
        }
    }
    // The election (or the Lease watch) ended: never lead again in this process.
    *until.lock().unwrap_or_else(PoisonError::into_inner) = Some(clock.now());
    tx.send_replace(false);
}

/// Until when `lease` lets this controller act: its renewal plus its duration, less the margin,
/// as an `Instant` (`now_wall` and `now` are the same moment on both clocks). `None` when the
/// Lease names another holder or lacks a renewal time or duration.
fn valid_until(
    lease: &Lease,
    options: &LeaseOptions,
    now_wall: SystemTime,
    now: Instant,
) -> Option<Instant> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(options.identity.as_str()) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    let end = renewed + Duration::from_secs(seconds);
    let end = end.checked_sub(options.margin())?;
    Some(match end.duration_since(now_wall) {
        Ok(left) => now + left,
        Err(_) => now,
    })
}

/// The values of `rx`, the current one first (tokio-stream is not a dependency).
fn values(rx: watch::Receiver<bool>) -> impl Stream<Item = bool> + Send + 'static {
    futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let value = *rx.borrow_and_update();
        Some((value, (rx, false)))
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::controller::runtime::clock::ManualClock;

    fn options() -> LeaseOptions {
        LeaseOptions {
            namespace: "federator-system".into(),
            name: "federator-controller".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }

    fn lease(holder: Option<&str>, renewed: SystemTime, seconds: Option<i32>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(Timestamp::try_from(renewed).unwrap())),
                lease_duration_seconds: seconds,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_of_ours_is_valid_until_shortly_before_it_expires() {
        let (wall, now) = (SystemTime::now(), Instant::now());
        let renewed = wall - Duration::from_secs(4);
        // 15 s lease renewed 4 s ago: others may take it in 11 s; we stop 2.5 s before that.
        let until = valid_until(&lease(Some("me"), renewed, Some(15)), &options(), wall, now);
        assert_eq!(until, Some(now + Duration::from_millis(8500)));
        // Renewed long ago (hub unreachable since): already over.
        let stale = wall - Duration::from_secs(60);
        let until = valid_until(&lease(Some("me"), stale, Some(15)), &options(), wall, now);
        assert_eq!(until, Some(now));
    }

    #[test]
    fn a_lease_of_another_holder_or_without_timing_gives_no_leadership() {
        let (wall, now) = (SystemTime::now(), Instant::now());
        for lease in [
            lease(Some("someone-else"), wall, Some(15)),
            lease(None, wall, Some(15)),
            lease(Some("me"), wall, None),
            Lease::default(),
        ] {
            assert_eq!(
                valid_until(&lease, &options(), wall, now),
                None,
                "{lease:?}"
            );
        }
    }

    #[test]
    fn the_flag_drops_at_its_deadline_without_any_event() {
        let clock = Arc::new(ManualClock::new());
        let (tx, rx) = watch::channel(true);
        let leadership = Leadership {
            rx,
            until: Arc::new(Mutex::new(Some(clock.now() + Duration::from_millis(50)))),
            _sender: Some(Arc::new(tx)),
            known: Arc::new(AtomicBool::new(true)),
            release: Arc::default(),
            clock: clock.clone(),
        };
        assert!(leadership.is_leader());
        clock.advance(Duration::from_millis(60));
        assert!(!leadership.is_leader(), "past the deadline nobody leads");
        assert!(Leadership::always().is_leader());
    }
}
