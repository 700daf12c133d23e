//! A userspace TCP proxy on loopback whose behaviour a test switches at run time: pass,
//! blackhole, reset, delay, drop after N bytes, bandwidth limit, garbage.
//!
//! It forwards bytes, nothing more: TLS (the apiservers) and the PostgreSQL protocol pass
//! through untouched, so a client keeps verifying the real server's certificate. A fault applies
//! to the connections already open as well as to new ones, because kube clients keep one
//! long-lived HTTP/2 connection per server: a fault on new connections only would never be seen.
//!
//! ```no_run
//! # async fn t() -> std::io::Result<()> {
//! use e2e::faults::{Fault, FaultProxy};
//! let proxy = FaultProxy::start("127.0.0.1:26544".parse().unwrap()).await?;
//! // point a kubeconfig at proxy.addr() ...
//! proxy.set(Fault::Blackhole);              // every open and new connection goes silent
//! proxy.set(Fault::Pass);                   // held bytes flow again
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to traffic. Switched with [`FaultProxy::set`]; takes effect at once on
/// every connection, open or new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways.
    Pass,
    /// Accept, read nothing, forward nothing, answer nothing: a partition or a dead host
    /// (packets dropped, no RST). Bytes a client already sent stay in the kernel's buffers and
    /// flow once the fault is lifted, as after a healed partition.
    Blackhole,
    /// Close every connection with a TCP RST; new connections are reset as soon as accepted.
    Reset,
    /// The server's answers reach the client this much later: latency, not a queue (chunks
    /// keep their spacing). The opening exchange of a connection — everything the server
    /// sends before the client's second chunk, i.e. the TLS handshake — is not delayed, so
    /// connections open as fast as before and every request takes this much longer: an
    /// apiserver slow to answer, not a slow network.
    Delay(Duration),
    /// Each connection forwards this many bytes (both directions together, counted from when
    /// the connection was opened), then is reset.
    DropAfter(u64),
    /// At most this many bytes per second in each direction of each connection.
    Bandwidth(u64),
    /// The server's bytes are replaced with these (repeated to the same length), and a new
    /// connection gets them once in answer to its first bytes, then is closed: a server that
    /// answers garbage. Under TLS the client sees a broken record, as from a wrong server.
    Garbage(Vec<u8>),
}

/// Counters of a proxy, for tests that must prove traffic went through it.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Bytes forwarded client → server.
    pub to_server: AtomicU64,
    /// Bytes forwarded server → client.
    pub to_client: AtomicU64,
    /// Connections closed with a reset (by [`Fault::Reset`] or [`Fault::DropAfter`]).
    pub resets: AtomicU64,
}

/// A running proxy: `127.0.0.1:<port>` → `upstream`. Stops (and closes every connection) when
/// dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    stats: Arc<Stats>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("fault", &*self.fault.borrow())
            .finish()
    }
}

/// Largest chunk read at once; under [`Fault::Bandwidth`] a chunk is at most 1/10 s worth.
const CHUNK: usize = 16 * 1024;
/// How long the proxy waits for the upstream's TCP handshake before resetting the client.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);

impl FaultProxy {
    /// Listens on an ephemeral loopback port, forwarding to `upstream` (which must be loopback
    /// too: the lab never sends traffic anywhere else).
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::start_on(0, upstream).await
    }

    /// Listens on `127.0.0.1:port` (0: any free port).
    pub async fn start_on(port: u16, upstream: SocketAddr) -> std::io::Result<Self> {
        if !upstream.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the fault proxy forwards to loopback only, not {upstream}"),
            ));
        }
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::Pass);
        let stats = Arc::new(Stats::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            fault.subscribe(),
            stats.clone(),
        ));
        Ok(Self {
            addr,
            upstream,
            fault,
            stats,
            accept,
        })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the fault; open connections see it at once.
    pub fn set(&self, fault: Fault) {
        tracing::info!(proxy = %self.addr, upstream = %self.upstream, ?fault, "fault proxy");
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        self.fault.borrow().clone()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the sender ends every connection task (their `changed()` fails).
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<Fault>,
    stats: Arc<Stats>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        tokio::spawn(connection(client, upstream, fault.clone(), stats.clone()));
    }
}

fn reset(stream: &TcpStream, stats: &Stats) {
    let _ = stream.set_zero_linger();
    stats.resets.fetch_add(1, Ordering::Relaxed);
}

/// Waits until the fault is no longer `Blackhole`; `false` once the proxy is gone.
async fn while_blackholed(fault: &mut watch::Receiver<Fault>) -> bool {
    while *fault.borrow_and_update() == Fault::Blackhole {
        if fault.changed().await.is_err() {
            return false;
        }
    }
    true
}

fn garbage_of(pattern: &[u8], len: usize) -> Vec<u8> {
    if pattern.is_empty() {
        return vec![0; len];
    }
    pattern.iter().copied().cycle().take(len).collect()
}

