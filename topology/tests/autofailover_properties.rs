//! Automatic failover in simulated time: a hub and two or three regions, each with its own
//! drifting monotonic clock, under random partitions and agent crashes. The agent of the primary
//! renews with the voters (`autofailover::quorum`), fences by `autofailover::agent`, the hub
//! promotes on a `Lost` verdict; a fence and a promotion take effect after a random delay within
//! their bounds.
//!
//! Properties (docs/automatic-failover.md):
//! 1. never two writable primaries, for every timing `Timing::check` accepts;
//! 2. a primary whose region keeps reaching a majority of voters is never fenced and nothing is
//!    promoted;
//! 3. a hub cut off from everything promotes nothing;
//! 4. a primary region cut off from everything is fenced before anything is promoted, and a
//!    replica is promoted within the detection bound;
//!    and the check can fail: a timing `Timing::check` refuses does make two primaries;
//! 5. a primary counted lost when no replica can be promoted resumes, in a new term, once the
//!    hub reaches it again (the hub's `AutomaticFailoverResumed`), instead of staying fenced.

use std::time::Duration;

use proptest::prelude::*;
use topology::autofailover::quorum::VoterMemory;
use topology::autofailover::{
    AgentAction, AgentView, Drift, Reach, Timing, Verdict, agent_action, verdict,
};

const TICK_MS: u64 = 10;
const VOTE_EVERY_MS: u64 = 200;
/// Node 0 is the hub; node i ≥ 1 is region i.
const HUB: usize = 0;

#[derive(Clone, Debug)]
struct Scenario {
    regions: usize,
    /// Per node: clock rate error in ppm (within ±drift) and offset in ms.
    clocks: Vec<(i64, u64)>,
    /// (at ms, node a, node b, up): link changes, symmetric.
    links: Vec<(u64, usize, usize, bool)>,
    /// (at ms, region, down for ms ≤ restart bound): agent crashes.
    crashes: Vec<(u64, usize, u64)>,
    /// Seeds for the fence and promotion delays (fractions of their bounds, per mille).
    delays: Vec<u64>,
    /// What the hub's reach probe of the primary's region says in its k-th vote round
    /// (`[k % len]`, true: it answered), whatever the links are; empty: the link decides.
    hub_probe: Vec<bool>,
    run_ms: u64,
}

#[derive(Clone, Debug, Default)]
struct Agent {
    /// Down until this real ms (a crash).
    down_until: u64,
    started_at: Duration,
    last_accepted_sent_at: Option<Duration>,
    last_sent: Option<Duration>,
}

#[derive(Debug, Default)]
struct Outcome {
    two_primaries_at: Option<u64>,
    fenced_at: Vec<(u64, usize)>,
    promoted_at: Vec<(u64, usize)>,
    /// (real ms, region, new term): a primary counted lost with no candidate, resumed.
    resumed_at: Vec<(u64, usize, u64)>,
    /// Per region, writable at the end of the run.
    writable_at_end: Vec<bool>,
}

struct World<'a> {
    s: &'a Scenario,
    timing: Timing,
    nodes: usize,
    up: Vec<Vec<bool>>,
    /// Per node: its voter memory of the topology.
    voters: Vec<VoterMemory>,
    agents: Vec<Agent>,
    /// Per region: spec primary of which term (the agent reads it from its member).
    primary_term: Vec<Option<u64>>,
    /// Per region: PostgreSQL writable since (real ms), fence pending at, fenced.
    writable: Vec<bool>,
    fence_due: Vec<Option<u64>>,
    unfence_due: Vec<Option<u64>>,
    fenced: Vec<bool>,
    promote_due: Option<(u64, usize)>,
    /// Regions a failover took the primary from: fenced until re-cloned, never candidates.
    failed_over: Vec<bool>,
    term: u64,
    delay_i: usize,
    /// The hub's rule for a primary counted lost that no replica could replace
    /// (`decide/autofailover.rs`, `AutomaticFailoverResumed`); off only to show what it fixes.
    resume: bool,
    out: Outcome,
}

