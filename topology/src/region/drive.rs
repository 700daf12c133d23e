//! Driving a region switch: from each topology's state and what was observed since, the next
//! states and the side effects to perform. The executor persists the returned [`Progress`] in the
//! region switch's status **before** it performs the actions, as the switchover's step log does;
//! every action is idempotent (setting `spec.primary` to the value it has, scaling to a count it
//! has), so a controller killed anywhere resumes by calling this again.
//!
//! Order per topology: hooks before the demotion (old applications stop writing, traffic cut),
//! the planned switchover, hooks after the promotion (new applications up, traffic moved). A hook
//! that fails before the demotion stops that topology (nothing was demoted); one that fails after
//! the promotion is reported and the rest run.

/// Where one topology is in the region switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryState {
    Pending,
    /// Running hook `index` of the hooks before the demotion.
    BeforeDemotion {
        index: usize,
    },
    /// `spec.primary` set to the target; the planned switchover runs.
    Switching,
    /// Running hook `index` of the hooks after the promotion.
    AfterPromotion {
        index: usize,
    },
    Moved,
    Skipped(String),
    /// The switchover holds (the reason is the topology's hold); a human decides.
    Held(String),
    Failed(String),
    Aborted,
}

impl EntryState {
    fn running(&self) -> bool {
        matches!(
            self,
            EntryState::BeforeDemotion { .. }
                | EntryState::Switching
                | EntryState::AfterPromotion { .. }
        )
    }

    /// No further action will come from the region switch for this topology.
    pub fn finished(&self) -> bool {
        matches!(
            self,
            EntryState::Moved
                | EntryState::Skipped(_)
                | EntryState::Held(_)
                | EntryState::Failed(_)
                | EntryState::Aborted
        )
    }
}

/// One topology of the region switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// The member in the destination region.
    pub member: String,
    pub state: EntryState,
    /// Hooks after the promotion that failed (reported, not fatal).
    pub warnings: Vec<String>,
    /// How many hooks run before its demotion and after its promotion (the region switch's and
    /// the topology's own).
    pub hooks_before: usize,
    pub hooks_after: usize,
}

/// What to do when a topology's switchover holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnHold {
    /// Start no further topology; the running ones finish.
    Stop,
    /// Keep going with the others.
    Continue,
}

/// The region switch's state (its status) and the knobs that steer it (its spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub entries: Vec<Entry>,
    pub concurrency: u32,
    pub on_hold: OnHold,
    pub paused: bool,
    pub abort: bool,
}

/// What happened to one topology since the last decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The running hook finished.
    HookDone { ok: bool, detail: String },
    /// The topology's primary is the target and its operation succeeded.
    SwitchoverSucceeded,
    /// The topology's operation holds.
    SwitchoverHeld(String),
    /// The operation ended without moving the primary (rolled back, abandoned).
    SwitchoverEnded(String),
}

/// A side effect for the executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    RunHookBeforeDemotion {
        key: String,
        index: usize,
    },
    /// Set the topology's `spec.primary` to `member`: the planned switchover does the rest.
    SetPrimary {
        key: String,
        member: String,
    },
    RunHookAfterPromotion {
        key: String,
        index: usize,
    },
}

/// How the whole region switch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    Paused,
    /// A topology holds and the policy is `Stop`: no new topology starts.
    Stopped,
    /// Every topology is finished.
    Done,
}

