//! Requesting a primary change and following the operation the controller runs for it, shared
//! by `switchover` and `failover`: the request is one merge patch of the topology's spec; the
//! follow watches the topology, prints each step as it finishes, and maps the end to the exit
//! codes of docs/cli.md (succeeded 0, held or refused 3, ended otherwise 4, timed out 5).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use topology::DistributedTopology;
use topology::api::{DistributedTopologyStatus, Operation, Outcome};
use topology::conditions::reason;

use super::exit;

/// The CLI's field manager on the topology.
const FIELD_MANAGER: &str = "federator-cli";

/// Reads the topology and checks that `to` is one of its members.
pub async fn read_checked(
    api: &Api<DistributedTopology>,
    namespace: &str,
    name: &str,
    to: &str,
    hub: &str,
) -> anyhow::Result<DistributedTopology> {
    let topo = api
        .get(name)
        .await
        .with_context(|| format!("reading DistributedTopology {namespace}/{name} on {hub}"))?;
    if !topo.spec.members.iter().any(|m| m.name == to) {
        let names: Vec<&str> = topo.spec.members.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "{to} is not a member of {name}; members: {}",
            names.join(", ")
        );
    }
    Ok(topo)
}

/// Sends the request (a JSON merge patch of the topology); returns the new generation.
pub async fn request(
    api: &Api<DistributedTopology>,
    name: &str,
    patch: serde_json::Value,
    what: &str,
) -> anyhow::Result<i64> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patched = api
        .patch(name, &params, &Patch::Merge(patch))
        .await
        .with_context(|| format!("setting {what}"))?;
    Ok(patched.metadata.generation.unwrap_or_default())
}

/// What the controller has made of the request so far, as one kind of request reads it.
pub enum Answer {
    /// Not acted on yet; `Some(text)` says why, once per distinct text.
    Waiting(Option<String>),
    /// Refused: nothing will happen.
    Refused(String),
    /// Nothing to do (e.g. the member already is primary).
    Done(String),
    /// The operation the controller runs for it.
    Running(Box<Operation>),
}

/// How a follow ended: the exit code, and the last status seen (for what a kind prints after).
pub struct Followed {
    pub code: ExitCode,
    pub status: Option<DistributedTopologyStatus>,
}

/// Watches topology `name` until `answer` reports an end, printing steps as they finish; gives
/// up after `timeout` (exit 5; the operation goes on).
pub async fn follow(
    api: &Api<DistributedTopology>,
    name: &str,
    timeout: policies::Duration,
    mut answer: impl FnMut(&DistributedTopologyStatus) -> Answer,
) -> anyhow::Result<Followed> {
    let display = Display::new(std::io::stdout().is_terminal());
    let watched = async {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut updates = watcher(api.clone(), config).applied_objects().boxed();
        let mut printed = 0;
        let mut said = String::new();
        while let Some(topo) = updates.try_next().await.context("watching the topology")? {
            let Some(status) = topo.status else { continue };
            let op = match answer(&status) {
                Answer::Waiting(None) => continue,
                Answer::Waiting(Some(why)) => {
                    if why != said {
                        display.line(format!("waiting: {why}"));
                        said = why;
                    }
                    continue;
                }
                Answer::Refused(why) => {
                    display.done(&format!("REFUSED: {why}"));
                    return Ok(ended(exit::HELD, status));
                }
                Answer::Done(text) => {
                    display.done(&text);
                    return Ok(ended(exit::OK, status));
                }
                Answer::Running(op) => op,
            };
            printed = display.steps(&op, printed);
            if let Some(hold) = &op.hold {
                let text = format!("HOLD at {} ({}): {}", op.step, hold.reason, hold.message);
                if hold.reason == reason::MEMBER_UNREACHABLE_HOLD {
                    // Ends by itself when the member answers again: no human needed yet, so
                    // keep following (up to the timeout) instead of exiting "held".
                    if text != said {
                        display.line(format!("{text} (waiting for it to answer)"));
                        said = text;
                    }
                    continue;
                }
                display.done(&text);
                return Ok(ended(exit::HELD, status));
            }
            match op.outcome {
                Some(Outcome::Succeeded) => {
                    display.done(&format!(
                        "{} {} → {} succeeded in {}",
                        op.kind,
                        op.from,
                        op.to,
                        took(&op)
                    ));
                    return Ok(ended(exit::OK, status));
                }
                Some(outcome) => {
                    display.done(&format!(
                        "{} {} → {} ended {outcome:?}",
                        op.kind, op.from, op.to
                    ));
                    return Ok(ended(exit::NOT_DONE, status));
                }
                None => display.current(&op),
            }
        }
        bail!("the watch on the topology ended")
    };
    match tokio::time::timeout(timeout.as_std(), watched).await {
        Ok(result) => result,
        Err(_) => {
            display.done(&format!(
                "gave up waiting after {timeout}; the operation goes on (see `federator status {name}`)"
            ));
            Ok(Followed {
                code: exit::code(exit::TIMED_OUT),
                status: None,
            })
        }
    }
}

fn ended(code: u8, status: DistributedTopologyStatus) -> Followed {
    Followed {
        code: exit::code(code),
        status: Some(status),
    }
}

pub fn took(op: &Operation) -> String {
    match &op.finished_at {
        Some(end) => format!(
            "{:.2}s",
            end.0.duration_since(op.started_at.0).as_secs_f64()
        ),
        None => "-".into(),
    }
}

/// A spinner on a terminal, plain lines otherwise.
struct Display {
    spinner: Option<ProgressBar>,
}

impl Display {
    fn new(tty: bool) -> Self {
        let spinner = tty.then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Display { spinner }
    }

    fn line(&self, text: String) {
        match &self.spinner {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// Prints the steps finished since `printed`; returns the new count.
    fn steps(&self, op: &Operation, printed: usize) -> usize {
        let finished: Vec<_> = op
            .steps
            .iter()
            .filter(|s| s.finished_at.is_some())
            .collect();
        for step in finished.iter().skip(printed) {
            let secs = step
                .finished_at
                .as_ref()
                .map(|end| end.0.duration_since(step.started_at.0).as_secs_f64())
                .unwrap_or_default();
            let member = step
                .member
                .as_deref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default();
            self.line(format!(
                "  ✓ {:<22}{member:<14} {secs:>7.3}s",
                step.step.as_str()
            ));
        }
        finished.len().max(printed)
    }

    fn current(&self, op: &Operation) {
        if let Some(bar) = &self.spinner {
            let member = op
                .steps
                .last()
                .and_then(|s| s.member.as_deref())
                .unwrap_or("");
            bar.set_message(format!("{} {member}", op.step));
        }
    }

    fn done(&self, text: &str) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
        println!("{text}");
    }
}