impl<'a> World<'a> {
    fn new(s: &'a Scenario, timing: Timing) -> Self {
        let nodes = s.regions + 1;
        let mut w = World {
            s,
            timing,
            nodes,
            up: vec![vec![true; nodes]; nodes],
            voters: Vec::new(),
            agents: vec![Agent::default(); nodes],
            primary_term: vec![None; nodes],
            writable: vec![false; nodes],
            fence_due: vec![None; nodes],
            unfence_due: vec![None; nodes],
            fenced: vec![false; nodes],
            promote_due: None,
            failed_over: vec![false; nodes],
            term: 1,
            delay_i: 0,
            resume: true,
            out: Outcome::default(),
        };
        w.voters = (0..nodes)
            .map(|n| VoterMemory::new(1, w.local(n, 0)))
            .collect();
        w.primary_term[1] = Some(1);
        w.writable[1] = true;
        w
    }

    /// Node `n`'s monotonic clock at real time `t` ms.
    fn local(&self, n: usize, t: u64) -> Duration {
        let (ppm, offset) = self.s.clocks[n];
        let scaled = (i128::from(t) * (1_000_000 + i128::from(ppm))) / 1_000_000;
        Duration::from_millis(offset) + Duration::from_micros((scaled * 1000) as u64)
    }

    fn delay(&mut self, bound: Duration) -> u64 {
        let f = self.s.delays[self.delay_i % self.s.delays.len()];
        self.delay_i += 1;
        (bound.as_millis() as u64) * f / 1000
    }

    fn link(&self, a: usize, b: usize) -> bool {
        a == b || self.up[a][b]
    }

    fn step(&mut self, t: u64) {
        for &(at, a, b, up) in &self.s.links {
            if at == t {
                self.up[a][b] = up;
                self.up[b][a] = up;
            }
        }
        for &(at, r, down) in &self.s.crashes {
            if at == t && r <= self.s.regions {
                let restart = down.min(self.timing.agent_restart_bound.as_millis() as u64);
                self.agents[r] = Agent {
                    down_until: t + restart.max(1),
                    ..Agent::default()
                };
            }
        }
        for r in 1..self.nodes {
            if self.fence_due[r].is_some_and(|d| d <= t) {
                self.fence_due[r] = None;
                self.writable[r] = false;
            }
            if self.unfence_due[r].is_some_and(|d| d <= t) {
                self.unfence_due[r] = None;
                if self.primary_term[r].is_some() {
                    self.writable[r] = true;
                }
            }
        }
        if let Some((due, r)) = self.promote_due
            && due <= t
        {
            self.promote_due = None;
            self.writable[r] = true;
            self.out.promoted_at.push((t, r));
        }
        for r in 1..self.nodes {
            self.agent_tick(r, t);
        }
        if t.is_multiple_of(VOTE_EVERY_MS) {
            self.hub_round(t);
        }
        let writable = (1..self.nodes).filter(|&r| self.writable[r]).count();
        if writable > 1 && self.out.two_primaries_at.is_none() {
            self.out.two_primaries_at = Some(t);
        }
    }

    /// The newest term region `r` has heard of (its own voter's).
    fn term_seen(&self, r: usize) -> u64 {
        self.voters[r].term
    }

    fn agent_tick(&mut self, r: usize, t: u64) {
        if self.agents[r].down_until > t {
            return;
        }
        let now = self.local(r, t);
        if self.agents[r].down_until == t || (t == 0 && self.agents[r].last_sent.is_none()) {
            self.agents[r].started_at = now;
        }
        let primary_of = self.primary_term[r];
        let is_primary = primary_of.is_some_and(|term| term >= self.term_seen(r));
        if primary_of.is_some() && !is_primary {
            // A newer term exists: this member was failed over; it stays fenced for a re-clone.
            self.primary_term[r] = None;
            if self.writable[r] && self.fence_due[r].is_none() {
                let d = self.delay(self.timing.fence_bound);
                self.fence_due[r] = Some(t + d);
            }
        }
        if is_primary {
            let due = self.agents[r]
                .last_sent
                .is_none_or(|s| now.saturating_sub(s) >= self.timing.renew_every);
            if due {
                self.agents[r].last_sent = Some(now);
                let term = primary_of.unwrap();
                let mut accepted = 0;
                for v in 0..self.nodes {
                    if self.link(r, v) {
                        let vnow = self.local(v, t);
                        if self.voters[v].renew(term, vnow) {
                            accepted += 1;
                        }
                    }
                }
                if accepted > self.nodes / 2 {
                    self.agents[r].last_accepted_sent_at = Some(now);
                }
            }
        }
        let view = AgentView {
            now,
            started_at: self.agents[r].started_at,
            last_accepted_sent_at: self.agents[r].last_accepted_sent_at,
            primary: is_primary,
            fenced: self.fenced[r],
        };
        match agent_action(&self.timing, &view) {
            AgentAction::Renew => {}
            AgentAction::Fence(_) => {
                self.fenced[r] = true;
                self.unfence_due[r] = None;
                let d = self.delay(self.timing.fence_bound);
                self.fence_due[r] = Some(t + d);
                self.out.fenced_at.push((t, r));
            }
            AgentAction::Unfence => {
                self.fenced[r] = false;
                self.fence_due[r] = None;
                self.unfence_due[r] = Some(t);
            }
        }
    }

