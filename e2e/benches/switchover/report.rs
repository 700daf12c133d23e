//! The tables: write unavailability per driver, the ratios against the targets, and Federator's
//! reaction time per step.

use std::time::{Duration, Instant};

use comfy_table::{Table, presets::ASCII_MARKDOWN};
use e2e::bench_stats::{self, RatioEstimate};

use crate::controller::{Histogram, Patches};
use crate::drive::Driver;
use crate::probe::Outage;
use crate::timeline::Milestones;

/// Federator's write unavailability at most this multiple of the floor's…
pub const VS_FLOOR: f64 = 1.10;
/// …and of the 2 s-polling script's.
pub const VS_SCRIPT: f64 = 0.50;
/// Reaction p99 bound.
pub const REACTION_P99: Duration = Duration::from_millis(50);
/// The share of bootstrap ratios the printed interval holds.
const CONFIDENCE: f64 = 0.90;
/// Fixed, so a table can be recomputed from its samples.
const SEED: u64 = 0x5EED_F00D;

/// One measured switchover.
pub struct Sample {
    pub driver: Driver,
    pub from: &'static str,
    pub to: &'static str,
    pub outage: Outage,
    pub milestones: Milestones,
}

impl Sample {
    /// Whether a Bookkeeping or ClearToken patch reached a member before the new primary
    /// acknowledged its first write (the manual drivers send theirs after the round).
    fn follow_up_during_outage(&self) -> bool {
        self.milestones
            .follow_up
            .zip(self.outage.first_acknowledged)
            .is_some_and(|(f, a)| f < a)
    }

    /// The outage split at the watch milestones: Demote seen → first failed write (the old
    /// primary fencing itself), → token seen, → Promote seen, → first write on the new primary.
    /// Only the middle step is the driver's; the others are the emulator's and PostgreSQL's.
    fn phases(&self) -> [Option<Duration>; 4] {
        let m = &self.milestones;
        let (failed, acked) = (self.outage.first_failed, self.outage.first_acknowledged);
        let between = |a: Option<Instant>, b: Option<Instant>| {
            a.zip(b).map(|(a, b)| b.saturating_duration_since(a))
        };
        [
            between(m.demoted, failed),
            between(failed, m.token),
            m.promote_lag,
            between(m.promoted, acked),
        ]
    }
}

/// One shape's results.
pub struct ShapeReport {
    pub shape: &'static str,
    /// The drivers that ran (`--drivers`).
    pub drivers: Vec<Driver>,
    pub samples: Vec<Sample>,
    /// What the controller reported, when Federator was one of the drivers.
    pub federator: Option<FederatorCounts>,
}

/// The controller's own counts over a shape's run.
pub struct FederatorCounts {
    /// `(step, reaction, pickup)`: `federator_reaction_seconds` and the part of it before the
    /// answering reconcile started (`federator_reaction_pickup_seconds`).
    pub reactions: Vec<(String, Histogram, Histogram)>,
    /// Every status write (`federator_status_write_seconds_count`, both kinds).
    pub status_writes: u64,
    /// `federator_status_write_seconds{then="patch"}`: the step-log write before each patch.
    pub status_writes_before_patch: Histogram,
    /// The member patches of its log.
    pub patches: Patches,
    /// The Events it published in the shape's namespace.
    pub events: u64,
}

pub fn median(v: Vec<Duration>) -> Option<Duration> {
    let secs: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    bench_stats::median(&secs).map(Duration::from_secs_f64)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
}

