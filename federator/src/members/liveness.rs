//! Whether each member's API server answers at all, asked every few seconds with a cheap,
//! bounded request (`GET /version`).
//!
//! A watch cannot tell: a watch whose connection is blackholed (a partition, a dead host, packets
//! dropped without a reset) neither fails nor times out, so without this probe a partitioned
//! member stays "reachable" on the last state it showed. A member that does not answer within
//! [`DEADLINE`] is unreachable until it answers again; then its watches are restarted, since a
//! watch connection that lived through a partition may be dead without knowing it.

use std::sync::Weak;
use std::time::Duration;

use kube::Client;

use super::Inner;
use super::watch::AbortOnDrop;

/// Default time between the starts of two probes while the member answers.
pub const INTERVAL: Duration = Duration::from_secs(3);
/// Default time a probe may take before the member counts as unreachable. Longer than a slow
/// but working API server takes (seconds under APF queueing), shorter than the member request
/// timeout (15 s), so that a member is marked unreachable before a patch to it times out.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The probe's timing: the controller's `--member-probe-interval` and `--member-probe-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub interval: Duration,
    pub deadline: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            interval: INTERVAL,
            deadline: DEADLINE,
        }
    }
}

/// Bounds of the flags. Probing more often than every second only loads the members' API
/// servers; less often than every 5 minutes leaves a partition unnoticed for that long.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(300);
/// A deadline under a second counts a busy API server as gone.
const MIN_DEADLINE: Duration = Duration::from_secs(1);

impl Liveness {
    /// Checks the flags' values; the error names the flag, the bound and the fix.
    pub fn new(interval: Duration, deadline: Duration) -> Result<Self, String> {
        let secs = |d: Duration| format!("{}s", d.as_secs_f64());
        if interval < MIN_INTERVAL || interval > MAX_INTERVAL {
            return Err(format!(
                "--member-probe-interval {}: must be between {} and {} (how often each member's \
                 API server is asked GET /version; default {})",
                secs(interval),
                secs(MIN_INTERVAL),
                secs(MAX_INTERVAL),
                secs(INTERVAL)
            ));
        }
        let requests = kubeconfigs::Timeouts::REQUESTS
            .read
            .expect("member requests have a read timeout");
        if deadline < MIN_DEADLINE || deadline >= requests {
            return Err(format!(
                "--member-probe-timeout {}: must be at least {} and less than the member request \
                 timeout ({}), so that a silent member is marked unreachable before a patch to it \
                 times out; default {}",
                secs(deadline),
                secs(MIN_DEADLINE),
                secs(requests),
                secs(DEADLINE)
            ));
        }
        Ok(Self { interval, deadline })
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The API server answered (any HTTP answer: a 401/403 is reported by the watches).
    Answered,
    /// No answer within the deadline, or no connection within the connect timeout: the server
    /// accepts connections and says nothing, or packets are dropped on the way.
    NoAnswer,
    /// The connection was refused (reset): nothing listens there, or a firewall rejects it.
    Refused,
    /// Another failure (TLS, DNS, a broken answer), with its text (not yet redacted).
    Failed(String),
}

impl Probe {
    /// Why the member is unreachable, with what to check; `None` when it answered. Stable for
    /// one kind of failure (no timings, no counters), so a lasting outage is one state, not a
    /// stream of changes.
    pub(crate) fn unreachable_text(
        &self,
        member: &str,
        server: &str,
        deadline: Duration,
    ) -> Option<String> {
        let fix = format!(
            "steps that need {member} hold until it answers. Check the network path from the \
             hub to {server} and the API server's health (`kubectl get --raw /readyz` on that \
             cluster); `federator member list` shows what Federator sees (docs/faults.md)"
        );
        let what = match self {
            Probe::Answered => return None,
            Probe::NoAnswer => format!(
                "its API server {server} did not answer GET /version within {}s (it accepts \
                 connections and says nothing, or packets are dropped: a network partition, a \
                 firewall, a hung API server)",
                deadline.as_secs_f64()
            ),
            Probe::Refused => format!(
                "its API server {server} refused the connection (nothing listens there, or a \
                 firewall rejects it)"
            ),
            Probe::Failed(error) => {
                format!("GET /version on its API server {server} failed: {error}")
            }
        };
        Some(format!("{what}; {fix}"))
    }
}

/// Identifies the member entry a probe was started for (a replaced entry's probe is ignored).
#[derive(Debug, Clone)]
pub(crate) struct ProbeTarget {
    pub member: String,
    pub generation: u64,
}

pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    pool: Weak<Inner>,
    target: ProbeTarget,
    client: Client,
    timing: Liveness,
) -> AbortOnDrop {
    AbortOnDrop::new(runtime.spawn(run(pool, target, client, timing)))
}

