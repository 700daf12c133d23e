//! The real-CNPG tier's bridge between the host's loopback and a lab network namespace
//! (`e2e::lab::real::netns_proxy`): a forward listening inside the namespace reaches a server
//! on the host's loopback, the CONNECT proxy on a unix socket reaches a server inside the
//! namespace, and neither side is reachable directly from the other. Needs root (it creates a
//! network namespace), as the real tier does.

use std::net::SocketAddr;
use std::process::Command;

use e2e::lab::real::netns_proxy::{self, Namespace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A network namespace that is deleted when the test ends, however it ends.
struct TestNetns(String);

impl TestNetns {
    fn create(test: &str) -> Self {
        let name = format!("flab-{test}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("running ip");
            assert!(
                status.success(),
                "ip {args:?} failed (the real tier needs root and iproute2)"
            );
        };
        ip(&["netns", "add", &name]);
        let netns = Self(name);
        ip(&["-n", &netns.0, "link", "set", "lo", "up"]);
        netns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Accepts once on `listener` and answers `reply`.
async fn answer_once(listener: tokio::net::TcpListener, reply: &'static str) {
    let (mut stream, _) = listener.accept().await.unwrap();
    stream.write_all(reply.as_bytes()).await.unwrap();
}

async fn read_all(mut stream: impl AsyncReadExt + Unpin) -> String {
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test]
async fn a_forward_in_the_namespace_reaches_the_hosts_loopback() {
    let netns = TestNetns::create("fwd");
    let namespace = Namespace::enter(netns.path().as_ref()).unwrap();
    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = host.local_addr().unwrap();
    let inside: SocketAddr = "127.0.0.1:33001".parse().unwrap();
    let listener = namespace.listen(inside).await.unwrap();
    tokio::spawn(netns_proxy::forward(listener, host_addr));
    tokio::spawn(answer_once(host, "from the host"));

    // The namespace's own loopback is not the host's: the host server is unreachable directly.
    assert!(
        namespace.dial(host_addr).await.is_err(),
        "{host_addr} on the host must not be reachable from inside the namespace"
    );
    let client = namespace.dial(inside).await.unwrap();
    assert_eq!(read_all(client).await, "from the host");
}

#[tokio::test]
async fn the_connect_proxy_dials_inside_the_namespace() {
    let netns = TestNetns::create("connect");
    let namespace = Namespace::enter(netns.path().as_ref()).unwrap();
    let inside: SocketAddr = "127.0.0.1:33002".parse().unwrap();
    let server = namespace.listen(inside).await.unwrap();
    tokio::spawn(answer_once(server, "from the namespace"));
    assert!(
        tokio::net::TcpStream::connect(inside).await.is_err(),
        "{inside} inside the namespace must not be reachable from the host"
    );

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("egress.sock");
    let listener = netns_proxy::bind_unix(&socket).unwrap();
    tokio::spawn(netns_proxy::connect_proxy(namespace, listener));

    let mut client = tokio::net::UnixStream::connect(&socket).await.unwrap();
    client
        .write_all(b"CONNECT 127.0.0.1:33002 HTTP/1.1\r\nHost: 127.0.0.1:33002\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(client).await;
    assert_eq!(
        text,
        "HTTP/1.1 200 Connection established\r\n\r\nfrom the namespace"
    );

    // Nothing listens on the next port inside the namespace: the apiserver gets a 502 at once.
    let mut client = tokio::net::UnixStream::connect(&socket).await.unwrap();
    client
        .write_all(b"CONNECT 127.0.0.1:33003 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(client).await;
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
}
