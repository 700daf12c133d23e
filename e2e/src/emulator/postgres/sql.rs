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
}

pub async fn probe(port: u16) -> Result<Probe> {
    let client = connect(port).await?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('archive_mode'), \
             (SELECT timeline_id::bigint FROM pg_control_checkpoint())",
            &[],
        )
        .await
        .map_err(|source| EmulatorError::Sql { port, source })?;
    Ok(Probe {
        in_recovery: row.get(0),
        archive_mode: row.get(1),
        timeline: row.get(2),
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
