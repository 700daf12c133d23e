//! Automatic failover in the reconcile, purely: the `AutomaticFailover` condition (armed, or why
//! failover stays manual: the field and the fix), the term (raised by every change of primary),
//! and, from the vote round the edge collected ([`Votes`]), the verdict and the election. A
//! region counted lost by a majority gets its most advanced eligible replica promoted through
//! the explicit failover path: the decision is recorded in status first, then `spec.primary`
//! and `spec.failover` (`acceptDataLoss: true`, `requestedAt: automatic-term-<n>`) are set, and
//! the failover gate, the token-less promotion, the data-loss window and the fence on return
//! are the ones `federator failover` uses. A refused policy changes nothing else: the topology
//! stays Valid and Ready, switchovers and explicit failovers run as before.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use k8s_openapi::jiff::Timestamp;
use topology::DistributedTopologyStatus;
use topology::api::{AutomaticFailoverDecision, AutomaticFailoverStatus, DistributedTopologySpec};
use topology::autofailover::quorum::{Verdict, verdict};
use topology::autofailover::record::{Report, lease_name};
use topology::autofailover::{Armed, Candidate, arm, elect};
use topology::conditions::{kind, reason};

use super::conditions::Wanted;
use super::note::Note;
pub use crate::autofailover::hub::Votes;

/// Reasons of the `AutomaticFailover` condition beyond the policy's.
pub mod why {
    /// A member's agent never renewed in the hub's store, or not for a whole lease.
    pub const AGENT_MISSING: &str = "AgentMissing";
    /// A majority counted the primary lost but no replica may be promoted (the message says why
    /// for each).
    pub const NO_CANDIDATE: &str = "NoEligibleReplica";
    /// The decision is taken: the failover runs.
    pub const FAILING_OVER: &str = "FailingOver";
    /// A majority counted the primary lost, no replica could be promoted, and the hub reads the
    /// primary again: a new term starts with the same primary.
    pub const RESUMED: &str = "AutomaticFailoverResumed";
}

/// Whether this reconcile reads `primary`: the member pool read it, the vote round's probe
/// answered, and the members still name it primary by spec.
fn reads(status: &DistributedTopologyStatus, votes: &Votes, primary: &str) -> bool {
    status
        .members
        .iter()
        .any(|m| m.name == primary && m.reachable)
        && !votes
            .probes
            .iter()
            .any(|p| p.member == primary && p.failed.is_some())
        && status.observed_primary.as_deref() == Some(primary)
}

/// An automatic failover to start once the status that records it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoStart {
    pub to: String,
    /// `spec.failover.requestedAt`.
    pub requested_at: String,
    pub note: Note,
}

/// What automatic failover asks of this reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluated {
    pub condition: Option<Wanted>,
    pub start: Option<AutoStart>,
    pub notes: Vec<Note>,
    /// Come back after this long (the hub voter watches the heartbeat).
    pub requeue_after: Option<Duration>,
}

/// The term's primary and the term, as the hub counts them (for the edge's vote round).
pub fn term_of(
    status: Option<&DistributedTopologyStatus>,
    spec: &DistributedTopologySpec,
) -> (u64, String) {
    match status.and_then(|s| s.automatic_failover.as_ref()) {
        Some(a) => (a.term, a.primary.clone()),
        None => (
            1,
            status
                .and_then(|s| s.observed_primary.clone())
                .unwrap_or_else(|| spec.primary.clone()),
        ),
    }
}

/// The members the hub's vote round probes: the term's primary (the subject of the hub's
/// ballot) and, while the failover a recorded decision started has not made its target the
/// primary, the lost primary (the failover gate asks whether it can be read).
pub fn probed(
    status: Option<&DistributedTopologyStatus>,
    spec: &DistributedTopologySpec,
) -> Vec<String> {
    let (term, primary) = term_of(status, spec);
    let mut members = vec![primary];
    let observed = status.and_then(|s| s.observed_primary.as_deref());
    if let Some(d) = status
        .and_then(|s| s.automatic_failover.as_ref())
        .and_then(|a| a.last_decision.as_ref())
        .filter(|d| d.term + 1 == term && observed != Some(d.to.as_str()))
        && !members.contains(&d.from)
    {
        members.push(d.from.clone());
    }
    members
}

fn refused_text(problems: &[topology::autofailover::PolicyError]) -> String {
    format!(
        "automatic failover is off, failover stays manual: {}",
        topology::autofailover::policy::describe(problems)
    )
}

