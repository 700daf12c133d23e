//! What a reconcile does to the world, once `decide` has said what: the status write on the hub,
//! the one member patch, the Events, the `spec.primary` patch that starts a due rotation, and the topology's finalizer.

pub(super) mod act;
pub(super) mod events;
pub(super) mod finalizer;
pub(super) mod rotation;
pub(super) mod status_writer;