async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    stats: Arc<Stats>,
) {
    // Before connecting upstream: a blackhole holds the accepted connection unanswered.
    if !while_blackholed(&mut fault).await {
        return;
    }
    let current = fault.borrow_and_update().clone();
    match current {
        Fault::Reset => return reset(&client, &stats),
        Fault::Garbage(pattern) => {
            let mut first = [0u8; 1];
            let _ = client.read(&mut first).await;
            let _ = client.write_all(&garbage_of(&pattern, 512)).await;
            let _ = client.shutdown().await;
            return;
        }
        _ => {}
    }
    let server = match tokio::time::timeout(UPSTREAM_CONNECT, TcpStream::connect(upstream)).await {
        Ok(Ok(server)) => server,
        _ => return reset(&client, &stats),
    };
    let _ = server.set_nodelay(true);
    let mut server = server;
    let outcome = pump(&mut client, &mut server, &mut fault, &stats).await;
    if outcome == End::Reset {
        reset(&client, &stats);
        let _ = server.set_zero_linger();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    Reset,
}

/// Forwards both ways until both sides closed, applying the current fault to every chunk and
/// re-reading it whenever it changes.
async fn pump(
    client: &mut TcpStream,
    server: &mut TcpStream,
    fault: &mut watch::Receiver<Fault>,
    stats: &Stats,
) -> End {
    let (mut client_rd, mut client_wr) = client.split();
    let (mut server_rd, mut server_wr) = server.split();
    let mut up = vec![0u8; CHUNK];
    let mut down = vec![0u8; CHUNK];
    let (mut client_open, mut server_open) = (true, true);
    let mut forwarded: u64 = 0;
    let mut client_chunks: u64 = 0;
    // Server bytes held back by `Delay`, with when each may go.
    let mut delayed: VecDeque<(tokio::time::Instant, Vec<u8>)> = VecDeque::new();
    let mut server_eof = false;
    while client_open || server_open || !delayed.is_empty() {
        if server_eof && delayed.is_empty() {
            server_eof = false;
            let _ = client_wr.shutdown().await;
        }
        let release = delayed.front().map(|(at, _)| *at);
        let current = fault.borrow_and_update().clone();
        let limit = match &current {
            Fault::Blackhole => {
                if !while_blackholed(fault).await {
                    return End::Closed;
                }
                continue;
            }
            Fault::Reset => return End::Reset,
            Fault::DropAfter(n) if forwarded >= *n => return End::Reset,
            Fault::DropAfter(n) => (*n - forwarded).min(CHUNK as u64) as usize,
            Fault::Bandwidth(bps) => ((*bps / 10).max(1) as usize).min(CHUNK),
            _ => CHUNK,
        };
        tokio::select! {
            changed = fault.changed() => {
                if changed.is_err() {
                    return End::Closed;
                }
            }
            () = tokio::time::sleep_until(release.unwrap_or_else(tokio::time::Instant::now)), if release.is_some() => {
                let (_, bytes) = delayed.pop_front().expect("a release time comes from the queue");
                if client_wr.write_all(&bytes).await.is_err() {
                    return End::Reset;
                }
            }
            read = client_rd.read(&mut up[..limit]), if client_open => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    client_open = false;
                    let _ = server_wr.shutdown().await;
                    continue;
                }
                client_chunks += 1;
                if server_wr.write_all(&up[..n]).await.is_err() {
                    return End::Reset;
                }
                stats.to_server.fetch_add(n as u64, Ordering::Relaxed);
                forwarded += n as u64;
                throttle(&current, n).await;
            }
            read = server_rd.read(&mut down[..limit]), if server_open => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    server_open = false;
                    // Closed after what is still held back.
                    server_eof = true;
                    continue;
                }
                let bytes = match &current {
                    Fault::Garbage(pattern) => garbage_of(pattern, n),
                    _ => down[..n].to_vec(),
                };
                let now = tokio::time::Instant::now();
                match current {
                    Fault::Delay(d) if client_chunks >= 2 => delayed.push_back((now + d, bytes)),
                    // Behind held-back bytes: keep the order.
                    _ if !delayed.is_empty() => delayed.push_back((now, bytes)),
                    _ => {
                        if client_wr.write_all(&bytes).await.is_err() {
                            return End::Reset;
                        }
                    }
                }
                stats.to_client.fetch_add(n as u64, Ordering::Relaxed);
                forwarded += n as u64;
                throttle(&current, n).await;
            }
        }
    }
    End::Closed
}

