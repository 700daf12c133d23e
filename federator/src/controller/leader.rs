//! Leader election on the hub: a `Lease` held with kube-lease-manager. Only the holder writes;
//! the flag is checked right before every write, so a controller that loses the lease stops at
//! its next write. Two controllers that both believe they lead are still safe: every status
//! write carries a resourceVersion precondition on the step log, and a member patch is sent only
//! after such a write succeeded.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

/// Whether this process currently holds the lease.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    /// Keeps the channel open when no election task owns the sender ([`Leadership::always`]).
    _sender: Option<Arc<watch::Sender<bool>>>,
}

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

impl Leadership {
    /// Always the leader: for a single controller without a Lease (tests, `--leader-election=false`).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Leadership {
            rx,
            _sender: Some(Arc::new(tx)),
        }
    }

    /// Joins the election; the returned handle follows the lease until the process exits.
    pub async fn elect(hub: Client, options: LeaseOptions) -> Result<Self, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(hub, &options.name)
            .with_namespace(&options.namespace)
            .with_identity(&options.identity)
            .with_field_manager("federator")
            .with_duration(options.duration.as_secs())
            .with_grace(options.grace.as_secs())
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        tokio::spawn(async move {
            match task.await {
                Ok(Ok(_)) => tracing::info!("leader election stopped"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "leader election failed; this controller no longer writes")
                }
                Err(e) => tracing::error!(error = %e, "leader election task panicked"),
            }
        });
        Ok(Leadership { rx, _sender: None })
    }

    /// True while the lease is held (false once the election task ended).
    pub fn is_leader(&self) -> bool {
        self.rx.has_changed().is_ok() && *self.rx.borrow()
    }

    /// Emits once each time this process becomes the leader, to re-reconcile everything.
    pub fn gained(&self) -> impl Stream<Item = ()> + Send + 'static {
        values(self.rx.clone()).filter_map(|leader| async move { leader.then_some(()) })
    }
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
