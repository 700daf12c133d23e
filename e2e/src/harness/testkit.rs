//! Helpers for tests that drive CNPG Clusters on the lab's emulators: the blog's manifests,
//! waiting on status with a deadline, SQL on an instance, and the three documented manual
//! switchover steps as JSON merge patches.

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use topology::cnpg::Cluster;

use crate::harness::{SharedLab, lab};
use crate::lab::health::wait_for;

/// Deadline for anything a test waits for (bootstrap, demotion, promotion): wide, for a loaded
/// two-core machine; the happy path takes about a second.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// The shared test lab with its emulators running.
pub async fn lab_with_emulators() -> &'static SharedLab {
    let lab = lab().await;
    crate::lab::emulators::ensure(&lab.layout)
        .await
        .unwrap_or_else(|e| panic!("starting the emulators: {e}"));
    lab
}

/// One member of a distributed topology in a test: the Cluster name and the region it lives in.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    pub name: &'a str,
    pub region: &'a str,
}

/// A Cluster shaped like the CloudNativePG blog's distributed topology: every member listed in
/// `externalClusters` with streaming parameters (when `stream`) and its object store
/// `s3://<name>/`; its own backup to `s3://<name>/`. `initdb` when it is `primary`, else
/// `pg_basebackup` from `source`.
pub fn blog_cluster(
    namespace: &str,
    name: &str,
    primary: &str,
    source: &str,
    members: &[Member<'_>],
    stream: bool,
) -> Cluster {
    let externals: Vec<Value> = members
        .iter()
        .map(|m| {
            let mut entry = json!({
                "name": m.name,
                "barmanObjectStore": {"destinationPath": format!("s3://{}-{namespace}/", m.name)},
            });
            if stream {
                entry["connectionParameters"] = json!({
                    "host": format!("{}-rw.{namespace}.svc", m.name),
                    "user": "streaming_replica",
                    "dbname": "postgres",
                });
            }
            entry
        })
        .collect();
    let bootstrap = if primary == name {
        json!({"initdb": {"database": "app", "owner": "app"}})
    } else {
        json!({"pg_basebackup": {"source": source}})
    };
    serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "instances": 1,
            "storage": {"size": "1Gi"},
            // As the real tier's manifests: the promoted primary's in-place restart (archive_mode
            // flips) waits this long for client sessions, not CNPG's default 180 s.
            "smartShutdownTimeout": 5,
            "bootstrap": bootstrap,
            "backup": {"barmanObjectStore": {"destinationPath": format!("s3://{name}-{namespace}/")}},
            "replica": {"primary": primary, "source": source},
            "externalClusters": externals,
        },
    }))
    .expect("the blog Cluster is a valid object")
}

pub async fn clusters(lab: &SharedLab, region: &str, namespace: &str) -> Api<Cluster> {
    Api::namespaced(lab.admin(region).await, namespace)
}

pub async fn create(api: &Api<Cluster>, cluster: &Cluster) {
    let params = PostParams::default();
    while_webhook_restarts(|| api.create(&params, cluster))
        .await
        .unwrap_or_else(|e| panic!("creating Cluster {:?}: {e}", cluster.metadata.name));
}

/// True for the apiserver's answer while the admission webhook cannot be called (500, "failed
/// calling webhook"): the webhook is the emulator, and some tests restart it while tests of the
/// same binary create and patch Clusters.
fn webhook_unreachable(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 500 && status.message.contains("failed calling webhook"))
}

