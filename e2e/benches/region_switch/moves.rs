//! Part 1: N databases moved one at a time ("alone"), then all at once, there and back, by the
//! same controller, under a writer in each database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use e2e::harness::controller::{Ack, Controller, topology_named, wait_condition_of, wide_timeouts};
use e2e::harness::testkit::{self, Member, Pair};
use e2e::harness::{SharedLab, TestNamespace};
use futures::{StreamExt, stream};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use topology::DistributedTopology;
use topology::conditions::kind;

use super::switch::{self, Switched};

const CENTRAL: &str = "eu-central";
const WESTERN: &str = "eu-western";
/// The targets.
const TOTAL_TARGET: f64 = 1.5;
const OUTAGE_TARGET: f64 = 1.2;

/// One database: a pair (`<name>-c` in eu-central, the primary at first; `<name>-w`) and its
/// topology.
struct Db {
    name: String,
    members: [Member<'static>; 2],
}

/// Which way a move goes; each database moves both ways alone and at once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Way {
    There,
    Back,
}

impl Way {
    fn regions(self) -> (&'static str, &'static str) {
        match self {
            Way::There => (CENTRAL, WESTERN),
            Way::Back => (WESTERN, CENTRAL),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Way::There => "eu-central → eu-western",
            Way::Back => "eu-western → eu-central",
        }
    }
}

/// What one region switch moved: which databases, in which way, alone or at once.
struct Run {
    way: Way,
    together: bool,
    dbs: Vec<usize>,
    switched: Switched,
}

