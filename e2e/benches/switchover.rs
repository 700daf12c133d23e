//! Write unavailability of a planned switchover on the lab (real kube-apiservers, the CNPG
//! emulator on real PostgreSQL 15 — or, with `--cnpg real`, the real CloudNativePG operator on
//! the real-node tier), driven three ways in the same run: by Federator, by the documented manual
//! steps with a 2 s polling loop, and by the same steps reacting at once from a watch (the
//! floor). Also Federator's reaction time per step, from its `/metrics`.
//!
//! Run: `cargo build --release -p federator && cargo bench -p federator-e2e --bench switchover`
//! (`make bench`). Options after `--`: `--rounds N` (default 5: each driver N switchovers per
//! shape), `--shapes pair,ring` (default both), `--cnpg real` (the real-node tier, root and
//! `make deps-real`; `make bench-real`), `--channel streaming|archive` (real tier: streaming
//! with `verify-full`, or the WAL archive only), `--drivers federator,script,floor` (default all
//! three; `federator,floor` spares the 2 s script's rounds when only the floor ratio matters).
//! See docs/benchmarks.md.

#[path = "switchover/controller.rs"]
mod controller;
#[path = "switchover/drive.rs"]
mod drive;
#[path = "switchover/probe.rs"]
mod probe;
#[path = "switchover/report.rs"]
mod report;
#[path = "switchover/timeline.rs"]
mod timeline;
// The real tier's Clusters as its e2e tests write them (streaming `verify-full`, or archive).
#[path = "../tests/real_support/mod.rs"]
mod real_support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use e2e::harness::testkit::{self, DEADLINE, Member};
use e2e::harness::{SharedLab, TestNamespace};
use e2e::lab::health::wait_for;
use serde_json::{Value, json};

use controller::{Controller, Histogram};
use drive::{Driver, Switch};
use probe::Probe;
use real_support::Channel;
use report::{FederatorCounts, Sample, ShapeReport};
use timeline::Timeline;

const A: Member<'static> = Member {
    name: "pg-a",
    region: "eu-central",
};
const B: Member<'static> = Member {
    name: "pg-b",
    region: "eu-western",
};
const C: Member<'static> = Member {
    name: "pg-c",
    region: "eu-south",
};

#[derive(Clone, Copy, Debug)]
enum Shape {
    Pair,
    Ring,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Pair => "pair",
            Shape::Ring => "ring",
        }
    }

    fn members(self) -> Vec<Member<'static>> {
        match self {
            Shape::Pair => vec![A, B],
            Shape::Ring => vec![A, B, C],
        }
    }

    /// Each member's `replica.source` while A is primary.
    fn sources(self) -> Vec<Member<'static>> {
        match self {
            Shape::Pair => vec![B, A],
            Shape::Ring => vec![C, A, B],
        }
    }

    fn spec(self) -> Value {
        match self {
            Shape::Pair => json!({"star": {}}),
            Shape::Ring => json!({"ring": [A.name, B.name, C.name]}),
        }
    }
}

/// Which CNPG the members run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    /// The lab's CNPG emulator (the default tier).
    Emulator,
    /// The real CloudNativePG operator on real nodes (docs/lab-real.md).
    Real(Channel),
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Emulator => "CNPG emulator",
            Tier::Real(Channel::Streaming) => {
                "real CloudNativePG, streaming (connectionParameters, verify-full)"
            }
            Tier::Real(Channel::Archive) => "real CloudNativePG, WAL archive only",
        }
    }

    /// How long any one wait of a round may take: a real switchover restarts pods.
    fn within(self) -> Duration {
        match self {
            Tier::Emulator => DEADLINE,
            Tier::Real(_) => real_support::CLUSTER_WITHIN,
        }
    }

    /// How long the writer waits for a connection: a real pod is reached through its region's
    /// netns proxy with TLS, after reading the superuser Secret.
    fn connect_within(self) -> Duration {
        match self {
            Tier::Emulator => Duration::from_millis(300),
            Tier::Real(_) => Duration::from_secs(2),
        }
    }
}

struct Config {
    rounds: usize,
    shapes: Vec<Shape>,
    tier: Tier,
    /// The drivers of every round, in the order of the first round.
    drivers: Vec<Driver>,
}

