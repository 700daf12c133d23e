//! The emulator's main loop: a kube-runtime Controller on every `Cluster` of its member, plus a
//! sweep that stops the instances of deleted Clusters and of Clusters in deleted namespaces.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::runtime::{Controller, watcher};
use topology::cnpg::Cluster;

use super::config::EmulatorConfig;
use super::layout::EmulatorLayout;
use super::reconcile::{Context, discard, error_policy, reconcile};

/// How often instances of deleted Clusters are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Runs until SIGTERM/Ctrl-C. PostgreSQL instances keep running after the emulator exits, so a
/// restarted emulator picks them up; `lab down` stops them.
pub async fn run(config: EmulatorConfig, client: kube::Client) {
    let controller = Controller::new(
        Api::<Cluster>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal();
    let layout = EmulatorLayout::new(&config.lab_dir);
    let socket = layout.egress_socket(&config.member);
    let egress = tokio::spawn(super::pods::serve_egress(
        layout,
        config.member.clone(),
        socket,
    ));
    let ctx = Arc::new(Context {
        client,
        config,
        terminating: Default::default(),
        pods: Default::default(),
    });
    let sweeper = tokio::spawn(sweep(ctx.clone()));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    sweeper.abort();
    egress.abort();
}

/// Every [`SWEEP_EVERY`], lists the member's Clusters and Namespaces afresh and stops every
/// instance whose Cluster is gone (or was re-created: another uid) or whose namespace is
/// terminating. It reads the apiserver, not the controller's store: waiting on that store's
/// readiness here never returned, so instances of deleted Clusters ran until `lab down` (29
/// after a few bench runs, each replica polling its archive every 100 ms).
async fn sweep(ctx: Arc<Context>) {
    let config = &ctx.config;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let clusters: Api<Cluster> = Api::all(ctx.client.clone());
    let layout = EmulatorLayout::new(&config.lab_dir);
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        // Records first, lists after: a record's Cluster existed before the record was written,
        // so a Cluster created meanwhile is never mistaken for a deleted one.
        let records = layout.records(&config.member);
        if records.is_empty() {
            continue;
        }
        // Both lists must succeed: a failed or partial read is no evidence of a deletion.
        let (Ok(Ok(namespaces)), Ok(Ok(clusters))) = (
            tokio::time::timeout(SWEEP_EVERY, namespaces.list(&Default::default())).await,
            tokio::time::timeout(SWEEP_EVERY, clusters.list(&Default::default())).await,
        ) else {
            continue;
        };
        let terminating: std::collections::HashSet<String> = namespaces
            .items
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let live: std::collections::HashSet<String> = clusters
            .items
            .iter()
            .filter_map(|c| c.metadata.uid.clone())
            .collect();
        if let Ok(mut set) = ctx.terminating.write() {
            set.clone_from(&terminating);
        }
        for record in records {
            let alive = !terminating.contains(&record.namespace) && live.contains(&record.uid);
            if !alive {
                tracing::info!(namespace = %record.namespace, name = %record.name, "Cluster deleted; stopping its instance");
                let dir = layout.cluster_dir(&config.member, &record.namespace, &record.name);
                if let Err(error) = discard(config, &dir).await {
                    tracing::warn!(%error, "discarding the instance of a deleted Cluster");
                }
            }
        }
    }
}
