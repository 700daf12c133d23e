//! The client's view: a writer inserting a row every ~5 ms through a connection to whichever
//! member accepts writes (it looks for the primary again after any failure), recording when each
//! attempt started and ended and whether it was acknowledged.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use e2e::harness::SharedLab;
use e2e::harness::testkit::Member;
use tokio_postgres::Client;

use e2e::harness::controller::pg;

/// Pause between two attempts.
const EVERY: Duration = Duration::from_millis(5);
/// An INSERT that takes longer counts as failed (the instance is shutting down or gone).
const INSERT_TIMEOUT: Duration = Duration::from_secs(2);

/// One write attempt: `started` to `ended`, acknowledged by member `on` or failed (`on: None`).
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub started: Instant,
    pub ended: Instant,
    pub on: Option<usize>,
}

/// How long writes were unavailable during one switchover.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outage {
    /// First failed write (its start) → first write acknowledged by the new primary.
    pub window: Duration,
    /// The start of the first failed write and the end of the first write the new primary
    /// acknowledged after it: the window's ends, to place the watch milestones in it.
    pub first_failed: Option<Instant>,
    pub first_acknowledged: Option<Instant>,
    /// Every failed stretch in the round added up, including the new primary's in-place restart
    /// for `archive_mode` after its promotion (the emulator does it as CNPG does).
    pub total: Duration,
}

/// The running writer; stops when dropped.
pub struct Probe {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Probe {
    /// Starts writing into table `t` (which must exist on the primary); a connection attempt
    /// that takes longer than `connect_within` fails.
    pub fn start(
        lab: &'static SharedLab,
        ns: &str,
        members: &[Member<'static>],
        connect_within: Duration,
    ) -> Self {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(write(
            lab,
            ns.to_owned(),
            members.to_vec(),
            attempts.clone(),
            connect_within,
        ));
        Probe { attempts, task }
    }

    /// The first acknowledged write on member `on` that ended after `since`, if any yet.
    pub fn acknowledged_on(&self, on: usize, since: Instant) -> Option<Instant> {
        self.lock()
            .iter()
            .rev()
            .take_while(|a| a.ended > since)
            .filter(|a| a.on == Some(on))
            .map(|a| a.ended)
            .min()
    }

    /// The outage of the switchover to member `to` that ran between `from` and `until`.
    pub fn outage(&self, from: Instant, until: Instant, to: usize) -> Outage {
        let attempts = self.lock();
        let round: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.started >= from && a.ended <= until)
            .collect();
        let mut outage = Outage::default();
        let mut failing_since: Option<Instant> = None;
        let mut first_window = true;
        for a in round {
            match (a.on, failing_since) {
                (None, None) => failing_since = Some(a.started),
                (Some(on), Some(since)) => {
                    outage.total += a.ended - since;
                    if first_window && on == to {
                        outage.window = a.ended - since;
                        outage.first_failed = Some(since);
                        outage.first_acknowledged = Some(a.ended);
                        first_window = false;
                    }
                    failing_since = None;
                }
                _ => {}
            }
        }
        outage
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Attempt>> {
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn write(
    lab: &'static SharedLab,
    ns: String,
    members: Vec<Member<'static>>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    connect_within: Duration,
) {
    let mut next = 1_000_000;
    let mut current: Option<(usize, Client)> = None;
    loop {
        let started = Instant::now();
        let on = match &current {
            None => {
                current = find_primary(lab, &ns, &members, connect_within).await;
                None
            }
            Some((index, client)) => {
                let value = next;
                next += 1;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&value];
                let insert = client.execute("INSERT INTO t VALUES ($1)", &params);
                match tokio::time::timeout(INSERT_TIMEOUT, insert).await {
                    Ok(Ok(_)) => Some(*index),
                    _ => {
                        current = None;
                        None
                    }
                }
            }
        };
        // Finding the primary is not a write: only its failure to find one counts as one.
        if on.is_some() || current.is_none() {
            attempts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Attempt {
                    started,
                    ended: Instant::now(),
                    on,
                });
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// A connection to the member that accepts writes, if one does.
async fn find_primary(
    lab: &'static SharedLab,
    ns: &str,
    members: &[Member<'static>],
    connect_within: Duration,
) -> Option<(usize, Client)> {
    for (index, m) in members.iter().enumerate() {
        if let Some(client) = pg(lab, ns, *m, connect_within).await
            && let Ok(row) = client
                .query_one("SELECT NOT pg_is_in_recovery()", &[])
                .await
            && row.get::<_, bool>(0)
        {
            return Some((index, client));
        }
    }
    None
}
