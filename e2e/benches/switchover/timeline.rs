//! What the members' Clusters did, as the bench's own watches saw it: every update of every
//! member's Cluster with a local timestamp, so each switchover's Demote patch, demotion token and
//! Promote patch can be placed in time whoever sent them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use e2e::harness::SharedLab;
use e2e::harness::testkit::{self, Member};
use futures::StreamExt;
use kube::runtime::watcher;
use topology::cnpg::Cluster;

/// One update of one member's Cluster.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    member: usize,
    primary: Option<String>,
    promotion_token: bool,
    demotion_token: bool,
}

/// When each switchover milestone was seen.
#[derive(Clone, Copy, Debug)]
pub struct Milestones {
    /// Start (the driver's first request) → the Demote patch on the old primary.
    pub demote_lag: Option<Duration>,
    /// The old primary's demotion token → the Promote patch (primary + token) on the target.
    pub promote_lag: Option<Duration>,
    /// When the Demote patch, the token and the Promote patch were seen (to split the outage).
    pub demoted: Option<Instant>,
    pub token: Option<Instant>,
    pub promoted: Option<Instant>,
    /// The first follow-up patch seen after the Promote patch: the target's token cleared, or
    /// another member told of the new primary (Bookkeeping).
    pub follow_up: Option<Instant>,
}

/// Watches every member's Clusters in the namespace until dropped.
pub struct Timeline {
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Timeline {
    pub async fn start(lab: &'static SharedLab, ns: &str, members: &[Member<'static>]) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (index, m) in members.iter().enumerate() {
            let api = testkit::clusters(lab, m.region, ns).await;
            let config = watcher::Config::default().fields(&format!("metadata.name={}", m.name));
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                let mut events = watcher::watcher(api, config).boxed();
                while let Some(event) = events.next().await {
                    if let Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) = event {
                        let at = Instant::now();
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(summary(at, index, &c));
                    }
                }
            }));
        }
        Timeline { seen, tasks }
    }

    /// The milestones of the switchover `from` → `to` that started at `start`.
    pub fn milestones(&self, start: Instant, from: usize, to: usize, to_name: &str) -> Milestones {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let after: Vec<&Seen> = seen.iter().filter(|s| s.at >= start).collect();
        let demoted = after
            .iter()
            .find(|s| s.member == from && s.primary.as_deref() == Some(to_name))
            .map(|s| s.at);
        let token = after
            .iter()
            .find(|s| s.member == from && s.demotion_token)
            .map(|s| s.at);
        let promoted = after
            .iter()
            .find(|s| s.member == to && s.primary.as_deref() == Some(to_name) && s.promotion_token)
            .map(|s| s.at);
        let follow_up = promoted.and_then(|p| {
            after
                .iter()
                .filter(|s| s.at > p)
                .find(|s| {
                    (s.member == to && !s.promotion_token)
                        || (s.member != to
                            && s.member != from
                            && s.primary.as_deref() == Some(to_name))
                })
                .map(|s| s.at)
        });
        Milestones {
            follow_up,
            demote_lag: demoted.map(|d| d - start),
            promote_lag: token
                .zip(promoted)
                .map(|(t, p)| p.saturating_duration_since(t)),
            demoted,
            token,
            promoted,
        }
    }
}

fn summary(at: Instant, member: usize, c: &Cluster) -> Seen {
    let replica = c.spec.replica.as_ref();
    Seen {
        at,
        member,
        primary: replica.and_then(|r| r.primary.clone()),
        promotion_token: replica.is_some_and(|r| r.promotion_token.is_some()),
        demotion_token: testkit::demotion_token(c).is_some(),
    }
}
