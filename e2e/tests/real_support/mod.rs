//! Shared by the real-tier e2e tests (`real_*.rs`): Clusters as users write them for the real
//! CloudNativePG operator (streaming with `sslmode: verify-full` across regions, per-region DNS
//! zones `<member>.lab`), the Secrets a replica cluster needs from its source, and waits with
//! deadlines sized for real pods.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use e2e::harness::SharedLab;
use e2e::harness::testkit::Member;
use e2e::lab::health::wait_for;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DynamicObject, ObjectMeta, PostParams};
use serde_json::json;

/// The members of the real-tier tests, one per region (a pair is A and B).
pub const A: Member<'static> = Member {
    name: "pg-a",
    region: "eu-central",
};
pub const B: Member<'static> = Member {
    name: "pg-b",
    region: "eu-western",
};
pub const C: Member<'static> = Member {
    name: "pg-c",
    region: "eu-south",
};

/// The real-tier lab and a test namespace on it where the federator Role is granted.
pub async fn lab_and_namespace(test: &str) -> (&'static SharedLab, e2e::harness::TestNamespace) {
    let lab = e2e::harness::real_lab().await;
    let ns = e2e::harness::TestNamespace::create_on(lab, test).await;
    ns.grant_federator().await;
    (lab, ns)
}

/// A Cluster's creation to healthy: ~30 s on an idle machine; wide for a loaded one.
pub const CLUSTER_WITHIN: Duration = Duration::from_secs(300);

/// The superuser Secret of every Cluster (identical in every region).
pub use e2e::harness::controller::REAL_SUPERUSER_SECRET;

fn cluster_api(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, ns, &e2e::lab::real::cluster_resource())
}

/// The host name of `m`'s read-write Service as every region resolves it.
pub fn rw_host(ns: &str, m: Member<'_>) -> String {
    format!("{}-rw.{ns}.svc.{}.lab", m.name, m.region)
}

/// A member Cluster of a distributed topology, streaming-only: every member in
/// `externalClusters` with `verify-full` TLS to its `-rw` Service in its region's zone, the
/// replication client certificate and CA copied from that member ([`share_secrets`]).
pub fn streaming_cluster(
    ns: &str,
    this: Member<'_>,
    primary: &str,
    source: &str,
    members: &[Member<'_>],
) -> serde_json::Value {
    let externals: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "connectionParameters": {
                    "host": rw_host(ns, *m),
                    "user": "streaming_replica",
                    "dbname": "postgres",
                    "sslmode": "verify-full",
                },
                "sslKey": {"name": format!("{}-replication", m.name), "key": "tls.key"},
                "sslCert": {"name": format!("{}-replication", m.name), "key": "tls.crt"},
                "sslRootCert": {"name": format!("{}-ca", m.name), "key": "ca.crt"},
            })
        })
        .collect();
    let bootstrap = if primary == this.name {
        json!({"initdb": {"database": "app", "owner": "app", "secret": {"name": APP_SECRET}}})
    } else {
        json!({"pg_basebackup": {"source": source, "database": "app", "owner": "app", "secret": {"name": APP_SECRET}}})
    };
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": this.name, "namespace": ns},
        "spec": {
            "instances": 1,
            "storage": {"size": "1Gi"},
            // A promoted primary is restarted in place (archive_mode flips from `always` to
            // `on`) with a smart shutdown, which waits for every client session up to this many
            // seconds (default 180): the writer's and sampler's sessions would hold it that long.
            "smartShutdownTimeout": 5,
            "enableSuperuserAccess": true,
            "superuserSecret": {"name": REAL_SUPERUSER_SECRET},
            "certificates": {"serverAltDNSNames": [rw_host(ns, this)]},
            "bootstrap": bootstrap,
            "replica": {"primary": primary, "source": source},
            "externalClusters": externals,
        },
    })
}

/// A Secret `name` with `data` (string values) in `ns` of every member region.
async fn create_secret_everywhere(
    lab: &SharedLab,
    ns: &str,
    members: &[Member<'_>],
    (name, type_): (&str, Option<&str>),
    data: &[(&str, &str)],
) {
    for m in members {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            type_: type_.map(String::from),
            string_data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        };
        let api: Api<Secret> = Api::namespaced(lab.admin(m.region).await, ns);
        api.create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {name} on {}: {e}", m.region));
    }
}

