//! Property tests of the switchover planner against an emulated CNPG (tests/support/world.rs):
//! random shapes, sizes 2–50, primaries, targets, faults and crash points.
//!
//! Properties (switchover-design.md):
//! 1. after every patch, at most one member is primary by spec (switchover; for a failover, among
//!    the members that can be read);
//! 2. no patch makes a member primary without a promotion token unless a failover was asked for,
//!    and no two PostgreSQLs ever accept writes during a switchover;
//! 3. a step repeated after a crash changes nothing, and a sent patch is never asked for again;
//! 4. the machine terminates: Done, or Hold with a reason, within a bound linear in the size;
//! 5. a ring's sources never change.

#[path = "support/world.rs"]
mod support_world;

use proptest::prelude::*;
use serde_json::Value;
use support_world::{Fault, ShapeKind, World, topology};
use topology::api::Outcome;
use topology::cnpg::{Role, role_of};
use topology::conditions::reason;
use topology::plan::{
    Context, Decision, HookLook, HookState, NO_HOOKS, Progress, next_step, patch,
};
use topology::region_api::{Hook, Hooks};
use topology::{OperationKind, StepKind, Topology};

/// How the run ended.
#[derive(Debug, PartialEq)]
enum End {
    Done(Outcome),
    Hold(&'static str),
}

/// A deterministic stream of choices (crash points, hiccups) from the proptest seed.
struct Choices(u64);

impl Choices {
    fn next(&mut self, below: u64) -> u64 {
        // xorshift64*: small and good enough to spread crash points.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % below
    }
}

struct Run {
    end: End,
    patches: Vec<(String, Value)>,
    world: World,
    /// Hook ends and patches sent, in order.
    trace: Vec<Trace>,
}

/// One thing a run did.
#[derive(Clone, Debug, PartialEq)]
enum Trace {
    /// A hook of a hook step ended.
    Hook {
        step: StepKind,
        index: usize,
        ok: bool,
    },
    /// A patch of this step was sent.
    Patch(StepKind),
}

fn makes_primary(world: &World, member: &str, patch_value: &Value) -> bool {
    let m = &world.truth[member];
    let after = patch::apply(m.replica.as_ref(), patch_value);
    role_of(&m.cluster_name, m.replica.as_ref()) == Role::Replica
        && role_of(&m.cluster_name, after.as_ref()) == Role::Primary
}

/// Drives `next_step` against the world until it ends, checking properties 1–3 on the way.
fn drive(topology: &Topology, world: World, kind: OperationKind, to: &str, seed: u64) -> Run {
    drive_hooked(topology, world, kind, to, seed, &NO_HOOKS, None)
}

/// As [`drive`], with `hooks` declared: a hook answers "waiting" now and then, then done, or
/// failed for the hook `failing` (its step and index).
fn drive_hooked(
    topology: &Topology,
    world: World,
    kind: OperationKind,
    to: &str,
    seed: u64,
    hooks: &Hooks,
    failing: Option<(StepKind, usize)>,
) -> Run {
    let mut world = world;
    let mut trace = Vec::new();
    let mut choices = Choices(seed | 1);
    let from = topology.primary().to_owned();
    let mut progress = Progress::start(kind, &from, to, world.now);
    let mut patches = Vec::new();
    let bound = 400 + 20 * topology.names().len();
    for _ in 0..bound {
        let look = progress.step.is_hooks().then(|| HookLook {
            step: progress.step,
            index: progress.hook,
            state: if choices.next(3) == 0 {
                HookState::Waiting("not there yet".into())
            } else if failing == Some((progress.step, progress.hook)) {
                HookState::Failed("refused".into())
            } else {
                HookState::Done("done".into())
            },
        });
        let ctx = Context {
            topology,
            now: world.now,
            hooks,
            hook: look.as_ref(),
        };
        let decision = next_step(&world.snapshot(), &progress, &ctx);
        match decision {
            Decision::Act(action) => {
                let (member, p) = (action.member.clone(), action.patch.clone());
                let step = action.step;
                assert!(
                    !world.hidden.contains(&member),
                    "acted on an unreadable member"
                );
                // Property 2: a promotion by spec carries a token unless failover.
                if makes_primary(&world, &member, &p) && kind == OperationKind::Switchover {
                    let token = &p["spec"]["replica"]["promotionToken"];
                    assert!(token.is_string(), "promotion without a token: {p}");
                }
                // Crash before the patch reaches the member: the controller restarts and asks
                // again with the same durable progress.
                if choices.next(5) == 0 {
                    continue;
                }
                world.apply(&member, &p);
                // Property 1, after this patch.
                let primaries = world.primaries_by_spec(kind == OperationKind::Failover);
                assert!(
                    primaries.len() <= 1,
                    "two primaries by spec after {p} on {member}: {primaries:?}"
                );
                // Property 3: a crash right after sending repeats the same patch: no change.
                let once = world.truth[&member].replica.clone();
                if choices.next(4) == 0 {
                    world.apply(&member, &p);
                    assert_eq!(
                        world.truth[&member].replica, once,
                        "patch {p} is not idempotent"
                    );
                }
                let again = next_step(&world.snapshot(), &progress, &ctx);
                assert_ne!(
                    again,
                    Decision::Act(action),
                    "the machine asks for a patch that is already applied"
                );
                trace.push(Trace::Patch(step));
                patches.push((member, p));
            }
            Decision::Advance(transition) => {
                progress = progress.advance(&transition, world.now);
            }
            Decision::HookEnded(end) => {
                trace.push(Trace::Hook {
                    step: progress.step,
                    index: progress.hook,
                    ok: end.ok,
                });
                progress = progress.end_hook(&end, world.now);
            }
            Decision::Wait(_) => {
                // Sometimes a member hiccups (cannot be read for a tick).
                world.hidden.clear();
                if choices.next(6) == 0 {
                    let names: Vec<String> = world.truth.keys().cloned().collect();
                    let pick = names[choices.next(names.len() as u64) as usize].clone();
                    world.hidden.insert(pick);
                }
                world.tick(5);
            }
            Decision::Hold { reason, .. } => {
                return Run {
                    end: End::Hold(reason),
                    patches,
                    world,
                    trace,
                };
            }
            Decision::Done(outcome) => {
                return Run {
                    end: End::Done(outcome),
                    patches,
                    world,
                    trace,
                };
            }
        }
        // Property 2 (facts): never two writable PostgreSQLs in a switchover.
        if kind == OperationKind::Switchover {
            assert!(
                world.running_primary.len() <= 1,
                "two running primaries: {:?}",
                world.running_primary
            );
        }
    }
    panic!(
        "no Done or Hold after {bound} decisions; stuck at {:?}",
        progress.step
    );
}

fn shape_strategy() -> impl Strategy<Value = ShapeKind> {
    prop_oneof![
        Just(ShapeKind::Star),
        Just(ShapeKind::Ring),
        Just(ShapeKind::Cascade)
    ]
}

fn fault_strategy() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => Just(Fault::None),
        1 => Just(Fault::DemotionNeverStarts),
        1 => Just(Fault::DemotionStuck),
        1 => Just(Fault::TokenWiped),
        1 => Just(Fault::ForeignSysid),
        1 => Just(Fault::FatalToken),
    ]
}

