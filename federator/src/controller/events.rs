//! Kubernetes Events on the topology: one per step entered, per patch sent, per hold and per
//! finished operation. Publishing is best effort: an Event that cannot be written is logged and
//! never fails a reconcile (the durable record is the status step log).
//!
//! Reconciles hand their Events to one publisher task, which sends them in order and off the
//! reconcile's path: each is a hub round trip (~10 ms), and three of them once held every Promote
//! patch ~50 ms. Normal Events raised while a switchover is inside its write outage (Demote sent,
//! promotion not yet confirmed) are held until it is over, at most [`MAX_HOLD`]: the switchover
//! bench measured them costing ~30–50 ms of outage on a 2-core lab, where the hub's apiserver and
//! etcd share the CPUs with the members' operators and PostgreSQL (`docs/benchmarks.md`).
//! Warnings — holds, rollbacks — are never held, and flush what is held before them.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use topology::DistributedTopology;

use super::decide::Note;

/// The longest a Normal Event waits for a write outage to end.
pub const MAX_HOLD: Duration = Duration::from_secs(3);

/// The Events of one reconcile.
struct Batch {
    object: Arc<DistributedTopology>,
    notes: Vec<Note>,
    /// Raised inside a write outage: Normal Events may wait for it to end.
    during_outage: bool,
}

/// Publishes Events as `federator` (with the controller's identity as instance).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    queue: mpsc::UnboundedSender<Batch>,
}

impl Events {
    /// Starts the publisher task (on the current Tokio runtime); it ends with the last clone.
    pub fn new(hub: Client, instance: String) -> Self {
        let reporter = Reporter {
            controller: "federator".into(),
            instance: Some(instance),
        };
        let recorder = Recorder::new(hub, reporter);
        let (queue, batches) = mpsc::unbounded_channel();
        tokio::spawn(publish_in_order(recorder.clone(), batches));
        Events { recorder, queue }
    }

    /// Queues `notes` for the publisher, in order after everything queued before. An empty
    /// batch outside an outage publishes whatever is held.
    pub fn enqueue(&self, object: Arc<DistributedTopology>, notes: Vec<Note>, during_outage: bool) {
        let batch = Batch {
            object,
            notes,
            during_outage,
        };
        if self.queue.send(batch).is_err() {
            tracing::warn!("the Event publisher has stopped; Events of this reconcile are lost");
        }
    }

    /// Publishes one Event now (awaited), bypassing the queue.
    pub async fn publish(&self, topology: &DistributedTopology, note: &Note) {
        publish(&self.recorder, topology, note).await;
    }
}

async fn publish(recorder: &Recorder, topology: &DistributedTopology, note: &Note) {
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.clone(),
        note: Some(within_note_limit(&note.message).to_owned()),
        action: note.action.to_owned(),
        secondary: None,
    };
    let reference = topology.object_ref(&());
    if let Err(e) = recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, reason = %note.reason, "publishing an Event");
    }
}

/// What the publisher does with a batch: hold it, or send what is held and then it.
fn holds(batch: &Batch) -> bool {
    batch.during_outage && batch.notes.iter().all(|n| !n.warning)
}

async fn publish_in_order(recorder: Recorder, mut batches: mpsc::UnboundedReceiver<Batch>) {
    let mut held: Vec<Batch> = Vec::new();
    let mut until: Option<tokio::time::Instant> = None;
    loop {
        let next = match until {
            Some(at) => match tokio::time::timeout_at(at, batches.recv()).await {
                Ok(next) => next,
                Err(_elapsed) => {
                    flush(&recorder, &mut held).await;
                    until = None;
                    continue;
                }
            },
            None => batches.recv().await,
        };
        let Some(batch) = next else {
            flush(&recorder, &mut held).await;
            return;
        };
        if holds(&batch) {
            if !batch.notes.is_empty() {
                until.get_or_insert_with(|| tokio::time::Instant::now() + MAX_HOLD);
                held.push(batch);
            }
            continue;
        }
        flush(&recorder, &mut held).await;
        until = None;
        for note in &batch.notes {
            publish(&recorder, &batch.object, note).await;
        }
    }
}

async fn flush(recorder: &Recorder, held: &mut Vec<Batch>) {
    for batch in held.drain(..) {
        for note in &batch.notes {
            publish(recorder, &batch.object, note).await;
        }
    }
}

/// events.k8s.io/v1 refuses a `note` over 1 kB (bytes, not characters: `→` is three), and a
/// refused Event is lost; cut at a character boundary below the limit.
fn within_note_limit(message: &str) -> &str {
    const NOTE_MAX_BYTES: usize = 1024;
    let mut end = message.len().min(NOTE_MAX_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(during_outage: bool, warnings: &[bool]) -> Batch {
        let object: DistributedTopology = serde_json::from_value(serde_json::json!({
            "apiVersion": "federator.dev/v1alpha1",
            "kind": "DistributedTopology",
            "metadata": {"name": "pg"},
            "spec": {"primary": "a", "members": [], "shape": {"star": {}}},
        }))
        .expect("a topology");
        Batch {
            object: Arc::new(object),
            notes: warnings
                .iter()
                .map(|&warning| Note {
                    warning,
                    reason: "R".into(),
                    action: "A",
                    message: String::new(),
                })
                .collect(),
            during_outage,
        }
    }

    #[test]
    fn only_normal_events_inside_an_outage_are_held() {
        assert!(holds(&batch(true, &[false, false])));
        assert!(
            !holds(&batch(true, &[false, true])),
            "a Warning is never held"
        );
        assert!(!holds(&batch(false, &[false])));
        assert!(
            !holds(&batch(false, &[])),
            "an empty batch after the outage flushes"
        );
    }

    #[test]
    fn notes_are_cut_to_1024_bytes_on_a_char_boundary() {
        let long = "pg-a → pg-b ".repeat(200);
        let cut = within_note_limit(&long);
        assert!(cut.len() <= 1024 && cut.len() > 1000, "{}", cut.len());
        assert!(long.starts_with(cut));
        assert_eq!(within_note_limit("short → note"), "short → note");
    }
}
