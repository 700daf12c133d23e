//! The hub permissions `federator controller` needs, checked once at start with
//! SelfSubjectAccessReviews: every missing one is logged as an error naming the verb, the
//! resource, the namespace and the fix, before anything fails for want of it (a forbidden watch
//! would otherwise only retry, a forbidden drill Secret only show when a drill runs).
//!
//! The list is the code's: every request the reconciler, the rotation scheduler, the drill
//! controller, leader election and the member credential watch make on the hub. The Helm chart's
//! RBAC (`charts/federator/templates/rbac.yaml`) grants exactly these; the e2e test
//! `controller_rbac.rs` removes each chart rule in turn and expects the error naming it.

use std::borrow::Cow;
use std::fmt;

use futures::future::join_all;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

/// One permission: `verb` on `resource` (`resource/subresource`) of `group`, in `namespace`
/// (`None`: every namespace), on the object `name` if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub group: Cow<'static, str>,
    /// Owned when found by discovery (a hook's kind), static for the controller's own list.
    pub resource: Cow<'static, str>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// What needs it, for the message.
    pub why: &'static str,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.group.is_empty() {
            write!(f, " ({})", self.group)?;
        }
        if let Some(name) = &self.name {
            write!(f, " named {name}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " in all namespaces"),
        }
    }
}

/// Where the controller works on the hub (its flags).
pub struct Scope<'a> {
    /// `--namespace` (`None`: all).
    pub topologies: Option<&'a str>,
    /// `--lease-namespace` / `--lease-name` with leader election on.
    pub lease: Option<(&'a str, &'a str)>,
    /// `--secret-namespace` and `--argocd-namespace`: member credential Secrets.
    pub credential_namespaces: Vec<&'a str>,
}

/// Every permission the controller uses in `scope`.
pub fn required(scope: &Scope<'_>) -> Vec<Permission> {
    let topo_ns = scope.topologies.map(str::to_owned);
    let p = |verb,
             group: &'static str,
             resource: &'static str,
             namespace: Option<String>,
             name: Option<String>,
             why| Permission {
        verb,
        group: group.into(),
        resource: resource.into(),
        namespace,
        name,
        why,
    };
    let mut all = Vec::new();
    for verb in ["get", "list", "watch", "patch"] {
        all.push(p(
            verb,
            "federator.dev",
            "distributedtopologies",
            topo_ns.clone(),
            None,
            "the reconciler's watch; rotations and drills set spec.primary; the finalizer",
        ));
    }
    all.push(p(
        "update",
        "federator.dev",
        "distributedtopologies/status",
        topo_ns.clone(),
        None,
        "the step log (replaceStatus)",
    ));
    for verb in ["get", "list", "watch"] {
        all.push(p(
            verb,
            "federator.dev",
            "disasterrecoverydrills",
            topo_ns.clone(),
            None,
            "the drill controller",
        ));
    }
    all.push(p(
        "update",
        "federator.dev",
        "disasterrecoverydrills/status",
        topo_ns.clone(),
        None,
        "a drill's state and report",
    ));
    for verb in ["get", "list", "watch"] {
        all.push(p(
            verb,
            "federator.dev",
            "regionswitches",
            topo_ns.clone(),
            None,
            "the region switch controller (list: topologies claimed by another region switch)",
        ));
    }
    all.push(p(
        "update",
        "federator.dev",
        "regionswitches/status",
        topo_ns.clone(),
        None,
        "a region switch's progress",
    ));
    all.push(p(
        "create",
        "federator.dev",
        "regionswitches",
        topo_ns.clone(),
        None,
        "a region rotation starts a region switch",
    ));
    for verb in ["get", "list", "watch"] {
        all.push(p(
            verb,
            "federator.dev",
            "regionrotations",
            topo_ns.clone(),
            None,
            "the region rotation controller",
        ));
    }
    all.push(p(
        "update",
        "federator.dev",
        "regionrotations/status",
        topo_ns.clone(),
        None,
        "a region rotation's schedule bookkeeping",
    ));
    all.push(p(
        "get",
        "",
        "secrets",
        topo_ns.clone(),
        None,
        "a drill's connection Secrets",
    ));
    for verb in ["create", "patch"] {
        all.push(p(
            verb,
            "events.k8s.io",
            "events",
            topo_ns.clone(),
            None,
            "Events on topologies, drills and region switches",
        ));
    }
    for verb in ["get", "create", "patch"] {
        all.push(p(
            verb,
            "coordination.k8s.io",
            "leases",
            topo_ns.clone(),
            None,
            "automatic failover: the hub voter's Leases next to each topology",
        ));
    }
    if let Some((ns, name)) = scope.lease {
        all.push(p(
            "create",
            "coordination.k8s.io",
            "leases",
            Some(ns.to_owned()),
            None,
            "leader election (the first controller creates the Lease)",
        ));
        for verb in ["get", "list", "watch", "patch"] {
            all.push(p(
                verb,
                "coordination.k8s.io",
                "leases",
                Some(ns.to_owned()),
                Some(name.to_owned()),
                "leader election",
            ));
        }
    }
    for ns in &scope.credential_namespaces {
        for verb in ["list", "watch"] {
            all.push(p(
                verb,
                "",
                "secrets",
                Some((*ns).to_owned()),
                None,
                "member credentials (label-selected Secrets)",
            ));
        }
    }
    all
}

