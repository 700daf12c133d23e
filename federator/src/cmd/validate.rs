//! `federator validate`: check DistributedTopology manifests and the CNPG Clusters given with
//! them (`-f`, offline), or the topologies on the hub with their members' Clusters as they are
//! (`validate [NAME] [-n NS | -A]`). Also home of the file loading that `plan` and `graph` share.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use topology::cnpg::Cluster;
use topology::manifest::{Manifests, Origin};
use topology::validate::{Problem, validate_clusters};
use topology::{DistributedTopology, Observed, Topology};

use super::exit;
use super::hub::KubeArgs;
use super::live::{self, LiveArgs};

#[derive(clap::Args)]
pub struct Args {
    /// YAML files with DistributedTopology and CNPG Cluster documents (`-` for stdin). Without
    /// -f, the topologies on the hub are validated with their members' live Clusters.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// One DistributedTopology on the hub (default: every one in the namespace).
    #[arg(conflicts_with = "files")]
    name: Option<String>,
    /// Hub namespace (default: the kubeconfig context's).
    #[arg(short, long, conflicts_with = "files")]
    namespace: Option<String>,
    /// Every namespace of the hub.
    #[arg(short = 'A', long, conflicts_with_all = ["files", "name", "namespace"])]
    all_namespaces: bool,
    #[command(flatten)]
    live: LiveArgs,
}

/// Reads and parses every file; all syntax errors of all files are reported together.
pub(crate) fn load(files: &[PathBuf]) -> anyhow::Result<Manifests> {
    let mut manifests = Manifests::default();
    let mut errors = Vec::new();
    for file in files {
        let text = if file.as_os_str() == "-" {
            read_limited(std::io::stdin(), "stdin")?
        } else {
            let opened =
                std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
            read_limited(opened, &file.display().to_string())?
        };
        if let Err(e) = manifests.add(&file.display().to_string(), &text) {
            errors.extend(e);
        }
    }
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!("cannot read the manifests:\n  {}", lines.join("\n  "));
    }
    Ok(manifests)
}

/// The largest manifest file read: topologies and Clusters are a few KiB each, and a file that
/// never ends (`-f /dev/zero`) must not hang the CLI or exhaust its memory.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// At most [`MAX_MANIFEST_BYTES`] of `source` as UTF-8 text; more is an error naming `what`.
fn read_limited(source: impl std::io::Read, what: &str) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    source
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what}"))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        bail!(
            "reading {what}: larger than {} MiB, not a manifest; give the files with the \
             DistributedTopology and Cluster documents",
            MAX_MANIFEST_BYTES / (1024 * 1024)
        );
    }
    String::from_utf8(bytes).with_context(|| format!("reading {what}: not UTF-8 text"))
}

/// One topology with the Clusters that belong to it (by topology name).
pub(crate) struct Loaded<'a> {
    pub origin: &'a Origin,
    pub object: &'a DistributedTopology,
    pub clusters: Vec<Cluster>,
}

/// Groups the Clusters by the topology listing them; Clusters no topology lists go to the
/// only topology when there is one, so that validation reports them.
pub(crate) fn group(manifests: &Manifests) -> Vec<Loaded<'_>> {
    let mut loaded: Vec<Loaded<'_>> = manifests
        .topologies
        .iter()
        .map(|(origin, object)| Loaded {
            origin,
            object,
            clusters: Vec::new(),
        })
        .collect();
    for (_, cluster) in &manifests.clusters {
        let name = cluster.topology_name();
        let owner = loaded
            .iter()
            .position(|t| t.object.spec.members.iter().any(|m| m.name == name))
            .or((loaded.len() == 1).then_some(0));
        if let Some(i) = owner {
            loaded[i].clusters.push(cluster.clone());
        }
    }
    loaded
}

/// The single topology of the files (plan and graph work on one).
pub(crate) fn single(manifests: &Manifests) -> anyhow::Result<Loaded<'_>> {
    let mut all = group(manifests);
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => bail!("no DistributedTopology (apiVersion federator.dev/v1alpha1) in the files"),
        n => bail!("{n} DistributedTopology documents in the files; pass the files of one"),
    }
}

