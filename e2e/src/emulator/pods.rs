//! The instance pods and their status endpoint, as far as a client of the member API server can
//! see them: CNPG runs each instance in a pod `<cluster>-<n>` whose instance manager serves
//! `/pg/status` on port 8000, which `kubectl cnpg status` (and Federator, to wait for a replica's
//! replay before an archive-only promotion) reads through the API server's `pods/proxy`.
//!
//! The emulator has no kubelet: it creates the pod object of the designated primary (`-1`, with
//! the ServiceAccount CNPG names after the Cluster) and writes its status (`Running`, a pod IP
//! derived from the instance's PostgreSQL port). The lab points its API servers' egress selector
//! (`cluster`) at this emulator's unix socket, so a pods/proxy request never leaves the machine:
//! the API server sends `CONNECT <pod ip>:8000` there, and the emulator answers the tunnelled
//! HTTP request itself from the instance's PostgreSQL.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;

use axum::body::Body;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::Result;
use super::layout::EmulatorLayout;
use super::pass::{FIELD_MANAGER, Pass};
use super::postgres::sql;

/// CNPG's instance status port.
pub const STATUS_PORT: u16 = 8000;
/// The first two octets of every emulated pod IP (global unicast, as the API server requires of
/// a proxied pod; never routed: the egress socket takes every connection to it).
const POD_NET: [u8; 2] = [10, 88];
/// A CONNECT request head larger than this is refused (the API server's is ~60 bytes).
const MAX_HEAD: usize = 8 * 1024;

/// The pod IP of the instance that listens on PostgreSQL port `port`.
pub fn pod_ip(port: u16) -> Ipv4Addr {
    let [hi, lo] = port.to_be_bytes();
    Ipv4Addr::new(POD_NET[0], POD_NET[1], hi, lo)
}

/// The PostgreSQL port of the instance whose pod IP is `ip`.
pub fn port_of(ip: Ipv4Addr) -> Option<u16> {
    let [a, b, hi, lo] = ip.octets();
    ([a, b] == POD_NET).then(|| u16::from_be_bytes([hi, lo]))
}

/// The pod objects written by this emulator process, by (Cluster uid, PostgreSQL port): each is
/// written once per process (a restarted emulator writes them again, idempotently).
#[derive(Default)]
pub struct Written(Mutex<HashSet<(String, u16)>>);

/// Creates the designated primary's pod (and the Cluster's ServiceAccount) if missing, and
/// writes its status: `Running` at the instance's pod IP.
pub async fn ensure(pass: &Pass<'_>, client: &kube::Client, written: &Written) -> Result<()> {
    let uid = pass.cluster.metadata.uid.clone().unwrap_or_default();
    let key = (uid.clone(), pass.record.port);
    if written.0.lock().map(|w| w.contains(&key)).unwrap_or(false) {
        return Ok(());
    }
    let namespace = pass.namespace();
    let name = pass.primary_pod();
    let owner = json!([{
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "name": pass.name,
        "uid": uid,
        "controller": true,
    }]);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account = serde_json::from_value(json!({
        "metadata": {"name": pass.name, "namespace": namespace, "ownerReferences": owner},
    }))
    .expect("a valid ServiceAccount");
    created(accounts.create(&PostParams::default(), &account).await)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "cnpg.io/cluster": pass.name,
                "cnpg.io/instanceName": name,
                "cnpg.io/podRole": "instance",
            },
            "ownerReferences": owner,
        },
        "spec": {
            "serviceAccountName": pass.name,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "postgres",
                "image": "federator-emulator",
                // No `--status-port-tls`: the status port speaks plain HTTP.
                "command": ["/controller/manager", "instance", "run"],
                "ports": [{"name": "status", "containerPort": STATUS_PORT}],
            }],
        },
    }))
    .expect("a valid Pod");
    created(pods.create(&PostParams::default(), &pod).await)?;
    let ip = pod_ip(pass.record.port).to_string();
    pods.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
        }})),
    )
    .await?;
    if let Ok(mut w) = written.0.lock() {
        w.insert(key);
    }
    Ok(())
}