/// Applies `observed` (by key) to the entries, then starts what the concurrency, the pause, the
/// abort and the hold policy allow. Returns the new progress, the actions (in order) and the phase.
pub fn next_actions(
    progress: &Progress,
    observed: &[(String, Observation)],
) -> (Progress, Vec<Action>, Phase) {
    let mut next = progress.clone();
    let mut actions = Vec::new();
    for entry in &mut next.entries {
        for (key, o) in observed {
            if *key == entry.key {
                advance(entry, o, progress, &mut actions);
            }
        }
    }
    let stopped = next.on_hold == OnHold::Stop
        && next
            .entries
            .iter()
            .any(|e| matches!(e.state, EntryState::Held(_)));
    if next.abort {
        for e in &mut next.entries {
            if e.state == EntryState::Pending {
                e.state = EntryState::Aborted;
            }
        }
    }
    let may_start = !(next.paused || next.abort || stopped);
    let mut running = next.entries.iter().filter(|e| e.state.running()).count();
    if may_start {
        for e in &mut next.entries {
            if running >= next.concurrency as usize {
                break;
            }
            if e.state == EntryState::Pending {
                start(e, &mut actions);
                running += 1;
            }
        }
    }
    let phase = if next.entries.iter().all(|e| e.state.finished()) {
        Phase::Done
    } else if stopped {
        Phase::Stopped
    } else if next.paused {
        Phase::Paused
    } else {
        Phase::Running
    };
    (next, actions, phase)
}

/// The actions the current states imply: what a restarted executor performs again (each is
/// idempotent), since it cannot know whether its predecessor performed them.
pub fn resume_actions(progress: &Progress) -> Vec<Action> {
    progress
        .entries
        .iter()
        .filter_map(|e| match e.state {
            EntryState::BeforeDemotion { index } => Some(Action::RunHookBeforeDemotion {
                key: e.key.clone(),
                index,
            }),
            EntryState::Switching => Some(Action::SetPrimary {
                key: e.key.clone(),
                member: e.member.clone(),
            }),
            EntryState::AfterPromotion { index } => Some(Action::RunHookAfterPromotion {
                key: e.key.clone(),
                index,
            }),
            _ => None,
        })
        .collect()
}

fn start(e: &mut Entry, actions: &mut Vec<Action>) {
    if e.hooks_before > 0 {
        e.state = EntryState::BeforeDemotion { index: 0 };
        actions.push(Action::RunHookBeforeDemotion {
            key: e.key.clone(),
            index: 0,
        });
    } else {
        set_primary(e, actions);
    }
}

fn set_primary(e: &mut Entry, actions: &mut Vec<Action>) {
    e.state = EntryState::Switching;
    actions.push(Action::SetPrimary {
        key: e.key.clone(),
        member: e.member.clone(),
    });
}

fn after_promotion(e: &mut Entry, index: usize, actions: &mut Vec<Action>) {
    if index < e.hooks_after {
        e.state = EntryState::AfterPromotion { index };
        actions.push(Action::RunHookAfterPromotion {
            key: e.key.clone(),
            index,
        });
    } else {
        e.state = EntryState::Moved;
    }
}

fn advance(e: &mut Entry, o: &Observation, p: &Progress, actions: &mut Vec<Action>) {
    match (&e.state, o) {
        (EntryState::BeforeDemotion { index }, Observation::HookDone { ok, detail }) => {
            let index = *index;
            if !ok {
                e.state = EntryState::Failed(format!(
                    "hook {index} before the demotion failed ({detail}); nothing was demoted"
                ));
            } else if p.abort {
                e.state = EntryState::Aborted;
            } else if index + 1 < e.hooks_before {
                e.state = EntryState::BeforeDemotion { index: index + 1 };
                actions.push(Action::RunHookBeforeDemotion {
                    key: e.key.clone(),
                    index: index + 1,
                });
            } else {
                set_primary(e, actions);
            }
        }
        (EntryState::Switching | EntryState::Held(_), Observation::SwitchoverSucceeded) => {
            after_promotion(e, 0, actions);
        }
        (EntryState::Switching, Observation::SwitchoverHeld(why)) => {
            e.state = EntryState::Held(why.clone());
        }
        (EntryState::Switching | EntryState::Held(_), Observation::SwitchoverEnded(why)) => {
            e.state = EntryState::Failed(format!("the switchover ended without moving: {why}"));
        }
        (EntryState::AfterPromotion { index }, Observation::HookDone { ok, detail }) => {
            let index = *index;
            if !ok {
                e.warnings
                    .push(format!("hook {index} after the promotion failed: {detail}"));
            }
            after_promotion(e, index + 1, actions);
        }
        // Anything else is stale news (e.g. observed twice after a restart): ignore it.
        _ => {}
    }
}

#[cfg(test)]
mod tests;