async fn throttle(fault: &Fault, n: usize) {
    if let Fault::Bandwidth(bps) = fault {
        let secs = n as f64 / (*bps).max(1) as f64;
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on loopback; returns its address.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        stream.read_exact(&mut got).await?;
        Ok(got)
    }

    const SHORT: Duration = Duration::from_millis(300);
    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn passes_bytes_both_ways_and_counts_them() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
        assert_eq!(proxy.stats().accepted.load(Ordering::Relaxed), 1);
        assert_eq!(proxy.stats().to_server.load(Ordering::Relaxed), 5);
        assert_eq!(proxy.stats().to_client.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn refuses_a_non_loopback_upstream() {
        let err = FaultProxy::start("192.0.2.1:443".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("loopback only"), "{err}");
    }

    #[tokio::test]
    async fn a_blackhole_silences_open_and_new_connections_until_lifted() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await.unwrap(), b"a");
        proxy.set(Fault::Blackhole);
        // The open connection: no answer.
        let silent = tokio::time::timeout(SHORT, round_trip(&mut open, b"b")).await;
        assert!(silent.is_err(), "an answer came through the blackhole");
        // A new one is accepted (the handshake succeeds) and gets no answer either.
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        let silent = tokio::time::timeout(SHORT, round_trip(&mut fresh, b"c")).await;
        assert!(silent.is_err(), "a new connection was answered");
        // Lifted: what was sent meanwhile arrives, as after a healed partition.
        proxy.set(Fault::Pass);
        let mut got = [0u8; 1];
        tokio::time::timeout(LONG, open.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"b");
        tokio::time::timeout(LONG, fresh.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"c");
    }

    #[tokio::test]
    async fn reset_closes_open_connections_and_refuses_new_ones() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await.unwrap(), b"a");
        proxy.set(Fault::Reset);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(LONG, open.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the open connection still delivers: {read:?}"
        );
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        let answered = tokio::time::timeout(LONG, round_trip(&mut fresh, b"x"))
            .await
            .unwrap();
        assert!(answered.is_err(), "a new connection was served");
        assert!(proxy.stats().resets.load(Ordering::Relaxed) >= 2);
    }

    #[tokio::test]
    async fn delay_holds_every_answer_after_the_opening_exchange() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        proxy.set(Fault::Delay(Duration::from_millis(400)));
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        // The opening exchange (a TLS handshake's ClientHello and the server's flight) is fast.
        let started = Instant::now();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
        assert!(started.elapsed() < Duration::from_millis(400));
        s.write_all(b"finished").await.unwrap();
        let mut fin = [0u8; 8];
        s.read_exact(&mut fin).await.unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            assert_eq!(round_trip(&mut s, b"ping").await.unwrap(), b"ping");
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(400), "took {took:?}");
            assert!(took < LONG, "took {took:?}");
        }
        proxy.set(Fault::Pass);
        let started = Instant::now();
        round_trip(&mut s, b"ping").await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[tokio::test]
    async fn delay_is_latency_not_a_queue() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut s, b"1").await.unwrap();
        round_trip(&mut s, b"2").await.unwrap();
        proxy.set(Fault::Delay(Duration::from_millis(500)));
        // Five requests sent 50 ms apart all arrive ~500 ms after they were sent, not 5 × 500.
        let started = Instant::now();
        for i in 0..5u8 {
            s.write_all(&[b'a' + i]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut got = [0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcde");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(500), "took {took:?}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }

    #[tokio::test]
    async fn drop_after_n_bytes_forwards_exactly_n_then_resets() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        proxy.set(Fault::DropAfter(10));
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        // 3 bytes out, 3 back: 6 of 10.
        assert_eq!(round_trip(&mut s, b"abc").await.unwrap(), b"abc");
        // 4 more out reach 10; their echo is over the limit.
        s.write_all(b"defg").await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(LONG, s.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty(), "got {rest:?} past the limit");
        assert!(read.is_err() || rest.is_empty());
        assert_eq!(proxy.stats().to_server.load(Ordering::Relaxed), 7);
        assert_eq!(proxy.stats().to_client.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn bandwidth_limits_the_rate() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        proxy.set(Fault::Bandwidth(20_000));
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let payload = vec![7u8; 10_000];
        let started = Instant::now();
        assert_eq!(round_trip(&mut s, &payload).await.unwrap(), payload);
        let took = started.elapsed();
        // 10 kB at 20 kB/s: ~0.5 s each way, pipelined; well over the unthrottled ~1 ms.
        assert!(took >= Duration::from_millis(450), "took {took:?}");
        assert!(took < LONG, "took {took:?}");
    }

    #[tokio::test]
    async fn garbage_replaces_the_servers_bytes() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.set(Fault::Garbage(b"XY".to_vec()));
        assert_eq!(round_trip(&mut open, b"hello").await.unwrap(), b"XYXYX");
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        fresh.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(LONG, fresh.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, garbage_of(b"XY", 512));
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let addr = proxy.addr();
        let mut open = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await.unwrap(), b"a");
        drop(proxy);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(LONG, open.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
