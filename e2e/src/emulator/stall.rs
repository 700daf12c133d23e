//! The demotion that stalls until the Cluster object changes (fault
//! [`STALL_DEMOTION_UNTIL_CHANGED`](super::faults::STALL_DEMOTION_UNTIL_CHANGED)), as real
//! CloudNativePG 1.28.1 did in the lab (docs/lab-real.md, fidelity; it looks like CNPG #5754):
//! the demoting primary's instance manager restarted, ran its first reconcile before it saw the
//! Cluster fenced for demotion, and nothing requeued it, so no `demotionToken` appeared until
//! something changed the Cluster (an annotation brought it 25 s later).
//!
//! The emulator stands the restart in for one pass, then remembers the Cluster's
//! `resourceVersion` and waits for a change (`Action::await_change`): a different
//! `resourceVersion` — any write by anyone but this stalled demotion — releases it. The state is
//! a file in the instance's directory, so a restarted emulator keeps the stall (as the real
//! operator kept it across its own reconciles) and the next demotion stalls again.

use std::path::{Path, PathBuf};

use super::error::{EmulatorError, Result};

/// Where a demotion stands with respect to the stall, as the marker file records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker {
    /// No stall yet in this demotion.
    None,
    /// The instance manager "restarted"; the Cluster's version is read on the next pass (after
    /// this demotion's own writes have landed).
    Restarted,
    /// Stalled on this `resourceVersion`.
    At(String),
    /// A change released it; the demotion goes on.
    Released,
}

/// What this pass does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stop here; record `next` and pass again after a requeue.
    RestartNow,
    /// Stop here; record `next` and wait for the Cluster to change.
    Stalled,
    /// Go on with the demotion (after recording `next`, if any).
    Proceed,
}

/// The pure rule: the marker before this pass and the Cluster's `resourceVersion` now give the
/// verdict and the marker to record (`None`: unchanged).
pub fn decide(marker: &Marker, resource_version: &str) -> (Verdict, Option<Marker>) {
    match marker {
        Marker::None => (Verdict::RestartNow, Some(Marker::Restarted)),
        Marker::Restarted => (
            Verdict::Stalled,
            Some(Marker::At(resource_version.to_owned())),
        ),
        Marker::At(seen) if seen == resource_version => (Verdict::Stalled, None),
        Marker::At(_) => (Verdict::Proceed, Some(Marker::Released)),
        Marker::Released => (Verdict::Proceed, None),
    }
}

/// The marker file of the instance living in `dir`.
pub fn marker_file(dir: &Path) -> PathBuf {
    dir.join("demotion-stall")
}

pub fn read(file: &Path) -> Marker {
    match std::fs::read_to_string(file) {
        Err(_) => Marker::None,
        Ok(text) => match text.trim() {
            "restarted" => Marker::Restarted,
            "released" => Marker::Released,
            other => other
                .strip_prefix("at ")
                .map(|rv| Marker::At(rv.to_owned()))
                .unwrap_or(Marker::None),
        },
    }
}

pub fn write(file: &Path, marker: &Marker) -> Result<()> {
    let text = match marker {
        Marker::None => return clear(file),
        Marker::Restarted => "restarted".to_owned(),
        Marker::At(rv) => format!("at {rv}"),
        Marker::Released => "released".to_owned(),
    };
    std::fs::write(file, text).map_err(EmulatorError::io("writing", file))
}

/// Forgets the stall at the end of a demotion, so the next demotion stalls again.
pub fn clear(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(EmulatorError::io("removing", file)(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_demotion_goes_on_only_after_the_cluster_changed() {
        let (verdict, next) = decide(&Marker::None, "10");
        assert_eq!(verdict, Verdict::RestartNow);
        let (verdict, next) = decide(&next.unwrap(), "11");
        assert_eq!(
            (verdict, next.clone()),
            (Verdict::Stalled, Some(Marker::At("11".into())))
        );
        let at = next.unwrap();
        // Passes with nothing changed (a relist, a resync) stay stalled.
        assert_eq!(decide(&at, "11"), (Verdict::Stalled, None));
        assert_eq!(
            decide(&at, "12"),
            (Verdict::Proceed, Some(Marker::Released))
        );
        assert_eq!(decide(&Marker::Released, "13"), (Verdict::Proceed, None));
    }

    #[test]
    fn the_marker_survives_a_restart_and_is_cleared_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = marker_file(dir.path());
        assert_eq!(read(&file), Marker::None);
        for marker in [Marker::Restarted, Marker::At("42".into()), Marker::Released] {
            write(&file, &marker).unwrap();
            assert_eq!(read(&file), marker);
        }
        clear(&file).unwrap();
        clear(&file).unwrap();
        assert_eq!(read(&file), Marker::None);
    }
}
