//! Whole-region operations at speed and at scale (issue #17, "Performance"), two parts in one
//! run, each against a baseline measured in the same run:
//!
//! 1. **moves**: `--n N` pairs (default 10; eu-central primary, eu-western replica, a writer in
//!    each) are moved by region switches of one topology each, one after another ("alone"), then
//!    by one region switch of all N at concurrency N ("at once"), there and back. Printed: the
//!    at-once wall time against the slowest alone (target ≤ 1.5×) and each database's longest
//!    write gap at once against its own alone (target ≤ 1.2×), and per topology of the at-once
//!    run when it was asked, when it moved and its switchover's step timings (where time went).
//! 2. **footprint**: `--topologies M` (default 200) pairs of the emulator's **status-only**
//!    Clusters (no PostgreSQL; a scale test of the controller alone) held by one controller:
//!    its resident memory once all are Ready, and its CPU over `--idle-seconds` (default 60)
//!    with nothing changing.
//!
//! Run: `cargo build --release -p federator && cargo bench -p federator-e2e --bench
//! region_switch` (`make bench-region`). Options after `--`: `--n N`, `--rounds R` (default 1:
//! each database alone and at once, there and back, R times), `--topologies M`,
//! `--idle-seconds S`, `--only moves|footprint`. Lab ports and directory as for the tests
//! (`FEDERATOR_LAB_*`). See docs/benchmarks.md.

#[path = "region_switch/footprint.rs"]
mod footprint;
#[path = "region_switch/moves.rs"]
mod moves;
#[path = "region_switch/switch.rs"]
mod switch;

use std::time::Duration;

use anyhow::{Context as _, bail};
use e2e::harness::testkit;

struct Config {
    n: usize,
    rounds: usize,
    topologies: usize,
    idle: Duration,
    moves: bool,
    footprint: bool,
}

impl Config {
    /// Anything it does not know (cargo's `--bench`) is ignored.
    fn from_args() -> anyhow::Result<Self> {
        let mut config = Config {
            n: 10,
            rounds: 1,
            topologies: 200,
            idle: Duration::from_secs(60),
            moves: true,
            footprint: true,
        };
        let mut args = std::env::args().skip(1);
        let number = |flag: &str, value: Option<String>| -> anyhow::Result<usize> {
            let value = value.with_context(|| format!("{flag} needs a number"))?;
            value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--n" => config.n = number("--n", args.next())?,
                "--rounds" => config.rounds = number("--rounds", args.next())?,
                "--topologies" => config.topologies = number("--topologies", args.next())?,
                "--idle-seconds" => {
                    config.idle = Duration::from_secs(number("--idle-seconds", args.next())? as u64)
                }
                "--only" => match args.next().as_deref() {
                    Some("moves") => config.footprint = false,
                    Some("footprint") => config.moves = false,
                    other => bail!("--only {other:?}: moves or footprint"),
                },
                _ => {}
            }
        }
        if config.n == 0 || config.rounds == 0 || config.topologies == 0 {
            bail!("--n, --rounds and --topologies must be at least 1");
        }
        Ok(config)
    }
}

use e2e::bench_stats::load_average as load;

fn main() -> anyhow::Result<()> {
    let config = Config::from_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let lab = testkit::lab_with_emulators().await;
        println!(
            "region switch bench on the CNPG emulator lab; load average {}",
            load()
        );
        let mut met = true;
        if config.moves {
            met &= moves::run(lab, config.n, config.rounds).await?;
            println!("moves done; load average {}", load());
        }
        if config.footprint {
            met &= footprint::run(lab, config.topologies, config.idle).await?;
            println!("footprint done; load average {}", load());
        }
        println!(
            "\nload average at the end {}; every target met: {}",
            load(),
            if met { "yes" } else { "no" }
        );
        Ok(())
    })
}