impl Config {
    /// `--rounds N`, `--shapes pair,ring`, `--cnpg emulator|real`, `--channel
    /// streaming|archive`, `--drivers federator,script,floor`; anything else (cargo's `--bench`)
    /// is ignored.
    fn from_args() -> anyhow::Result<Self> {
        let mut config = Config {
            rounds: 5,
            shapes: vec![Shape::Pair, Shape::Ring],
            tier: Tier::Emulator,
            drivers: Driver::ALL.to_vec(),
        };
        let (mut real, mut channel) = (false, None);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--rounds" => {
                    let n = args.next().context("--rounds needs a number")?;
                    config.rounds = n
                        .parse()
                        .with_context(|| format!("--rounds {n}: not a number"))?;
                }
                "--shapes" => {
                    let list = args
                        .next()
                        .context("--shapes needs pair, ring or pair,ring")?;
                    config.shapes = list
                        .split(',')
                        .map(|s| match s {
                            "pair" => Ok(Shape::Pair),
                            "ring" => Ok(Shape::Ring),
                            other => bail!("--shapes: unknown shape {other:?} (pair, ring)"),
                        })
                        .collect::<anyhow::Result<_>>()?;
                }
                "--drivers" => {
                    let list = args
                        .next()
                        .context("--drivers needs a list of federator, script, floor")?;
                    let mut drivers = Vec::new();
                    for name in list.split(',') {
                        let driver = Driver::parse(name)?;
                        if !drivers.contains(&driver) {
                            drivers.push(driver);
                        }
                    }
                    config.drivers = drivers;
                }
                "--cnpg" => {
                    real = match args.next().as_deref() {
                        Some("real") => true,
                        Some("emulator") => false,
                        other => bail!("--cnpg {other:?}: emulator or real"),
                    };
                }
                "--channel" => {
                    channel = Some(match args.next().as_deref() {
                        Some("streaming") => Channel::Streaming,
                        Some("archive") => Channel::Archive,
                        other => bail!("--channel {other:?}: streaming or archive"),
                    });
                }
                _ => {}
            }
        }
        config.tier = match (real, channel) {
            (true, channel) => Tier::Real(channel.unwrap_or(Channel::Streaming)),
            (false, None) => Tier::Emulator,
            (false, Some(_)) => {
                bail!("--channel needs --cnpg real (the emulator tier's members use both)")
            }
        };
        Ok(config)
    }
}

/// `items` by `name`, separated by `separator`.
fn joined<T: Copy>(items: &[T], name: impl Fn(T) -> &'static str, separator: &str) -> String {
    items
        .iter()
        .map(|&t| name(t))
        .collect::<Vec<_>>()
        .join(separator)
}

use e2e::bench_stats::load_average as load;

fn main() -> anyhow::Result<()> {
    let config = Config::from_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let lab = match config.tier {
            Tier::Emulator => testkit::lab_with_emulators().await,
            Tier::Real(_) => e2e::harness::real_lab().await,
        };
        println!(
            "switchover bench on the {}: {} round(s) × {} driver(s) ({}) per shape; load average {}",
            config.tier.name(),
            config.rounds,
            config.drivers.len(),
            joined(&config.drivers, |d| d.label(), ", "),
            load()
        );
        let started = Instant::now();
        let mut reports = Vec::new();
        for shape in &config.shapes {
            reports.push(bench_shape(lab, &config, *shape).await?);
            println!("{} done; load average {}", shape.name(), load());
        }
        let met = report::print(&reports);
        println!(
            "\n{} in {:.0} s; load average at the end {}; every target met: {}",
            joined(&config.shapes, |s| s.name(), " + "),
            started.elapsed().as_secs_f64(),
            load(),
            if met { "yes" } else { "no" }
        );
        Ok(())
    })
}

/// Creates the members (A primary, `t` on it), then runs the configured rounds of the drivers
/// under the writer, rotating the drivers' order each round so each meets every direction.
async fn bench_shape(
    lab: &'static SharedLab,
    config: &Config,
    shape: Shape,
) -> anyhow::Result<ShapeReport> {
    let (tier, drivers) = (config.tier, &config.drivers);
    let ns = TestNamespace::create_on(lab, &format!("bench-{}", shape.name())).await;
    ns.grant_federator().await;
    let ns_name = ns.name().to_owned();
    let members = shape.members();
    let created = Instant::now();
    match tier {
        Tier::Emulator => create_members(lab, &ns_name, &members, &shape.sources()).await,
        Tier::Real(channel) => {
            let pairs: Vec<_> = members.iter().copied().zip(shape.sources()).collect();
            real_support::create_members(lab, &ns_name, &pairs, channel).await;
        }
    }
    println!(
        "{}: members healthy in {:.0} s (untimed setup)",
        shape.name(),
        created.elapsed().as_secs_f64()
    );
    // Without the Federator driver nothing needs a controller (nor its binary).
    let controller = match drivers.contains(&Driver::Federator) {
        true => Some(Controller::start(lab, &ns_name).await?),
        false => None,
    };
    let timeline = Timeline::start(lab, &ns_name, &members).await;
    let probe = Probe::start(lab, &ns_name, &members, tier.connect_within());
    let spec = shape.spec();

    let mut samples = Vec::new();
    let mut from = 0;
    for round in 0..config.rounds {
        for k in 0..drivers.len() {
            let driver = drivers[(k + round) % drivers.len()];
            let to = (from + 1) % members.len();
            let switch = Switch {
                lab,
                ns: &ns_name,
                members: &members,
                shape: &spec,
                from,
                to,
                within: tier.within(),
            };
            let sample = switch_once(&switch, driver, &probe, &timeline)
                .await
                .with_context(|| {
                    format!(
                        "{} {} → {} ({}; controller log {})",
                        shape.name(),
                        members[from].name,
                        members[to].name,
                        driver.label(),
                        controller
                            .as_ref()
                            .map_or("none".into(), |c| c.log.display().to_string())
                    )
                })?;
            println!(
                "{} round {}: {:<18} {} → {}: unavailable {:.0} ms (incl. restart {:.0} ms)",
                shape.name(),
                round + 1,
                driver.label(),
                sample.from,
                sample.to,
                sample.outage.window.as_secs_f64() * 1e3,
                sample.outage.total.as_secs_f64() * 1e3
            );
            samples.push(sample);
            from = to;
        }
    }

    let federator = match &controller {
        Some(controller) => Some(federator_counts(lab, shape, &ns_name, controller).await?),
        None => None,
    };
    drop(probe);
    drop(timeline);
    drop(controller);
    testkit::delete_all(lab, &ns_name, &members).await;
    Ok(ShapeReport {
        shape: shape.name(),
        drivers: drivers.clone(),
        samples,
        federator,
    })
}

