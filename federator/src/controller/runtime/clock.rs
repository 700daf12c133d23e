//! The controller's notions of "now", injected through [`Context`](crate::controller::Context) so that the
//! rotation scheduler (and every timestamp a reconcile writes) can be tested without waiting.
//!
//! Production uses [`SystemClock`]. [`FileClock`] exists for end-to-end tests only and is
//! reachable only through the hidden `--unsafe-test-clock FILE` flag: it would let anyone who can
//! write that file start or skip rotations at will.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;

/// Where the current time comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Where instants come from: every duration, hold-back window and reaction time the controller
/// measures. One per controller, injected, so the ledger's windows are tested without waiting.
pub trait Monotonic: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemMonotonic;

impl Monotonic for SystemMonotonic {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A monotonic clock that moves only when told to (tests).
#[cfg(test)]
#[derive(Debug)]
pub struct ManualClock {
    at: Mutex<Instant>,
}

#[cfg(test)]
impl ManualClock {
    pub fn new() -> Self {
        Self {
            at: Mutex::new(Instant::now()),
        }
    }

    pub fn advance(&self, by: std::time::Duration) {
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

#[cfg(test)]
impl Monotonic for ManualClock {
    fn now(&self) -> Instant {
        *self.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// TEST ONLY. The time written in a file (an RFC 3339 instant), advancing in real time from the
/// moment the controller first read that value: a test sets the clock a few seconds before a
/// scheduled time and the controller's own timer fires it, or jumps it forward by writing a new
/// instant. While the file is missing or unreadable the last value read keeps advancing (the
/// system clock before any was read).
#[derive(Debug)]
pub struct FileClock {
    path: PathBuf,
    /// The text last read, the instant it names, and when it was read.
    last: Mutex<Option<(String, Timestamp, Instant)>>,
}

impl FileClock {
    pub fn new(path: PathBuf) -> Self {
        FileClock {
            path,
            last: Mutex::new(None),
        }
    }
}

impl Clock for FileClock {
    fn now(&self) -> Timestamp {
        let text = std::fs::read_to_string(&self.path)
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let changed = last.as_ref().is_none_or(|(seen, ..)| *seen != text);
        if changed {
            match text.parse::<Timestamp>() {
                Ok(at) => *last = Some((text, at, Instant::now())),
                Err(e) if !text.is_empty() => {
                    tracing::warn!(path = %self.path.display(), error = %e, "unsafe test clock: not an RFC 3339 instant");
                }
                Err(_) => {}
            }
        }
        match last.as_ref() {
            Some((_, at, read)) => at.saturating_add(read.elapsed()).unwrap_or(Timestamp::MAX),
            None => Timestamp::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_clock_starts_at_the_written_instant_advances_and_jumps() {
        let dir = std::env::temp_dir().join(format!("federator-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("now");
        let clock = FileClock::new(path.clone());
        // No file yet: the system clock.
        let before = Timestamp::now();
        assert!(clock.now() >= before);

        std::fs::write(&path, "2026-06-01T01:59:58Z\n").unwrap();
        let first = clock.now();
        let start: Timestamp = "2026-06-01T01:59:58Z".parse().unwrap();
        assert!(first >= start && first < start + std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            clock.now() > first,
            "time advances from the written instant"
        );

        std::fs::write(&path, "2026-06-02T03:00:00Z").unwrap();
        let jumped = clock.now();
        assert!(jumped >= "2026-06-02T03:00:00Z".parse().unwrap());

        // Garbage keeps the last instant running.
        std::fs::write(&path, "soon").unwrap();
        assert!(clock.now() >= jumped);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