/// A create that found the object already there is fine.
fn created<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Serves the API server's egress (HTTP CONNECT) on the unix socket `socket`: a tunnel to
/// `<pod ip>:8000` of one of this member's instances carries one HTTP request for `/pg/status`.
pub async fn serve_egress(layout: EmulatorLayout, member: String, socket: PathBuf) {
    if let Some(dir) = socket.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&socket);
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(error) => {
            tracing::warn!(%error, socket = %socket.display(), "cannot serve the API server's egress; pods/proxy will fail");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (layout, member) = (layout.clone(), member.clone());
        tokio::spawn(async move {
            if let Err(error) = tunnel(stream, &layout, &member).await {
                tracing::debug!(%error, "egress tunnel ended");
            }
        });
    }
}

async fn tunnel(
    mut stream: tokio::net::UnixStream,
    layout: &EmulatorLayout,
    member: &str,
) -> std::io::Result<()> {
    // Byte by byte up to the end of the head: what follows belongs to the tunnel.
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
        if head.len() > MAX_HEAD {
            return stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
                .await;
        }
    }
    let port = connect_target(&head)
        .filter(|t| t.port() == STATUS_PORT)
        .and_then(|t| match t.ip() {
            std::net::IpAddr::V4(ip) => port_of(ip),
            std::net::IpAddr::V6(_) => None,
        })
        .filter(|port| layout.records(member).iter().any(|r| r.port == *port));
    let Some(port) = port else {
        let line = String::from_utf8_lossy(&head);
        let reply = format!(
            "HTTP/1.1 502 Bad Gateway\r\n\r\nno instance status behind {}",
            line.lines().next().unwrap_or_default()
        );
        return stream.write_all(reply.as_bytes()).await;
    };
    stream
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    let service =
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| async move {
            Ok::<_, Infallible>(answer(request, port).await)
        });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
        .map_err(std::io::Error::other)
}

fn connect_target(head: &[u8]) -> Option<SocketAddr> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    (parts.next()? == "CONNECT").then_some(())?;
    let target = parts.next()?.parse().ok()?;
    parts.next()?.starts_with("HTTP/1.").then_some(target)
}

async fn answer(request: Request<hyper::body::Incoming>, port: u16) -> Response<Body> {
    let reply = |code: StatusCode, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a valid response")
    };
    if request.uri().path() != "/pg/status" {
        return reply(StatusCode::NOT_FOUND, "{}".into());
    }
    match instance_status(port).await {
        Ok(doc) => reply(StatusCode::OK, doc.to_string()),
        Err(error) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": error.to_string()}).to_string(),
        ),
    }
}

/// What CNPG's instance manager reports at `/pg/status` (`postgres.PostgresqlStatus`), the
/// fields PostgreSQL can tell: LSNs as `X/Y` text, empty when not applicable.
pub async fn instance_status(port: u16) -> Result<serde_json::Value> {
    let client = sql::connect(port).await?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
             CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_lsn()::text END, \
             COALESCE(pg_last_wal_receive_lsn()::text, ''), \
             COALESCE(pg_last_wal_replay_lsn()::text, ''), \
             (SELECT timeline_id::bigint FROM pg_control_checkpoint()), \
             (SELECT system_identifier::text FROM pg_control_system()), \
             (SELECT count(*) > 0 FROM pg_stat_wal_receiver)",
            &[],
        )
        .await
        .map_err(|source| super::error::EmulatorError::Sql { port, source })?;
    let in_recovery: bool = row.get(0);
    let mut received: String = row.get(2);
    let replayed: String = row.get(3);
    // As CNPG does: replay read after receive may be ahead of it.
    if received.is_empty() {
        received.clone_from(&replayed);
    }
    Ok(json!({
        "currentLsn": row.get::<_, String>(1),
        "receivedLsn": if in_recovery { received } else { String::new() },
        "replayLsn": if in_recovery { replayed } else { String::new() },
        "systemID": row.get::<_, String>(5),
        "isPrimary": !in_recovery,
        "replayPaused": false,
        "pendingRestart": false,
        "isWalReceiverActive": row.get::<_, bool>(6),
        "timeLineID": row.get::<_, i64>(4),
        "node": "",
        "pod": null,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_map_back_to_their_instance_port() {
        for port in [1, 16_543, 26_843, 65_535] {
            let ip = pod_ip(port);
            assert!(!ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified());
            assert_eq!(port_of(ip), Some(port));
        }
        assert_eq!(port_of(Ipv4Addr::new(10, 89, 1, 1)), None);
        assert_eq!(
            connect_target(b"CONNECT 10.88.64.31:8000 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some("10.88.64.31:8000".parse().unwrap())
        );
        assert_eq!(connect_target(b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
