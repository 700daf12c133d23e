//! Validate + plan at 10, 100, 1,000 and 10,000 members, for each shape. Prints a table of
//! median and best times and the best per-member cost relative to the 10-member baseline
//! (1.00 = linear).
//!
//! Run: `cargo bench -p federator-topology --bench validate_plan`
//!
//! The members' Clusters are the conforming snapshot (`Observed::conforming`), whose members
//! share one externalClusters list as the controller's interning store does; the numbers are the
//! model's own cost, not the cost of reading n² external-cluster names. (The CRD caps a
//! topology at 64 members; larger sizes only show how the algorithms scale.)

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use topology::api::{DistributedTopologySpec, Member, ShapeSpec, StarShape};
use topology::plan::{Desired, plan};
use topology::validate::{validate_live, validate_spec};
use topology::{Observed, OperationKind};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

fn spec(n: usize, shape: &str) -> DistributedTopologySpec {
    let name = |i: usize| format!("pg16-r{i}");
    let members = (0..n)
        .map(|i| Member {
            name: name(i),
            cluster: format!("region-{i}"),
            namespace: "databases".into(),
            cluster_name: None,
        })
        .collect();
    let shape = match shape {
        "star" => ShapeSpec {
            star: Some(StarShape {}),
            ..ShapeSpec::default()
        },
        "ring" => ShapeSpec {
            ring: Some((0..n).map(name).collect()),
            ..ShapeSpec::default()
        },
        // A binary tree rooted at member 0: depth log2(n), so a re-root flips a long path.
        _ => ShapeSpec {
            cascade: Some(
                (1..n)
                    .map(|i| (name(i), name((i - 1) / 2)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..ShapeSpec::default()
        },
    };
    DistributedTopologySpec {
        members,
        shape,
        primary: name(0),
        policies: Default::default(),
    }
}

/// Median and best of `f`'s duration over enough runs to fill ~0.3 s (at least 5, at most
/// 201). The best run is the robust number on a shared machine, where preemption only ever adds.
fn measure(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (times.len() < 201 && start.elapsed() < Duration::from_millis(300)) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort_unstable();
    (times[times.len() / 2], times[0])
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn main() {
    println!(
        "| members | shape   | validate (static + live), median | plan, median | total, median | total, best | best per member | per member vs 10 |"
    );
    println!(
        "|--------:|---------|---------------------------------:|-------------:|--------------:|------------:|----------------:|-----------------:|"
    );
    for shape in ["star", "ring", "cascade"] {
        let mut baseline = None;
        for n in SIZES {
            let spec = spec(n, shape);
            let topology = validate_spec(&spec).expect("bench topology is valid");
            let observed = Observed::conforming(&topology);
            let target = format!("pg16-r{}", n - 1);
            let (validate, validate_best) = measure(|| {
                let t = validate_spec(black_box(&spec)).expect("valid");
                validate_live(&t, black_box(&observed), Some(&target)).expect("consistent");
            });
            let desired = Desired {
                topology: &topology,
                to: &target,
                kind: OperationKind::Switchover,
            };
            let (planned, planned_best) = measure(|| {
                black_box(plan(black_box(&observed), &desired).expect("plans"));
            });
            let total = validate + planned;
            let best = validate_best + planned_best;
            let per_member = best.as_secs_f64() / n as f64;
            let base = *baseline.get_or_insert(per_member);
            println!(
                "| {n:>7} | {shape:<7} | {:>32} | {:>12} | {:>13} | {:>11} | {:>15} | {:>16.2} |",
                fmt(validate),
                fmt(planned),
                fmt(total),
                fmt(best),
                fmt(Duration::from_secs_f64(per_member)),
                per_member / base
            );
        }
    }
}
