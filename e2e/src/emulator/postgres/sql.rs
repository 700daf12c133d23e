//! SQL on an instance over loopback TCP (trust authentication, user `postgres`).

use crate::emulator::error::{EmulatorError, Result};

/// The libpq URI of an instance (what `federator-lab dsn` prints).
pub fn uri(port: u16) -> String {
    format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable")
}

pub async fn connect(port: u16) -> Result<tokio_postgres::Client> {
    let config = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10 application_name=federator-emulator"
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .map_err(|source| EmulatorError::Sql { port, source })?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped or the server goes away; either is
        // expected here.
        let _ = connection.await;
    });
    Ok(client)
}

/// What the emulator asks a running instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub in_recovery: bool,
    pub archive_mode: String,
    /// Timeline of the latest checkpoint (moves at promotion's checkpoint and restartpoints).
    pub timeline: i64,
    /// The archiver's last outcome (`pg_stat_archiver`): None before its first attempt.
    pub archiving: Option<Archiving>,
}

/// What `pg_stat_archiver` says of the last archive attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archiving {
    Working,
    /// The last attempt failed (newer than the last success), on this WAL file.
    Failing {
        wal: String,
    },
}

pub async fn probe(port: u16) -> Result<Probe> {
    let client = connect(port).await?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('archive_mode'), \
             (SELECT timeline_id::bigint FROM pg_control_checkpoint()), \
             a.archived_count + a.failed_count > 0, \
             a.last_failed_time IS NOT NULL AND (a.last_archived_time IS NULL \
               OR a.last_failed_time > a.last_archived_time), \
             coalesce(a.last_failed_wal, '') FROM pg_stat_archiver a",
            &[],
        )
        .await
        .map_err(|source| EmulatorError::Sql { port, source })?;
    Ok(Probe {
        in_recovery: row.get(0),
        archive_mode: row.get(1),
        timeline: row.get(2),
        archiving: row.get::<_, bool>(3).then(|| {
            if row.get::<_, bool>(4) {
                Archiving::Failing { wal: row.get(5) }
            } else {
                Archiving::Working
            }
        }),
    })
}

/// `CHECKPOINT`: on a standby this is a restartpoint, which is what moves its pg_controldata
/// "Latest checkpoint's" fields up to what it replayed (contract §3, §10).
pub async fn checkpoint(port: u16) -> Result<()> {
    let client = connect(port).await?;
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(|source| EmulatorError::Sql { port, source })
}

/// A double-quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What CNPG's initdb bootstrap does after `initdb`: the application's owner role (`LOGIN`) and
/// its database owned by it. Idempotent, so a pass interrupted halfway can run it again.
pub async fn create_app_database(port: u16, database: &str, owner: &str) -> Result<()> {
    let client = connect(port).await?;
    let sql_error = |source| EmulatorError::Sql { port, source };
    let role_exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&owner])
        .await
        .map_err(sql_error)?
        .is_some();
    if !role_exists {
        client
            .batch_execute(&format!("CREATE ROLE {} LOGIN", ident(owner)))
            .await
            .map_err(sql_error)?;
    }
    let database_exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(sql_error)?
        .is_some();
    if !database_exists {
        client
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                ident(database),
                ident(owner)
            ))
            .await
            .map_err(sql_error)?;
    }
    Ok(())
}
