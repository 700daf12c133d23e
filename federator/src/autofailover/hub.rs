//! The hub's part of a vote round, at the edge of the reconcile: read every member's Lease in
//! the hub's store, keep the hub voter's memory of their renewals (on the controller's
//! monotonic clock), probe the primary's region on the round's own period (in the background:
//! a silent region never makes the reconcile wait), cast the hub's own
//! ballot about the term's primary (taking the "lost" promise in the store first), and hand the
//! ballots and the agents' reports to the pure decision (`controller::decide::autofailover`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use topology::DistributedTopology;
use topology::autofailover::quorum::{Ballot, Reach, Verdict, verdict};
use topology::autofailover::record::{Report, lease_name};
use topology::autofailover::{Armed, HUB_VOTER};

use super::store::{Read, Store};
use super::voter::Voter;

/// One member's agent as the hub sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSeen {
    /// Its last report in the hub's store.
    pub report: Option<Report>,
    /// It renewed at least once (a Lease with a renewal is in the hub's store).
    pub present: bool,
    /// Since the hub last saw its renewal change (or first looked), on the hub's clock.
    pub age: Duration,
}

/// The round's reach probe of the primary's region: `GET /version` on its API server, bounded
/// by [`Timing::reach_probe_timeout`](topology::autofailover::Timing::reach_probe_timeout)
/// (the policy's, not the member pool's liveness timeout, so the hub's ballot follows the
/// policy's detection time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReachProbe {
    /// The member probed (the term's primary).
    pub member: String,
    /// Why it counts as not answering (safe to show: no credential content); `None`: answered.
    pub failed: Option<String>,
    /// How long the probe took (its bound when it timed out).
    pub took: Duration,
}

/// What a vote round collected: the input of the pure decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Votes {
    /// The hub's ballot and those the members' agents posted, about the term's primary.
    pub ballots: Vec<Ballot>,
    pub agents: BTreeMap<String, AgentSeen>,
    /// The hub's store could not be read: nothing is known this round.
    pub store_unreadable: bool,
    /// The last finished probes: the term's primary's region, and the lost primary's while the
    /// failover a decision started runs (`controller::decide::autofailover::probed`).
    pub probes: Vec<ReachProbe>,
}

fn silent(within: Duration) -> String {
    format!(
        "its API server did not answer GET /version within {:.2}s (the automatic-failover reach probe: fenceAfter, at most half of detectionTime − renewEvery)",
        within.as_secs_f64()
    )
}

/// Asks the primary's region `GET /version` within `within`: any HTTP answer counts (a 401 or
/// 403 is the member pool's to report), a timeout, a refused connection or a broken answer does
/// not. `client`: the member pool's client for that region, or why there is none.
pub async fn probe(
    member: &str,
    client: Result<kube::Client, String>,
    within: Duration,
) -> ReachProbe {
    let started = Instant::now();
    let failed = match client {
        Err(why) => Some(why),
        Ok(client) => match tokio::time::timeout(within, client.apiserver_version()).await {
            Ok(Ok(_) | Err(kube::Error::Api(_))) => None,
            Ok(Err(e)) => Some(format!("GET /version failed: {e}")),
            Err(_) => Some(silent(within)),
        },
    };
    ReachProbe {
        member: member.to_owned(),
        failed,
        took: started.elapsed(),
    }
}

/// The hub voter's memory of every topology (by `namespace/name`), on one monotonic clock.
pub struct HubVoters {
    started: Instant,
    voters: Mutex<BTreeMap<String, Voter>>,
    /// Reach probes by (topology, member): the last finished one, and since when one runs.
    probes: Arc<Mutex<BTreeMap<(String, String), Probing>>>,
}

#[derive(Default)]
struct Probing {
    last: Option<ReachProbe>,
    running_since: Option<Instant>,
}

impl Default for HubVoters {
    fn default() -> Self {
        HubVoters {
            started: Instant::now(),
            voters: Mutex::new(BTreeMap::new()),
            probes: Arc::default(),
        }
    }
}

const READ_LIMIT: Duration = Duration::from_secs(2);

impl HubVoters {
    /// Starts a reach probe of `member` of `topology` unless one is running, and returns what is
    /// known now: the last finished probe, or a failure when the running one has outlived its
    /// bound; `None` before the first one finished. A round never waits for a probe (a silent
    /// region would hold every reconcile of the topology for the whole bound); the next round,
    /// at most `renewEvery` later, sees its result.
    pub fn probe(
        &self,
        topology: &str,
        member: &str,
        client: Result<kube::Client, String>,
        within: Duration,
    ) -> Option<ReachProbe> {
        let key = (topology.to_owned(), member.to_owned());
        let mut all = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let slot = all.entry(key.clone()).or_default();
        match slot.running_since {
            Some(since) if since.elapsed() > within => {
                return Some(ReachProbe {
                    member: member.to_owned(),
                    failed: Some(silent(within)),
                    took: since.elapsed(),
                });
            }
            Some(_) => {}
            None => {
                slot.running_since = Some(Instant::now());
                let (probes, member) = (self.probes.clone(), member.to_owned());
                tokio::spawn(async move {
                    let found = probe(&member, client, within).await;
                    let mut all = probes.lock().unwrap_or_else(|e| e.into_inner());
                    let slot = all.entry(key).or_default();
                    slot.last = Some(found);
                    slot.running_since = None;
                });
            }
        }
        slot.last.clone()
    }

