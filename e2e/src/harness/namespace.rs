//! A namespace per test, on every apiserver of the lab, dumped when the test fails.

use std::collections::BTreeMap;

use kube::discovery::ApiResource;

use super::attach::lab;
use super::dump;
use super::fixture::SharedLab;
use super::gc::{self, TEST_LABEL};
use crate::lab::bootstrap;
use crate::lab::pki::random_hex;
use crate::lab::topology::REGIONS;

/// Namespace `<test>-<random>` on the hub and the three members. On drop: if the test is
/// panicking, the Clusters, events and any [`also_dump`](Self::also_dump) resources in it are
/// printed to stderr and the namespace is kept for inspection (for [`KEEP_FAILED`](gc::KEEP_FAILED), then the
/// next test binary collects it); otherwise its Clusters, its WAL archives and the namespace are
/// deleted. (The lab has no namespace controller, so a deleted namespace stays `Terminating`; nothing reuses it.)
pub struct TestNamespace {
    pub lab: &'static SharedLab,
    name: String,
    dump: Vec<ApiResource>,
}

impl TestNamespace {
    /// Creates the namespace everywhere. `test` should be the test's name (used in the name and
    /// label).
    pub async fn create(test: &str) -> Self {
        Self::create_on(lab().await, test).await
    }

    /// As [`Self::create`], on `lab` (e.g. `harness::real_lab()`).
    pub async fn create_on(lab: &'static SharedLab, test: &str) -> Self {
        let prefix: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "{}-{}",
            prefix.trim_matches('-'),
            random_hex(3).expect("reading /dev/urandom")
        );
        let label = BTreeMap::from([(TEST_LABEL.to_owned(), prefix.trim_matches('-').to_owned())]);
        for region in REGIONS {
            let client = lab.admin(region).await;
            bootstrap::ensure_namespace(&client, &name, label.clone())
                .await
                .unwrap_or_else(|e| panic!("creating test namespace {name} on {region}: {e}"));
        }
        Self {
            lab,
            name,
            dump: vec![
                super::cnpg_cluster(),
                ApiResource::erase::<topology::DistributedTopology>(&()),
            ],
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gives the members' least-privilege ServiceAccount (`databases/federator`) the same Role in
    /// this namespace as it has in `databases`, so tests can act as Federator here.
    pub async fn grant_federator(&self) {
        for member in crate::lab::MEMBERS {
            let client = self.lab.admin(member).await;
            bootstrap::grant_federator_role(&client, &self.name)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "granting the federator Role in {} on {member}: {e}",
                        self.name
                    )
                });
        }
    }

    /// Also dump objects of this resource (e.g. a hub CRD) if the test fails.
    pub fn also_dump(&mut self, resource: ApiResource) {
        self.dump.push(resource);
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let (lab, name, resources) = (self.lab, self.name.clone(), self.dump.clone());
        super::block_on_detached(async move {
            if failed {
                dump::namespace(lab, &name, &resources).await;
                return;
            }
            // Deleting the Clusters lets the CNPG emulator stop their PostgreSQL.
            gc::delete_namespace(lab, &name).await;
            gc::remove_archives_of(&lab.layout.root().join("object-stores"), &name);
        });
    }
}