/// Evaluates `spec.automaticFailover` against the status about to be written (`status`: its
/// operation, observed primary and fenced members are this reconcile's).
pub fn evaluate(
    spec: &DistributedTopologySpec,
    status: &mut DistributedTopologyStatus,
    previous: &[Condition],
    votes: Option<&Votes>,
    hub_namespace: &str,
    topology: &str,
    now: Timestamp,
) -> Evaluated {
    let mut out = Evaluated::default();
    let armed = match arm(spec) {
        None => {
            status.automatic_failover = None;
            out.condition = previous
                .iter()
                .any(|c| c.type_ == kind::AUTOMATIC_FAILOVER)
                .then(|| {
                    Wanted::new(
                        kind::AUTOMATIC_FAILOVER,
                        false,
                        reason::DISABLED,
                        "spec.automaticFailover is not set: failover is manual (federator failover --accept-data-loss)",
                    )
                });
            return out;
        }
        Some(Err(problems)) => {
            out.condition = Some(Wanted::new(
                kind::AUTOMATIC_FAILOVER,
                false,
                reason::POLICY_REFUSED,
                refused_text(&problems),
            ));
            return out;
        }
        Some(Ok(armed)) => armed,
    };
    out.requeue_after = Some(armed.timing.renew_every);
    keep_term(status, spec);
    let Some(auto) = status.automatic_failover.clone() else {
        return out;
    };
    let armed_text = format!(
        "term {} (primary {}); voters {}; a primary that cannot renew with a majority fences itself within {:.1}s of its last renewal, a promotion starts no earlier than {:.1}s after it; promotable: {}",
        auto.term,
        auto.primary,
        armed.electorate.join(", "),
        armed.margins.fenced_by.as_secs_f64(),
        armed.margins.earliest_promotion.as_secs_f64(),
        armed.promotable.join(", ")
    );
    let mut condition = Wanted::new(kind::AUTOMATIC_FAILOVER, true, reason::ARMED, armed_text);

    // A decision whose spec change did not land yet: set it again.
    if let Some(decision) = auto
        .last_decision
        .as_ref()
        .filter(|d| d.term + 1 == auto.term && status.operation.is_none())
        && (spec.primary != decision.to
            || spec
                .failover
                .as_ref()
                .and_then(|f| f.requested_at.as_deref())
                != Some(decision.request.as_str()))
        && status.observed_primary.as_deref() != Some(decision.to.as_str())
    {
        out.start = Some(AutoStart {
            to: decision.to.clone(),
            requested_at: decision.request.clone(),
            note: note(
                false,
                why::FAILING_OVER,
                format!(
                    "automatic failover of term {}: setting spec.primary to {} again (the last attempt did not land)",
                    decision.term, decision.to
                ),
            ),
        });
        out.condition = Some(Wanted::new(
            kind::AUTOMATIC_FAILOVER,
            true,
            why::FAILING_OVER,
            format!(
                "{} was counted lost in term {}; {} is being promoted",
                decision.from, decision.term, decision.to
            ),
        ));
        return out;
    }

    let Some(votes) = votes.filter(|v| !v.store_unreadable) else {
        out.condition = Some(condition);
        return out;
    };
    let missing: Vec<String> = spec
        .members
        .iter()
        .filter(|m| {
            votes
                .agents
                .get(&m.name)
                .is_none_or(|a| !a.present || a.age > armed.timing.lease)
        })
        .map(|m| {
            format!(
                "{} (Lease {hub_namespace}/{} on the hub not renewed)",
                m.name,
                lease_name(hub_namespace, topology, &m.name)
            )
        })
        .collect();
    if !missing.is_empty() {
        condition = Wanted::new(
            kind::AUTOMATIC_FAILOVER,
            false,
            why::AGENT_MISSING,
            format!(
                "no heartbeat on the hub from the agent of {}: run `federator agent --topology {hub_namespace}/{topology} --member <member> --hub-kubeconfig <file>` in each member's region with a hub credential that may get this DistributedTopology and get/create/patch Leases in {hub_namespace} (docs/automatic-failover.md); until every agent renews, a lost primary may not gather a majority and failover may stay manual",
                missing.join(", ")
            ),
        );
    }
    if status.operation.is_some() {
        out.condition = Some(condition);
        return out;
    }
    match verdict(&armed.electorate, auto.term, &votes.ballots) {
        Verdict::Lost { term, voters } => {
            match elect_replica(&armed, spec, status, votes, &auto.primary) {
                Ok((to, behind_bytes)) => {
                    let request = format!("automatic-term-{term}");
                    let summary = format!(
                        "automatic failover: {} counted lost in term {term} by {} (a majority of {}); promoting {to} without a demotion token{}",
                        auto.primary,
                        voters.join(", "),
                        armed.electorate.len(),
                        behind_bytes.map_or(String::from(" (its loss is unknown: the old primary's last position was not reported)"), |b| format!(" ({b} bytes of WAL behind the old primary's last reported flush position)")),
                    );
                    status.automatic_failover = Some(AutomaticFailoverStatus {
                        term: term + 1,
                        primary: to.clone(),
                        last_decision: Some(AutomaticFailoverDecision {
                            term,
                            from: auto.primary.clone(),
                            to: to.clone(),
                            decided_at: MicroTime(now),
                            voters,
                            behind_bytes,
                            request: request.clone(),
                        }),
                    });
                    out.start = Some(AutoStart {
                        to: to.clone(),
                        requested_at: request,
                        note: note(true, "AutomaticFailoverStarted", summary.clone()),
                    });
                    condition =
                        Wanted::new(kind::AUTOMATIC_FAILOVER, true, why::FAILING_OVER, summary);
                }
                Err(why_not) if reads(status, votes, &auto.primary) => {
                    // Nobody was promoted, so the term's primary is still the only member that
                    // may be primary; but the voters that counted it lost refuse its renewals
                    // for the rest of the term, so its agent keeps it fenced for good. Once the
                    // hub reads it again, the next term starts with the same primary: its agent
                    // renews in the new term and lifts its fence once a majority accepts. Voters
                    // count the new term from when they adopt it (a "lost" ballot again needs a
                    // whole lease without an accepted renewal): the timing rule holds as for
                    // the term a failover starts.
                    let next = term + 1;
                    if let Some(a) = status.automatic_failover.as_mut() {
                        a.term = next;
                    }
                    let text = format!(
                        "{} was counted lost in term {term} by {}, but {why_not}; nothing was promoted, and the hub reads {} again: term {next} starts with {} still the primary, so that its agent can renew with a majority and lift its fence",
                        auto.primary,
                        voters.join(", "),
                        auto.primary,
                        auto.primary
                    );
                    out.notes.push(note(true, why::RESUMED, text.clone()));
                    condition = Wanted::new(kind::AUTOMATIC_FAILOVER, true, why::RESUMED, text);
                }
                Err(why_not) => {
                    let text = format!(
                        "{} counted lost in term {term} by {}, but {why_not}; nothing was promoted: fix one candidate or promote by hand (federator failover --accept-data-loss); if the hub reads {} again first, a new term starts with it as the primary",
                        auto.primary,
                        voters.join(", "),
                        auto.primary
                    );
                    condition =
                        Wanted::new(kind::AUTOMATIC_FAILOVER, false, why::NO_CANDIDATE, text);
                }
            }
        }
        Verdict::Alive { .. } | Verdict::NoQuorum { .. } => {}
    }
    out.condition = Some(condition);
    out
}

