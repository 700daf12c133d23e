//! An operation that waits on a member that cannot be read holds, with the member and the cause
//! in `status.operation.hold` (and so in `SwitchoverInProgress` and one Warning Event), instead
//! of showing `InProgress` while nothing can progress. The hold ends by itself when the member
//! answers again (the member pool announces it); past the step's deadline the planner's own
//! `StepMemberUnreachable` hold takes over.

use topology::Progress;
use topology::StepKind;
use topology::api::Hold;
use topology::conditions::reason;

use crate::controller::observe::Observation;

/// The hold for a step that waits (`Decision::Wait`) while a member it needs cannot be read, or
/// `None` when the wait has another cause.
pub(super) fn hold(progress: &Progress, observation: &Observation) -> Option<Hold> {
    let needed: Vec<&(String, String)> = match super::member_of(progress.step, progress) {
        Some(member) => observation
            .unreachable
            .iter()
            .filter(|(m, _)| *m == member)
            .collect(),
        // Bookkeeping waits for every member left to patch.
        None if progress.step == StepKind::Bookkeeping => observation.unreachable.iter().collect(),
        None => Vec::new(),
    };
    if needed.is_empty() {
        return None;
    }
    let members: Vec<&str> = needed.iter().map(|(m, _)| m.as_str()).collect();
    let causes: Vec<String> = needed.iter().map(|(_, why)| why.clone()).collect();
    Some(Hold {
        reason: reason::MEMBER_UNREACHABLE_HOLD.to_owned(),
        message: format!(
            "{} cannot be read; nothing is sent to {} until {} again, then the step resumes by \
             itself. Cause: {}",
            members.join(", "),
            if members.len() == 1 { "it" } else { "them" },
            if members.len() == 1 {
                "it answers"
            } else {
                "they answer"
            },
            causes.join("; ")
        ),
    })
}
