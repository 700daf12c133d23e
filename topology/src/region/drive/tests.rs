use proptest::prelude::*;

use super::*;

fn progress(n: usize, concurrency: u32, before: usize, after: usize) -> Progress {
    Progress {
        entries: (0..n)
            .map(|i| Entry {
                key: format!("db/t{i}"),
                member: "b".into(),
                state: EntryState::Pending,
                warnings: Vec::new(),
                hooks_before: before,
                hooks_after: after,
            })
            .collect(),
        concurrency,
        on_hold: OnHold::Stop,
        paused: false,
        abort: false,
    }
}

fn ok() -> Observation {
    Observation::HookDone {
        ok: true,
        detail: String::new(),
    }
}

fn on(key: &str, o: Observation) -> (String, Observation) {
    (key.to_owned(), o)
}

fn set(key: &str) -> Action {
    Action::SetPrimary {
        key: key.into(),
        member: "b".into(),
    }
}

#[test]
fn hooks_run_in_order_around_the_switchover() {
    let p = progress(1, 1, 2, 1);
    let (p, a, _) = next_actions(&p, &[]);
    assert_eq!(
        a,
        [Action::RunHookBeforeDemotion {
            key: "db/t0".into(),
            index: 0
        }]
    );
    let (p, a, _) = next_actions(&p, &[on("db/t0", ok())]);
    assert_eq!(
        a,
        [Action::RunHookBeforeDemotion {
            key: "db/t0".into(),
            index: 1
        }]
    );
    let (p, a, _) = next_actions(&p, &[on("db/t0", ok())]);
    assert_eq!(a, [set("db/t0")]);
    let (p, a, _) = next_actions(&p, &[on("db/t0", Observation::SwitchoverSucceeded)]);
    assert_eq!(
        a,
        [Action::RunHookAfterPromotion {
            key: "db/t0".into(),
            index: 0
        }]
    );
    let (p, a, phase) = next_actions(&p, &[on("db/t0", ok())]);
    assert!(a.is_empty());
    assert_eq!(p.entries[0].state, EntryState::Moved);
    assert_eq!(phase, Phase::Done);
}

#[test]
fn a_failed_hook_before_the_demotion_stops_that_topology_only() {
    let p = progress(2, 1, 1, 0);
    let (p, _, _) = next_actions(&p, &[]);
    let failed = Observation::HookDone {
        ok: false,
        detail: "deployment web: forbidden".into(),
    };
    let (p, a, _) = next_actions(&p, &[on("db/t0", failed)]);
    let EntryState::Failed(why) = &p.entries[0].state else {
        panic!("{:?}", p.entries[0]);
    };
    assert!(why.contains("nothing was demoted"), "{why}");
    assert!(why.contains("forbidden"), "{why}");
    // The next topology starts; t0 is never switched.
    assert_eq!(
        a,
        [Action::RunHookBeforeDemotion {
            key: "db/t1".into(),
            index: 0
        }]
    );
}

#[test]
fn a_failed_hook_after_the_promotion_is_reported_and_the_rest_run() {
    let mut p = progress(1, 1, 0, 2);
    p.entries[0].state = EntryState::AfterPromotion { index: 0 };
    let bad = Observation::HookDone {
        ok: false,
        detail: "httproute web: timeout".into(),
    };
    let (p, a, _) = next_actions(&p, &[on("db/t0", bad)]);
    assert_eq!(
        a,
        [Action::RunHookAfterPromotion {
            key: "db/t0".into(),
            index: 1
        }]
    );
    let (p, _, phase) = next_actions(&p, &[on("db/t0", ok())]);
    assert_eq!(p.entries[0].state, EntryState::Moved);
    assert_eq!(p.entries[0].warnings.len(), 1);
    assert_eq!(phase, Phase::Done);
}

#[test]
fn a_hold_stops_new_starts_under_stop_and_not_under_continue() {
    let p = progress(3, 1, 0, 0);
    let (p, _, _) = next_actions(&p, &[]);
    let held = || on("db/t0", Observation::SwitchoverHeld("TokenLost".into()));
    let (stopped, a, phase) = next_actions(&p, &[held()]);
    assert!(a.is_empty());
    assert_eq!(phase, Phase::Stopped);
    // A human fixes it; the hold clears, the switchover succeeds, the next one starts.
    let (_, a, _) = next_actions(&stopped, &[on("db/t0", Observation::SwitchoverSucceeded)]);
    assert_eq!(a, [set("db/t1")]);

    let mut cont = p.clone();
    cont.on_hold = OnHold::Continue;
    let (_, a, phase) = next_actions(&cont, &[held()]);
    assert_eq!(a, [set("db/t1")]);
    assert_eq!(phase, Phase::Running);
}

