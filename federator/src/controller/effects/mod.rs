//! What a reconcile does to the world, once `decide` has said what: the status write on the hub,
//! the one member patch, the Events, and the `spec.primary` patch that starts a due rotation.

pub(super) mod act;
pub(super) mod events;
pub(super) mod rotation;
pub(super) mod status_writer;
