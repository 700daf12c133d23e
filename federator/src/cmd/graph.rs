//! `federator graph`: the topology as a picture, primary marked, arrows in WAL direction.

use std::path::PathBuf;
use std::process::ExitCode;

use topology::graph::TopologyGraph;

use super::validate::{check, describe, load, print_problems, single};

#[derive(clap::Args)]
pub struct Args {
    /// YAML files with one DistributedTopology and, optionally, its CNPG Clusters. With Clusters
    /// the picture shows their actual sources and primary; without, what the shape wants.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Output format: an indented tree, Graphviz dot, or a standalone SVG.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Dot,
    Svg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let manifests = load(&args.files)?;
    let loaded = single(&manifests)?;
    let (topology, observed) = match check(&loaded, None) {
        Ok(ok) => ok,
        Err(problems) => {
            print_problems(&describe(&loaded), &problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    let graph = if loaded.clusters.is_empty() {
        TopologyGraph::desired(&topology, topology.primary())
    } else {
        TopologyGraph::observed(&topology, &observed)
    };
    print!(
        "{}",
        match args.output {
            Output::Text => graph.to_text(),
            Output::Dot => graph.to_dot(),
            Output::Svg => graph.to_svg(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
