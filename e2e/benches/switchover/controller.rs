//! `federator controller` for the bench's namespace, built with `--release` (`make bench`; the
//! debug build with `make bench-real`, whose bench runs in the dev profile), and its `/metrics`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use e2e::harness::SharedLab;
use e2e::harness::testkit::DEADLINE;
use e2e::lab::health::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The controller process; killed when dropped.
pub struct Controller {
    _child: tokio::process::Child,
    metrics_port: u16,
    pub log: PathBuf,
}

/// `$FEDERATOR_BIN`, else `federator` in this bench's profile directory (`target/release`, or
/// `target/debug` with `cargo bench --profile dev`).
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FEDERATOR_BIN").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("federator"))
        .find(|p| p.is_file())
        .context(
            "no federator binary next to the bench: run `cargo build --release -p federator` \
             first (or `make bench`; `cargo build -p federator` for `--profile dev`), or set \
             FEDERATOR_BIN",
        )
}

impl Controller {
    /// Starts a sole controller (no election) for the topologies of `ns`, and waits for
    /// `/metrics`.
    pub async fn start(lab: &SharedLab, ns: &str) -> anyhow::Result<Self> {
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = lab.layout.log_file(&format!("controller-{ns}"));
        let file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary()?)
            .args(["controller", "--namespace", ns, "--watch-namespace", ns])
            .args(["--leader-election", "false", "--metrics-addr"])
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("KUBECONFIG", lab.layout.kubeconfig("hub"))
            .env("RUST_LOG", "info")
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting federator controller")?;
        let controller = Controller {
            _child: child,
            metrics_port,
            log,
        };
        let controller_ref = &controller;
        wait_for("the controller's /metrics", DEADLINE, || async move {
            controller_ref.metrics().await.ok()
        })
        .await?;
        Ok(controller)
    }

    /// The `/metrics` text (a plain HTTP/1.0 GET: the server closes after the response).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
            .await
            .context("reading /metrics")??;
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
                Ok(body.to_owned())
            }
            _ => bail!("unexpected /metrics response: {response:.200}"),
        }
    }
}

/// One histogram of the exposition: cumulative bucket counts by upper bound.
#[derive(Debug, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// `name{label="value"}` from an OpenMetrics/Prometheus text exposition.
    pub fn parse(text: &str, name: &str, label: &str, value: &str) -> Self {
        let want = format!("{label}=\"{value}\"");
        let mut h = Histogram::default();
        for line in text.lines() {
            let Some((series, number)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((metric, labels)) = series.split_once('{') else {
                continue;
            };
            if !labels.split(',').any(|l| l.trim_end_matches('}') == want) {
                continue;
            }
            match metric.strip_prefix(name) {
                Some("_bucket") => {
                    let le = labels
                        .split(',')
                        .find_map(|l| l.strip_prefix("le=\""))
                        .map(|l| l.trim_end_matches('}').trim_end_matches('"'));
                    let bound = match le {
                        Some("+Inf") => f64::INFINITY,
                        Some(b) => b.parse().unwrap_or(f64::NAN),
                        None => continue,
                    };
                    h.buckets.push((bound, number.parse().unwrap_or_default()));
                }
                Some("_count") => h.count = number.parse().unwrap_or_default(),
                Some("_sum") => h.sum = number.parse().unwrap_or_default(),
                _ => {}
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        h
    }

    /// How many observations were at most `bound`, if `bound` is one of the bucket bounds
    /// (exact, unlike a quantile estimate).
    pub fn at_most(&self, bound: f64) -> Option<u64> {
        self.buckets
            .iter()
            .find(|(b, _)| (b - bound).abs() < 1e-12)
            .map(|(_, cumulative)| *cumulative)
    }

    /// True if the nearest-rank `q` quantile is at most `bound`, decided by counting when
    /// `bound` is a bucket bound; otherwise `None` (only an estimate could say).
    pub fn quantile_at_most(&self, q: f64, bound: f64) -> Option<bool> {
        let within = self.at_most(bound)?;
        let rank = (q * self.count as f64).ceil() as u64;
        Some(within >= rank)
    }

    /// The `q` quantile as Prometheus' `histogram_quantile` estimates it: linear within the
    /// bucket that holds it.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank {
                if bound.is_infinite() {
                    return Some(Duration::from_secs_f64(lower.0));
                }
                let inside = (cumulative - lower.1) as f64;
                let share = if inside > 0.0 {
                    (rank - lower.1 as f64) / inside
                } else {
                    1.0
                };
                return Some(Duration::from_secs_f64(lower.0 + (bound - lower.0) * share));
            }
            lower = (bound, cumulative);
        }
        None
    }

    /// Labels (values of `label`) present for `name` in the exposition.
    pub fn labels(text: &str, name: &str, label: &str) -> Vec<String> {
        let prefix = format!("{name}_count{{{label}=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix)?.split('"').next())
            .map(str::to_owned)
            .collect()
    }
}

/// The member patches a controller log shows (`patching member` lines).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Patches {
    pub sent: usize,
    /// Lines with the same operation, step and member as the patch line before them: the same
    /// patch sent again (harmless, merge patches are idempotent, but each costs a step-log write
    /// and an admission call; the ledger's patch gate exists to prevent them).
    pub twice: usize,
}

/// Counts the member patches of `log` (text format), keyed by the `reconcile` span's
/// `operation` and the line's `step` and `member`. Only the line before counts: the bench
/// deletes and re-creates its topology every round, so an operation id (`<generation>-<from>-
/// to-<to>`) comes back in later rounds, and every step of a switchover patches something
/// else than the one before it.
pub fn patches(log: &str) -> Patches {
    let mut last = None;
    let mut counted = Patches::default();
    for line in log
        .lines()
        .map(plain)
        .filter(|l| l.contains("patching member"))
    {
        let field = |name: &str| {
            let at = line.find(&format!("{name}="))? + name.len() + 1;
            line[at..].split([' ', '}', ':']).next().map(str::to_owned)
        };
        let key = Some((field("operation"), field("step"), field("member")));
        counted.sent += 1;
        if key == last {
            counted.twice += 1;
        }
        last = key;
    }
    counted
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The Events the controller (`reportingController` `federator`) published in `ns`, a repeated
/// one counted as often as its series says.
pub async fn events(lab: &SharedLab, ns: &str) -> anyhow::Result<u64> {
    use k8s_openapi::api::events::v1::Event;
    let api: kube::Api<Event> = kube::Api::namespaced(lab.admin("hub").await, ns);
    let list = api
        .list(&Default::default())
        .await
        .context("listing the namespace's Events")?;
    Ok(list
        .items
        .iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("federator"))
        .map(|e| {
            e.series
                .as_ref()
                .map_or(1, |s| u64::try_from(s.count).unwrap_or(1))
        })
        .sum())
}