fn note(warning: bool, reason: &str, message: String) -> Note {
    Note {
        warning,
        reason: reason.to_owned(),
        action: "AutomaticFailover",
        message,
    }
}

/// The term follows the primary: set when armed, raised when the observed primary changed (a
/// switchover or a failover ended) while no automatic failover is pending.
fn keep_term(status: &mut DistributedTopologyStatus, spec: &DistributedTopologySpec) {
    let observed = status.observed_primary.clone();
    let fenced: Vec<String> = status
        .fenced_members
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let idle = status.operation.is_none();
    match status.automatic_failover.as_mut() {
        None => {
            status.automatic_failover = Some(AutomaticFailoverStatus {
                term: 1,
                primary: observed.unwrap_or_else(|| spec.primary.clone()),
                last_decision: None,
            });
        }
        Some(auto) => {
            // Never back to a member a failover left behind: its agent would take the new term
            // as its own and could lift its fence.
            let left_behind = |p: &str| {
                fenced.iter().any(|f| f == p)
                    || auto
                        .last_decision
                        .as_ref()
                        .is_some_and(|d| d.from == p && d.term + 1 == auto.term)
            };
            if idle
                && let Some(p) = observed
                && p != auto.primary
                && p == spec.primary
                && !left_behind(&p)
            {
                auto.term += 1;
                auto.primary = p;
            }
        }
    }
}

