//! What the pool tells the controller: which Cluster changed where, which member's reachability
//! or credential changed. A broadcast channel, so several consumers (the controller, metrics)
//! can listen; a consumer that falls behind gets [`MemberEvent::Resync`] instead of silence.

use futures::Stream;
use tokio::sync::broadcast;

use super::key::ClusterKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A Cluster was created, changed (spec or status) or deleted on a member.
    Cluster(ClusterKey),
    /// A member became reachable or unreachable, or its credential changed or went away.
    Member(String),
    /// Events were dropped because this consumer was slow: re-evaluate everything.
    Resync,
}

/// The events of `receiver` as a stream (for `Controller::reconcile_on` after mapping to the
/// topologies concerned). Ends when the pool is dropped.
pub(crate) fn stream(
    receiver: broadcast::Receiver<MemberEvent>,
) -> impl Stream<Item = MemberEvent> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(event) => Some((event, receiver)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some((MemberEvent::Resync, receiver)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_lagging_consumer_gets_resync() {
        let (tx, rx) = broadcast::channel(2);
        let mut events = Box::pin(stream(rx));
        for member in ["a", "b", "c"] {
            tx.send(MemberEvent::Member(member.into())).unwrap();
        }
        drop(tx);
        assert_eq!(events.next().await, Some(MemberEvent::Resync));
        assert_eq!(events.next().await, Some(MemberEvent::Member("b".into())));
        assert_eq!(events.next().await, Some(MemberEvent::Member("c".into())));
        assert_eq!(events.next().await, None);
    }
}