    /// The hub's reach of `primary` in the vote round at `t`: its probe's answer when the
    /// scenario gives one (which may be wrong either way), else the link.
    fn hub_reach(&self, t: u64, primary: usize) -> Reach {
        let answered = match self.s.hub_probe.as_slice() {
            [] => self.link(HUB, primary),
            probe => probe[(t / VOTE_EVERY_MS) as usize % probe.len()],
        };
        if answered {
            Reach::Reachable
        } else {
            Reach::Unreachable
        }
    }

    /// The hub starts the next term; the voters it reaches adopt it now.
    fn start_term(&mut self, t: u64) {
        self.term += 1;
        for v in 0..self.nodes {
            if self.link(HUB, v) {
                let vnow = self.local(v, t);
                self.voters[v].new_term(self.term, vnow);
            }
        }
    }

    fn hub_round(&mut self, t: u64) {
        if self.promote_due.is_some() {
            return;
        }
        let Some(primary) = (1..self.nodes).find(|&r| self.primary_term[r] == Some(self.term))
        else {
            return;
        };
        let electorate: Vec<String> = (0..self.nodes).map(|n| n.to_string()).collect();
        let hub_reach = self.hub_reach(t, primary);
        let mut ballots = Vec::new();
        for v in 0..self.nodes {
            if !self.link(HUB, v) {
                continue;
            }
            // The voter learns the hub's term when the hub asks.
            let vnow = self.local(v, t);
            self.voters[v].new_term(self.term, vnow);
            let reach = if v == HUB {
                hub_reach
            } else if self.link(v, primary) {
                Reach::Reachable
            } else {
                Reach::Unreachable
            };
            ballots.push(self.voters[v].ballot(&v.to_string(), reach, vnow, self.timing.lease));
        }
        let lost = matches!(
            verdict(&electorate, self.term, &ballots),
            Verdict::Lost { .. }
        );
        if !lost {
            // The hub's own "lost" ballot is withdrawn once it reaches the primary again
            // (`VoterMemory::retract`): no verdict rested on it.
            let hnow = self.local(HUB, t);
            self.voters[HUB].retract(hub_reach, hnow);
        }
        if lost {
            // Promote the first replica the hub reaches that is not fenced for a re-clone.
            let Some(target) = (1..self.nodes)
                .find(|&r| r != primary && self.link(HUB, r) && !self.failed_over[r])
            else {
                if self.resume && hub_reach == Reach::Reachable {
                    // Nobody was promoted and the hub reads the primary again: the next term
                    // starts with the same primary, which the voters that counted it lost will
                    // accept renewals from (they adopt the term when the hub next asks, or at
                    // the primary's first renewal in it).
                    self.start_term(t);
                    self.primary_term[primary] = Some(self.term);
                    self.out.resumed_at.push((t, primary, self.term));
                }
                return;
            };
            self.failed_over[primary] = true;
            self.start_term(t);
            self.primary_term[target] = Some(self.term);
            self.agents[target].last_accepted_sent_at = None;
            self.agents[target].last_sent = None;
            self.agents[target].started_at = self.local(target, t);
            // A promotion can take effect at once: the worst case for safety.
            self.promote_due = Some((t, target));
        }
    }
}

