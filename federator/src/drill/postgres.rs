//! The drill's SQL: the `federator_drill` table, the canary row, the probe writer, and the checks
//! on the new primary. Connections use TLS as the URI's `sslmode` asks (`tls.rs`). Every write
//! is idempotent (`ON CONFLICT DO NOTHING`), so a step redone by a controller that took the run
//! over writes nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio_postgres::Client;
use topology::drill_api::TABLE;

use super::measure::Attempt;
use super::tls::{self, RustlsConnect, SslMode};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// The probe's cadence: the resolution of the measured write-unavailability.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Why an SQL step failed; the text never contains the URI (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("cannot connect to {member}'s PostgreSQL: {reason}")]
    Connect { member: String, reason: String },
    #[error("{member}'s connection: {source}")]
    Tls {
        member: String,
        #[source]
        source: tls::TlsError,
    },
    #[error("{member}: {what}: {reason}")]
    Query {
        member: String,
        what: &'static str,
        reason: String,
    },
}

/// How to reach one member's PostgreSQL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// libpq URI (may hold a password: never put it in a message).
    pub uri: String,
    /// PEM CA certificate(s) for `sslmode=verify-*`, and where they came from.
    pub ca: Option<(String, Vec<u8>)>,
}

impl From<String> for Target {
    fn from(uri: String) -> Self {
        Target { uri, ca: None }
    }
}

/// Member name → how to reach its PostgreSQL.
pub type Dsns = BTreeMap<String, Target>;

pub async fn connect(member: &str, target: &Target) -> Result<Client, SqlError> {
    let failed = |reason: String| SqlError::Connect {
        member: member.to_owned(),
        reason,
    };
    let tls_failed = |source| SqlError::Tls {
        member: member.to_owned(),
        source,
    };
    let parsed = tls::parse(&target.uri).map_err(tls_failed)?;
    let from_file = match &parsed.root_cert {
        Some(path) if target.ca.is_none() => Some((
            format!("sslrootcert={path}"),
            std::fs::read(path).map_err(|e| {
                tls_failed(tls::TlsError::RootCertFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            })?,
        )),
        _ => None,
    };
    let ca = target
        .ca
        .as_ref()
        .or(from_file.as_ref())
        .map(|(what, pem)| (what.as_str(), pem.as_slice()));
    let timed_out = || failed(format!("no answer within {CONNECT_TIMEOUT:?}"));
    if parsed.mode == SslMode::Disable {
        let connecting = tokio_postgres::connect(&parsed.uri, tokio_postgres::NoTls);
        let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| failed(chain(&e)))?;
        tokio::spawn(conn);
        return Ok(client);
    }
    let config = tls::client_config(parsed.mode, ca).map_err(tls_failed)?;
    let connecting = tokio_postgres::connect(&parsed.uri, RustlsConnect(config));
    let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| timed_out())?
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
    let sql = format!(
        "INSERT INTO {TABLE} (run_id, kind, seq, value) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
    );
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
    /// When this probe writer started.
    pub started_at: Timestamp,
}

impl Probe {
    /// Sequence numbers start at the start time in microseconds: a probe started again for the
    /// same run (another controller took it over) never reuses one (at 100 rows a second it
    /// stays far below the next start's).
    pub fn start(dsns: Dsns, run_id: String) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let started_at = Timestamp::now();
        let first = started_at.as_microsecond();
        let task = tokio::spawn(probe(dsns, run_id, first, log.clone(), stopped));
        Probe {
            log,
            stop,
            task,
            started_at,
        }
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
    first_seq: i64,
    log: Arc<Mutex<Vec<Attempt>>>,
    stopped: watch::Receiver<bool>,
) {
    let record = |attempt: Attempt| {
        if let Ok(mut l) = log.lock() {
            l.push(attempt);
        }
    };
    let mut current: Option<(String, Client)> = None;
    let mut seq: i64 = first_seq;
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
    for (member, target) in dsns {
        let Ok(client) = tokio::time::timeout(Duration::from_millis(500), connect(member, target))
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
