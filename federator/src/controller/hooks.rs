//! A topology's own hooks (`spec.hooks`), run by its planned switchover at the steps
//! `HooksBeforeDemotion` and `HooksAfterPromotion`: the same hooks, with the same code, as a
//! region switch runs (`crate::region::hooks::perform`). The planner decides with the look this
//! module takes (`Observation::hook`); this module only runs the hook the step log names.
//!
//! Crash safety: a hook runs only when the topology's status **as the hub has it** names that
//! step and hook index (the transition into it is written before, `decide::plan`), never from a
//! decision not yet written. A controller killed between a hook and the demotion finds the
//! same hook in the step log and runs it again: a scale hook scales to the count it already has,
//! a patch hook applies the same merge patch, a Job hook finds the Job it created (its name is
//! fixed by the topology's uid, the operation, the phase and the hook), a webhook is called again
//! (at least once). It never runs the next hook, nor demotes, before that hook's end is written.

use kube::ResourceExt;
use topology::DistributedTopology;
use topology::plan::HookLook;
use topology::region_api::HookRegion;

use super::Context;
use crate::region::hooks::perform;
use crate::region::webhook::Call;

/// Runs the hook the switchover's step log on the hub names, once, and reports how it stands.
/// `None` when no hook is running (or its members are not in the spec).
pub async fn observe(ctx: &Context, stored: &DistributedTopology) -> Option<HookLook> {
    let op = stored.status.as_ref()?.operation.as_ref()?;
    if op.outcome.is_some() {
        return None;
    }
    let (phase, index, hook) = op.running_hook()?;
    let cluster = |member: &str| {
        stored
            .spec
            .members
            .iter()
            .find(|m| m.name == member)
            .map(|m| m.cluster.as_str())
    };
    let (from, to) = (cluster(&op.from)?, cluster(&op.to)?);
    let region = match hook.region() {
        HookRegion::From => from,
        HookRegion::To => to,
    };
    let namespace = stored.namespace().unwrap_or_default();
    let name = stored.name_any();
    let call = Call {
        region_switch: "",
        namespace: &namespace,
        topology: &name,
        hook: &hook.name,
        phase,
        from,
        to,
    };
    // A topology deleted and created again under the same name runs new Jobs.
    let uid = format!("{}/{}", stored.uid().unwrap_or_default(), op.id);
    let state = perform(ctx.members.as_ref(), &ctx.hub, call, &uid, hook, region).await;
    tracing::debug!(%phase, hook = %hook.name, ?state, "switchover hook");
    Some(HookLook {
        step: op.step,
        index,
        state,
    })
}
