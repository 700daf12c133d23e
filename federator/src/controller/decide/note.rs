//! The Kubernetes Events a decision asks for: reason, action and message, published by
//! `effects::events`.

/// A Kubernetes Event to publish on the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// PascalCase reason.
    pub reason: String,
    /// PascalCase action.
    pub action: &'static str,
    pub message: String,
}
