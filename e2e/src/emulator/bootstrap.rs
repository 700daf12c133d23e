//! Creating the instance of a new Cluster (contract §1.3): `initdb` for a cluster created as
//! primary; for one created as a replica, a physical copy of its source's instance. The lab has
//! no barman base backups, so `recovery` from an object store also copies the source instance
//! with `pg_basebackup`, then follows the source's WAL archive like CNPG's recovery would.

use kube::runtime::controller::Action;
use topology::cnpg::{Role, phase};

use super::error::Result;
use super::pass::Pass;
use super::settings;
use super::status::{set_condition, set_operator_phase, text};

/// How often a new replica looks for its source's instance.
const SOURCE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(pass: &mut Pass<'_>) -> Result<Action> {
    let role = pass.cluster.role();
    let pod = pass.primary_pod();
    let instances = pass.instances();
    let creating = if role == Role::Primary {
        phase::SETTING_UP_PRIMARY
    } else {
        phase::CREATING_REPLICA
    };
    pass.update_status(|s| {
        // A reason a failed attempt left stays until the bootstrap succeeds or fails otherwise.
        let reason = if s.phase.as_deref() == Some(creating) {
            s.phase_reason.clone().unwrap_or_default()
        } else {
            String::new()
        };
        set_operator_phase(s, creating, &reason);
        set_condition(
            &mut s.conditions,
            text::INITIALIZED,
            false,
            text::BOOTSTRAP_PENDING,
            "Cluster Is Not Ready",
        );
        s.instances = Some(instances);
        s.ready_instances = Some(0);
        s.current_primary.get_or_insert_with(|| pod.clone());
        s.target_primary.get_or_insert_with(|| pod.clone());
    })
    .await?;

    match create_instance(pass, role).await {
        Ok(action) => Ok(action),
        Err(error) => {
            // CNPG shows why a Cluster does not come up in its status, not only in a log: the
            // phase stays, its reason names the failure (the emulator's stand-in for the failing
            // initdb/join Job and its Pod events).
            let reason = failure_reason(&error);
            pass.update_status(|s| set_operator_phase(s, creating, &reason))
                .await?;
            Err(error)
        }
    }
}

/// `phaseReason` for a failed bootstrap: the error, bounded (stderr of a failing program can be
/// long).
fn failure_reason(error: &super::error::EmulatorError) -> String {
    const MAX: usize = 480;
    let text = format!("bootstrap failed: {error}");
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

async fn create_instance(pass: &mut Pass<'_>, role: Role) -> Result<Action> {
    if role == Role::Primary {
        tracing::info!(cluster = %pass.name, "initdb");
        pass.instance.initdb(pass.config.wal_segment_mb).await?;
    } else {
        let Some(source) = bootstrap_source(pass) else {
            tracing::warn!(cluster = %pass.name, "replica without a resolvable bootstrap source; waiting");
            // The source appearing is no event on this Cluster: poll, gently (leftover test
            // Clusters whose source never comes would otherwise keep two cores busy).
            return Ok(Action::requeue(SOURCE_POLL));
        };
        tracing::info!(cluster = %pass.name, source = %source.name, port = source.port, "pg_basebackup from the source instance");
        pass.instance.basebackup(source.port).await?;
    }
    let standby = role == Role::Replica;
    if standby {
        pass.instance.make_standby().await?;
    }
    pass.instance
        .write_settings(&settings::desired(pass, standby)?)
        .await?;
    pass.instance.start().await?;
    if role == Role::Primary {
        let (database, owner) = initdb_database(pass);
        tracing::info!(cluster = %pass.name, %database, %owner, "creating the application database");
        super::postgres::sql::create_app_database(pass.record.port, &database, &owner).await?;
    }
    Ok(Action::requeue(pass.config.timing.operator()))
}

/// `bootstrap.initdb.database` and `.owner` with CNPG's defaults: database `app`, owner the
/// database's name (also when `bootstrap` is left out: CNPG then bootstraps with initdb).
fn initdb_database(pass: &Pass<'_>) -> (String, String) {
    let initdb = pass
        .cluster
        .spec
        .bootstrap
        .as_ref()
        .and_then(|b| b.initdb.as_ref());
    let field = |name: &str| {
        initdb
            .and_then(|i| i.get(name))
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let database = field("database").unwrap_or_else(|| "app".to_owned());
    let owner = field("owner").unwrap_or_else(|| database.clone());
    (database, owner)
}

/// The source named by `bootstrap.pg_basebackup` / `bootstrap.recovery`, else by
/// `replica.source`, resolved to a lab instance.
fn bootstrap_source(pass: &Pass<'_>) -> Option<super::layout::InstanceRecord> {
    let bootstrap = pass.cluster.spec.bootstrap.as_ref();
    let name = bootstrap
        .and_then(|b| b.pg_basebackup.as_ref().or(b.recovery.as_ref()))
        .and_then(|s| s.source.clone())
        .or_else(|| pass.replica_spec().map(|r| r.source.clone()))?;
    let entry = settings::external(pass, &name)?;
    settings::resolve(&pass.layout, entry, pass.namespace()).filter(|r| r.name != pass.name)
}