/// Runs `call` again while the webhook is unreachable (an emulator restarting), until
/// [`DEADLINE`]; any other answer, success or refusal, is returned as it is.
async fn while_webhook_restarts<T, F, Fut>(mut call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        match call().await {
            Err(e) if webhook_unreachable(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A JSON merge patch on `spec.replica` (how Federator and the docs change roles).
pub async fn patch_replica(
    api: &Api<Cluster>,
    name: &str,
    replica: Value,
) -> kube::Result<Cluster> {
    let (params, patch) = (
        PatchParams::default(),
        Patch::Merge(json!({"spec": {"replica": replica}})),
    );
    while_webhook_restarts(|| api.patch(name, &params, &patch)).await
}

pub async fn annotate(api: &Api<Cluster>, name: &str, key: &str, value: Option<&str>) {
    let (params, patch) = (
        PatchParams::default(),
        Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
    );
    while_webhook_restarts(|| api.patch(name, &params, &patch))
        .await
        .unwrap_or_else(|e| panic!("annotating {name}: {e}"));
}

/// Waits until the Cluster satisfies `check`; panics naming `what` and showing the last status
/// after [`DEADLINE`].
pub async fn wait_cluster(
    api: &Api<Cluster>,
    name: &str,
    what: &str,
    check: impl Fn(&Cluster) -> bool,
) -> Cluster {
    let check = &check;
    let found = wait_for(what, DEADLINE, || async move {
        api.get(name).await.ok().filter(|c| check(c))
    })
    .await;
    match found {
        Ok(cluster) => cluster,
        Err(e) => {
            let last = api
                .get(name)
                .await
                .map(|c| serde_json::to_string_pretty(&c.status).unwrap_or_default())
                .unwrap_or_else(|e| e.to_string());
            panic!("{name}: waiting for {e}; last status: {last}")
        }
    }
}

pub fn phase(c: &Cluster) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn healthy(c: &Cluster) -> bool {
    let Some(s) = c.status.as_ref() else {
        return false;
    };
    phase(c) == topology::cnpg::phase::HEALTHY
        && s.ready_instances == Some(c.spec.instances)
        && s.current_primary.is_some()
        && s.current_primary == s.target_primary
}

pub fn demotion_token(c: &Cluster) -> Option<String> {
    c.status
        .as_ref()
        .and_then(|s| s.demotion_token.clone())
        .filter(|t| !t.is_empty())
}

pub fn last_promotion_token(c: &Cluster) -> Option<&str> {
    c.status.as_ref()?.last_promotion_token.as_deref()
}

/// A connection to the instance of a Cluster, retried until the instance accepts it.
pub async fn connect(
    lab: &SharedLab,
    region: &str,
    namespace: &str,
    name: &str,
) -> tokio_postgres::Client {
    let dir = lab.layout.root().to_path_buf();
    wait_for(
        &format!("a connection to {region}/{namespace}/{name}"),
        DEADLINE,
        || {
            let dir = dir.clone();
            async move {
                let dsn = crate::emulator::dsn(&dir, region, namespace, name).ok()?;
                let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                Some(client)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Values of `t.x` on an instance, sorted; `None` while the table is not there or the instance
/// is unreachable.
pub async fn rows(lab: &SharedLab, region: &str, namespace: &str, name: &str) -> Option<Vec<i32>> {
    let dsn = crate::emulator::dsn(lab.layout.root(), region, namespace, name).ok()?;
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    let rows = client.query("SELECT x FROM t ORDER BY x", &[]).await.ok()?;
    Some(rows.iter().map(|r| r.get(0)).collect())
}

/// Waits until the instance holds exactly `expected` in `t.x`.
pub async fn wait_rows(
    lab: &SharedLab,
    region: &str,
    namespace: &str,
    name: &str,
    expected: &[i32],
) {
    wait_for(
        &format!("rows {expected:?} on {name}"),
        DEADLINE,
        || async move {
            rows(lab, region, namespace, name)
                .await
                .filter(|r| r == expected)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the instance has replayed WAL past `lsn` (`pg_last_wal_replay_lsn()`): a
/// standby that replayed a demotion token's shutdown checkpoint.
pub async fn wait_replayed_past(
    lab: &SharedLab,
    region: &str,
    namespace: &str,
    name: &str,
    lsn: topology::token::Lsn,
) {
    let client = &connect(lab, region, namespace, name).await;
    wait_for(
        &format!("{name} replaying past {lsn}"),
        DEADLINE,
        || async move {
            let row = client
                .query_one("SELECT COALESCE(pg_last_wal_replay_lsn()::text, '')", &[])
                .await
                .ok()?;
            let replayed: topology::token::Lsn = row.get::<_, String>(0).parse().ok()?;
            (replayed > lsn).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `pg_is_in_recovery()` of an instance.
pub async fn in_recovery(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("pg_is_in_recovery: {e}"))
}

/// Timeline of the instance's latest checkpoint.
pub async fn timeline(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT timeline_id::bigint FROM pg_control_checkpoint()",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("timeline: {e}"))
}

/// Deletes the Clusters (their instances are stopped by the emulators' sweep); the lab has no
/// namespace controller, so deleting the namespace alone would leave them running.
pub async fn delete_all(lab: &SharedLab, namespace: &str, members: &[Member<'_>]) {
    for m in members {
        let api = clusters(lab, m.region, namespace).await;
        let _ = api.delete(m.name, &Default::default()).await;
    }
}

/// Waits until the instance is a primary (accepts writes), trying a fresh connection each time:
/// right after a promotion it restarts once for `archive_mode`, which breaks connections.
pub async fn wait_until_writable(lab: &SharedLab, region: &str, namespace: &str, name: &str) {
    let dir = lab.layout.root().to_path_buf();
    let dir = &dir;
    wait_for(&format!("{name} writable"), DEADLINE, || async move {
        let dsn = crate::emulator::dsn(dir, region, namespace, name).ok()?;
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(conn);
        client
            .query_one("SELECT NOT pg_is_in_recovery()", &[])
            .await
            .ok()
            .map(|r| r.get::<_, bool>(0))
            .filter(|w| *w)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A primary `A` on eu-central and its replica `B` on eu-western (streaming and archive), both
/// healthy, with `t = {1, 2}` written on A and replicated to B.
pub struct Pair {
    pub lab: &'static SharedLab,
    pub namespace: String,
    pub a: Member<'static>,
    pub b: Member<'static>,
    pub api_a: Api<Cluster>,
    pub api_b: Api<Cluster>,
}

impl Pair {
    pub async fn create(lab: &'static SharedLab, namespace: &str) -> Self {
        let a = Member {
            name: "pg-a",
            region: "eu-central",
        };
        let b = Member {
            name: "pg-b",
            region: "eu-western",
        };
        Self::create_of(lab, namespace, a, b).await
    }

    /// As [`Pair::create`], with `a` (the primary) and `b` named and placed by the caller.
    pub async fn create_of(
        lab: &'static SharedLab,
        namespace: &str,
        a: Member<'static>,
        b: Member<'static>,
    ) -> Self {
        let members = [a, b];
        let api_a = clusters(lab, a.region, namespace).await;
        let api_b = clusters(lab, b.region, namespace).await;
        create(
            &api_a,
            &blog_cluster(namespace, a.name, a.name, b.name, &members, true),
        )
        .await;
        wait_cluster(&api_a, a.name, "A healthy", healthy).await;
        connect(lab, a.region, namespace, a.name)
            .await
            .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
            .await
            .expect("writes on A");
        create(
            &api_b,
            &blog_cluster(namespace, b.name, a.name, a.name, &members, true),
        )
        .await;
        wait_cluster(&api_b, b.name, "B healthy as a replica", healthy).await;
        wait_rows(lab, b.region, namespace, b.name, &[1, 2]).await;
        Self {
            lab,
            namespace: namespace.to_owned(),
            a,
            b,
            api_a,
            api_b,
        }
    }

    /// Step 1 and 2 of the documented switchover: demote A, wait for its token.
    pub async fn demote_a(&self) -> String {
        patch_replica(&self.api_a, self.a.name, json!({"primary": self.b.name}))
            .await
            .expect("demote A");
        let demoted = wait_cluster(&self.api_a, self.a.name, "the demotion token", |c| {
            demotion_token(c).is_some()
        })
        .await;
        demotion_token(&demoted).expect("token")
    }

    /// Step 3: promote B with `token` (`null` for a failover).
    pub async fn promote_b(&self, token: Option<&str>) -> kube::Result<Cluster> {
        patch_replica(
            &self.api_b,
            self.b.name,
            json!({"primary": self.b.name, "promotionToken": token}),
        )
        .await
    }

    pub async fn b_in_recovery(&self) -> bool {
        in_recovery(&connect(self.lab, self.b.region, &self.namespace, self.b.name).await).await
    }

    pub async fn delete(&self) {
        delete_all(self.lab, &self.namespace, &[self.a, self.b]).await;
    }
}

impl Pair {
    /// Sets (or with `None` removes) B's `promotionToken` alone.
    pub async fn patch_b_token(&self, token: Option<&str>) {
        patch_replica(&self.api_b, self.b.name, json!({"promotionToken": token}))
            .await
            .unwrap_or_else(|e| panic!("patching B's token: {e}"));
    }
}