/// What the controller reports of a shape's run: its `/metrics` (reactions, status writes), the
/// member patches its log shows, and the Events it published in the namespace.
async fn federator_counts(
    lab: &'static SharedLab,
    shape: Shape,
    ns: &str,
    controller: &Controller,
) -> anyhow::Result<FederatorCounts> {
    let text = controller.metrics().await?;
    // How often the controller ran and wrote the hub, and why reconciles failed (a 409 costs a
    // watch round trip).
    for line in text.lines().filter(|l| {
        l.starts_with("federator_reconciles_total")
            || l.starts_with("federator_reconcile_errors")
            || l.starts_with("federator_status_write_seconds_count")
    }) {
        println!("{} controller: {line}", shape.name());
    }
    let name = "federator_reaction_seconds";
    let reactions = Histogram::labels(&text, name, "step")
        .into_iter()
        .map(|step| {
            let h = Histogram::parse(&text, name, "step", &step);
            let pickup =
                Histogram::parse(&text, "federator_reaction_pickup_seconds", "step", &step);
            (step, h, pickup)
        })
        .collect();
    let status_writes = Histogram::parse(&text, "federator_status_write_seconds", "then", "patch");
    let other_writes = Histogram::parse(&text, "federator_status_write_seconds", "then", "nothing");
    let log = std::fs::read_to_string(&controller.log)
        .with_context(|| format!("reading {}", controller.log.display()))?;
    Ok(FederatorCounts {
        reactions,
        status_writes: status_writes.count + other_writes.count,
        status_writes_before_patch: status_writes,
        patches: controller::patches(&log),
        events: controller::events(lab, ns).await?,
    })
}

/// One measured switchover: prepared and settled untimed, driven under the writer.
async fn switch_once(
    switch: &Switch<'_>,
    driver: Driver,
    probe: &Probe,
    timeline: &Timeline,
) -> anyhow::Result<Sample> {
    let (from, to) = (switch.from, switch.to);
    switch.prepare(driver).await?;
    acknowledged(probe, from, "the old primary", switch.within).await?;
    let driven = switch.drive(driver).await?;
    switch.settled(driven.token.as_deref()).await?;
    acknowledged(probe, to, "the new primary", switch.within).await?;
    let outage = probe.outage(driven.start, Instant::now(), to);
    let milestones = timeline.milestones(driven.start, from, to, switch.members[to].name);
    switch.finish(&driven).await?;
    Ok(Sample {
        driver,
        from: switch.members[from].name,
        to: switch.members[to].name,
        outage,
        milestones,
    })
}

/// Waits until the writer has a write acknowledged by member `on` from now on.
async fn acknowledged(
    probe: &Probe,
    on: usize,
    what: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let mark = Instant::now();
    wait_for(
        &format!("a write acknowledged by {what}"),
        within,
        || async move { probe.acknowledged_on(on, mark) },
    )
    .await?;
    Ok(())
}

/// Creates each member with its source, A first (initdb, table `t`), each replica copied from
/// its source once that is healthy.
async fn create_members(
    lab: &'static SharedLab,
    ns: &str,
    members: &[Member<'static>],
    sources: &[Member<'static>],
) {
    let primary = members[0];
    for (m, source) in members.iter().zip(sources) {
        let api = testkit::clusters(lab, m.region, ns).await;
        let cluster = testkit::blog_cluster(ns, m.name, primary.name, source.name, members, true);
        testkit::create(&api, &cluster).await;
        testkit::wait_cluster(&api, m.name, "healthy", testkit::healthy).await;
        if m.name == primary.name {
            testkit::connect(lab, m.region, ns, m.name)
                .await
                .batch_execute("CREATE TABLE t (x int)")
                .await
                .expect("creating t on the primary");
        }
    }
}
