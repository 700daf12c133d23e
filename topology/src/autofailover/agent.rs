//! The agent's decision: renew, fence its own primary, or lift its own fence.
//!
//! The agent of the primary's region fences that primary once it has gone `fence_after` (on its
//! own clock) without a renewal a majority accepted, measured from when it *sent* that renewal;
//! a freshly started agent does not know when its predecessor last renewed, so it fences unless a
//! renewal is accepted within `renew_every` of its start. It lifts its fence only after a
//! majority accepted a renewal of the current term (so no majority voted the region lost, see
//! `quorum`), and never on a term a failover ended.

use std::time::Duration;

use super::Timing;

/// What the agent knows, all on its own monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentView {
    pub now: Duration,
    pub started_at: Duration,
    /// When it sent the latest renewal that a majority accepted, since it started.
    pub last_accepted_sent_at: Option<Duration>,
    /// Its member is the primary of the current term by spec.
    pub primary: bool,
    /// Its fence is in place (set by this agent, and not yet lifted).
    pub fenced: bool,
}

/// Why the agent fences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceReason {
    /// No renewal accepted by a majority for `fence_after`.
    QuorumLost { since: Duration },
    /// Started and could not renew within `renew_every`.
    NoQuorumAtStart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentAction {
    /// Keep renewing; nothing to change.
    Renew,
    Fence(FenceReason),
    /// A majority accepted a renewal of the current term after the fence: writes may resume.
    Unfence,
}

/// The agent's action now. Called on every tick and after every renewal round.
pub fn agent_action(timing: &Timing, view: &AgentView) -> AgentAction {
    if !view.primary {
        return AgentAction::Renew;
    }
    match view.last_accepted_sent_at {
        None if view.now.saturating_sub(view.started_at) >= timing.renew_every => {
            if view.fenced {
                AgentAction::Renew
            } else {
                AgentAction::Fence(FenceReason::NoQuorumAtStart)
            }
        }
        None => AgentAction::Renew,
        Some(sent) => {
            let since = view.now.saturating_sub(sent);
            match (since >= timing.fence_after, view.fenced) {
                (true, false) => AgentAction::Fence(FenceReason::QuorumLost { since }),
                (false, true) => AgentAction::Unfence,
                _ => AgentAction::Renew,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(now: u64, sent: Option<u64>, fenced: bool) -> AgentView {
        AgentView {
            now: Duration::from_millis(now),
            started_at: Duration::ZERO,
            last_accepted_sent_at: sent.map(Duration::from_millis),
            primary: true,
            fenced,
        }
    }

    #[test]
    fn the_primary_fences_once_no_majority_accepted_for_fence_after() {
        let t = Timing::DEFAULT; // renew 1 s, fence after 4 s
        assert_eq!(
            agent_action(&t, &view(5_999, Some(2_000), false)),
            AgentAction::Renew
        );
        assert_eq!(
            agent_action(&t, &view(6_000, Some(2_000), false)),
            AgentAction::Fence(FenceReason::QuorumLost {
                since: Duration::from_secs(4)
            })
        );
    }

    #[test]
    fn a_fresh_agent_fences_unless_it_renews_at_once_and_a_replica_never_fences() {
        let t = Timing::DEFAULT;
        assert_eq!(
            agent_action(&t, &view(999, None, false)),
            AgentAction::Renew
        );
        assert_eq!(
            agent_action(&t, &view(1_000, None, false)),
            AgentAction::Fence(FenceReason::NoQuorumAtStart)
        );
        let replica = AgentView {
            primary: false,
            ..view(60_000, None, false)
        };
        assert_eq!(agent_action(&t, &replica), AgentAction::Renew);
    }

    #[test]
    fn the_fence_is_lifted_only_by_a_renewal_accepted_after_it() {
        let t = Timing::DEFAULT;
        // Still no accepted renewal since the fence: it stays.
        assert_eq!(
            agent_action(&t, &view(9_000, Some(2_000), true)),
            AgentAction::Renew
        );
        assert_eq!(
            agent_action(&t, &view(9_000, None, true)),
            AgentAction::Renew
        );
        // A renewal sent at 8.5 s was accepted by a majority.
        assert_eq!(
            agent_action(&t, &view(9_000, Some(8_500), true)),
            AgentAction::Unfence
        );
    }
}
