//! One voter's store: the Leases of a topology's members in one Kubernetes API (the hub's, or a
//! member region's own). Renewals (by a member's agent) and "lost" votes (by the store's voter)
//! are merge patches carrying the resourceVersion they were decided on, so the API server
//! refuses the second of two racing writes (409) and neither side acts on a stale read.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use topology::autofailover::record::{LOST_TERM, Record, TOPOLOGY_LABEL};

/// Field manager of every write.
const MANAGER: &str = "federator-autofailover";

/// A store's answer to a renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewed {
    Accepted,
    /// The store holds a newer term, or its voter voted this member lost (`lost_term`).
    Refused {
        term: u64,
        lost_term: Option<u64>,
    },
}

/// A Lease as read: its record and the resourceVersion to write against.
#[derive(Clone, Debug)]
pub struct Read {
    pub record: Record,
    pub version: String,
}

/// The Leases of one topology in one API.
#[derive(Clone)]
pub struct Store {
    api: Api<Lease>,
    /// `<hub namespace>.<topology>`, the label of every Lease of this topology.
    topology: String,
}

fn annotations(lease: &Lease) -> BTreeMap<String, String> {
    lease.metadata.annotations.clone().unwrap_or_default()
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Store {
    pub fn new(client: kube::Client, namespace: &str, topology: String) -> Self {
        Store {
            api: Api::namespaced(client, namespace),
            topology,
        }
    }

    pub async fn read(&self, name: &str) -> Result<Option<Read>, kube::Error> {
        Ok(self.api.get_opt(name).await?.map(|lease| Read {
            record: Record::parse(&annotations(&lease)),
            version: lease.metadata.resource_version.clone().unwrap_or_default(),
        }))
    }

    fn fresh(&self, name: &str, annotations: BTreeMap<String, String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([(
                    TOPOLOGY_LABEL.to_owned(),
                    self.topology.clone(),
                )])),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            ..Lease::default()
        }
    }

    /// Renews `name` with `term` (`wanted`: the renewal's annotations,
    /// `Record::renewal_annotations` and any extra): read, check the store-side rule, write
    /// against the version read. A conflict (the voter wrote meanwhile) is decided again on a
    /// fresh read, once.
    pub async fn renew(
        &self,
        name: &str,
        term: u64,
        wanted: &BTreeMap<String, String>,
    ) -> Result<Renewed, kube::Error> {
        for _ in 0..2 {
            let Some(read) = self.read(name).await? else {
                let lease = self.fresh(name, wanted.clone());
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => return Ok(Renewed::Accepted),
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(e),
                }
            };
            if !read.record.accepts(term) {
                return Ok(Renewed::Refused {
                    term: read.record.term,
                    lost_term: read.record.lost_term,
                });
            }
            let patch = json!({"metadata": {
                "resourceVersion": read.version,
                "annotations": wanted,
            }});
            match self
                .api
                .patch(name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(Renewed::Accepted),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        // Two conflicts in a row: not accepted this round (the next round tries again).
        Ok(Renewed::Refused {
            term,
            lost_term: None,
        })
    }

    /// The store's voter votes `name` lost in `term`, against the version its decision was made
    /// on (`None`: the Lease did not exist, it is created). `false` when a renewal (or anything)
    /// changed the Lease since: no vote was cast.
    pub async fn vote_lost(
        &self,
        name: &str,
        term: u64,
        version: Option<&str>,
    ) -> Result<bool, kube::Error> {
        let Some(version) = version else {
            let lease = self.fresh(
                name,
                BTreeMap::from([(LOST_TERM.to_owned(), term.to_string())]),
            );
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.patch_at(name, version, json!({LOST_TERM: term.to_string()}))
            .await
    }

    /// Merge-patches `annotations` onto `name` at `version`: `false` when anything changed the
    /// Lease since (or it is gone).
    async fn patch_at(
        &self,
        name: &str,
        version: &str,
        annotations: serde_json::Value,
    ) -> Result<bool, kube::Error> {
        let patch = json!({"metadata": {
            "resourceVersion": version,
            "annotations": annotations,
        }});
        match self
            .api
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The store's voter withdraws its "lost" promise about `name` (`quorum::VoterMemory::retract`),
    /// against the version it decided on: `false` when anything changed the Lease since.
    pub async fn retract_lost(&self, name: &str, version: &str) -> Result<bool, kube::Error> {
        self.patch_at(name, version, json!({LOST_TERM: null})).await
    }
}
