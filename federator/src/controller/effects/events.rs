//! Kubernetes Events on the topology: one per step entered, per patch sent, per hold and per
//! finished operation. Publishing is best effort: an Event that cannot be written is logged and
//! never fails a reconcile (the durable record is the status step log).
//!
//! Reconciles hand their Events to one publisher task, which sends them in order and off the
//! reconcile's path: each is a hub round trip (~10 ms), and three of them once held every Promote
//! patch ~50 ms. Normal Events raised while a switchover runs (from Validate until it finishes or
//! holds) are held until then, at most [`MAX_HOLD`]. Inside the write outage the switchover bench
//! measured them costing ~30–50 ms of outage on a 2-core lab, where the hub's apiserver and etcd
//! share the CPUs with the members' operators and PostgreSQL; released when the outage ended,
//! the burst met the Bookkeeping and ClearToken step-log writes instead, the slowest reactions
//! (`docs/benchmarks.md`). Warnings — holds, rollbacks — are never held, and flush what is held
//! before them. Held Events die with the process (a kill mid-switchover loses up to
//! [`MAX_HOLD`] of Normal Events): they are telemetry, and the step log in status is the record.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use topology::DistributedTopology;

use crate::controller::decide::Note;

/// The longest a Normal Event waits for its switchover to finish.
pub const MAX_HOLD: Duration = Duration::from_secs(3);
/// Reconciles' batches waiting for the publisher; past this (a hub that does not answer), new
/// batches are dropped with a warning rather than growing the controller's memory.
const QUEUE: usize = 1024;
/// One Event write that takes longer is abandoned (the publisher moves on to the next).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The Events of one reconcile.
struct Batch {
    object: Arc<DistributedTopology>,
    notes: Vec<Note>,
    /// Raised while a switchover runs: Normal Events may wait for it to finish.
    during_operation: bool,
}

/// One Event on `object`, best effort (for the drill and region switch controllers): one that
/// cannot be written is logged and never fails the caller. The note is cut to 1000 characters.
pub async fn publish_best_effort<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    action: &str,
    warning: bool,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %e, reason, action, "publishing an Event");
    }
}

/// Publishes Events as `federator` (with the controller's identity as instance).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    queue: mpsc::Sender<Batch>,
}

impl Events {
    /// Starts the publisher task (on the current Tokio runtime); it ends with the last clone.
    pub fn new(hub: Client, instance: String) -> Self {
        let reporter = Reporter {
            controller: "federator".into(),
            instance: Some(instance),
        };
        let recorder = Recorder::new(hub, reporter);
        let (queue, batches) = mpsc::channel(QUEUE);
        let sink = recorder.clone();
        tokio::spawn(publish_in_order(
            move |object: Arc<DistributedTopology>, note: Note| {
                let sink = sink.clone();
                async move { publish(&sink, &object, &note).await }
            },
            batches,
        ));
        Events { recorder, queue }
    }

    /// Queues `notes` for the publisher, in order after everything queued before. An empty
    /// batch raised outside a running switchover publishes whatever is held.
    pub fn enqueue(
        &self,
        object: Arc<DistributedTopology>,
        notes: Vec<Note>,
        during_operation: bool,
    ) {
        let batch = Batch {
            object,
            notes,
            during_operation,
        };
        match self.queue.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(batch)) => {
                tracing::warn!(
                    events = batch.notes.len(),
                    "the Event queue is full (is the hub answering?); Events of this reconcile are dropped"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!(
                    "the Event publisher has stopped; Events of this reconcile are lost"
                );
            }
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
    match tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(&event, &reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, reason = %note.reason, "publishing an Event"),
        Err(_) => {
            tracing::warn!(reason = %note.reason, "publishing an Event: no answer within {}s", PUBLISH_TIMEOUT.as_secs())
        }
    }
}

/// What the publisher does with a batch: hold it, or send what is held and then it.
fn holds(batch: &Batch) -> bool {
    batch.during_operation && batch.notes.iter().all(|n| !n.warning)
}

