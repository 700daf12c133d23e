//! The drill's SQL: the `federator_drill` table, the canary row, the probe writer, and the checks
//! on the new primary. Connections are plain (`NoTls`): a URI that requires TLS fails with
//! tokio-postgres' own error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};
use topology::drill_api::TABLE;

use super::measure::Attempt;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// The probe's cadence: the resolution of the measured write-unavailability.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Why an SQL step failed; the text never contains the URI (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("cannot connect to {member}'s PostgreSQL: {reason}")]
    Connect { member: String, reason: String },
    #[error("{member}: {what}: {reason}")]
    Query {
        member: String,
        what: &'static str,
        reason: String,
    },
}

/// Member name → libpq URI.
pub type Dsns = BTreeMap<String, String>;

pub async fn connect(member: &str, uri: &str) -> Result<Client, SqlError> {
    let failed = |reason: String| SqlError::Connect {
        member: member.to_owned(),
        reason,
    };
    let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(uri, NoTls))
        .await
        .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| failed(chain(&e)))?;
    tokio::spawn(conn);
    Ok(client)
}

async fn query<T>(
    member: &str,
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, SqlError> {
    let failed = |reason: String| SqlError::Query {
        member: member.to_owned(),
        what,
        reason,
    };
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(|_| failed(format!("no answer within {QUERY_TIMEOUT:?}")))?
        .map_err(|e| failed(chain(&e)))
}

/// The error and its sources (`error connecting to server: Connection refused (os error 111)`):
/// tokio-postgres' own text leaves the cause out.
fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

pub async fn in_recovery(member: &str, client: &Client) -> Result<bool, SqlError> {
    let row = query(
        member,
        "asking pg_is_in_recovery()",
        client.query_one("SELECT pg_is_in_recovery()", &[]),
    )
    .await?;
    Ok(row.get(0))
}

/// Creates the table if it is missing (on the primary; replicas get it by replication).
pub async fn ensure_table(member: &str, client: &Client) -> Result<(), SqlError> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (run_id text NOT NULL, kind text NOT NULL, \
         seq bigint NOT NULL, value text, written_at timestamptz NOT NULL DEFAULT now(), \
         PRIMARY KEY (run_id, kind, seq))"
    );
    query(
        member,
        "creating the federator_drill table",
        client.batch_execute(&sql),
    )
    .await
}

/// Inserts one row; returns when it is acknowledged.
pub async fn insert(
    member: &str,
    client: &Client,
    run_id: &str,
    kind: &str,
    seq: i64,
    value: &str,
) -> Result<(), SqlError> {
    let sql = format!("INSERT INTO {TABLE} (run_id, kind, seq, value) VALUES ($1, $2, $3, $4)");
    query(
        member,
        "inserting a row",
        client.execute(&sql, &[&run_id, &kind, &seq, &value]),
    )
    .await
    .map(|_| ())
}

/// Whether the row `(run_id, kind, value)` is there.
pub async fn has_value(
    member: &str,
    client: &Client,
    run_id: &str,
    kind: &str,
    value: &str,
) -> Result<bool, SqlError> {
    let sql =
        format!("SELECT count(*) FROM {TABLE} WHERE run_id = $1 AND kind = $2 AND value = $3");
    let row = query(
        member,
        "reading the canary",
        client.query_one(&sql, &[&run_id, &kind, &value]),
    )
    .await?;
    Ok(row.get::<_, i64>(0) > 0)
}

/// The sequence numbers of the probe rows of a run.
pub async fn probe_rows(
    member: &str,
    client: &Client,
    run_id: &str,
) -> Result<BTreeSet<i64>, SqlError> {
    let sql = format!("SELECT seq FROM {TABLE} WHERE run_id = $1 AND kind = 'probe'");
    let rows = query(
        member,
        "reading the probe rows",
        client.query(&sql, &[&run_id]),
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Writes a probe row every 10 ms to whichever member takes writes, logging every attempt,
/// until stopped. The log is what the measurements are computed from.
pub struct Probe {
    log: Arc<Mutex<Vec<Attempt>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    pub fn start(dsns: Dsns, run_id: String) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(probe(dsns, run_id, log.clone(), stopped));
        Probe { log, stop, task }
    }

    /// A copy of the attempts so far.
    pub fn log(&self) -> Vec<Attempt> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub async fn stop(self) -> Vec<Attempt> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

async fn probe(
    dsns: Dsns,
    run_id: String,
    log: Arc<Mutex<Vec<Attempt>>>,
    stopped: watch::Receiver<bool>,
) {
    let record = |attempt: Attempt| {
        if let Ok(mut l) = log.lock() {
            l.push(attempt);
        }
    };
    let mut current: Option<(String, Client)> = None;
    let mut seq: i64 = 0;
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stopped.borrow() {
        tick.tick().await;
        if current.is_none() {
            current = writable(&dsns).await;
        }
        let Some((member, client)) = &current else {
            record(Attempt {
                at: Timestamp::now(),
                seq: None,
                acknowledged: false,
            });
            continue;
        };
        seq += 1;
        let value = format!("{run_id}-{seq}");
        let ok = insert(member, client, &run_id, "probe", seq, &value)
            .await
            .is_ok();
        record(Attempt {
            at: Timestamp::now(),
            seq: Some(seq),
            acknowledged: ok,
        });
        if !ok {
            current = None;
        }
    }
}

/// The first member that answers and is not in recovery.
async fn writable(dsns: &Dsns) -> Option<(String, Client)> {
    for (member, uri) in dsns {
        let Ok(client) = tokio::time::timeout(Duration::from_millis(500), connect(member, uri))
            .await
            .unwrap_or_else(|_| {
                Err(SqlError::Connect {
                    member: member.clone(),
                    reason: "timeout".into(),
                })
            })
        else {
            continue;
        };
        if let Ok(false) = in_recovery(member, &client).await {
            return Some((member.clone(), client));
        }
    }
    None
}
