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
            note: Some(within_note_limit(&note.message).to_owned()),
            action: note.action.to_owned(),
            secondary: None,
        };
        let reference = topology.object_ref(&());
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = %note.reason, "publishing an Event");
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
mod note_limit_tests {
    use super::within_note_limit;

    #[test]
    fn notes_are_cut_to_1024_bytes_on_a_char_boundary() {
        let long = "pg-a → pg-b ".repeat(200);
        let cut = within_note_limit(&long);
        assert!(cut.len() <= 1024 && cut.len() > 1000, "{}", cut.len());
        assert!(long.starts_with(cut));
        assert_eq!(within_note_limit("short → note"), "short → note");
    }
}