/// Static validation, then live validation against the Clusters when there are any. Returns
/// the model and the observed (or, without Clusters, assumed) member state.
pub(crate) fn check(
    loaded: &Loaded<'_>,
    target: Option<&str>,
) -> Result<(Topology, Observed), Vec<Problem>> {
    let topology = Topology::from_spec(&loaded.object.spec).map_err(|e| e.problems)?;
    if loaded.clusters.is_empty() {
        let observed = Observed::conforming(&topology);
        return Ok((topology, observed));
    }
    let observed =
        validate_clusters(&topology, &loaded.clusters, target).map_err(|e| e.problems)?;
    Ok((topology, observed))
}

pub(crate) fn describe(loaded: &Loaded<'_>) -> String {
    let meta = &loaded.object.metadata;
    // Line 0: not from a file (read from the hub); the origin names where.
    let origin = if loaded.origin.line == 0 {
        loaded.origin.file.clone()
    } else {
        loaded.origin.to_string()
    };
    format!(
        "{}/{} ({origin})",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("?"),
    )
}

pub(crate) fn print_problems(what: &str, problems: &[Problem]) {
    eprintln!(
        "{what}: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        eprintln!("  - {}: {}\n    fix: {}", p.path, p.message, p.fix);
    }
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    if args.files.is_empty() {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        return runtime.block_on(validate_live(args, kube));
    }
    let manifests = load(&args.files)?;
    let all = group(&manifests);
    if all.is_empty() {
        bail!("no DistributedTopology (apiVersion federator.dev/v1alpha1) in the files");
    }
    report(&all)
}

/// The topologies on the hub, each with its members' Clusters read live.
async fn validate_live(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let hub = kube.connect().await?;
    let namespace = hub.namespace(args.namespace.as_deref());
    let objects = hub
        .topologies(&namespace, args.name.as_deref(), args.all_namespaces)
        .await?;
    if objects.is_empty() {
        let scope = if args.all_namespaces {
            "any namespace".to_owned()
        } else {
            format!("namespace {namespace}")
        };
        bail!("no DistributedTopology in {scope} on {}", hub.describe);
    }
    let credentials = live::credentials(&hub, &args.live).await?;
    let origin = Origin {
        file: format!("live on {}", hub.describe),
        line: 0,
    };
    let mut lives = Vec::new();
    for object in objects {
        lives.push(live::with_clusters(object, &credentials).await?);
    }
    let mut unread = false;
    for live in &lives {
        for why in &live.unread {
            unread = true;
            eprintln!("not read: {why}");
        }
    }
    let all: Vec<Loaded<'_>> = lives
        .iter()
        .map(|live| Loaded {
            origin: &origin,
            object: &live.object,
            clusters: live.clusters.clone(),
        })
        .collect();
    let code = report(&all)?;
    Ok(if unread {
        exit::code(exit::ERROR)
    } else {
        code
    })
}

fn report(all: &[Loaded<'_>]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for loaded in all {
        let what = describe(loaded);
        match check(loaded, None) {
            Ok((topology, observed)) => println!(
                "{}",
                summary(&what, &topology, &observed, loaded.clusters.len())
            ),
            Err(problems) => {
                failed = true;
                print_problems(&what, &problems);
            }
        }
    }
    Ok(exit::code(if failed { exit::ERROR } else { exit::OK }))
}

fn summary(what: &str, topology: &Topology, observed: &Observed, clusters: usize) -> String {
    let head = format!(
        "ok: {what}: {} shape, {} members, primary {}",
        topology.shape().name(),
        topology.names().len(),
        topology.primary()
    );
    if clusters == 0 {
        return format!("{head}; no CNPG Clusters given, live checks skipped");
    }
    match observed.primary() {
        Some(p) if p != topology.primary() => format!(
            "{head}; {clusters} Clusters consistent, but {p} is primary: a switchover to {} is pending",
            topology.primary()
        ),
        _ => format!("{head}; {clusters} Clusters consistent"),
    }
}
