//! Whether a failover (promotion without a demotion token) may start, and the possible
//! data-loss window it leaves, from CNPG `Cluster` status only. Pure; `decide` calls it while
//! no operation runs. The rule (docs/failover.md):
//!
//! - a failover starts only from `spec.failover` with `acceptDataLoss: true`, `to == spec.primary`,
//!   a request not acted on before (`status.lastFailover.request`);
//! - the old primary is the member every readable member names in `spec.replica.primary`; it
//!   must be **unreachable** for the member pool (every watch on its API server fails). A primary
//!   that can be read is never failed over: a switchover loses nothing;
//! - the target must be readable;
//! - one exception, for the failover an automatic-failover decision requested (`automatic`):
//!   its lost primary may be readable again (a link healed between the verdict and now) once its
//!   Cluster shows CNPG's fencing of every instance (its agent fences it: a majority refuses its
//!   renewals for the rest of the term). Until then the failover waits (the request stays); the
//!   planner demotes the fenced primary by spec before it promotes the target.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use topology::api::{
    AutomaticFailoverDecision, DataLossWindow, FailoverReport, MemberStatus, ReturnedPrimary,
};
use topology::token::Lsn;
use topology::{DistributedTopologySpec, InstanceWal, Observed, ObservedMember};

use crate::controller::observe::Observation;

/// Ready=False reasons a failover request (or its absence) can leave.
pub mod reason {
    /// `spec.failover.acceptDataLoss` is not true.
    pub const NOT_ACKNOWLEDGED: &str = "FailoverNotAcknowledged";
    /// A failover was asked for while the primary can be read.
    pub const REFUSED: &str = "FailoverRefused";
    /// The primary cannot be read, so the asked-for switchover cannot start.
    pub const PRIMARY_UNREACHABLE: &str = "PrimaryUnreachable";
    /// A failover cannot start yet (target unreadable, old primary unknown).
    pub const BLOCKED: &str = "FailoverBlocked";
}

/// What to do about failover in this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// Nothing failover-specific: the usual switchover logic applies.
    Pass,
    /// Start a failover `report.from → report.to` (the report is recorded in status).
    Start(FailoverReport),
    /// Nothing starts. `Ready` says why; `record` is written to `status.lastFailover` (a refusal
    /// consumes the request).
    Blocked {
        reason: &'static str,
        message: String,
        record: Option<FailoverReport>,
    },
}

fn blocked(reason: &'static str, message: String) -> Gate {
    Gate::Blocked {
        reason,
        message,
        record: None,
    }
}

/// The member every readable member names as primary, when they all agree (the target too:
/// until promoted it follows the old primary).
pub fn named_primary(observed: &Observed) -> Option<String> {
    let mut named = observed
        .members
        .values()
        .filter(|m| m.reachable)
        .filter_map(|m| m.spec_primary());
    let first = named.next()?;
    named.all(|n| n == first).then(|| first.to_owned())
}