#[test]
fn pause_starts_nothing_and_abort_lets_running_switchovers_finish() {
    let mut p = progress(3, 1, 0, 0);
    p.paused = true;
    let (p, a, phase) = next_actions(&p, &[]);
    assert!(a.is_empty());
    assert_eq!(phase, Phase::Paused);
    let mut p = Progress { paused: false, ..p };
    let (q, _, _) = next_actions(&p, &[]);
    p = Progress { abort: true, ..q };
    let (p, a, phase) = next_actions(&p, &[]);
    assert!(a.is_empty());
    assert_eq!(p.entries[0].state, EntryState::Switching);
    assert_eq!(p.entries[1].state, EntryState::Aborted);
    assert_eq!(phase, Phase::Running);
    let (p, _, phase) = next_actions(&p, &[on("db/t0", Observation::SwitchoverSucceeded)]);
    assert_eq!(p.entries[0].state, EntryState::Moved);
    assert_eq!(phase, Phase::Done);
}

#[test]
fn a_restarted_executor_repeats_exactly_the_in_flight_actions() {
    let p = progress(3, 2, 1, 0);
    let (p, first, _) = next_actions(&p, &[]);
    assert_eq!(resume_actions(&p), first);
    // Stale news (a success seen again after a restart) changes nothing.
    let (q, _, _) = next_actions(&p, &[on("db/t0", ok())]);
    let (r, a, _) = next_actions(&q, &[on("db/t0", ok())]);
    assert_eq!(r, q);
    assert!(a.is_empty());
}

/// Random news for random entries: the invariants hold after every step.
fn news() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((0usize..6, 0u8..6), 0..80)
}

proptest! {
    #[test]
    fn concurrency_and_ordering_hold_whatever_is_observed(
        n in 1usize..6,
        concurrency in 1u32..4,
        before in 0usize..3,
        after in 0usize..3,
        steps in news(),
    ) {
        let mut p = progress(n, concurrency, before, after);
        // Per entry: hooks before the demotion that succeeded so far, and whether it succeeded.
        let mut pre_ok = vec![0usize; n];
        let mut promoted = vec![false; n];
        for (i, kind) in steps {
            let i = i % n;
            let o = match kind {
                0 | 1 => ok(),
                2 => Observation::HookDone { ok: false, detail: "x".into() },
                3 => Observation::SwitchoverSucceeded,
                4 => Observation::SwitchoverHeld("h".into()),
                _ => Observation::SwitchoverEnded("e".into()),
            };
            let state = p.entries[i].state.clone();
            let key = p.entries[i].key.clone();
            if matches!(state, EntryState::BeforeDemotion { .. }) && o == ok() {
                pre_ok[i] += 1;
            }
            // The world only reports a success for a switchover that was asked for.
            let o = match (&state, o) {
                (EntryState::Switching | EntryState::Held(_), Observation::SwitchoverSucceeded) => {
                    promoted[i] = true;
                    Observation::SwitchoverSucceeded
                }
                (_, Observation::SwitchoverSucceeded) => continue,
                (_, o) => o,
            };
            let (next, actions, _) = next_actions(&p, &[(key, o)]);
            let running = next.entries.iter().filter(|e| e.state.running()).count();
            prop_assert!(running <= concurrency as usize);
            for a in &actions {
                match a {
                    Action::SetPrimary { key, .. } => {
                        let j = next.entries.iter().position(|e| &e.key == key).unwrap();
                        prop_assert_eq!(pre_ok[j], before, "switched before its hooks ran");
                    }
                    Action::RunHookAfterPromotion { key, .. } => {
                        let j = next.entries.iter().position(|e| &e.key == key).unwrap();
                        prop_assert!(promoted[j], "a hook after the promotion ran before it");
                    }
                    Action::RunHookBeforeDemotion { .. } => {}
                }
            }
            p = next;
        }
    }
}
