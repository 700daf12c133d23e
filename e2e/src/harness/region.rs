//! A region of the shared lab stopped by a test (`lab stop REGION`: apiserver, emulator,
//! PostgreSQL), or one component of it, and started again when the test ends, also when it
//! fails.

use std::path::PathBuf;

use crate::harness::SharedLab;

/// Starts the stopped region again when dropped, unless [`RegionDown::restore`] did: a failing
/// test must not leave the shared lab without a region.
pub struct RegionDown {
    /// The lab's directory.
    pub dir: PathBuf,
    pub region: &'static str,
    restored: bool,
}

impl RegionDown {
    pub async fn stop(lab: &SharedLab, region: &'static str) -> (Self, Vec<String>) {
        let dir = lab.layout.root().to_path_buf();
        let stopped = crate::lab::stop(&dir, region).await.expect("lab stop");
        let guard = RegionDown {
            dir,
            region,
            restored: false,
        };
        (guard, stopped)
    }

    pub async fn restore(&mut self) -> Vec<String> {
        let started = crate::lab::start(&self.dir, self.region)
            .await
            .expect("lab start");
        self.restored = true;
        started
    }
}

impl Drop for RegionDown {
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        let (dir, region) = (self.dir.clone(), self.region);
        let restored = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime to restore the region");
            runtime.block_on(crate::lab::start(&dir, region))
        })
        .join();
        eprintln!("restoring {region} after a failure: {restored:?}");
    }
}

/// One component of the shared lab stopped by a test (`lab::stop_component`: e.g. a region's
/// API server alone), started again when dropped unless [`ComponentDown::restore`] did.
pub struct ComponentDown {
    dir: PathBuf,
    name: &'static str,
    restored: bool,
}

impl ComponentDown {
    pub async fn stop(lab: &SharedLab, name: &'static str) -> (Self, Vec<String>) {
        let dir = lab.layout.root().to_path_buf();
        let stopped = crate::lab::stop_component(&dir, name)
            .await
            .expect("stopping a lab component");
        let guard = ComponentDown {
            dir,
            name,
            restored: false,
        };
        (guard, stopped)
    }

    pub async fn restore(&mut self) -> Vec<String> {
        let started = crate::lab::start_component(&self.dir, self.name)
            .await
            .expect("starting a lab component");
        self.restored = true;
        started
    }
}

impl Drop for ComponentDown {
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        let (dir, name) = (self.dir.clone(), self.name);
        let restored = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime to restore it");
            runtime.block_on(crate::lab::start_component(&dir, name))
        })
        .join();
        eprintln!("restarting {name} after a failure: {restored:?}");
    }
}