/// The failover decision for `spec`, given the previous `last` report and what is observed.
/// `previous` are the member lines of the last written status (stale values of members that
/// cannot be read now); `automatic`: the last automatic-failover decision, if any.
pub fn gate(
    spec: &DistributedTopologySpec,
    (last, automatic): (Option<&FailoverReport>, Option<&AutomaticFailoverDecision>),
    observation: &Observation,
    previous: &[MemberStatus],
    now: Timestamp,
) -> Gate {
    let observed = &observation.observed;
    let to = spec.primary.as_str();
    if observed.primary() == Some(to) {
        return Gate::Pass;
    }
    let Some(request) = spec.failover.as_ref().filter(|f| f.to == to) else {
        return without_request(observed, to);
    };
    if let Some(last) = last.filter(|l| l.request == *request) {
        return match &last.refused {
            Some(why) => blocked(reason::REFUSED, why.clone()),
            // Acted on already: it never starts a second failover.
            None => without_request(observed, to),
        };
    }
    if !request.accept_data_loss {
        return blocked(
            reason::NOT_ACKNOWLEDGED,
            format!(
                "spec.failover asks to promote {to} without a demotion token but spec.failover.acceptDataLoss is not true; nothing was changed. Set it to true to accept that writes the old primary acknowledged after its last archived WAL may be lost (federator failover --accept-data-loss), or remove spec.failover"
            ),
        );
    }
    let report = |from: &str| FailoverReport {
        request: request.clone(),
        from: from.to_owned(),
        to: to.to_owned(),
        decided_at: MicroTime(now),
        operation: None,
        refused: None,
        data_loss: None,
    };
    let refuse = |from: &str, why: String| Gate::Blocked {
        reason: reason::REFUSED,
        message: why.clone(),
        record: Some(FailoverReport {
            refused: Some(why),
            ..report(from)
        }),
    };
    // The automatic decision's lost primary, readable again: fenced, it goes ahead; else wait.
    let lost_again = automatic
        .filter(|d| d.to == to && request.requested_at.as_deref() == Some(d.request.as_str()))
        .filter(|d| observed.get(&d.from).is_some_and(|m| m.reachable))
        .filter(|d| observed.primary().is_none_or(|p| p == d.from));
    if let Some(d) = lost_again
        && !observed.get(&d.from).is_some_and(|m| m.status.fenced)
    {
        return blocked(
            reason::BLOCKED,
            format!(
                "automatic failover to {to} waits for {from}'s fence: {from} can be read again, but {voters} counted it lost in term {term}, so its agent fences it (cnpg.io/fencedInstances) and no majority accepts its heartbeat; promoting {to} before the fence shows could leave two writable primaries; nothing was changed",
                from = d.from,
                voters = d.voters.join(", "),
                term = d.term
            ),
        );
    }
    if let Some(from) = observed.primary()
        && lost_again.is_none()
    {
        return refuse(
            from,
            format!(
                "failover to {to} refused: the primary {from} can be read, so a planned switchover can move the primary without losing data; nothing was changed. Remove spec.failover (kubectl patch … --type merge -p '{{\"spec\":{{\"failover\":null}}}}') and the switchover to {to} runs"
            ),
        );
    }
    let named = lost_again
        .map(|d| d.from.clone())
        .or_else(|| named_primary(observed));
    let Some(from) = named else {
        return blocked(
            reason::BLOCKED,
            format!(
                "failover to {to} cannot start: no readable member is primary by spec and the readable members do not agree on which one was; fix their spec.replica.primary first"
            ),
        );
    };
    if from == to {
        return blocked(
            reason::BLOCKED,
            format!(
                "failover to {to} cannot start: the members already name {to} as primary but it is not primary by its own spec; check its spec.replica"
            ),
        );
    }
    if observed.get(&from).is_some_and(|m| m.reachable) && lost_again.is_none() {
        return refuse(
            &from,
            format!(
                "failover to {to} refused: the old primary {from} can be read (it is not primary by spec: a demotion may be running); nothing was changed. A failover is only for a primary whose member cannot be read; use a switchover"
            ),
        );
    }
    let Some(target) = observed.get(to).filter(|m| m.reachable) else {
        return blocked(
            reason::BLOCKED,
            format!("failover to {to} waits: {to} cannot be read either; nothing was changed"),
        );
    };
    let old = previous.iter().find(|m| m.name == from);
    let window = DataLossWindow {
        old_primary_timeline: old.and_then(|m| m.timeline_id),
        old_primary_system_id: old.and_then(|m| m.system_id.clone()),
        old_primary_unreachable_since: old.and_then(|m| m.unreachable_since.clone()),
        target_system_id: target.status.system_id.clone(),
        target_received_lsn: standby_lsn(target).map(|l| l.to_string()),
        ..DataLossWindow::default()
    };
    Gate::Start(FailoverReport {
        data_loss: Some(describe(window, &from, to)),
        ..report(&from)
    })
}

/// Without a failover request: say why the asked-for switchover cannot start when the primary
/// cannot be read, and how to fail over instead.
fn without_request(observed: &Observed, to: &str) -> Gate {
    if observed.primary().is_some() {
        return Gate::Pass;
    }
    match named_primary(observed) {
        Some(from) if from != to && observed.get(&from).is_some_and(|m| !m.reachable) => blocked(
            reason::PRIMARY_UNREACHABLE,
            format!(
                "the primary {from} cannot be read, so the switchover to {to} cannot start: it needs {from}'s demotion token. If {from} is down, promote {to} without it, accepting that writes {from} acknowledged after its last archived WAL may be lost: federator failover <name> -n <namespace> --to {to} --accept-data-loss (docs/failover.md)"
            ),
        ),
        _ => Gate::Pass,
    }
}

/// How far `member`'s instance, still a standby, reported its WAL in this reconcile.
fn standby_lsn(member: &ObservedMember) -> Option<Lsn> {
    match member.status.wal {
        Some(InstanceWal::At {
            primary: false,
            lsn,
            ..
        }) => Some(lsn),
        _ => None,
    }
}

/// Until its promotion, the target's latest WAL position (the fork is at or after it).
pub fn target_read(window: &mut DataLossWindow, target: &ObservedMember, from: &str, to: &str) {
    let Some(lsn) = standby_lsn(target) else {
        return;
    };
    let known = window
        .target_received_lsn
        .as_deref()
        .and_then(|l| l.parse::<Lsn>().ok());
    if known.is_none_or(|k| lsn > k) {
        window.target_received_lsn = Some(lsn.to_string());
        *window = describe(window.clone(), from, to);
    }
}

