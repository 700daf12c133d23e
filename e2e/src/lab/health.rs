//! Health probes and waiting on them with deadlines (never fixed sleeps).

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{LabError, Result};
use super::layout::LabLayout;
use super::process;
use super::state::{Component, HealthCheck};

const POLL: Duration = Duration::from_millis(150);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Probes the component once. `Err` carries why it is not healthy.
pub async fn probe(layout: &LabLayout, check: &HealthCheck) -> std::result::Result<(), String> {
    let fut = async {
        match check {
            HealthCheck::Etcd { port } => etcd(*port).await,
            HealthCheck::Apiserver { region } => readyz(layout, region).await,
            HealthCheck::Tcp { port } => tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            HealthCheck::UnixSocket { path } => tokio::net::UnixStream::connect(path)
                .await
                .map(drop)
                .map_err(|e| format!("{}: {e}", path.display())),
            HealthCheck::Alive => Ok(()),
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err("probe timed out".into()))
}

async fn etcd(port: u16) -> std::result::Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    if response.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(format!(
            "etcd /health answered: {}",
            response.lines().last().unwrap_or_default()
        ))
    }
}

async fn readyz(layout: &LabLayout, region: &str) -> std::result::Result<(), String> {
    let client = super::kubeconfig::client_from_file(&layout.kubeconfig(region))
        .await
        .map_err(|e| e.to_string())?;
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Waits until the component is healthy; fails early, with its log's tail, if it exits.
pub async fn wait_healthy(
    layout: &LabLayout,
    component: &Component,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let last = match probe(layout, &component.health).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let Some(pid) = component.pid
            && !process::is_alive(pid)
        {
            return Err(LabError::Exited {
                component: component.name.clone(),
                log: component.log.clone(),
                tail: process::log_tail(&component.log, 20),
            });
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                component: component.name.clone(),
                seconds: within.as_secs(),
                last,
                log: component.log.clone(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it returns `Some`, or fails after `within` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout(what.to_owned(), within.as_secs()));
        }
        tokio::time::sleep(POLL).await;
    }
}