pub async fn run(lab: &'static SharedLab, n: usize, rounds: usize) -> anyhow::Result<bool> {
    let ns = TestNamespace::create_on(lab, "bench-region").await;
    ns.grant_federator().await;
    let ns_name = ns.name().to_owned();
    let hub: Api<DistributedTopology> = Api::namespaced(lab.admin("hub").await, &ns_name);
    let started = std::time::Instant::now();
    let dbs = create(lab, &ns_name, &hub, n).await;
    println!(
        "{n} pairs and topologies created in {:.0} s (untimed setup)",
        started.elapsed().as_secs_f64()
    );
    let controller = Controller::start(lab, &ns_name);
    for db in &dbs {
        wait_condition_of(&hub, &db.name, kind::READY).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = dbs
        .iter()
        .map(|db| {
            tokio::spawn(e2e::harness::controller::writer_acks(
                lab,
                ns_name.clone(),
                db.members.to_vec(),
                stop.clone(),
            ))
        })
        .collect();

    let names: Vec<String> = dbs.iter().map(|d| d.name.clone()).collect();
    let mut runs = Vec::new();
    let result: anyhow::Result<()> = async {
        for round in 1..=rounds {
            for way in [Way::There, Way::Back] {
                for (i, db) in dbs.iter().enumerate() {
                    let name = format!("r{round}-alone-{:?}-{}", way, db.name).to_lowercase();
                    let switched =
                        switch::run(lab, &ns_name, &name, way.regions(), &names[i..=i]).await?;
                    println!(
                        "round {round} {}: {} alone in {:.1} s",
                        way.label(),
                        db.name,
                        switched.took.as_secs_f64()
                    );
                    runs.push(Run {
                        way,
                        together: false,
                        dbs: vec![i],
                        switched,
                    });
                }
            }
            for way in [Way::There, Way::Back] {
                let name = format!("r{round}-together-{way:?}").to_lowercase();
                let switched = switch::run(lab, &ns_name, &name, way.regions(), &names).await?;
                println!(
                    "round {round} {}: {n} at once in {:.1} s (unix time {:.1}–{:.1}, to find it \
                     in the lab's logs)",
                    way.label(),
                    switched.took.as_secs_f64(),
                    unix(switched.started),
                    unix(switched.ended)
                );
                print_where_time_went(&hub, &switched).await;
                runs.push(Run {
                    way,
                    together: true,
                    dbs: (0..n).collect(),
                    switched,
                });
            }
        }
        Ok(())
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    for w in writers {
        acks.push(w.await.context("a writer")?);
    }
    if let Err(e) = result {
        return Err(e.context(format!("controller log {}", controller_log(&controller))));
    }
    drop(controller);
    for db in &dbs {
        testkit::delete_all(lab, &ns_name, &db.members).await;
    }
    Ok(report(&dbs, &runs, &acks))
}

fn controller_log(controller: &Controller) -> String {
    e2e::harness::scale::tail(&controller.log())
}

/// The pairs, four at a time (each: initdb, a base backup), and a topology over each.
async fn create(
    lab: &'static SharedLab,
    ns: &str,
    hub: &Api<DistributedTopology>,
    n: usize,
) -> Vec<Db> {
    let dbs: Vec<Db> = (0..n)
        .map(|i| {
            let name = format!("db{i:02}");
            let member = |suffix: &str, region| Member {
                name: Box::leak(format!("{name}-{suffix}").into_boxed_str()),
                region,
            };
            Db {
                members: [member("c", CENTRAL), member("w", WESTERN)],
                name,
            }
        })
        .collect();
    stream::iter(&dbs)
        .for_each_concurrent(4, |db| async move {
            let [c, w] = db.members;
            Pair::create_of(lab, ns, c, w).await;
            let topo = topology_named(
                &db.name,
                ns,
                &db.members,
                json!({"star": {}}),
                c.name,
                wide_timeouts(),
            );
            hub.create(&PostParams::default(), &topo)
                .await
                .expect("creating a topology");
        })
        .await;
    dbs
}

/// The at-once run, topology by topology: when its switchover was asked for and when it was
/// seen moved (from the first request), and its switchover's step timings.
async fn print_where_time_went(hub: &Api<DistributedTopology>, switched: &Switched) {
    let entries = &switched.status.topologies;
    let micros =
        |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime| t.0.as_microsecond();
    let Some(first) = entries
        .iter()
        .filter_map(|e| e.requested_at.as_ref().map(micros))
        .min()
    else {
        return;
    };
    let ms = |t: Option<i64>| t.map_or("?".to_owned(), |t| format!("{}", (t - first) / 1000));
    println!("| topology | asked at +ms | moved at +ms | its switchover's steps |");
    println!("|---|---|---|---|");
    for e in entries {
        let steps = match (&e.operation, hub.get(&e.name).await) {
            (Some(id), Ok(topo)) => topo
                .status
                .unwrap_or_default()
                .history
                .into_iter()
                .find(|o| &o.id == id)
                .map(|o| o.step_timings)
                .unwrap_or_default(),
            _ => String::new(),
        };
        println!(
            "| {} | {} | {} | {steps} |",
            e.name,
            ms(e.requested_at.as_ref().map(micros)),
            ms(e.finished_at.as_ref().map(micros)),
        );
    }
}

/// The longest stretch between two acknowledged writes of one database that ends inside a run
/// (its region switch created → seen Succeeded): the move's write unavailability, the new
/// primary's restart for `archive_mode` included when it is the longer.
fn longest_gap(acks: &[Ack], from: SystemTime, to: SystemTime) -> Option<Duration> {
    acks.windows(2)
        .filter(|w| w[1].at > from && w[0].at < to)
        .filter_map(|w| w[1].at.duration_since(w[0].at).ok())
        .max()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-3)
}

/// Prints the tables; whether every target was met.
fn report(dbs: &[Db], runs: &[Run], acks: &[Vec<Ack>]) -> bool {
    let mut met = true;
    println!(
        "\n| way | N at once | slowest alone | alone one after another | at once / slowest alone (≤ {TOTAL_TARGET}) |"
    );
    println!("|---|---|---|---|---|");
    let mut by_way: BTreeMap<Way, (Vec<&Run>, Vec<&Run>)> = BTreeMap::new();
    for r in runs {
        let slot = by_way.entry(r.way).or_default();
        if r.together {
            slot.1.push(r);
        } else {
            slot.0.push(r);
        }
    }
    for (way, (alone, together)) in &by_way {
        let slowest = alone
            .iter()
            .map(|r| r.switched.took)
            .max()
            .unwrap_or_default();
        let sum: Duration =
            alone.iter().map(|r| r.switched.took).sum::<Duration>() / together.len().max(1) as u32;
        for t in together {
            let q = ratio(t.switched.took, slowest);
            met &= q <= TOTAL_TARGET;
            println!(
                "| {} | {} | {} | {} | {q:.2} {} |",
                way.label(),
                secs(t.switched.took),
                secs(slowest),
                secs(sum),
                if q <= TOTAL_TARGET { "met" } else { "NOT met" }
            );
        }
    }

    println!(
        "\n| database | way | longest write gap alone | at once | at once / alone (≤ {OUTAGE_TARGET}) |"
    );
    println!("|---|---|---|---|---|");
    let mut worst: f64 = 0.0;
    for (i, db) in dbs.iter().enumerate() {
        for (way, (alone, together)) in &by_way {
            let gap = |r: &&Run| longest_gap(&acks[i], r.switched.started, r.switched.ended);
            let floor = alone
                .iter()
                .filter(|r| r.dbs.contains(&i))
                .filter_map(gap)
                .min();
            for t in together {
                let (Some(floor), Some(at_once)) = (floor, gap(t)) else {
                    println!("| {} | {} | no writes measured | | |", db.name, way.label());
                    met = false;
                    continue;
                };
                let q = ratio(at_once, floor);
                worst = worst.max(q);
                met &= q <= OUTAGE_TARGET;
                println!(
                    "| {} | {} | {:.0} ms | {:.0} ms | {q:.2} |",
                    db.name,
                    way.label(),
                    floor.as_secs_f64() * 1e3,
                    at_once.as_secs_f64() * 1e3
                );
            }
        }
    }
    println!(
        "worst write-gap ratio {worst:.2}: {}",
        if worst <= OUTAGE_TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
    met
}
