//! An automatic-failover agent's identities in e2e tests: exactly the RBAC its charts grant
//! (`charts/federator-agent` in its own region and, as the peer access, in the other member's;
//! `agents.hubAccess` of `charts/federator` on the hub), rendered by helm for the test's
//! namespace, applied, and a kubeconfig per place with a token of that ServiceAccount, not the
//! lab's admin. `agent_rbac.rs` runs the agent with them and removes one rule at a time.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::fixture::SharedLab;
use super::hub_identity::{
    RuleRef, apply, delete_all, full_name, helm_template, identity_objects, remove_rule, rules,
    token, write_kubeconfig,
};
use super::testkit::Member;
use crate::lab::HUB;

/// Where a rule is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Hub,
    /// The agent's own region (its chart's Role).
    Own,
    /// The other member's region (that region's chart's peer Role).
    Peer,
}

/// One rule of the agent's RBAC and where it is.
#[derive(Clone, Debug)]
pub struct AgentRule {
    pub place: Place,
    pub rule: RuleRef,
}

impl std::fmt::Display for AgentRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.place, self.rule)
    }
}

struct Rendered {
    region: String,
    objects: Vec<Value>,
}

/// The charts rendered for `own`'s agent of topology `ns/pg` (releases suffixed `tag`): the
/// hub's, its own region's and `peer`'s region's identity objects.
fn render(ns: &str, own: Member<'_>, peer: Member<'_>, tag: &str) -> [Rendered; 3] {
    let member = |m: Member<'_>| {
        let sets = [
            format!("topology={ns}/pg"),
            format!("member={}", m.name),
            format!("cluster={}", m.region),
            format!("namespace={ns}"),
            "deployment.enabled=false".to_owned(),
            "peerAccess.tokenSecret=false".to_owned(),
        ];
        let args: Vec<String> = sets
            .into_iter()
            .flat_map(|s| ["--set".to_owned(), s])
            .collect();
        Rendered {
            region: m.region.to_owned(),
            objects: identity_objects(helm_template(
                "federator-agent",
                &format!("agent{tag}-{}", m.name),
                ns,
                &args,
            )),
        }
    };
    let hub_args: Vec<String> = [
        "--show-only",
        "templates/agent-hub-rbac.yaml",
        "--set",
        &format!("agents.hubAccess.enabled=true,agents.hubAccess.tokenSecret=false,topologyNamespace={ns}"),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let hub = Rendered {
        region: HUB.to_owned(),
        objects: identity_objects(helm_template(
            "federator",
            &format!("agent{tag}-hub"),
            ns,
            &hub_args,
        )),
    };
    [hub, member(own), member(peer)]
}

fn place_of(index: usize) -> Place {
    [Place::Hub, Place::Own, Place::Peer][index]
}

/// Every rule the agent of `own` uses: the hub Role's, its own region's Role's (not the peer
/// Role there), and `peer`'s region's peer Role's.
pub fn agent_rules(ns: &str, own: Member<'_>, peer: Member<'_>) -> Vec<AgentRule> {
    render(ns, own, peer, "")
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let place = place_of(i);
            rules(&r.objects)
                .into_iter()
                .filter(move |rule| match place {
                    Place::Hub => true,
                    Place::Own => rule.role.is_empty(),
                    Place::Peer => rule.role == "-peer",
                })
                .map(move |rule| AgentRule { place, rule })
        })
        .collect()
}

/// The agent's identities, applied; deleted on drop.
pub struct AgentIdentity {
    lab: &'static SharedLab,
    applied: Vec<Rendered>,
    dir: tempfile::TempDir,
}

impl AgentIdentity {
    /// Applies the charts' identities for `own`'s agent (minus `without`), and writes
    /// `hub.kubeconfig` and `regions/<region>.kubeconfig` with their tokens.
    pub async fn create(
        lab: &'static SharedLab,
        ns: &str,
        own: Member<'_>,
        peer: Member<'_>,
        tag: &str,
        without: Option<&AgentRule>,
    ) -> Self {
        let mut applied: Vec<Rendered> = render(ns, own, peer, tag).into();
        if let Some(w) = without {
            let index = [Place::Hub, Place::Own, Place::Peer]
                .iter()
                .position(|p| *p == w.place)
                .expect("a place");
            remove_rule(&mut applied[index].objects, &w.rule);
        }
        let root = lab.layout.root().join("faults");
        std::fs::create_dir_all(&root).expect("the lab's faults directory");
        let dir = tempfile::Builder::new()
            .prefix(&format!("agent-identity-{}-", own.region))
            .tempdir_in(&root)
            .expect("a directory for the agent's kubeconfigs");
        std::fs::create_dir_all(dir.path().join("regions")).expect("regions directory");
        for (i, r) in applied.iter().enumerate() {
            let client = lab.admin(&r.region).await;
            for object in &r.objects {
                apply(&client, object).await;
            }
            let full = full_name(&r.objects);
            let (account, file) = match place_of(i) {
                Place::Hub => (full, dir.path().join("hub.kubeconfig")),
                Place::Own => (
                    full,
                    dir.path().join(format!("regions/{}.kubeconfig", r.region)),
                ),
                Place::Peer => (
                    format!("{full}-peer"),
                    dir.path().join(format!("regions/{}.kubeconfig", r.region)),
                ),
            };
            let token = token(&client, ns, &account).await;
            write_kubeconfig(&lab.layout.kubeconfig(&r.region), &file, &token);
        }
        AgentIdentity { lab, applied, dir }
    }

    /// The directory with `hub.kubeconfig` and `regions/` (for `AgentProcess::start_as`).
    pub fn credentials(&self) -> &Path {
        self.dir.path()
    }

    pub fn region_kubeconfig(&self, region: &str) -> PathBuf {
        self.dir.path().join(format!("regions/{region}.kubeconfig"))
    }
}

impl Drop for AgentIdentity {
    fn drop(&mut self) {
        let (lab, applied) = (self.lab, std::mem::take(&mut self.applied));
        super::block_on_detached(async move {
            for r in applied {
                delete_all(&lab.admin(&r.region).await, &r.objects).await;
            }
        });
    }
}