/// The superuser Secret in `ns` of every member region.
pub async fn create_superuser_secret(lab: &SharedLab, ns: &str, members: &[Member<'_>]) {
    create_secret_everywhere(
        lab,
        ns,
        members,
        (REAL_SUPERUSER_SECRET, Some("kubernetes.io/basic-auth")),
        &[("username", "postgres"), ("password", "lab-superuser-e2e")],
    )
    .await;
}

/// The application user's Secret (`app`), identical in every region and named by every
/// member's bootstrap: CloudNativePG sets the `app` role's password from its Cluster's Secret
/// when that Cluster becomes primary, and the change replicates to every member — with one
/// generated Secret per Cluster, the old primary's credentials stop working after a switchover
/// (docs/lab-real.md, fidelity table).
pub const APP_SECRET: &str = "pg-app";

/// The application user's Secret in `ns` of every member region.
pub async fn create_app_secret(lab: &SharedLab, ns: &str, members: &[Member<'_>]) {
    create_secret_everywhere(
        lab,
        ns,
        members,
        (APP_SECRET, Some("kubernetes.io/basic-auth")),
        &[("username", "app"), ("password", "lab-app-e2e")],
    )
    .await;
}

/// Copies `from`'s CA certificate (`<name>-ca`, `ca.crt` only) and replication client
/// certificate (`<name>-replication`) to every other member's region: what a replica of `from`
/// needs to stream from it with `verify-full`.
pub async fn share_secrets(lab: &SharedLab, ns: &str, from: Member<'_>, members: &[Member<'_>]) {
    let source: Api<Secret> = Api::namespaced(lab.admin(from.region).await, ns);
    for (name, keys) in [
        (format!("{}-ca", from.name), &["ca.crt"][..]),
        (
            format!("{}-replication", from.name),
            &["tls.crt", "tls.key"][..],
        ),
    ] {
        let secret = wait_for(
            &format!("Secret {name} on {}", from.region),
            CLUSTER_WITHIN,
            || {
                let source = source.clone();
                let name = name.clone();
                async move { source.get_opt(&name).await.ok()? }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let data: std::collections::BTreeMap<String, ByteString> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .collect();
        for m in members.iter().filter(|m| m.region != from.region) {
            let copy = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                },
                type_: secret.type_.clone(),
                data: Some(data.clone()),
                ..Default::default()
            };
            let api: Api<Secret> = Api::namespaced(lab.admin(m.region).await, ns);
            api.create(&PostParams::default(), &copy)
                .await
                .unwrap_or_else(|e| panic!("copying {name} to {}: {e}", m.region));
        }
    }
}

/// Creates the Cluster and waits until CloudNativePG reports it healthy with its instance ready.
pub async fn create_and_wait_healthy(
    lab: &SharedLab,
    ns: &str,
    m: Member<'_>,
    cluster: serde_json::Value,
) {
    let api = cluster_api(lab.admin(m.region).await, ns);
    let object: DynamicObject = serde_json::from_value(cluster).expect("a Cluster object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating Cluster {} on {}: {e}", m.name, m.region));
    wait_healthy(lab, ns, m).await;
}

