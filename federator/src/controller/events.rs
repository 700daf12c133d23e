//! Kubernetes Events on the topology: one per step entered, per patch sent, per hold and per
//! finished operation. Publishing is best effort: an Event that cannot be written is logged and
//! never fails a reconcile (the durable record is the status step log).

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use topology::DistributedTopology;

use super::decide::Note;

/// Publishes Events as `federator` (with the controller's identity as instance).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(hub: Client, instance: String) -> Self {
        let reporter = Reporter {
            controller: "federator".into(),
            instance: Some(instance),
        };
        Events {
            recorder: Recorder::new(hub, reporter),
        }
    }

    pub async fn publish(&self, topology: &DistributedTopology, note: &Note) {
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.clone(),
            note: Some(note.message.chars().take(1000).collect()),
            action: note.action.to_owned(),
            secondary: None,
        };
        let reference = topology.object_ref(&());
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = %note.reason, "publishing an Event");
        }
    }
}