fn run(s: &Scenario, timing: Timing) -> Outcome {
    run_with(s, timing, true)
}

fn run_with(s: &Scenario, timing: Timing, resume: bool) -> Outcome {
    let mut w = World::new(s, timing);
    w.resume = resume;
    let mut t = 0;
    while t <= s.run_ms {
        w.step(t);
        t += TICK_MS;
    }
    w.out.writable_at_end = w.writable.clone();
    w.out
}

fn scenario(regions: usize, drift: u32) -> impl Strategy<Value = Scenario> {
    let nodes = regions + 1;
    let d = i64::from(drift);
    let at = || (0u64..6_000).prop_map(|x| x * TICK_MS);
    (
        prop::collection::vec((-d..=d, 0u64..100_000), nodes),
        // Single link flips, and episodes that cut one node off from all others for a while
        // (the shapes that matter: the primary's region, the hub, a replica's region).
        prop::collection::vec((at(), 0..nodes, 0..nodes, any::<bool>()), 0..12),
        prop::collection::vec((at(), 0..nodes, 0u64..30_000), 0..4),
        prop::collection::vec((at(), 1..nodes, 0u64..3_000), 0..4),
        // Fence delays in per mille of the bound, biased to the worst case.
        prop::collection::vec(prop_oneof![Just(1000u64), 0u64..=1000], 1..16),
    )
        .prop_map(move |(clocks, mut links, episodes, crashes, delays)| {
            for (start, node, len) in episodes {
                for other in (0..nodes).filter(|&o| o != node) {
                    links.push((start, node, other, false));
                    links.push((start + len / TICK_MS * TICK_MS, node, other, true));
                }
            }
            Scenario {
                regions,
                clocks,
                links,
                crashes,
                delays,
                hub_probe: Vec::new(),
                run_ms: 80_000,
            }
        })
}

