//! The automatic-failover vote round of one reconcile (only while `spec.automaticFailover` is
//! armed): the hub's own ballot and the members' agents', and the hub's reach probe of the
//! term's primary region. It is observation at the edge — requests to the hub's store and to a
//! member's API server — whose result the pure decision reads (`Observation::votes`); what it
//! decides is `decide/autofailover.rs`'s.

use topology::DistributedTopology;
use topology::DistributedTopologyStatus;
use topology::autofailover::arm;

use super::Context;
use super::decide::autofailover::{probed, term_of};
use super::observe::Observation;

/// Runs the round for `stored` (whose status, as this reconcile starts from it, is `status`) and
/// records it in `observation`: the votes, and every probed member whose region did not answer
/// counted unreachable. Nothing is done when automatic failover is not armed (or its policy is
/// invalid: the decision reports that).
pub async fn observe(
    ctx: &Context,
    stored: &DistributedTopology,
    status: Option<&DistributedTopologyStatus>,
    key: &str,
    observation: &mut Observation,
) {
    let Some(Ok(armed)) = arm(&stored.spec) else {
        return;
    };
    let (term, primary) = term_of(status, &stored.spec);
    let reached = !observation.unreachable.iter().any(|(m, _)| *m == primary);
    // The primary's region is probed on the round's own period and bound (the policy's), not
    // only through the member pool's liveness timeout.
    let within = armed.timing.reach_probe_timeout();
    let known = probed(status, &stored.spec)
        .into_iter()
        .filter_map(|member| {
            let client = stored
                .spec
                .members
                .iter()
                .find(|m| m.name == member)
                .map_or_else(
                    || Err(format!("{member} is not a member of the topology")),
                    |m| ctx.members.client(&m.cluster),
                );
            ctx.voters.probe(key, &member, client, within)
        })
        .collect();
    let votes = ctx
        .voters
        .round(&ctx.hub, stored, &armed, (term, &primary), reached, known)
        .await;
    ctx.metrics.heartbeats(key, &votes);
    for p in &votes.probes {
        if let Some(failed) = &p.failed {
            // The fact the pool's liveness probe records once its own timeout passed.
            observation.mark_unreachable(&p.member, failed);
        }
    }
    observation.votes = Some(votes);
}