    /// One round for `topo` in `term` whose primary is `primary`; `pool_reached`: the member
    /// pool reads the primary's region; `probed`: what the reach probes know now
    /// ([`probe`](Self::probe)). The hub reaches the primary only if the pool reads it and no
    /// probe of it failed.
    pub async fn round(
        &self,
        hub: &kube::Client,
        topo: &DistributedTopology,
        armed: &Armed,
        (term, primary): (u64, &str),
        pool_reached: bool,
        probed: Vec<ReachProbe>,
    ) -> Votes {
        let namespace = topo.metadata.namespace.clone().unwrap_or_default();
        let name = topo.metadata.name.clone().unwrap_or_default();
        let key = format!("{namespace}/{name}");
        let store = Store::new(hub.clone(), &namespace, format!("{namespace}.{name}"));
        let limit = READ_LIMIT.min(armed.timing.renew_every);
        let members: Vec<String> = topo.spec.members.iter().map(|m| m.name.clone()).collect();
        let reading = async {
            let mut reads: BTreeMap<String, Option<Read>> = BTreeMap::new();
            for m in &members {
                let lease = lease_name(&namespace, &name, m);
                match tokio::time::timeout(limit, store.read(&lease)).await {
                    Ok(Ok(read)) => {
                        reads.insert(m.clone(), read);
                    }
                    _ => return None,
                }
            }
            Some(reads)
        };
        let Some(reads) = reading.await else {
            return Votes {
                store_unreadable: true,
                probes: probed,
                ..Votes::default()
            };
        };
        let now = self.started.elapsed();
        let answered = !probed
            .iter()
            .any(|p| p.member == primary && p.failed.is_some());
        let reach = if pool_reached && answered {
            Reach::Reachable
        } else {
            Reach::Unreachable
        };
        let retract = {
            let mut all = self.voters.lock().unwrap_or_else(|e| e.into_inner());
            let voter = all.entry(key.clone()).or_default();
            for m in &members {
                voter.observe(m, reads.get(m).and_then(Option::as_ref), term, now);
            }
            voter.may_retract(primary, term, reach)
        };
        // The hub's "lost" ballot does not outlast its evidence: once it reads the primary's
        // region again and no verdict rested on the ballot, it is withdrawn in the store first.
        if retract
            && let Some(read) = reads.get(primary).and_then(Option::as_ref)
            && read.record.lost_term == Some(term)
        {
            let lease = lease_name(&namespace, &name, primary);
            if let Ok(Ok(true)) =
                tokio::time::timeout(limit, store.retract_lost(&lease, &read.version)).await
            {
                let mut all = self.voters.lock().unwrap_or_else(|e| e.into_inner());
                if all
                    .entry(key.clone())
                    .or_default()
                    .retract(primary, reach, now)
                {
                    tracing::info!(topology = %key, %primary, term, "the hub withdrew its lost vote: it reads the primary's region again and no verdict rested on the vote; the primary's renewals count again");
                }
            }
        }
        let proposal = {
            let all = self.voters.lock().unwrap_or_else(|e| e.into_inner());
            all.get(&key)
                .and_then(|v| v.propose(HUB_VOTER, primary, reach, now, armed.timing.lease))
        };
        let mut ballots = Vec::new();
        if let Some(p) = proposal {
            let lease = lease_name(&namespace, &name, primary);
            let version = reads
                .get(primary)
                .and_then(Option::as_ref)
                .map(|r| r.version.clone());
            let took = !p.write
                || matches!(
                    tokio::time::timeout(
                        limit,
                        store.vote_lost(&lease, p.ballot.term, version.as_deref())
                    )
                    .await,
                    Ok(Ok(true))
                );
            if took {
                if p.write {
                    tracing::warn!(topology = %key, %primary, term = p.ballot.term, "the hub voted the primary's region lost: no heartbeat for a whole lease and its region cannot be read");
                }
                ballots.push(p.ballot.clone());
                let mut all = self.voters.lock().unwrap_or_else(|e| e.into_inner());
                all.entry(key.clone()).or_default().commit(primary, p);
            }
        }
        for m in members.iter().filter(|m| m.as_str() != primary) {
            if let Some(b) = reads
                .get(m)
                .and_then(Option::as_ref)
                .and_then(|r| r.record.ballot.as_ref())
                .filter(|b| b.about == primary && b.term == term)
            {
                ballots.push(Ballot {
                    voter: m.clone(),
                    term: b.term,
                    lost: b.lost,
                    heartbeat_age: Duration::from_millis(b.heartbeat_age_ms),
                });
            }
        }
        let mut all = self.voters.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(
            verdict(&armed.electorate, term, &ballots),
            Verdict::Lost { .. }
        ) {
            // Decided on these ballots (controller::decide::autofailover): the hub's ballot
            // of this term is never withdrawn now.
            all.entry(key.clone()).or_default().verdict_lost(term);
        }
        let voter = all.get(&key);
        let agents = members
            .iter()
            .map(|m| {
                let read = reads.get(m).and_then(Option::as_ref);
                let seen = AgentSeen {
                    report: read.and_then(|r| r.record.report.clone()),
                    present: read.is_some_and(|r| r.record.renewal.is_some()),
                    age: voter.and_then(|v| v.age(m, now)).unwrap_or_default(),
                };
                (m.clone(), seen)
            })
            .collect();
        Votes {
            ballots,
            agents,
            store_unreadable: false,
            probes: probed,
        }
    }
}