async fn run(pool: Weak<Inner>, target: ProbeTarget, client: Client, timing: Liveness) {
    loop {
        let started = tokio::time::Instant::now();
        let found = probe(&client, timing.deadline).await;
        {
            let Some(pool) = pool.upgrade() else {
                return;
            };
            Inner::on_probe(&pool, &target, found);
        }
        // A probe that timed out is followed at once: the next answer ends the outage.
        tokio::time::sleep_until(started + timing.interval).await;
    }
}

async fn probe(client: &Client, deadline: Duration) -> Probe {
    match tokio::time::timeout(deadline, client.apiserver_version()).await {
        Err(_elapsed) => Probe::NoAnswer,
        Ok(Ok(_)) | Ok(Err(kube::Error::Api(_))) => Probe::Answered,
        Ok(Err(error)) => classify(&error),
    }
}

/// A failed request: timeouts and resets by their I/O error kind anywhere in the source chain.
fn classify(error: &kube::Error) -> Probe {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut => return Probe::NoAnswer,
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset => {
                    return Probe::Refused;
                }
                _ => {}
            }
        }
        if e.to_string().contains("timed out") {
            return Probe::NoAnswer;
        }
        source = e.source();
    }
    Probe::Failed(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_texts_name_the_server_and_what_to_check_and_do_not_vary_within_an_outage() {
        let server = "https://10.0.0.7:6443/";
        assert_eq!(
            Probe::Answered.unreachable_text("eu", server, DEADLINE),
            None
        );
        let silent = Probe::NoAnswer
            .unreachable_text("eu", server, DEADLINE)
            .unwrap();
        for needed in [
            server,
            "did not answer",
            "10s",
            "hold until it answers",
            "federator member list",
        ] {
            assert!(silent.contains(needed), "{needed}: {silent}");
        }
        assert_eq!(
            Probe::NoAnswer.unreachable_text("eu", server, DEADLINE),
            Some(silent)
        );
        let refused = Probe::Refused
            .unreachable_text("eu", server, DEADLINE)
            .unwrap();
        assert!(refused.contains("refused the connection"), "{refused}");
        // Not mistaken for a refused credential (that is MemberForbidden, a permission to grant).
        assert!(!super::super::refused(&refused));
    }

    #[test]
    fn probe_timings_out_of_bounds_are_refused_naming_the_flag_and_the_bound() {
        let s = Duration::from_secs;
        assert_eq!(Liveness::new(INTERVAL, DEADLINE), Ok(Liveness::default()));
        assert_eq!(
            Liveness::new(s(1), s(14)),
            Ok(Liveness {
                interval: s(1),
                deadline: s(14)
            })
        );
        for (interval, deadline, flag, needed) in [
            (
                Duration::ZERO,
                DEADLINE,
                "--member-probe-interval 0s",
                "between 1s and 300s",
            ),
            (
                s(301),
                DEADLINE,
                "--member-probe-interval 301s",
                "between 1s and 300s",
            ),
            (
                INTERVAL,
                Duration::from_millis(500),
                "--member-probe-timeout 0.5s",
                "at least 1s",
            ),
            (
                INTERVAL,
                s(15),
                "--member-probe-timeout 15s",
                "less than the member request timeout (15s)",
            ),
        ] {
            let error = Liveness::new(interval, deadline).unwrap_err();
            assert!(error.starts_with(flag), "{error}");
            assert!(error.contains(needed), "{needed}: {error}");
        }
    }

    #[test]
    fn timeouts_and_resets_are_told_from_other_failures() {
        let io = |kind| kube::Error::Service(Box::new(std::io::Error::new(kind, "x")));
        assert_eq!(classify(&io(std::io::ErrorKind::TimedOut)), Probe::NoAnswer);
        assert_eq!(
            classify(&io(std::io::ErrorKind::ConnectionRefused)),
            Probe::Refused
        );
        assert!(matches!(
            classify(&io(std::io::ErrorKind::InvalidData)),
            Probe::Failed(_)
        ));
    }

    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_is_no_answer_within_the_deadline() {
        // A listener that accepts connections and never reads nor writes: a blackhole.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(15));
        let client = Client::try_from(config).unwrap();
        tokio::time::pause();
        let found = probe(&client, DEADLINE).await;
        assert_eq!(found, Probe::NoAnswer);
    }
}