/// Sends every batch's notes through `send`, one at a time and in order, holding those that
/// [`holds`] until a batch that does not arrives or [`MAX_HOLD`] has passed.
async fn publish_in_order<S, F>(mut send: S, mut batches: mpsc::Receiver<Batch>)
where
    S: FnMut(Arc<DistributedTopology>, Note) -> F,
    F: Future<Output = ()>,
{
    let mut held: Vec<Batch> = Vec::new();
    let mut until: Option<tokio::time::Instant> = None;
    loop {
        let next = match until {
            Some(at) => match tokio::time::timeout_at(at, batches.recv()).await {
                Ok(next) => next,
                Err(_elapsed) => {
                    flush(&mut send, &mut held).await;
                    until = None;
                    continue;
                }
            },
            None => batches.recv().await,
        };
        let Some(batch) = next else {
            flush(&mut send, &mut held).await;
            return;
        };
        if holds(&batch) {
            if !batch.notes.is_empty() {
                until.get_or_insert_with(|| tokio::time::Instant::now() + MAX_HOLD);
                held.push(batch);
            }
            continue;
        }
        flush(&mut send, &mut held).await;
        until = None;
        for note in batch.notes {
            send(batch.object.clone(), note).await;
        }
    }
}

async fn flush<S, F>(send: &mut S, held: &mut Vec<Batch>)
where
    S: FnMut(Arc<DistributedTopology>, Note) -> F,
    F: Future<Output = ()>,
{
    for batch in held.drain(..) {
        for note in batch.notes {
            send(batch.object.clone(), note).await;
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

    fn batch(during_operation: bool, warnings: &[bool]) -> Batch {
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
            during_operation,
        }
    }

    fn named(reason: &str, warning: bool) -> Note {
        Note {
            warning,
            reason: reason.into(),
            action: "A",
            message: String::new(),
        }
    }

    fn batch_of(during_operation: bool, notes: &[(&str, bool)]) -> Batch {
        let mut b = batch(during_operation, &[]);
        b.notes = notes.iter().map(|(r, w)| named(r, *w)).collect();
        b
    }

    /// The publisher over a channel sink: what it sent, in order, as reasons.
    fn start() -> (mpsc::Sender<Batch>, mpsc::UnboundedReceiver<String>) {
        let (queue, batches) = mpsc::channel(QUEUE);
        let (sent, seen) = mpsc::unbounded_channel();
        tokio::spawn(publish_in_order(
            move |_object, note: Note| {
                let sent = sent.clone();
                async move {
                    let _ = sent.send(note.reason);
                }
            },
            batches,
        ));
        (queue, seen)
    }

    async fn next(seen: &mut mpsc::UnboundedReceiver<String>, within: Duration) -> Option<String> {
        tokio::time::timeout(within, seen.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn events_of_a_running_switchover_wait_for_its_end_and_keep_their_order() {
        let (queue, mut seen) = start();
        let outage = |r: &str| batch_of(true, &[(r, false)]);
        queue.send(outage("Demote")).await.unwrap();
        queue.send(outage("AwaitToken")).await.unwrap();
        assert_eq!(
            next(&mut seen, MAX_HOLD / 2).await,
            None,
            "held while the switchover runs"
        );
        queue
            .send(batch_of(
                false,
                &[("Bookkeeping", false), ("ClearToken", false)],
            ))
            .await
            .unwrap();
        let mut order = Vec::new();
        for _ in 0..4 {
            order.extend(next(&mut seen, Duration::from_secs(1)).await);
        }
        assert_eq!(order, ["Demote", "AwaitToken", "Bookkeeping", "ClearToken"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_warning_flushes_at_once_and_a_long_switchover_flushes_after_max_hold() {
        let (queue, mut seen) = start();
        queue
            .send(batch_of(true, &[("Demote", false)]))
            .await
            .unwrap();
        queue
            .send(batch_of(true, &[("TokenTimeout", true)]))
            .await
            .unwrap();
        assert_eq!(
            next(&mut seen, Duration::from_millis(1)).await.as_deref(),
            Some("Demote")
        );
        assert_eq!(
            next(&mut seen, Duration::from_millis(1)).await.as_deref(),
            Some("TokenTimeout")
        );

        queue
            .send(batch_of(true, &[("AwaitToken", false)]))
            .await
            .unwrap();
        assert_eq!(
            next(&mut seen, MAX_HOLD - Duration::from_millis(10)).await,
            None
        );
        assert_eq!(
            next(&mut seen, Duration::from_millis(20)).await.as_deref(),
            Some("AwaitToken"),
            "published once MAX_HOLD has passed"
        );
    }

    #[test]
    fn only_normal_events_of_a_running_switchover_are_held() {
        assert!(holds(&batch(true, &[false, false])));
        assert!(
            !holds(&batch(true, &[false, true])),
            "a Warning is never held"
        );
        assert!(!holds(&batch(false, &[false])));
        assert!(
            !holds(&batch(false, &[])),
            "an empty batch after the switchover flushes"
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
