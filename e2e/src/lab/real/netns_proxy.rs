//! The bridge between the host's loopback and a region's network namespace, for the real-CNPG
//! tier: the lab's apiservers stay on 127.0.0.1 (as in the emulator tier), the region's node and
//! pods live in a namespace the lab made, with no route to the host.
//!
//! - **Forwards** listen inside the namespace and dial the host: pods and node components reach
//!   their apiserver at `<node ip>:<port>` (the `kubernetes` Service endpoint), which is the
//!   apiserver on `127.0.0.1:<port>`.
//! - **Exposes** listen on the host and dial inside the namespace (`federator-lab dsn` on the
//!   real tier: a Cluster's `-rw` Service on the host's loopback, for psql).
//! - **An HTTP CONNECT proxy on a unix socket** dials inside the namespace: the apiserver's
//!   egress selector (`cluster`) sends admission webhooks (CNPG's) and kubelet connections through
//!   it to pod and node IPs. A unix socket is reachable from every network namespace.
//!
//! Sockets keep the namespace they were created in, so one thread moves into the region's
//! namespace and only creates sockets there; the tokio runtime (host namespace) does the I/O.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How long a dial inside the namespace may take: a pod IP that does not answer (pod gone)
/// fails the apiserver's call instead of hanging it.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP CONNECT request head larger than this is refused (the apiserver's is ~60 bytes).
const MAX_HEAD: usize = 8 * 1024;

enum Request {
    Listen(SocketAddr, oneshot::Sender<std::io::Result<TcpListener>>),
    Dial(SocketAddr, oneshot::Sender<std::io::Result<TcpStream>>),
}

/// Creates sockets inside one network namespace, on a thread that lives there.
#[derive(Clone)]
pub struct Namespace {
    requests: mpsc::Sender<Request>,
}

impl Namespace {
    /// Starts the namespace's thread. Fails if `netns` (e.g. `/run/netns/<name>`) cannot be
    /// entered.
    pub fn enter(netns: &Path) -> std::io::Result<Self> {
        let file = File::open(netns)?;
        let (requests, receiver) = mpsc::channel::<Request>();
        let (entered_tx, entered_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || {
                let entered = rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(std::io::Error::from);
                let ok = entered.is_ok();
                let _ = entered_tx.send(entered);
                if !ok {
                    return;
                }
                for request in receiver {
                    match request {
                        Request::Listen(addr, reply) => {
                            let _ = reply.send(TcpListener::bind(addr));
                        }
                        Request::Dial(addr, reply) => {
                            let _ = reply.send(TcpStream::connect_timeout(&addr, DIAL_TIMEOUT));
                        }
                    }
                }
            })?;
        entered_rx
            .recv()
            .map_err(|_| std::io::Error::other("the netns thread exited"))??;
        Ok(Self { requests })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<std::io::Result<T>>) -> Request,
    ) -> std::io::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .map_err(|_| std::io::Error::other("the netns thread exited"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the netns thread dropped the request"))?
    }

    /// A listener inside the namespace, registered with the current tokio runtime.
    pub async fn listen(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let listener = self.ask(|tx| Request::Listen(addr, tx)).await?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// A connection made from inside the namespace.
    pub async fn dial(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let stream = self.ask(|tx| Request::Dial(addr, tx)).await?;
        stream.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(stream)
    }
}

/// Accepts on `listener` (made with [`Namespace::listen`]) and connects each client to `target`
/// on the host.
pub async fn forward(listener: tokio::net::TcpListener, target: SocketAddr) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    loop {
        let (mut client, _) = listener.accept().await?;
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(target).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::warn!(%listen, %target, "cannot reach the host side: {e}"),
            }
        });
    }
}

/// Accepts on `listener` (on the host) and connects each client to `target` inside the
/// namespace: how `federator-lab dsn` exposes a Cluster's `-rw` Service on the host's loopback.
pub async fn expose(
    listener: tokio::net::TcpListener,
    namespace: Namespace,
    target: SocketAddr,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let namespace = namespace.clone();
        tokio::spawn(async move {
            match namespace.dial(target).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::warn!(%listen, %target, "cannot reach the namespace side: {e}"),
            }
        });
    }
}

/// Binds the unix socket `path` for [`connect_proxy`], replacing a stale one.
pub fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    tokio::net::UnixListener::bind(path)
}

/// Serves HTTP CONNECT on `listener`, dialing inside the namespace.
pub async fn connect_proxy(
    namespace: Namespace,
    listener: tokio::net::UnixListener,
) -> std::io::Result<()> {
    loop {
        let (client, _) = listener.accept().await?;
        let namespace = namespace.clone();
        tokio::spawn(async move {
            if let Err(e) = tunnel(&namespace, client).await {
                tracing::debug!("CONNECT tunnel ended: {e}");
            }
        });
    }
}

async fn tunnel(namespace: &Namespace, mut client: tokio::net::UnixStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let end = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > MAX_HEAD {
            client
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    let target = match connect_target(&head[..end]) {
        Some(target) => target,
        None => {
            client
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    let mut upstream = match namespace.dial(target).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let reply = format!("HTTP/1.1 502 Bad Gateway\r\n\r\ncannot reach {target}: {e}");
            client.write_all(reply.as_bytes()).await?;
            return Ok(());
        }
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    // Bytes the client sent after the head (it should wait for the 200, but need not).
    upstream.write_all(&head[end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// The client side of [`connect_proxy`]: a stream to `target` (an address inside the region's
/// namespace) through the CONNECT socket at `socket`. How host-side tools (the e2e tests) reach
/// a pod.
pub async fn connect_through(
    socket: &Path,
    target: SocketAddr,
) -> std::io::Result<tokio::net::UnixStream> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    // Read byte by byte up to the end of the head: what follows belongs to the tunnel.
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || head.len() > MAX_HEAD {
            return Err(std::io::Error::other(format!(
                "the netns proxy closed the CONNECT to {target}: {}",
                String::from_utf8_lossy(&head)
            )));
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head);
    if status.starts_with("HTTP/1.1 200") {
        Ok(stream)
    } else {
        let mut rest = String::new();
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.read_to_string(&mut rest))
            .await;
        Err(std::io::Error::other(format!(
            "CONNECT {target}: {}{rest}",
            status.trim()
        )))
    }
}

/// The `host:port` of `CONNECT host:port HTTP/1.x`, as an IP address (the apiserver dials pod
/// and node IPs; there is no DNS to resolve names with).
fn connect_target(head: &[u8]) -> Option<SocketAddr> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    if parts.next()? != "CONNECT" {
        return None;
    }
    let target = parts.next()?;
    parts.next()?.starts_with("HTTP/1.").then_some(())?;
    target.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests_name_an_ip_and_port() {
        let head = b"CONNECT 10.101.0.7:9443 HTTP/1.1\r\nHost: 10.101.0.7:9443\r\n\r\n";
        assert_eq!(
            connect_target(head),
            Some("10.101.0.7:9443".parse().unwrap())
        );
        assert_eq!(connect_target(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            connect_target(b"CONNECT example.org:443 HTTP/1.1\r\n\r\n"),
            None
        );
        assert_eq!(connect_target(b"CONNECT 10.0.0.1:1\r\n\r\n"), None);
    }
}
