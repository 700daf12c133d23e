//! The emulator's main loop: a kube-runtime Controller on every `Cluster` of its member, plus a
//! sweep that stops the instances of deleted Clusters and of Clusters in deleted namespaces.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};
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
    let store = controller.store();
    let ctx = Arc::new(Context {
        client,
        config,
        terminating: Default::default(),
    });
    let sweeper = tokio::spawn(sweep(store, ctx.clone()));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    sweeper.abort();
}

async fn sweep(store: Store<Cluster>, ctx: Arc<Context>) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let config = &ctx.config;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let layout = EmulatorLayout::new(&config.lab_dir);
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        if let Ok(list) = namespaces.list(&Default::default()).await {
            let terminating = list
                .items
                .iter()
                .filter(|n| n.metadata.deletion_timestamp.is_some())
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            if let Ok(mut set) = ctx.terminating.write() {
                *set = terminating;
            }
        }
        for record in layout.records(&config.member) {
            let key = ObjectRef::<Cluster>::new(&record.name).within(&record.namespace);
            let alive = !ctx.is_terminating(&record.namespace)
                && store
                    .get(&key)
                    .is_some_and(|c| c.metadata.uid.as_deref() == Some(record.uid.as_str()));
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
