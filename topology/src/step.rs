//! The vocabulary of an operation's durable step log, shared by the API status and the planner.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What kind of primary move an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    /// Planned: the old primary is demoted first and its demotion token gates the promotion.
    Switchover,
    /// Explicitly requested by a human or a higher-level tool: the target is promoted without a
    /// token (possible data loss; the old primary must be re-cloned before it rejoins).
    Failover,
}

/// One step of a switchover (contract §7, switchover-design.md). The order of the variants is
/// the order of a successful switchover; `RollbackTarget` is entered only after a fatal token
/// error and re-runs the tail with the old primary as the promotion target.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum StepKind {
    /// Live validation of every member against the desired topology; no side effect.
    Validate,
    /// A planned switchover of a topology with `spec.hooks.beforeDemotion`: each hook in order,
    /// one step record per hook (its name in the record's `member`). One that fails or times
    /// out ends the operation `Aborted`: nothing was demoted.
    HooksBeforeDemotion,
    /// Patch the old primary's `spec.replica` so that it becomes a replica of the target.
    Demote,
    /// Wait until the old primary shows its demotion started (`inProgress` or a token).
    AwaitDemotionStarted,
    /// Wait for `status.demotionToken` on the old primary and persist it at once (#11074).
    AwaitToken,
    /// Decode the persisted token and check it against the target (system id, timeline).
    CheckToken,
    /// Archive-only channel: wait until the target's (designated) primary instance has replayed
    /// past the token's REDO location before promoting it. CNPG restores WAL from the source's
    /// object store only while the Cluster is a replica by spec; once the promote patch names it
    /// primary it restores from its own store, which lacks the old primary's last segments and
    /// `.partial`, and the promotion would wait for the token's LSN forever.
    AwaitReplay,
    /// One patch on the target: `primary` = target, `promotionToken`, `minApplyDelay: null`.
    Promote,
    /// Wait until the target's `lastPromotionToken` equals the token and it is healthy.
    AwaitPromotion,
    /// Point the remaining members at the new primary (and re-root sources for star/cascade).
    Bookkeeping,
    /// Remove `promotionToken` from the new primary, only once it reported it (#9273).
    ClearToken,
    /// A planned switchover of a topology with `spec.hooks.afterPromotion`, once the new primary
    /// accepts writes and its token is cleared: each hook in order, one step record per hook. One
    /// that fails is recorded and announced as a warning; the rest run.
    HooksAfterPromotion,
    /// After a fatal token error: put the target back to `primary: <old>` without a token.
    RollbackTarget,
    /// Nothing left to do.
    Done,
}

impl StepKind {
    /// The step that follows this one in a switchover (failover skips the token steps).
    pub fn next(self, kind: OperationKind, old_primary_reachable: bool) -> StepKind {
        use StepKind::*;
        match (self, kind) {
            (Validate, OperationKind::Failover) if !old_primary_reachable => Promote,
            (Validate, _) => Demote,
            (Demote, OperationKind::Failover) => Promote,
            (Demote, OperationKind::Switchover) => AwaitDemotionStarted,
            (AwaitDemotionStarted, _) => AwaitToken,
            (AwaitToken, _) => CheckToken,
            // The planner enters AwaitReplay from CheckToken only for a target whose channel has
            // an object store.
            (CheckToken, _) => Promote,
            (AwaitReplay, _) => Promote,
            (Promote, _) => AwaitPromotion,
            (AwaitPromotion, _) => Bookkeeping,
            (Bookkeeping, OperationKind::Failover) => Done,
            (Bookkeeping, OperationKind::Switchover) => ClearToken,
            (ClearToken, _) => Done,
            // The planner enters the hook steps only for a switchover with hooks.
            (HooksBeforeDemotion, _) => Demote,
            (HooksAfterPromotion, _) => Done,
            (RollbackTarget, _) => Promote,
            (Done, _) => Done,
        }
    }

    /// A step that runs the topology's hooks (one record per hook).
    pub fn is_hooks(self) -> bool {
        matches!(
            self,
            StepKind::HooksBeforeDemotion | StepKind::HooksAfterPromotion
        )
    }

    /// The `spec.hooks` field a hook step runs, as hook runs name their phase.
    pub fn hook_phase(self) -> Option<&'static str> {
        match self {
            StepKind::HooksBeforeDemotion => Some("beforeDemotion"),
            StepKind::HooksAfterPromotion => Some("afterPromotion"),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Validate => "Validate",
            StepKind::HooksBeforeDemotion => "HooksBeforeDemotion",
            StepKind::Demote => "Demote",
            StepKind::AwaitDemotionStarted => "AwaitDemotionStarted",
            StepKind::AwaitToken => "AwaitToken",
            StepKind::CheckToken => "CheckToken",
            StepKind::AwaitReplay => "AwaitReplay",
            StepKind::Promote => "Promote",
            StepKind::AwaitPromotion => "AwaitPromotion",
            StepKind::Bookkeeping => "Bookkeeping",
            StepKind::ClearToken => "ClearToken",
            StepKind::HooksAfterPromotion => "HooksAfterPromotion",
            StepKind::RollbackTarget => "RollbackTarget",
            StepKind::Done => "Done",
        }
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for OperationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OperationKind::Switchover => "switchover",
            OperationKind::Failover => "failover",
        })
    }
}