/// A topology with a primary and a different target, plus its permutation and cascade parents.
fn scenario() -> impl Strategy<Value = (Topology, String, ShapeKind)> {
    (2usize..=50, shape_strategy()).prop_flat_map(|(n, shape)| {
        (
            Just(n),
            Just(shape),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            proptest::collection::vec(0usize..1000, n),
            0..n,
            1..n,
        )
            .prop_map(|(n, shape, order, parents, primary, offset)| {
                let topology = topology(n, shape, primary, &order, &parents);
                let to = format!("m{}", (primary + offset) % n);
                (topology, to, shape)
            })
    })
}

fn sources(world: &World) -> Vec<(String, Option<String>)> {
    world
        .truth
        .iter()
        .map(|(n, m)| (n.clone(), m.spec_source().map(str::to_owned)))
        .collect()
}

/// `n` hooks named `<prefix><i>` (their content does not matter to the planner).
fn hooks(prefix: &str, n: usize) -> Vec<Hook> {
    (0..n)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "name": format!("{prefix}{i}"),
                "scale": {"region": "From", "namespace": "apps", "replicas": 0}
            }))
            .unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Hooks around a planned switchover (property 6): every hook before the demotion ends, in
    /// order, before the first patch; one that fails ends the run `Aborted` with no patch at all
    /// (nothing demoted); hooks after the promotion run, in order, after the last patch (token
    /// cleared), each of them even when one fails, and never after a rollback.
    #[test]
    fn hooks_run_around_the_switchover_and_a_failed_one_before_it_demotes_nothing(
        (topology, to, _shape) in scenario(),
        before in 0usize..3,
        after in 0usize..3,
        failing in proptest::option::of((any::<bool>(), 0usize..3)),
        rollback in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let declared = Hooks { before_demotion: hooks("stop", before), after_promotion: hooks("start", after) };
        let failing = failing.map(|(first, i)| {
            (if first { StepKind::HooksBeforeDemotion } else { StepKind::HooksAfterPromotion }, i)
        });
        let fault = if rollback { Fault::FatalToken } else { Fault::None };
        let world = World::new(&topology, fault);
        let run = drive_hooked(&topology, world, OperationKind::Switchover, &to, seed, &declared, failing);
        let ends = |step: StepKind| -> Vec<(usize, bool)> {
            run.trace.iter().filter_map(|t| match t {
                Trace::Hook { step: s, index, ok } if *s == step => Some((*index, *ok)),
                _ => None,
            }).collect()
        };
        let position = |wanted: &dyn Fn(&Trace) -> bool| run.trace.iter().position(wanted);
        let first_patch = position(&|t| matches!(t, Trace::Patch(_)));
        let last_patch = run.trace.iter().rposition(|t| matches!(t, Trace::Patch(_)));
        let fails_before = failing.filter(|(s, i)| *s == StepKind::HooksBeforeDemotion && *i < before);
        if let Some((_, i)) = fails_before {
            prop_assert_eq!(&run.end, &End::Done(Outcome::Aborted));
            prop_assert!(run.patches.is_empty(), "patched after a failed hook: {:?}", run.patches);
            let mut expected: Vec<(usize, bool)> = (0..i).map(|k| (k, true)).collect();
            expected.push((i, false));
            prop_assert_eq!(ends(StepKind::HooksBeforeDemotion), expected);
            prop_assert!(ends(StepKind::HooksAfterPromotion).is_empty());
            prop_assert_eq!(run.world.primaries_by_spec(false), vec![topology.primary().to_owned()]);
            return Ok(());
        }
        prop_assert_eq!(ends(StepKind::HooksBeforeDemotion), (0..before).map(|k| (k, true)).collect::<Vec<_>>());
        if let Some(first) = first_patch {
            let last_before = run.trace.iter().rposition(|t| matches!(t, Trace::Hook { step: StepKind::HooksBeforeDemotion, .. }));
            prop_assert!(last_before.is_none_or(|b| b < first), "a patch before the hooks ended: {:?}", run.trace);
        }
        if rollback {
            prop_assert_eq!(&run.end, &End::Done(Outcome::RolledBack));
            prop_assert!(ends(StepKind::HooksAfterPromotion).is_empty());
        } else {
            prop_assert_eq!(&run.end, &End::Done(Outcome::Succeeded));
            let expected: Vec<(usize, bool)> = (0..after)
                .map(|k| (k, failing != Some((StepKind::HooksAfterPromotion, k))))
                .collect();
            prop_assert_eq!(ends(StepKind::HooksAfterPromotion), expected);
            let first_after = run.trace.iter().position(|t| matches!(t, Trace::Hook { step: StepKind::HooksAfterPromotion, .. }));
            prop_assert!(first_after.is_none_or(|a| last_patch.is_some_and(|p| p < a)), "{:?}", run.trace);
            prop_assert_eq!(run.trace.get(last_patch.unwrap_or(0)), Some(&Trace::Patch(StepKind::ClearToken)));
        }
    }

    #[test]
    fn switchover_is_safe_idempotent_and_terminates(
        (topology, to, shape) in scenario(),
        fault in fault_strategy(),
        seed in any::<u64>(),
    ) {
        let world = World::new(&topology, fault);
        let ring_sources_before = sources(&world);
        let run = drive(&topology, world, OperationKind::Switchover, &to, seed);
        let from = topology.primary();

        // What each fault must lead to; none of them may promote.
        let expected = match fault {
            Fault::None => End::Done(Outcome::Succeeded),
            Fault::TokenWiped => run_end_for_wiped(&run),
            Fault::DemotionNeverStarts => End::Hold(reason::DEMOTION_NOT_STARTED),
            Fault::DemotionStuck => End::Hold(reason::TOKEN_TIMEOUT),
            Fault::ForeignSysid => End::Hold(reason::TOKEN_INVALID),
            Fault::FatalToken => End::Done(Outcome::RolledBack),
        };
        // A deadline may expire while the member happens to be unreadable: that hold is as safe.
        let deadline_fault = matches!(fault, Fault::DemotionNeverStarts | Fault::DemotionStuck);
        if !(deadline_fault && run.end == End::Hold(reason::MEMBER_UNREACHABLE_HOLD)) {
            prop_assert_eq!(&run.end, &expected);
        }

        let winner = match run.end {
            End::Done(Outcome::Succeeded) => Some(to.as_str()),
            End::Done(_) => Some(from),
            End::Hold(_) => None,
        };
        if let Some(winner) = winner {
            // Exactly the winner is primary by spec and runs as primary; every member names it;
            // no token is left behind (#9273).
            prop_assert_eq!(run.world.primaries_by_spec(false), vec![winner.to_owned()]);
            prop_assert_eq!(run.world.running_primary.iter().collect::<Vec<_>>(), vec![winner]);
            for m in run.world.truth.values() {
                prop_assert_eq!(m.spec_primary(), Some(winner));
                prop_assert_eq!(m.promotion_token(), None);
            }
            // Sources follow the shape for the winner.
            let desired = topology.desired_sources(winner);
            for (name, want) in topology.names().iter().zip(desired) {
                if let Some(want) = want {
                    prop_assert_eq!(run.world.truth[name].spec_source(), Some(want.as_str()));
                }
            }
        } else {
            // A hold never leaves the target promoted.
            prop_assert!(!run.world.running_primary.contains(&to));
            prop_assert!(run.world.primaries_by_spec(false).len() <= 1);
        }
        if shape == ShapeKind::Ring {
            prop_assert!(run.patches.iter().all(|(_, p)| p["spec"]["replica"].get("source").is_none()));
            prop_assert_eq!(sources(&run.world), ring_sources_before);
        }
    }

    #[test]
    fn failover_promotes_without_token_only_when_asked(
        (topology, to, _shape) in scenario(),
        old_primary_reachable in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(&topology, Fault::None);
        let from = topology.primary().to_owned();
        let mut run = if old_primary_reachable {
            drive(&topology, world, OperationKind::Failover, &to, seed)
        } else {
            // The old primary's region is gone: it can never be read.
            world.hidden.insert(from.clone());
            drive_isolated(&topology, world, &from, &to, seed)
        };
        prop_assert_eq!(&run.end, &End::Done(Outcome::Succeeded));
        run.world.hidden.remove(&from);
        prop_assert!(run.world.running_primary.contains(&to));
        let promote = run.patches.iter().find(|(m, p)| *m == to && p["spec"]["replica"]["primary"] == to.as_str());
        prop_assert!(promote.is_some_and(|(_, p)| p["spec"]["replica"]["promotionToken"].is_null()));
        if old_primary_reachable {
            prop_assert_eq!(run.world.primaries_by_spec(false), vec![to.clone()]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// An automatic failover's lost primary that can be read again (a link healed between the
    /// verdict and the promotion) and is fenced (its agent fences it once a majority counted it
    /// lost): the failover goes ahead, whether its spec still says primary or a demotion already
    /// made it a replica; the old primary is a replica by spec before the target is promoted,
    /// never two primaries by spec, never two writable, and the promotion carries no token.
    #[test]
    fn a_failover_from_a_readable_fenced_old_primary_demotes_it_before_the_promotion(
        (topology, to, _shape) in scenario(),
        demoted_already in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(&topology, Fault::None);
        let from = topology.primary().to_owned();
        world.truth.get_mut(&from).unwrap().status.fenced = true;
        if demoted_already {
            world.apply(&from, &patch::demote(&to, None));
        }
        world.tick(1);
        prop_assert!(world.running_primary.is_empty(), "fenced: nothing takes writes");
        let run = drive(&topology, world, OperationKind::Failover, &to, seed);
        prop_assert_eq!(&run.end, &End::Done(Outcome::Succeeded));
        prop_assert_eq!(run.world.primaries_by_spec(false), vec![to.clone()]);
        prop_assert_eq!(run.world.running_primary.iter().cloned().collect::<Vec<_>>(), vec![to.clone()]);
        prop_assert_eq!(run.world.truth[&from].spec_primary(), Some(to.as_str()));
        let promote = run.patches.iter().position(|(m, p)| *m == to && p["spec"]["replica"]["primary"] == to.as_str());
        prop_assert!(promote.is_some_and(|i| run.patches[i].1["spec"]["replica"]["promotionToken"].is_null()));
    }
}

/// With the token wiped at clean-up, the run either caught the token before the wipe (success)
/// or saw a completed demotion without a token (TokenLost); both are acceptable, promotion
/// without the token is not.
fn run_end_for_wiped(run: &Run) -> End {
    match run.end {
        End::Done(Outcome::Succeeded) => End::Done(Outcome::Succeeded),
        _ => End::Hold(reason::TOKEN_LOST),
    }
}

/// Like `drive`, but the old primary stays unreadable throughout (no hiccup clears it).
fn drive_isolated(topology: &Topology, mut world: World, from: &str, to: &str, seed: u64) -> Run {
    let mut choices = Choices(seed | 1);
    let mut progress = Progress::start(OperationKind::Failover, from, to, world.now);
    let mut patches = Vec::new();
    for _ in 0..400 + 20 * topology.names().len() {
        let ctx = Context {
            topology,
            now: world.now,
            hooks: &topology::plan::NO_HOOKS,
            hook: None,
        };
        match next_step(&world.snapshot(), &progress, &ctx) {
            Decision::Act(a) => {
                if choices.next(5) != 0 {
                    world.apply(&a.member, &a.patch);
                    patches.push((a.member, a.patch));
                }
            }
            Decision::Advance(t) => progress = progress.advance(&t, world.now),
            Decision::HookEnded(end) => panic!("no hooks declared, yet one ended: {end:?}"),
            Decision::Wait(w) => {
                // Only the old primary's bookkeeping may be pending: it is gone for good, so the
                // failover is complete from the survivors' point of view.
                if progress.step == topology::StepKind::Bookkeeping && w.recheck_after.is_some() {
                    return Run {
                        end: End::Done(Outcome::Succeeded),
                        patches,
                        world,
                        trace: Vec::new(),
                    };
                }
                world.tick(5);
            }
            Decision::Hold { reason, .. } => {
                return Run {
                    end: End::Hold(reason),
                    patches,
                    world,
                    trace: Vec::new(),
                };
            }
            Decision::Done(o) => {
                return Run {
                    end: End::Done(o),
                    patches,
                    world,
                    trace: Vec::new(),
                };
            }
        }
    }
    panic!("failover did not finish");
}