/// The old primary's first readable instance status after the failover: whether it still ran
/// as a primary, and how far past the target's last known position its WAL went.
pub fn returned(
    window: &mut DataLossWindow,
    old: &ObservedMember,
    (from, to): (&str, &str),
    now: Timestamp,
) {
    let Some(InstanceWal::At {
        primary,
        lsn,
        timeline,
    }) = old.status.wal
    else {
        return;
    };
    let target = window
        .target_received_lsn
        .as_deref()
        .and_then(|l| l.parse::<Lsn>().ok());
    window.old_primary_returned = Some(ReturnedPrimary {
        read_at: MicroTime(now),
        primary,
        lsn: lsn.to_string(),
        timeline,
        wal_past_target_bytes: target
            .filter(|_| primary)
            .map(|t| lsn.0.saturating_sub(t.0)),
    });
    *window = describe(window.clone(), from, to);
}

/// Fills in the promotion once the new primary reports it.
pub fn promoted(
    window: &mut DataLossWindow,
    from: &str,
    to: &str,
    timeline: Option<i64>,
    now: Timestamp,
) {
    window.promoted_at = Some(MicroTime(now));
    window.new_primary_timeline = timeline;
    *window = describe(window.clone(), from, to);
}

/// The summary and the unknowns, from what the window holds so far.
fn describe(mut window: DataLossWindow, from: &str, to: &str) -> DataLossWindow {
    let old_timeline = window
        .old_primary_timeline
        .map_or("an unknown timeline".to_owned(), |t| {
            format!("timeline {t}")
        });
    let last_seen = window
        .old_primary_unreachable_since
        .as_ref()
        .map_or("an unknown time".to_owned(), |t| t.0.to_string());
    let promoted = match (&window.promoted_at, window.new_primary_timeline) {
        (Some(at), Some(tl)) => format!("{to} was promoted at {} onto timeline {tl}", at.0),
        (Some(at), None) => format!("{to} was promoted at {}", at.0),
        _ => format!("{to} is being promoted"),
    };
    let received = window
        .target_received_lsn
        .as_ref()
        .map(|x| format!(" {to} had received {from}'s WAL up to {x} before its promotion: its timeline forks at or after that LSN."))
        .unwrap_or_default();
    let back = window.old_primary_returned.as_ref().map(|r| {
        let at = &r.read_at.0;
        let on = r.timeline.map(|t| format!(" on timeline {t}")).unwrap_or_default();
        match (r.primary, r.wal_past_target_bytes, &window.target_received_lsn) {
            (true, Some(0), _) => format!(
                " When {from} could be read again ({at}) it was still running as a primary, but its WAL ended at {lsn}{on}, not past what {to} had received: nothing it wrote is lost.",
                lsn = r.lsn
            ),
            (true, Some(n), Some(x)) => format!(
                " When {from} could be read again ({at}) it was still running as a primary (cut off, not down), its WAL at {lsn}{on}: up to {n} bytes of WAL past the {x} {to} last reported received exist only on {from} — writes in them are lost to {to} and stay on {from} until its re-clone.",
                lsn = r.lsn
            ),
            (true, _, _) => format!(
                " When {from} could be read again ({at}) it was still running as a primary (cut off, not down), its WAL at {lsn}{on}: it could take writes the whole time it was unreadable.",
                lsn = r.lsn
            ),
            // In recovery its checkpoint's timeline may lag the one it replays: not shown.
            (false, _, _) => format!(
                " When {from}'s instance could be read again ({at}) it was in recovery, replaying at {lsn}.",
                lsn = r.lsn
            ),
        }
    });
    window.summary = format!(
        "Writes {from} acknowledged after the last WAL {to} replayed from it are lost to {to}: {promoted}; {from} was last read on {old_timeline} and has been unreadable since {last_seen}. Everything {to} had replayed stays.{received}{}",
        back.unwrap_or_default()
    );
    let fork = window
        .new_primary_timeline
        .map_or("<new timeline>.history".to_owned(), |tl| {
            format!("{tl:08X}.history")
        });
    let fork_lsn = window.target_received_lsn.as_ref().map_or(
        "the LSN where the new timeline forks: CNPG's Cluster status carries no LSN".to_owned(),
        |x| format!("the exact LSN where the new timeline forks (at or after {x})"),
    );
    window.unknown = vec![format!(
        "{fork_lsn}; it is the switchpoint in {fork} in {to}'s WAL archive"
    )];
    // A returned old primary that ran as a primary answers how far it wrote and whether it
    // could take writes; back in recovery it does not (its position then says where replay is).
    if !window
        .old_primary_returned
        .as_ref()
        .is_some_and(|r| r.primary)
    {
        window.unknown.extend([
            format!(
                "how far {from} wrote and which WAL it archived last: not in CNPG's Cluster status (pg_controldata's latest checkpoint location on {from}'s disk, pg_stat_archiver.last_archived_wal, or its archive listing, once its region returns)"
            ),
            format!(
                "whether {from} kept accepting writes after it became unreadable: an unreadable API server does not prove that PostgreSQL stopped"
            ),
        ]);
    }
    if let (Some(old), Some(target)) = (&window.old_primary_system_id, &window.target_system_id)
        && old != target
    {
        window.unknown.push(format!(
            "{to}'s system id {target} differs from {from}'s {old}: {to} is not a copy of {from}"
        ));
    }
    window
}
