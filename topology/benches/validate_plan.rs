//! Validate + plan at 10, 100, 1,000 and 10,000 members, for each shape. Prints a table of
//! median and best times and the per-member cost relative to the 10-member run of the same shape
//! in the same run (1.00 = linear), then per shape the growth from 100 to 10,000 members.
//!
//! Run: `cargo bench -p federator-topology --bench validate_plan [-- FILTER... [--once]]`
//!
//! A FILTER is a shape (`star`, `ring`, `cascade`) or a size (`1000`); several are ANDed per kind.
//! `--once` runs each case once and prints no table: for instruction counts under callgrind,
//! where only `validate_and_plan` is collected (see `topology/benches/callgrind.sh`).
//!
//! The members' Clusters are the conforming snapshot (`Observed::conforming`), whose members
//! share one externalClusters list as the controller's interning store does; the numbers are the
//! model's own cost, not the cost of reading n² external-cluster names. (The CRD caps a
//! topology at 64 members; larger sizes only show how the algorithms scale.)

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use topology::api::DistributedTopologySpec;
use topology::plan::{Desired, Plan, plan};
use topology::validate::{validate_live, validate_spec};
use topology::{Observed, OperationKind};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const SHAPES: [&str; 3] = ["star", "ring", "cascade"];

/// Built from JSON, as a manifest would be, so spec fields with defaults need no mention here.
fn spec(n: usize, shape: &str) -> DistributedTopologySpec {
    let name = |i: usize| format!("pg16-r{i}");
    let members: Vec<Value> = (0..n)
        .map(|i| json!({"name": name(i), "cluster": format!("region-{i}"), "namespace": "databases"}))
        .collect();
    let shape = match shape {
        "star" => json!({"star": {}}),
        "ring" => json!({"ring": (0..n).map(name).collect::<Vec<_>>()}),
        // A binary tree rooted at member 0: depth log2(n), so a re-root flips a long path.
        _ => json!({"cascade": (1..n)
            .map(|i| (name(i), Value::String(name((i - 1) / 2))))
            .collect::<serde_json::Map<_, _>>()}),
    };
    serde_json::from_value(json!({"members": members, "shape": shape, "primary": name(0)}))
        .expect("bench spec deserializes")
}

/// The measured work: static validation, live validation against the target, then the plan.
/// Not inlined, so that callgrind can collect exactly this function.
#[inline(never)]
fn validate_and_plan(spec: &DistributedTopologySpec, observed: &Observed, target: &str) -> Plan {
    let topology = validate_spec(spec).expect("valid");
    validate_live(&topology, observed, Some(target)).expect("consistent");
    let desired = Desired {
        topology: &topology,
        to: target,
        kind: OperationKind::Switchover,
    };
    plan(observed, &desired).expect("plans")
}

/// Median and best of `f`'s duration over enough runs to fill ~0.3 s (at least 11, at most
/// 201), after one untimed run that grows the heap to its working size. The best run is the
/// robust number on a shared machine, where preemption only ever adds.
fn measure(mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 11 || (times.len() < 201 && start.elapsed() < Duration::from_millis(300)) {
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

struct Filter {
    shapes: Vec<String>,
    sizes: Vec<usize>,
    once: bool,
}

impl Filter {
    fn from_args() -> Filter {
        let mut filter = Filter {
            shapes: Vec::new(),
            sizes: Vec::new(),
            once: false,
        };
        // `cargo bench` passes `--bench`; other flags are ignored the same way.
        for arg in std::env::args().skip(1) {
            if arg == "--once" {
                filter.once = true;
            } else if let Ok(n) = arg.parse() {
                filter.sizes.push(n);
            } else if !arg.starts_with("--") {
                filter.shapes.push(arg);
            }
        }
        filter
    }

    fn shape(&self, shape: &str) -> bool {
        self.shapes.is_empty() || self.shapes.iter().any(|s| s == shape)
    }

    /// The 10-member baseline always runs (unprinted when filtered out), so ratios stay defined.
    fn size(&self, n: usize) -> bool {
        self.sizes.is_empty() || self.sizes.contains(&n)
    }
}

fn main() {
    let filter = Filter::from_args();
    if !filter.once {
        println!(
            "| members | shape   | validate, median | plan, median | total, median | total, best | per member, median | median/member vs 10 | best/member vs 10 |"
        );
        println!(
            "|--------:|---------|-----------------:|-------------:|--------------:|------------:|-------------------:|--------------------:|------------------:|"
        );
    }
    let mut growth = Vec::new();
    for shape in SHAPES.into_iter().filter(|s| filter.shape(s)) {
        // Per-member cost (median, best) of the 10-member run.
        let mut baseline: Option<(f64, f64)> = None;
        let mut best_per_member = Vec::new();
        for n in SIZES {
            if filter.once && !filter.size(n) {
                continue;
            }
            if !filter.size(n) && n != SIZES[0] {
                continue;
            }
            let spec = spec(n, shape);
            let topology = validate_spec(&spec).expect("bench topology is valid");
            let observed = Observed::conforming(&topology);
            let target = format!("pg16-r{}", n - 1);
            if filter.once {
                black_box(validate_and_plan(
                    black_box(&spec),
                    black_box(&observed),
                    &target,
                ));
                continue;
            }
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
            let per_member = (
                total.as_secs_f64() / n as f64,
                best.as_secs_f64() / n as f64,
            );
            let base = *baseline.get_or_insert(per_member);
            best_per_member.push((n, per_member.1));
            if !filter.size(n) {
                continue;
            }
            println!(
                "| {n:>7} | {shape:<7} | {:>16} | {:>12} | {:>13} | {:>11} | {:>18} | {:>19.2} | {:>17.2} |",
                fmt(validate),
                fmt(planned),
                fmt(total),
                fmt(best),
                fmt(Duration::from_secs_f64(per_member.0)),
                per_member.0 / base.0,
                per_member.1 / base.1
            );
        }
        let at = |size| {
            best_per_member
                .iter()
                .find(|(n, _)| *n == size)
                .map(|p| p.1)
        };
        if let (Some(small), Some(large)) = (at(100), at(10_000)) {
            growth.push(format!(
                "{shape}: best per member at 10,000 is {:.2}× that at 100 (target ≤ 1.5×)",
                large / small
            ));
        }
    }
    if !growth.is_empty() {
        println!();
        for line in growth {
            println!("{line}");
        }
    }
}