/// Waits until the Cluster's phase is healthy and its instances are all ready.
pub async fn wait_healthy(lab: &SharedLab, ns: &str, m: Member<'_>) {
    let api = cluster_api(lab.admin(m.region).await, ns);
    wait_for(
        &format!("Cluster {} healthy on {}", m.name, m.region),
        CLUSTER_WITHIN,
        || {
            let api = api.clone();
            async move {
                let c = api.get(m.name).await.ok()?;
                let status = &c.data["status"];
                (status["phase"] == "Cluster in healthy state"
                    && status["readyInstances"] == c.data["spec"]["instances"])
                    .then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until `values` are all in `t` on `m` (read through its pod).
pub async fn wait_rows(lab: &'static SharedLab, ns: &str, m: Member<'static>, values: &[i32]) {
    let what = format!("rows {values:?} on {}", m.name);
    wait_for(&what, CLUSTER_WITHIN, || async move {
        let c = e2e::harness::controller::pg(lab, ns, m, Duration::from_secs(2)).await?;
        let rows = c.query("SELECT x FROM t", &[]).await.ok()?;
        let have: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        values.iter().all(|v| have.contains(v)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// How the members of a test topology replicate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Channel {
    /// Streaming with `verify-full` ([`streaming_cluster`]).
    Streaming,
    /// Through the object stores only ([`archive_cluster`]).
    Archive,
}

/// Creates a distributed topology's Clusters as a user would on the real tier: the superuser
/// Secret everywhere, then each member in order — the first is the primary (`initdb`, then table
/// `t` with rows 1 and 2), each other one a copy of its source. Streaming: `pg_basebackup`, and
/// after each member its CA and replication Secrets copied to every other region. Archive: the S3
/// Secret everywhere, a base backup of every member that a later one names as its source (the
/// primary; in a ring also each replica a further one cascades from: CloudNativePG backs a replica
/// cluster up from its designated primary), `recovery` from it. Returns when every member is
/// healthy and has the rows. `members[i].1` is member i's `replica.source`.
pub async fn create_members(
    lab: &'static SharedLab,
    ns: &str,
    members: &[(Member<'static>, Member<'static>)],
    channel: Channel,
) {
    let all: Vec<Member<'static>> = members.iter().map(|(m, _)| *m).collect();
    let primary = all[0];
    create_superuser_secret(lab, ns, &all).await;
    create_app_secret(lab, ns, &all).await;
    if channel == Channel::Archive {
        create_s3_secret(lab, ns, &all).await;
    }
    let started = std::time::Instant::now();
    for (i, (m, source)) in members.iter().enumerate() {
        let cluster = match channel {
            Channel::Streaming => streaming_cluster(ns, *m, primary.name, source.name, &all),
            Channel::Archive => archive_cluster(ns, *m, primary.name, source.name, &all),
        };
        create_and_wait_healthy(lab, ns, *m, cluster).await;
        println!(
            "{} healthy on {} after {:.1}s",
            m.name,
            m.region,
            started.elapsed().as_secs_f64()
        );
        if m.name == primary.name {
            e2e::harness::controller::pg(lab, ns, primary, Duration::from_secs(5))
                .await
                .expect("a connection to the primary's pod")
                .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
                .await
                .expect("writes on the primary");
        }
        wait_rows(lab, ns, *m, &[1, 2]).await;
        let copied_later = members[i + 1..].iter().any(|(_, s)| s.name == m.name);
        if channel == Channel::Archive && copied_later {
            base_backup(lab, ns, *m).await;
            println!(
                "base backup of {} after {:.1}s",
                m.name,
                started.elapsed().as_secs_f64()
            );
        }
        if channel == Channel::Streaming {
            share_secrets(lab, ns, *m, &all).await;
        }
    }
}

/// Asserts that `replica` streams from `source` across regions with `sslmode=verify-full`.
pub async fn assert_streams_verify_full(
    lab: &'static SharedLab,
    ns: &str,
    replica: Member<'static>,
    source: Member<'static>,
) {
    let c = e2e::harness::controller::pg(lab, ns, replica, Duration::from_secs(5))
        .await
        .expect("a connection to the replica's pod");
    let row = c
        .query_one(
            "SELECT status, sender_host, conninfo LIKE '%sslmode=verify-full%' \
             FROM pg_stat_wal_receiver",
            &[],
        )
        .await
        .expect("pg_stat_wal_receiver");
    assert_eq!(row.get::<_, String>(0), "streaming");
    assert_eq!(row.get::<_, String>(1), rw_host(ns, source));
    assert!(
        row.get::<_, bool>(2),
        "{} connects with sslmode=verify-full",
        replica.name
    );
}

/// The Secret holding the S3 credentials (moto accepts any), in every region.
pub const S3_SECRET: &str = "s3-credentials";

/// The object store of member `m`: its own bucket on the lab's S3 endpoint (moto, in the lab
/// namespace).
fn object_store(ns: &str, m: Member<'_>) -> serde_json::Value {
    json!({
        "destinationPath": format!("s3://{ns}-{}/", m.name),
        "endpointURL": format!(
            "http://{}:{}",
            e2e::lab::real::plan::S3_ADDRESS,
            e2e::lab::real::plan::S3_PORT
        ),
        "s3Credentials": {
            "accessKeyId": {"name": S3_SECRET, "key": "ACCESS_KEY_ID"},
            "secretAccessKey": {"name": S3_SECRET, "key": "ACCESS_SECRET_KEY"},
        },
        // Each barman-cloud call costs seconds on a loaded machine: restore ahead in parallel.
        "wal": {"maxParallel": 4},
    })
}

/// A member Cluster of a distributed topology replicating through the WAL archive only (the
/// CloudNativePG blog's setup): its own backup to its bucket, every member in `externalClusters`
/// with only its object store; `initdb` for the primary, `recovery` from the source's base backup
/// for the others. `archive_timeout` is 30 s (CNPG's default is 5 min) so an idle primary's WAL
/// reaches the replicas, yet a replica restoring a segment in several seconds keeps up.
pub fn archive_cluster(
    ns: &str,
    this: Member<'_>,
    primary: &str,
    source: &str,
    members: &[Member<'_>],
) -> serde_json::Value {
    let externals: Vec<serde_json::Value> = members
        .iter()
        .map(|m| json!({"name": m.name, "barmanObjectStore": object_store(ns, *m)}))
        .collect();
    let bootstrap = if primary == this.name {
        json!({"initdb": {"database": "app", "owner": "app", "secret": {"name": APP_SECRET}}})
    } else {
        json!({"recovery": {"source": source, "database": "app", "owner": "app", "secret": {"name": APP_SECRET}}})
    };
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": this.name, "namespace": ns},
        "spec": {
            "instances": 1,
            "storage": {"size": "1Gi"},
            "smartShutdownTimeout": 5,
            "enableSuperuserAccess": true,
            "superuserSecret": {"name": REAL_SUPERUSER_SECRET},
            "postgresql": {"parameters": {"archive_timeout": "30s"}},
            "backup": {"barmanObjectStore": object_store(ns, this)},
            "bootstrap": bootstrap,
            "replica": {"primary": primary, "source": source},
            "externalClusters": externals,
        },
    })
}

/// The S3 credentials Secret in `ns` of every member region.
pub async fn create_s3_secret(lab: &SharedLab, ns: &str, members: &[Member<'_>]) {
    create_secret_everywhere(
        lab,
        ns,
        members,
        (S3_SECRET, None),
        &[
            ("ACCESS_KEY_ID", "lab"),
            ("ACCESS_SECRET_KEY", "lab-secret"),
        ],
    )
    .await;
}

/// A base backup of `m` to its object store (a `Backup` object), waited for until completed.
pub async fn base_backup(lab: &SharedLab, ns: &str, m: Member<'_>) {
    let resource = kube::discovery::ApiResource {
        group: "postgresql.cnpg.io".into(),
        version: "v1".into(),
        api_version: "postgresql.cnpg.io/v1".into(),
        kind: "Backup".into(),
        plural: "backups".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(lab.admin(m.region).await, ns, &resource);
    let name = format!("{}-base", m.name);
    let mut backup = DynamicObject::new(&name, &resource);
    backup.data = json!({"spec": {"cluster": {"name": m.name}, "method": "barmanObjectStore"}});
    api.create(&PostParams::default(), &backup)
        .await
        .unwrap_or_else(|e| panic!("creating Backup {name}: {e}"));
    let name = &name;
    wait_for(&format!("Backup {name} completed"), CLUSTER_WITHIN, || {
        let api = api.clone();
        async move {
            let b = api.get(name).await.ok()?;
            let phase = b.data["status"]["phase"].as_str().unwrap_or_default();
            assert_ne!(
                phase, "failed",
                "Backup {name} failed: {}",
                b.data["status"]
            );
            (phase == "completed").then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The values of `t` on `m` (through its pod), or None while it does not answer.
pub async fn rows(lab: &'static SharedLab, ns: &str, m: Member<'static>) -> Option<Vec<i32>> {
    let c = e2e::harness::controller::pg(lab, ns, m, Duration::from_secs(2)).await?;
    let rows = c.query("SELECT x FROM t", &[]).await.ok()?;
    Some(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether `m` answers and is writable: Some(true) primary, Some(false) in recovery.
pub async fn writable(lab: &'static SharedLab, ns: &str, m: Member<'static>) -> Option<bool> {
    let c = e2e::harness::controller::pg(lab, ns, m, Duration::from_secs(1)).await?;
    let row = c
        .query_one("SELECT NOT pg_is_in_recovery()", &[])
        .await
        .ok()?;
    Some(row.get(0))
}

/// The `postgres` container of `m`'s instance pod: (ready, restarts, state in a word).
pub async fn instance_container(
    lab: &SharedLab,
    ns: &str,
    m: Member<'_>,
) -> Option<(bool, i32, String)> {
    let pods: Api<Pod> = Api::namespaced(lab.admin(m.region).await, ns);
    let pod = pods.get(&format!("{}-1", m.name)).await.ok()?;
    let status = pod
        .status?
        .container_statuses?
        .into_iter()
        .find(|c| c.name == "postgres")?;
    let state = status.state.as_ref().map_or("unknown".to_owned(), |s| {
        if s.running.is_some() {
            "running".to_owned()
        } else if let Some(w) = &s.waiting {
            format!("waiting ({})", w.reason.clone().unwrap_or_default())
        } else if let Some(t) = &s.terminated {
            format!("terminated ({})", t.reason.clone().unwrap_or_default())
        } else {
            "unknown".to_owned()
        }
    });
    Some((status.ready, status.restart_count, state))
}

/// Waits until the hub reports member `m` unreachable.
pub async fn wait_unreachable(hub: &Api<topology::DistributedTopology>, m: Member<'_>) {
    e2e::harness::controller::status_until(
        hub,
        &format!("{} unreachable on the hub", m.name),
        CLUSTER_WITHIN,
        |s| {
            s.members
                .iter()
                .any(|x| x.name == m.name && !x.reachable)
                .then_some(())
        },
    )
    .await;
}

/// Waits until `m` answers as a writable primary.
pub async fn wait_writable(lab: &'static SharedLab, ns: &str, m: Member<'static>) {
    wait_for(&format!("{} writable", m.name), CLUSTER_WITHIN, || async {
        writable(lab, ns, m).await.filter(|w| *w)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the hub has fenced `m` (its Cluster patched into a replica) and asserts it is
/// listed for re-clone; returns the entry.
pub async fn wait_fenced(
    hub: &Api<topology::DistributedTopology>,
    m: Member<'_>,
) -> topology::api::FencedMember {
    let fenced = e2e::harness::controller::status_until(
        hub,
        &format!("{} fenced on the hub", m.name),
        CLUSTER_WITHIN,
        |s| {
            s.fenced_members
                .iter()
                .find(|f| f.name == m.name && f.fenced_at.is_some())
                .cloned()
        },
    )
    .await;
    assert!(fenced.needs_reclone, "{fenced:?}");
    fenced
}

/// Asserts that `m` is still listed for re-clone.
pub async fn assert_listed_for_reclone(hub: &Api<topology::DistributedTopology>, m: Member<'_>) {
    let status = e2e::harness::controller::status_now(hub).await;
    assert!(
        status
            .fenced_members
            .iter()
            .any(|f| f.name == m.name && f.needs_reclone),
        "{} stays listed for re-clone: {:?}",
        m.name,
        status.fenced_members
    );
}

/// The pair A (primary) / B streaming with `verify-full`, its topology `pg` on the hub Ready
/// under a controller, and the writer and sampler running with more than 30 rows on A.
pub async fn pair_under_writes(
    lab: &'static SharedLab,
    ns: &str,
) -> (
    Api<topology::DistributedTopology>,
    e2e::harness::controller::Controller,
    e2e::harness::controller::Load,
) {
    use e2e::harness::controller::{Controller, Load, deploy, wait_condition, wide_timeouts};
    let started = std::time::Instant::now();
    create_members(lab, ns, &[(A, B), (B, A)], Channel::Streaming).await;
    let hub = deploy(lab, ns, &[A, B], json!({"star": {}}), wide_timeouts()).await;
    let controller = Controller::start(lab, ns);
    wait_condition(&hub, topology::conditions::kind::READY).await;
    println!("pair Ready after {:.1}s", started.elapsed().as_secs_f64());
    let load = Load::start(lab, ns, &[A, B], true);
    wait_for("rows written on A", CLUSTER_WITHIN, || async {
        let on_a = rows(lab, ns, A).await?;
        (on_a.iter().filter(|x| **x >= 1000).count() > 30).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (hub, controller, load)
}