/// The most advanced eligible replica and how far behind the old primary it is.
fn elect_replica(
    armed: &Armed,
    spec: &DistributedTopologySpec,
    status: &DistributedTopologyStatus,
    votes: &Votes,
    primary: &str,
) -> Result<(String, Option<u64>), String> {
    let old = votes.agents.get(primary).and_then(|a| a.report.as_ref());
    let primary_timeline = old.and_then(|r| r.timeline).unwrap_or(0);
    let primary_flushed = old.and_then(|r| Report::lsn(r.flushed.as_ref()));
    let candidates: Vec<Candidate> = spec
        .members
        .iter()
        .filter(|m| m.name != primary)
        .map(|m| {
            let seen = votes.agents.get(&m.name);
            let report = seen.and_then(|a| a.report.as_ref());
            Candidate {
                member: m.name.clone(),
                allowed: armed.may_promote(&m.name),
                fenced: report.is_some_and(|r| r.fenced)
                    || status.fenced_members.iter().any(|f| f.name == m.name),
                report_age: seen.map_or(Duration::MAX, |a| a.age),
                timeline: report.and_then(|r| r.timeline).unwrap_or(primary_timeline),
                received: report.and_then(|r| Report::lsn(r.received.as_ref())),
                replayed: report.and_then(|r| Report::lsn(r.replayed.as_ref())),
            }
        })
        .collect();
    elect(
        &candidates,
        primary_timeline,
        primary_flushed,
        armed.budget,
        armed.timing.lease,
    )
    .map(|e| (e.member, e.behind_bytes))
    .map_err(|e| e.to_string())
}

/// How many rounds in a row a store must give an agent's renewal no answer within its bound
/// before `VoterStoreSlow` turns True: one late answer under a load spike is noise, and the
/// condition should not flap with an Event each time. Once True, one missed round keeps it.
const SLOW_ROUNDS: u32 = 2;

/// The `VoterStoreSlow` condition from the agents' reports in this round (`None`: leave it as
/// it is, the hub's store could not be read), and the Event of its change. Only on topologies
/// that armed automatic failover, as `AutomaticFailover`; removing the policy turns it False.
/// It only informs: nothing is fenced or moved because of it (the agents' own rule does that,
/// and this names why it may).
pub fn slow_stores(
    spec: &DistributedTopologySpec,
    votes: Option<&Votes>,
    previous: &[Condition],
    hub_namespace: &str,
) -> (Option<Wanted>, Option<Note>) {
    let before = previous.iter().find(|c| c.type_ == kind::VOTER_STORE_SLOW);
    let was_slow = before.is_some_and(|c| c.status == "True");
    let wanted = match arm(spec) {
        Some(Ok(armed)) => match votes.filter(|v| !v.store_unreadable) {
            None => return (None, None),
            Some(votes) => slow_condition(spec, votes, &armed, was_slow, hub_namespace),
        },
        _ if before.is_some() => Wanted::new(
            kind::VOTER_STORE_SLOW,
            false,
            reason::DISABLED,
            "automatic failover is not armed: no agent renews in the voters' stores",
        ),
        _ => return (None, None),
    };
    let changed = before.is_none_or(|c| {
        c.status != if wanted.status { "True" } else { "False" } || c.message != wanted.message
    });
    let event = match (wanted.status, was_slow) {
        (true, _) if changed => Some(note(true, wanted.reason, wanted.message.clone())),
        (false, true) => Some(note(false, wanted.reason, wanted.message.clone())),
        _ => None,
    };
    (Some(wanted), event)
}