/// Asks the hub about each of `permissions`; returns those it denies. A review that cannot be
/// made (the hub unreachable) counts as allowed: the requests themselves will say more.
pub async fn missing(hub: &kube::Client, permissions: &[Permission]) -> Vec<Permission> {
    let api: Api<SelfSubjectAccessReview> = Api::all(hub.clone());
    let reviews = permissions.iter().map(|permission| {
        let api = api.clone();
        async move {
            let (resource, subresource) = match permission.resource.split_once('/') {
                Some((r, s)) => (r, Some(s.to_owned())),
                None => (permission.resource.as_ref(), None),
            };
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(permission.verb.to_owned()),
                        group: Some(permission.group.to_string()),
                        resource: Some(resource.to_owned()),
                        subresource,
                        namespace: permission.namespace.clone(),
                        name: permission.name.clone(),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            match api.create(&PostParams::default(), &review).await {
                Ok(answer) => answer.status.is_some_and(|s| !s.allowed),
                Err(e) => {
                    tracing::warn!(error = %e, %permission, "could not check a hub permission");
                    false
                }
            }
        }
    });
    let denied = join_all(reviews).await;
    permissions
        .iter()
        .zip(denied)
        .filter(|(_, denied)| *denied)
        .map(|(p, _)| p.clone())
        .collect()
}

/// Checks `scope`'s permissions and logs each missing one (error) or that all are there (info).
/// Returns the missing ones.
pub async fn check(hub: &kube::Client, scope: &Scope<'_>) -> Vec<Permission> {
    let required = required(scope);
    let missing = missing(hub, &required).await;
    for permission in &missing {
        tracing::error!(
            verb = permission.verb,
            resource = permission.resource.as_ref(),
            namespace = permission.namespace.as_deref().unwrap_or("*"),
            "missing hub permission: {permission}, needed for {}; grant it to the controller's ServiceAccount (the Helm chart's RBAC has it: docs/install.md, \"Permissions on the hub\")",
            permission.why
        );
    }
    if missing.is_empty() {
        tracing::info!(
            checked = required.len(),
            "hub permissions: every one the controller uses is granted"
        );
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_and_credential_permissions_follow_the_flags() {
        let bare = required(&Scope {
            topologies: Some("db"),
            lease: None,
            credential_namespaces: vec![],
        });
        // Without leader election, the only Leases are automatic failover's, next to topologies.
        assert!(
            bare.iter()
                .filter(|p| p.resource == "leases")
                .all(|p| p.name.is_none() && p.verb != "list")
        );
        assert!(bare.iter().all(|p| p.namespace.as_deref() == Some("db")));
        let full = required(&Scope {
            topologies: None,
            lease: Some(("federator-system", "federator-controller")),
            credential_namespaces: vec!["federator-system", "argocd"],
        });
        let lease_get = full
            .iter()
            .find(|p| p.resource == "leases" && p.verb == "get" && p.name.is_some())
            .expect("lease get");
        assert_eq!(
            lease_get.to_string(),
            "get leases (coordination.k8s.io) named federator-controller in namespace federator-system"
        );
        let argocd: Vec<_> = full
            .iter()
            .filter(|p| p.namespace.as_deref() == Some("argocd"))
            .map(|p| p.verb)
            .collect();
        assert_eq!(argocd, ["list", "watch"]);
        let status = full
            .iter()
            .find(|p| p.resource == "distributedtopologies/status")
            .expect("status");
        assert_eq!(
            status.to_string(),
            "update distributedtopologies/status (federator.dev) in all namespaces"
        );
    }
}
