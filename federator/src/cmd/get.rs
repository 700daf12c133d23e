//! `federator get [NAME] [-n NS | -A] [-o table|yaml|json|name]` (alias `list`): the
//! DistributedTopologies on the hub, one line each, as `kubectl get` shows objects.

use std::process::ExitCode;

use anyhow::Context as _;
use comfy_table::{Table, presets};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use topology::DistributedTopology;
use topology::conditions::kind;

use super::exit;
use super::hub::KubeArgs;

#[derive(clap::Args)]
pub struct Args {
    /// One DistributedTopology (default: every one in the namespace).
    name: Option<String>,
    /// Hub namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Every namespace of the hub.
    #[arg(short = 'A', long, conflicts_with_all = ["name", "namespace"])]
    all_namespaces: bool,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
    /// `distributedtopology/NAME` per line, for scripts.
    Name,
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(get(args, kube))
}

async fn get(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let hub = kube.connect().await?;
    let namespace = hub.namespace(args.namespace.as_deref());
    let items = hub
        .topologies(&namespace, args.name.as_deref(), args.all_namespaces)
        .await?;
    let text = match args.output {
        Output::Json => serde_json::to_string_pretty(&items)? + "\n",
        Output::Yaml => serde_saphyr::to_string(&items)?,
        Output::Name => items
            .iter()
            .map(|t| format!("distributedtopology/{}\n", t.name_any()))
            .collect(),
        Output::Table if items.is_empty() => {
            let scope = if args.all_namespaces {
                "any namespace".to_owned()
            } else {
                format!("namespace {namespace}")
            };
            eprintln!("No DistributedTopologies in {scope}.");
            String::new()
        }
        Output::Table => render(&items, args.all_namespaces, Timestamp::now()),
    };
    print!("{text}");
    Ok(exit::code(exit::OK))
}

fn render(items: &[DistributedTopology], with_namespace: bool, now: Timestamp) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    let mut header = vec![
        "NAME",
        "PRIMARY",
        "OBSERVED",
        "READY",
        "DEGRADED",
        "OPERATION",
        "AGE",
    ];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    table.set_header(header);
    for t in items {
        let status = t.status.clone().unwrap_or_default();
        let condition = |type_: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map_or_else(|| "-".to_owned(), |c| c.status.clone())
        };
        let operation = status.operation.as_ref().map_or_else(
            || "-".to_owned(),
            |op| {
                let held = if op.hold.is_some() { " (held)" } else { "" };
                format!("{} {}→{} {}{held}", op.kind, op.from, op.to, op.step)
            },
        );
        let mut row = vec![
            t.name_any(),
            t.spec.primary.clone(),
            status
                .observed_primary
                .clone()
                .unwrap_or_else(|| "-".into()),
            condition(kind::READY),
            condition(kind::DEGRADED),
            operation,
            t.metadata
                .creation_timestamp
                .as_ref()
                .map_or_else(|| "-".into(), |c| age(now.duration_since(c.0))),
        ];
        if with_namespace {
            row.insert(0, t.namespace().unwrap_or_default());
        }
        table.add_row(row);
    }
    // kubectl's layout: no left margin, three spaces between columns.
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    let lines: Vec<String> = table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect();
    lines.join("\n") + "\n"
}

/// kubectl's short age: `45s`, `12m`, `5h`, `3d`.
fn age(elapsed: k8s_openapi::jiff::SignedDuration) -> String {
    let secs = elapsed.as_secs().max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let d = k8s_openapi::jiff::SignedDuration::from_secs;
        assert_eq!(age(d(45)), "45s");
        assert_eq!(age(d(600)), "10m");
        assert_eq!(age(d(5 * 3600)), "5h");
        assert_eq!(age(d(3 * 86_400)), "3d");
        assert_eq!(age(d(-5)), "0s");
    }

    #[test]
    fn the_table_shows_the_namespace_column_only_for_all_namespaces() {
        let manifest = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/ring-of-three.yaml"
        ))
        .unwrap();
        let doc = manifest.split("\n---").next().unwrap();
        let topo: DistributedTopology = serde_saphyr::from_str(doc).unwrap();
        let now = Timestamp::now();
        let one = render(std::slice::from_ref(&topo), false, now);
        assert!(one.starts_with("NAME"), "{one}");
        assert!(
            one.contains("pg16") && one.contains("pg16-eu-central"),
            "{one}"
        );
        let all = render(&[topo], true, now);
        assert!(all.starts_with("NAMESPACE"), "{all}");
        assert!(all.contains("federator"), "{all}");
    }
}