fn timing() -> impl Strategy<Value = Timing> {
    (
        100u64..2_000,
        1u64..6,
        0u64..3_000,
        0u64..3_000,
        0u32..5_000,
        0u64..2_000,
    )
        .prop_map(|(renew, f, bound, restart, ppm, extra)| {
            let renew_every = Duration::from_millis(renew);
            let fence_after = renew_every * (f as u32 + 1);
            let t = Timing {
                renew_every,
                lease: Duration::from_secs(1),
                fence_after,
                fence_bound: Duration::from_millis(bound),
                agent_restart_bound: Duration::from_millis(restart),
                drift: Drift { ppm },
                margin: Duration::from_millis(50),
            };
            // The shortest lease the rule accepts, plus a random extra.
            match t.check() {
                Err(topology::autofailover::TimingError::FenceNotAheadOfPromotion {
                    needed,
                    ..
                }) => Timing {
                    lease: needed + Duration::from_millis(extra),
                    ..t
                },
                _ => t,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn never_two_writable_primaries(
        (timing, s) in (2usize..=3, timing())
            .prop_flat_map(|(regions, t)| (Just(t), scenario(regions, t.drift.ppm))),
    ) {
        prop_assume!(timing.check().is_ok());
        let out = run(&s, timing);
        prop_assert!(out.two_primaries_at.is_none(), "{timing:?}\n{s:?}\n{out:?}");
    }

    /// The hub's reach comes from its own probe of the primary's region (a `GET /version`
    /// bounded by `Timing::reach_probe_timeout`), which can time out on a healthy region or,
    /// in this world, even answer for a cut-off one: safety does not rest on it.
    #[test]
    fn never_two_writable_primaries_whatever_the_hubs_probe_says(
        (timing, mut s, probe) in (2usize..=3, timing()).prop_flat_map(|(regions, t)| {
            (Just(t), scenario(regions, t.drift.ppm), prop::collection::vec(any::<bool>(), 1..8))
        }),
    ) {
        prop_assume!(timing.check().is_ok());
        s.hub_probe = probe;
        let out = run(&s, timing);
        prop_assert!(out.two_primaries_at.is_none(), "{timing:?}\n{s:?}\n{out:?}");
    }

    /// The probe's bound leaves room for two probes and a vote round inside the lease, and
    /// never exceeds fenceAfter, for every timing the rule accepts.
    #[test]
    fn the_reach_probe_ends_before_the_lease(timing in timing()) {
        prop_assume!(timing.check().is_ok());
        let probe = timing.reach_probe_timeout();
        prop_assert!(!probe.is_zero());
        prop_assert!(probe <= timing.fence_after, "{timing:?}");
        prop_assert!(probe * 2 + timing.renew_every <= timing.lease, "{timing:?}");
    }
}

fn quiet(regions: usize, links: Vec<(u64, usize, usize, bool)>, run_ms: u64) -> Scenario {
    Scenario {
        regions,
        clocks: vec![(0, 0); regions + 1],
        links,
        crashes: Vec::new(),
        delays: vec![1000],
        hub_probe: Vec::new(),
        run_ms,
    }
}

/// Cuts node `n` off from every other node at `at`.
fn isolate(n: usize, nodes: usize, at: u64) -> Vec<(u64, usize, usize, bool)> {
    (0..nodes)
        .filter(|&m| m != n)
        .map(|m| (at, n, m, false))
        .collect()
}

#[test]
fn a_primary_region_cut_off_is_fenced_before_the_promotion_within_the_detection_bound() {
    let timing = Timing::DEFAULT;
    let margins = timing.check().unwrap();
    let out = run(&quiet(2, isolate(1, 3, 10_000), 60_000), timing);
    assert_eq!(out.two_primaries_at, None, "{out:?}");
    let (fenced, who) = out.fenced_at[0];
    assert_eq!(who, 1);
    let (promoted, to) = out.promoted_at[0];
    assert_eq!(to, 2);
    // The fence was decided, and (its bound later) in place, before the promotion.
    assert!(
        fenced + timing.fence_bound.as_millis() as u64 <= promoted,
        "{out:?}"
    );
    // Detected within the bound after the last renewal (≤ 10 s) plus one vote round.
    let last_renewal = 10_000;
    assert!(
        promoted <= last_renewal + margins.detected_by.as_millis() as u64 + VOTE_EVERY_MS,
        "{out:?}"
    );
    assert_eq!(out.promoted_at.len(), 1);
}

#[test]
fn a_cut_off_hub_promotes_nothing_and_fences_nothing() {
    let out = run(&quiet(2, isolate(HUB, 3, 5_000), 60_000), Timing::DEFAULT);
    assert!(out.fenced_at.is_empty(), "{out:?}");
    assert!(out.promoted_at.is_empty(), "{out:?}");
}

#[test]
fn a_primary_that_reaches_a_majority_is_never_fenced() {
    // The primary (1) loses the hub but keeps region 2: two of three voters.
    let out = run(
        &quiet(2, vec![(5_000, 1, HUB, false)], 60_000),
        Timing::DEFAULT,
    );
    assert!(out.fenced_at.is_empty(), "{out:?}");
    assert!(out.promoted_at.is_empty(), "{out:?}");
}

#[test]
fn a_hub_only_lost_vote_does_not_outlast_its_evidence() {
    // The hub loses the primary (1) for longer than a lease and votes it lost alone (region 2
    // still reaches it: no majority). The link heals; later the primary loses region 2: the
    // hub, having withdrawn its ballot, accepts its renewals again, so the primary keeps a
    // majority (itself and the hub) and is never fenced.
    let links = vec![
        (5_000, 1, HUB, false),
        (25_000, 1, HUB, true),
        (30_000, 1, 2, false),
    ];
    let out = run(&quiet(2, links, 70_000), Timing::DEFAULT);
    assert!(out.fenced_at.is_empty(), "{out:?}");
    assert!(out.promoted_at.is_empty(), "{out:?}");
}

#[test]
fn a_hub_probe_that_always_times_out_fences_no_primary_that_reaches_a_majority() {
    // The hub's probe of the primary (1) never answers (a loaded API server), but the links
    // are up, then region 2 loses the primary: its majority is itself and the hub, whose
    // renewals keep the hub from voting it lost.
    let mut s = quiet(2, vec![(5_000, 1, 2, false)], 60_000);
    s.hub_probe = vec![false];
    let out = run(&s, Timing::TIGHT);
    assert!(out.fenced_at.is_empty(), "{out:?}");
    assert!(out.promoted_at.is_empty(), "{out:?}");
    // And a hub cut off from everything still promotes nothing, whatever its probe says.
    let mut s = quiet(2, isolate(HUB, 3, 5_000), 60_000);
    s.hub_probe = vec![false];
    let out = run(&s, Timing::TIGHT);
    assert!(
        out.fenced_at.is_empty() && out.promoted_at.is_empty(),
        "{out:?}"
    );
}

#[test]
fn a_timing_the_rule_refuses_can_make_two_primaries() {
    // Lease shorter than the fence: the check refuses it, and the world shows why.
    let timing = Timing {
        lease: Duration::from_secs(5),
        ..Timing::DEFAULT
    };
    assert!(timing.check().is_err());
    let out = run(&quiet(2, isolate(1, 3, 10_000), 60_000), timing);
    assert!(out.two_primaries_at.is_some(), "{out:?}");
}

/// The worst case the rule accounts for: the primary's region is cut off right after a renewal,
/// its agent dies just before its fence and is back only after `agent_restart_bound`, then
/// fences after `renew_every`, and the fence takes all of `fence_bound`.
fn worst_case() -> Scenario {
    let mut s = quiet(2, isolate(1, 3, 10_010), 40_000);
    s.crashes = vec![(13_990, 1, 2_000)];
    s
}

#[test]
fn the_rule_covers_an_agent_that_dies_just_before_its_fence() {
    let out = run(&worst_case(), Timing::DEFAULT);
    assert_eq!(out.two_primaries_at, None, "{out:?}");
    assert_eq!(
        out.fenced_at,
        vec![(16_990, 1)],
        "the restarted agent fenced: {out:?}"
    );
    assert_eq!(out.promoted_at.len(), 1, "{out:?}");

    // A lease that would be enough if agents never died (fence_after + fence_bound + margin =
    // 6.4 s < 8.5 s) is refused by the rule, and this world shows two writable primaries.
    let naive = Timing {
        lease: Duration::from_millis(8_500),
        ..Timing::DEFAULT
    };
    assert!(naive.check().is_err());
    let out = run(&worst_case(), naive);
    assert!(out.two_primaries_at.is_some(), "{out:?}");
}

/// The nemesis's finding (seed 2): after a failover from region 1 to region 2, region 2 is cut
/// off and counted lost, but region 1 waits for a re-clone and cannot be promoted. When region 2
/// comes back, the hub starts a new term with it: its agent renews with a majority and lifts its
/// fence. Without the rule it stays fenced for good.
#[test]
fn a_primary_counted_lost_with_no_candidate_resumes_in_a_new_term_when_the_hub_reaches_it() {
    let mut links = isolate(1, 3, 10_000);
    // Region 1 back (fenced, waiting for a re-clone), then region 2 cut off and back.
    links.extend((0..3).filter(|&m| m != 1).map(|m| (25_000, 1, m, true)));
    links.extend(isolate(2, 3, 30_000));
    links.extend((0..3).filter(|&m| m != 2).map(|m| (50_000, 2, m, true)));
    let s = quiet(2, links, 80_000);

    let out = run(&s, Timing::DEFAULT);
    assert_eq!(out.two_primaries_at, None, "{out:?}");
    assert_eq!(
        out.promoted_at.len(),
        1,
        "one failover, to region 2: {out:?}"
    );
    assert_eq!(out.promoted_at[0].1, 2, "{out:?}");
    let &[(resumed, who, term)] = out.resumed_at.as_slice() else {
        panic!("region 2 resumed once: {out:?}");
    };
    assert_eq!((who, term), (2, 3), "{out:?}");
    assert!(
        resumed >= 50_000,
        "only once the hub reaches region 2 again: {out:?}"
    );
    assert!(
        out.fenced_at.iter().any(|&(at, r)| r == 2 && at > 30_000),
        "region 2's agent fenced it while it was cut off: {out:?}"
    );
    assert_eq!(
        out.writable_at_end,
        vec![false, false, true],
        "region 2 writes again, region 1 stays fenced: {out:?}"
    );

    let without = run_with(&s, Timing::DEFAULT, false);
    assert!(without.resumed_at.is_empty());
    assert_eq!(
        without.writable_at_end,
        vec![false, false, false],
        "without the rule no region writes: {without:?}"
    );
}