fn slow_condition(
    spec: &DistributedTopologySpec,
    votes: &Votes,
    armed: &Armed,
    was_slow: bool,
    hub_namespace: &str,
) -> Wanted {
    let at_least = if was_slow { 1 } else { SLOW_ROUNDS };
    // Store (voter) → (the agents it kept waiting, the bound). A stale report (an agent gone
    // for a lease: AgentMissing says so) names nothing.
    let mut slow: std::collections::BTreeMap<&str, (Vec<&str>, u64)> = Default::default();
    for (agent, seen) in &votes.agents {
        let Some(report) = seen
            .report
            .as_ref()
            .filter(|_| seen.age <= armed.timing.lease)
        else {
            continue;
        };
        for s in report.slow_stores.iter().filter(|s| s.rounds >= at_least) {
            let entry = slow.entry(s.voter.as_str()).or_default();
            entry.0.push(agent.as_str());
            entry.1 = entry.1.max(s.bound_ms);
        }
    }
    if slow.is_empty() {
        return Wanted::new(
            kind::VOTER_STORE_SLOW,
            false,
            reason::STORES_WITHIN_BOUND,
            "every voter's store answered the agents' renewals within their bound (renewEvery)",
        );
    }
    let named: Vec<String> = slow
        .iter()
        .map(|(voter, (agents, bound_ms))| {
            let store = if *voter == topology::autofailover::HUB_VOTER {
                format!("the hub's store (namespace {hub_namespace} of the hub)")
            } else {
                spec.members.iter().find(|m| m.name == *voter).map_or_else(
                    || format!("{voter}'s store"),
                    |m| {
                        format!(
                            "{voter}'s store (namespace {} of Kubernetes cluster {})",
                            m.namespace, m.cluster
                        )
                    },
                )
            };
            format!(
                "{store} gave the renewals of the agent of {} no answer within their bound of {:.2}s (slower than that, or cut off)",
                agents.join(" and the agent of "),
                Duration::from_millis(*bound_ms).as_secs_f64()
            )
        })
        .collect();
    let every = armed.timing.renew_every.as_secs_f64();
    Wanted::new(
        kind::VOTER_STORE_SLOW,
        true,
        reason::STORE_SLOWER_THAN_BOUND,
        format!(
            "{}. A store that misses the bound does not count toward that agent's majority: if the stores of a majority of the {} voters miss it for fenceAfter ({:.2}s), a healthy primary fences itself and is failed over. Fix: make that API server answer a Lease GET within renewEvery/2 ({:.2}s) and a PATCH within renewEvery ({every:.2}s) from the agent's region (its load, its network path), or raise renewEvery to at least twice its p99 Lease GET latency and detectionTime with it (the timing rule, docs/automatic-failover.md); the agent's federator_agent_store_renewal_seconds against federator_agent_store_renewal_bound_seconds shows it. Nothing is fenced or moved because of this condition",
            named.join("; "),
            armed.electorate.len(),
            armed.timing.fence_after.as_secs_f64(),
            every / 2.0,
        ),
    )
}

/// A Warning Event when the condition turns to a refusal or its message changes (not one per
/// reconcile).
pub fn announce(wanted: &Wanted, previous: &[Condition]) -> Option<Note> {
    if wanted.status {
        return None;
    }
    let before = previous
        .iter()
        .find(|c| c.type_ == kind::AUTOMATIC_FAILOVER);
    if before.is_some_and(|c| c.reason == wanted.reason && c.message == wanted.message) {
        return None;
    }
    Some(note(
        wanted.reason != reason::DISABLED,
        wanted.reason,
        wanted.message.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;
    use topology::DistributedTopologyStatus;
    use topology::api::{AutomaticFailoverDecision, AutomaticFailoverStatus};

    use super::probed;

    #[test]
    fn the_round_probes_the_terms_primary_and_the_lost_one_until_its_failover_ends() {
        let spec = crate::controller::decide::tests::Sim::ring(&["a", "b"])
            .topo
            .spec;
        assert_eq!(probed(None, &spec), ["a"]);
        let decided = DistributedTopologyStatus {
            observed_primary: None,
            automatic_failover: Some(AutomaticFailoverStatus {
                term: 2,
                primary: "b".into(),
                last_decision: Some(AutomaticFailoverDecision {
                    term: 1,
                    from: "a".into(),
                    to: "b".into(),
                    decided_at: MicroTime(Timestamp::UNIX_EPOCH),
                    voters: vec!["hub:".into(), "b".into()],
                    behind_bytes: None,
                    request: "automatic-term-1".into(),
                }),
            }),
            ..DistributedTopologyStatus::default()
        };
        // Decided, b not primary yet: the gate needs to know whether a can be read.
        assert_eq!(probed(Some(&decided), &spec), ["b", "a"]);
        // b is the primary: only the term's primary.
        let done = DistributedTopologyStatus {
            observed_primary: Some("b".into()),
            ..decided.clone()
        };
        assert_eq!(probed(Some(&done), &spec), ["b"]);
    }
}