fn ms_fine(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

impl ShapeReport {
    fn reactions(&self) -> &[(String, Histogram, Histogram)] {
        self.federator.as_ref().map_or(&[], |f| &f.reactions)
    }

    fn of(&self, driver: Driver, f: impl Fn(&Sample) -> Option<Duration>) -> Vec<Duration> {
        self.samples
            .iter()
            .filter(|s| s.driver == driver)
            .filter_map(f)
            .collect()
    }

    fn windows_ms(&self, driver: Driver) -> Vec<f64> {
        self.of(driver, |s| Some(s.outage.window))
            .into_iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect()
    }

    /// `driver`'s median outage over `baseline`'s, with its bootstrap interval.
    fn ratio(&self, driver: Driver, baseline: Driver) -> Option<RatioEstimate> {
        bench_stats::ratio_of_medians(
            &self.windows_ms(driver),
            &self.windows_ms(baseline),
            CONFIDENCE,
            bench_stats::RESAMPLES,
            SEED,
        )
    }
}

/// Whether the whole interval is on one side of `bound`.
fn settled(x: RatioEstimate, bound: f64) -> String {
    if x.high <= bound {
        format!("the whole interval is within {bound:.2}")
    } else if x.low > bound {
        format!("the whole interval is over {bound:.2}")
    } else {
        format!("the interval straddles {bound:.2}: this run cannot settle it")
    }
}

/// Per shape, driver and direction: n, unavailable p50 and max, token → Promote seen p50.
fn by_direction(reports: &[ShapeReport]) -> Table {
    let mut table = Table::new();
    table.load_style(ASCII_MARKDOWN).set_header([
        "shape",
        "driver",
        "from → to",
        "n",
        "unavailable p50",
        "max",
        "token → Promote seen p50",
    ]);
    for r in reports {
        let mut directions: Vec<(&str, &str)> = r.samples.iter().map(|s| (s.from, s.to)).collect();
        directions.sort_unstable();
        directions.dedup();
        for &driver in &r.drivers {
            for &(from, to) in &directions {
                let of = |f: &dyn Fn(&Sample) -> Option<Duration>| -> Vec<Duration> {
                    r.samples
                        .iter()
                        .filter(|s| s.driver == driver && s.from == from && s.to == to)
                        .filter_map(f)
                        .collect()
                };
                let windows = of(&|s| Some(s.outage.window));
                if windows.is_empty() {
                    continue;
                }
                table.add_row([
                    r.shape.to_owned(),
                    driver.label().to_owned(),
                    format!("{from} → {to}"),
                    windows.len().to_string(),
                    ms(median(windows.clone())),
                    ms(windows.into_iter().max()),
                    ms(median(of(&|s| s.milestones.promote_lag))),
                ]);
            }
        }
    }
    table
}

/// Prints every table; returns whether every target was met.
pub fn print(reports: &[ShapeReport]) -> bool {
    let mut unavailable = Table::new();
    unavailable.load_style(ASCII_MARKDOWN).set_header([
        "shape",
        "driver",
        "n",
        "unavailable p50",
        "max",
        "incl. restart p50",
        "max",
        "Demote seen after p50",
        "token → Promote seen p50",
    ]);
    let mut targets = Table::new();
    targets.load_style(ASCII_MARKDOWN).set_header([
        "shape",
        "Federator / floor (p50)",
        format!("{:.0} % CI", CONFIDENCE * 100.0).as_str(),
        format!("≤ {VS_FLOOR:.2}").as_str(),
        "Federator / script (p50)",
        format!("{:.0} % CI", CONFIDENCE * 100.0).as_str(),
        format!("≤ {VS_SCRIPT:.2}").as_str(),
        "script / floor (p50)",
    ]);
    let mut phases = Table::new();
    phases.load_style(ASCII_MARKDOWN).set_header([
        "shape",
        "driver",
        "Demote → first failed write",
        "→ token seen",
        "→ Promote seen",
        "→ first write on new primary",
        "follow-up patch before that write",
    ]);
    let mut reaction = Table::new();
    reaction.load_style(ASCII_MARKDOWN).set_header([
        "shape",
        "step",
        "n",
        "reaction p50",
        "p99",
        "mean",
        format!("> {} ms", REACTION_P99.as_millis()).as_str(),
        format!("p99 ≤ {} ms", REACTION_P99.as_millis()).as_str(),
        "of which pickup p50",
        "pickup p99",
    ]);
    let mut all_met = true;
    let mut uncertain = Vec::new();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for r in reports {
        for &driver in &r.drivers {
            let windows = r.of(driver, |s| Some(s.outage.window));
            unavailable.add_row([
                r.shape.to_owned(),
                driver.label().to_owned(),
                windows.len().to_string(),
                ms(median(windows.clone())),
                ms(windows.into_iter().max()),
                ms(median(r.of(driver, |s| Some(s.outage.total)))),
                ms(r.of(driver, |s| Some(s.outage.total)).into_iter().max()),
                ms(median(r.of(driver, |s| s.milestones.demote_lag))),
                ms(median(r.of(driver, |s| s.milestones.promote_lag))),
            ]);
            let phase = |k: usize| ms(median(r.of(driver, |s| s.phases()[k])));
            phases.add_row([
                r.shape.to_owned(),
                driver.label().to_owned(),
                phase(0),
                phase(1),
                phase(2),
                phase(3),
                {
                    let of_driver: Vec<&Sample> =
                        r.samples.iter().filter(|s| s.driver == driver).collect();
                    let early = of_driver
                        .iter()
                        .filter(|s| s.follow_up_during_outage())
                        .count();
                    format!("{early} of {}", of_driver.len())
                },
            ]);
        }
        let (vs_floor, vs_script) = (
            r.ratio(Driver::Federator, Driver::Floor),
            r.ratio(Driver::Federator, Driver::Script),
        );
        let script_vs_floor = r.ratio(Driver::Script, Driver::Floor);
        // A target is judged only when both of its drivers ran (`--drivers`).
        let ran = |d: Driver| r.drivers.contains(&d);
        let floor_ok = vs_floor.is_some_and(|x| x.point <= VS_FLOOR);
        let script_ok = vs_script.is_some_and(|x| x.point <= VS_SCRIPT);
        all_met &= floor_ok || !(ran(Driver::Federator) && ran(Driver::Floor));
        all_met &= script_ok || !(ran(Driver::Federator) && ran(Driver::Script));
        let judged = |ok: bool, a: Driver, b: Driver| {
            if ran(a) && ran(b) {
                verdict(ok)
            } else {
                "not run"
            }
        };
        let show = |x: Option<RatioEstimate>| x.map_or("–".into(), |x| format!("{:.2}", x.point));
        let interval = |x: Option<RatioEstimate>| {
            x.map_or("–".into(), |x| format!("{:.2}–{:.2}", x.low, x.high))
        };
        targets.add_row([
            r.shape.to_owned(),
            show(vs_floor),
            interval(vs_floor),
            judged(floor_ok, Driver::Federator, Driver::Floor).to_owned(),
            show(vs_script),
            interval(vs_script),
            judged(script_ok, Driver::Federator, Driver::Script).to_owned(),
            show(script_vs_floor),
        ]);
        for (x, bound, what) in [
            (vs_floor, VS_FLOOR, "floor"),
            (vs_script, VS_SCRIPT, "script"),
        ] {
            if let Some(x) = x {
                uncertain.push(format!(
                    "{} Federator / {what}: {}; {}",
                    r.shape,
                    x.describe(),
                    settled(x, bound)
                ));
            }
        }
        for (step, h, pickup) in r.reactions() {
            let p99 = h.quantile(0.99);
            let target = REACTION_P99.as_secs_f64();
            // Counted where the controller has the target as a bucket bound; an older binary
            // (FEDERATOR_BIN) falls back to the estimate.
            let over = h.at_most(target).map(|within| h.count - within);
            let ok = h
                .quantile_at_most(0.99, target)
                .unwrap_or_else(|| p99.is_some_and(|p| p <= REACTION_P99));
            all_met &= ok;
            let mean = (h.count > 0).then(|| Duration::from_secs_f64(h.sum / h.count as f64));
            reaction.add_row([
                r.shape.to_owned(),
                step.clone(),
                h.count.to_string(),
                ms_fine(h.quantile(0.5)),
                ms_fine(p99),
                ms_fine(mean),
                over.map_or("?".into(), |n| n.to_string()),
                verdict(ok).to_owned(),
                ms_fine(pickup.quantile(0.5)),
                ms_fine(pickup.quantile(0.99)),
            ]);
        }
    }
    println!(
        "\nWrite unavailability (first failed write → first write acknowledged by the new primary)\n"
    );
    println!("{unavailable}");
    println!(
        "\nBy direction (medians): the members differ on real CloudNativePG, so a driver's median \
         over both directions depends on how many of each it drew\n"
    );
    println!("{}", by_direction(reports));
    println!("\nWhere the outage goes (medians; each boundary as the bench's watches saw it)\n");
    println!("{phases}");
    println!("\nTargets\n");
    println!("{targets}");
    println!(
        "\nThe verdict is on the medians as measured; the interval (percentile bootstrap, {} \
         resamples, fixed seed) says how far another run of this size may land:",
        bench_stats::RESAMPLES
    );
    for line in &uncertain {
        println!("  {line}");
    }
    println!(
        "\nFederator's reaction (member change delivered → next member patch sent). p50, p99, pickup: \
         histogram estimates; `> 50 ms` and the verdict: counted exactly (50 ms is a bucket bound)\n"
    );
    println!("{reaction}");
    for r in reports {
        let target = REACTION_P99.as_secs_f64();
        let (n, within) = r
            .reactions()
            .iter()
            .fold((0, Some(0)), |(n, w), (_, h, _)| {
                (n + h.count, w.zip(h.at_most(target)).map(|(a, b)| a + b))
            });
        if let Some(within) = within {
            println!(
                "{}: {} of {n} reactions (all steps) over {} ms",
                r.shape,
                n - within,
                REACTION_P99.as_millis()
            );
        }
    }
    for r in reports {
        let Some(f) = &r.federator else {
            continue;
        };
        let w = &f.status_writes_before_patch;
        println!(
            "{}: status write before a patch (federator_status_write_seconds{{then=\"patch\"}}): n {}, p50 {}, p99 {}",
            r.shape,
            w.count,
            ms_fine(w.quantile(0.5)),
            ms_fine(w.quantile(0.99)),
        );
        // Per Federator switchover, the topology's creation and deletion each round included.
        let n = r
            .samples
            .iter()
            .filter(|s| s.driver == Driver::Federator)
            .count()
            .max(1) as f64;
        println!(
            "{}: per Federator switchover: {:.2} status writes, {:.2} member patches ({} sent twice), {:.2} Events",
            r.shape,
            f.status_writes as f64 / n,
            f.patches.sent as f64 / n,
            f.patches.twice,
            f.events as f64 / n,
        );
    }
    println!("\nPer switchover:");
    for r in reports {
        for s in &r.samples {
            println!(
                "  {:<5} {:<18} {} → {}: unavailable {}, incl. restart {}, Demote seen after {}, token → Promote seen {}, phases {}",
                r.shape,
                s.driver.label(),
                s.from,
                s.to,
                ms(Some(s.outage.window)),
                ms(Some(s.outage.total)),
                ms(s.milestones.demote_lag),
                ms(s.milestones.promote_lag),
                s.phases().map(ms).join(" / "),
            );
        }
    }
    all_met
}
