//! The reconcile of one Cluster, as a pipeline: find its instance → bootstrap it if new →
//! demotion, promotion or steady state, whichever the role rule and the instance call for.
//! Each pass does one step and requeues at CNPG's (scaled) interval.

use std::sync::Arc;

use kube::Api;
use kube::runtime::controller::Action;
use topology::cnpg::{Cluster, Role};

use super::config::EmulatorConfig;
use super::error::{EmulatorError, Result};
use super::faults::Faults;
use super::layout::EmulatorLayout;
use super::pass::Pass;
use super::postgres::Instance;
use super::{bootstrap, demotion, promotion, steady};

/// Retry interval after a failed pass.
const ERROR_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Context {
    pub client: kube::Client,
    pub config: EmulatorConfig,
    /// Namespaces being deleted. The lab has no namespace controller, so their Clusters are
    /// never deleted; their instances are stopped and removed as if they were.
    pub terminating: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Instance pods already written by this process.
    pub pods: super::pods::Written,
}

impl Context {
    pub fn is_terminating(&self, namespace: &str) -> bool {
        self.terminating
            .read()
            .map(|set| set.contains(namespace))
            .unwrap_or(false)
    }
}

/// How often a held data plane (`EmulatorLayout::data_plane_hold`) is looked at again.
const DATA_PLANE_HOLD_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or_default();
    if ctx.is_terminating(namespace) {
        // The sweep removes the instance; nothing to run for a namespace on its way out.
        return Ok(Action::await_change());
    }
    if let Some(system_id) = super::status_only::system_id(&cluster) {
        return super::status_only::reconcile(&cluster, &ctx.client, system_id).await;
    }
    if EmulatorLayout::new(&ctx.config.lab_dir)
        .data_plane_hold(&ctx.config.member)
        .exists()
    {
        return Ok(Action::requeue(DATA_PLANE_HOLD_RECHECK));
    }
    let Some(mut pass) = open(cluster, &ctx).await? else {
        return Ok(Action::await_change());
    };
    if !pass.instance.is_bootstrapped() {
        return bootstrap::run(&mut pass).await;
    }
    if let Err(error) = super::pods::ensure(&pass, &ctx.client, &ctx.pods).await {
        // Only pods/proxy readers (an archive-only switchover) need the pod: retried next pass.
        tracing::warn!(cluster = %pass.name, %error, "writing the instance pod");
    }
    let role = pass.cluster.role();
    let standby = pass.instance.is_standby();
    if role == Role::Replica && demotion::underway(&pass, standby) {
        return demotion::step(&mut pass, standby).await;
    }
    if role == Role::Primary
        && let Some(action) = promotion::step(&mut pass, standby).await?
    {
        return Ok(action);
    }
    steady::run(&mut pass).await
}

pub fn error_policy(cluster: Arc<Cluster>, error: &EmulatorError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        cluster = cluster.metadata.name.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    // Errors (a failing pg_ctl, an apiserver away) are retried slower than steps requeue: a
    // persistent one must not keep a loaded machine busy.
    Action::requeue(ERROR_RETRY)
}

async fn open(cluster: Arc<Cluster>, ctx: &Context) -> Result<Option<Pass<'_>>> {
    let config = &ctx.config;
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace);
    // The watch cache may not hold this emulator's own last write yet; deciding from it would
    // redo a step (a promoted primary checked against its token again, removed conditions
    // written back). A quorum read costs one request per pass.
    let Some(cluster) = api.get_opt(&name).await?.map(Arc::new) else {
        return Ok(None);
    };
    let uid = cluster.metadata.uid.clone().unwrap_or_default();
    let layout = EmulatorLayout::new(&config.lab_dir);
    let dir = layout.cluster_dir(&config.member, &namespace, &name);
    if let Some(old) = layout.record(&config.member, &namespace, &name)
        && old.uid != uid
    {
        tracing::info!(%namespace, %name, "Cluster was re-created; discarding the old instance");
        discard(config, &dir).await?;
    }
    let record =
        layout.ensure_record(&config.member, &namespace, &name, &uid, config.pg_port_base)?;
    Ok(Some(Pass {
        config,
        layout,
        api,
        faults: Faults::of(&cluster),
        status: cluster.status.clone().unwrap_or_default(),
        instance: Instance::new(config.pg_bin.clone(), dir),
        name,
        record,
        cluster,
    }))
}

/// Stops the instance of a Cluster that no longer exists and deletes its directory.
pub async fn discard(config: &EmulatorConfig, dir: &std::path::Path) -> Result<()> {
    let instance = Instance::new(config.pg_bin.clone(), dir);
    if instance.is_bootstrapped() {
        instance.stop().await?;
    }
    tokio::fs::remove_dir_all(dir)
        .await
        .map_err(EmulatorError::io("removing", dir))
}
