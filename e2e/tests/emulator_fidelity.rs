#![forbid(unsafe_code)]
//! The emulator agrees with the real CNPG operator where issue #14 found it did not: a Cluster
//! whose instance cannot be created says why in its status, and `lab up` refuses a directory
//! PostgreSQL cannot enter before starting anything.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use e2e::emulator::EmulatorLayout;
use e2e::harness::TestNamespace;
use e2e::harness::testkit::{self, Member};
use e2e::lab::{self, Ports, UpOptions};
use topology::cnpg::phase;

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Processes whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

#[tokio::test]
async fn lab_up_refuses_a_directory_postgres_cannot_enter_and_starts_nothing() {
    if !running_as_root() {
        eprintln!("not root: PostgreSQL runs as this user, who can enter its own directories");
        return;
    }
    // What `mktemp -d` makes: 0700, owned by root.
    let parent = tempfile::tempdir().expect("tempdir");
    chmod(parent.path(), 0o700);
    let dir = parent.path().join("lab");
    let error = lab::up(&UpOptions {
        dir: dir.clone(),
        // Never bound: the refusal comes before any port is looked at.
        ports: Ports {
            etcd: 1,
            apiserver: 3,
        },
        real: None,
    })
    .await
    .expect_err("lab up must refuse a directory the postgres user cannot enter");
    let message = error.to_string();
    let parent_path = parent.path().display().to_string();
    for needle in [
        dir.display().to_string().as_str(),
        parent_path.as_str(),
        "\"postgres\" cannot enter",
        "mode 0700",
        &format!("chmod o+x {parent_path}"),
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
    assert!(
        !dir.join("state.json").exists(),
        "lab up recorded a state before refusing"
    );
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());

    // The fix the message names works.
    chmod(parent.path(), 0o701);
    let layout = lab::LabLayout::create(&dir).expect("layout");
    lab::lifecycle::check_postgres_can_enter(&layout).expect("enterable after chmod o+x");
}

#[tokio::test]
async fn a_cluster_whose_instance_cannot_be_created_says_why_in_its_status_and_recovers() {
    if !running_as_root() {
        eprintln!("not root: PostgreSQL runs as this user, who can enter its own directories");
        return;
    }
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-blocked").await;
    let a = Member {
        name: "pg-blocked",
        region: "eu-central",
    };
    // The namespace's folder of instances, made 0700 by root before the Cluster exists: initdb,
    // running as postgres, cannot reach its data directory.
    let blocked = EmulatorLayout::new(lab.layout.root())
        .member_dir(a.region)
        .join(ns.name());
    std::fs::create_dir_all(&blocked).expect("mkdir");
    chmod(&blocked, 0o700);

    let api = testkit::clusters(lab, a.region, ns.name()).await;
    testkit::create(
        &api,
        &testkit::blog_cluster(ns.name(), a.name, a.name, a.name, &[a], false),
    )
    .await;
    let failing = testkit::wait_cluster(&api, a.name, "a phaseReason naming the failure", |c| {
        c.status
            .as_ref()
            .and_then(|s| s.phase_reason.as_deref())
            .is_some_and(|r| r.contains("initdb") && r.contains("Permission denied"))
    })
    .await;
    assert_eq!(testkit::phase(&failing), phase::SETTING_UP_PRIMARY);
    assert!(
        failing
            .condition(topology::cnpg::condition::READY)
            .is_some_and(|c| c.status == "False"),
        "Ready must be False while the bootstrap fails: {:#?}",
        failing.status
    );

    chmod(&blocked, 0o755);
    let healthy = testkit::wait_cluster(&api, a.name, "healthy once fixed", testkit::healthy).await;
    assert_eq!(
        healthy
            .status
            .as_ref()
            .and_then(|s| s.phase_reason.as_deref()),
        None,
        "a healthy Cluster keeps no failure reason"
    );
    testkit::delete_all(lab, ns.name(), &[a]).await;
}

async fn show(client: &tokio_postgres::Client, setting: &str) -> String {
    client
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .unwrap_or_else(|e| panic!("SHOW {setting}: {e}"))
        .get(0)
}

/// CNPG writes `archive_timeout = '5min'` by default and the user's `spec.postgresql.parameters`
/// after its defaults, its fixed parameters last: an archive-only replica of a primary with
/// `archive_timeout: 1s` sees a small write within seconds, without a WAL segment filling.
#[tokio::test]
async fn postgresql_parameters_are_honoured_over_cnpg_defaults_and_archive_timeout_ships_wal() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-params").await;
    let a = Member {
        name: "pg-params-a",
        region: "eu-central",
    };
    let b = Member {
        name: "pg-params-b",
        region: "eu-western",
    };
    let members = [a, b];
    let api_a = testkit::clusters(lab, a.region, ns.name()).await;
    let api_b = testkit::clusters(lab, b.region, ns.name()).await;
    // Archive only (no connectionParameters): B follows A through A's object store alone.
    let mut primary = testkit::blog_cluster(ns.name(), a.name, a.name, b.name, &members, false);
    primary.spec.other.insert(
        "postgresql".into(),
        serde_json::json!({"parameters": {
            "archive_timeout": "1s",
            "work_mem": "7MB",
            // Fixed: CNPG's own value stands.
            "port": "1",
        }}),
    );
    testkit::create(&api_a, &primary).await;
    testkit::wait_cluster(&api_a, a.name, "A healthy", testkit::healthy).await;
    let on_a = testkit::connect(lab, a.region, ns.name(), a.name).await;
    assert_eq!(show(&on_a, "archive_timeout").await, "1s");
    assert_eq!(show(&on_a, "work_mem").await, "7MB");
    assert_ne!(show(&on_a, "port").await, "1");
    on_a.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .expect("writes on A");

    testkit::create(
        &api_b,
        &testkit::blog_cluster(ns.name(), b.name, a.name, a.name, &members, false),
    )
    .await;
    testkit::wait_cluster(&api_b, b.name, "B healthy as a replica", testkit::healthy).await;
    let on_b = testkit::connect(lab, b.region, ns.name(), b.name).await;
    assert_eq!(
        show(&on_b, "archive_timeout").await,
        "5min",
        "CNPG's default"
    );
    assert_eq!(show(&on_b, "primary_conninfo").await, "", "archive only");

    // A few bytes of WAL, far from filling a 16 MB segment: only the timeout ships them.
    on_a.batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("writes on A");
    testkit::wait_rows(lab, b.region, ns.name(), b.name, &[1, 2]).await;
    testkit::delete_all(lab, ns.name(), &members).await;
}

/// `bootstrap.initdb.database/owner` as CNPG creates them: the named database owned by the named
/// login role; CNPG's defaults (`app`, owned by `app`) when the Cluster names none.
#[tokio::test]
async fn initdb_creates_the_application_database_and_its_owner() {
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-initdb").await;
    let named = Member {
        name: "pg-initdb-named",
        region: "eu-central",
    };
    let plain = Member {
        name: "pg-initdb-plain",
        region: "eu-central",
    };
    let api = testkit::clusters(lab, named.region, ns.name()).await;
    let mut with_names = testkit::blog_cluster(
        ns.name(),
        named.name,
        named.name,
        named.name,
        &[named],
        false,
    );
    with_names
        .spec
        .bootstrap
        .as_mut()
        .expect("bootstrap")
        .initdb = Some(serde_json::json!({"database": "orders", "owner": "shop"}));
    let mut without = testkit::blog_cluster(
        ns.name(),
        plain.name,
        plain.name,
        plain.name,
        &[plain],
        false,
    );
    without.spec.bootstrap = None;
    testkit::create(&api, &with_names).await;
    testkit::create(&api, &without).await;
    for (member, database, owner) in [(named, "orders", "shop"), (plain, "app", "app")] {
        testkit::wait_cluster(&api, member.name, "healthy", testkit::healthy).await;
        let client = testkit::connect(lab, member.region, ns.name(), member.name).await;
        let row = client
            .query_one(
                "SELECT pg_get_userbyid(d.datdba)::text, r.rolcanlogin \
                 FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
                &[&database],
            )
            .await
            .unwrap_or_else(|e| panic!("{}: database {database} missing: {e}", member.name));
        assert_eq!(row.get::<_, String>(0), owner, "{}", member.name);
        assert!(row.get::<_, bool>(1), "{owner} must be able to log in");
    }
    testkit::delete_all(lab, ns.name(), &[named, plain]).await;
}

/// The `ContinuousArchiving` condition as CNPG's WAL archiver reports it
/// (`getContinuousArchivingCondition`): `True`/`ContinuousArchivingSuccess` once WAL is archived,
/// `False`/`ContinuousArchivingFailing` while the object store refuses it, `True` again once it
/// accepts it (real CNPG in `docs/lab-real.md`'s fidelity table).
#[tokio::test]
async fn continuous_archiving_says_whether_wal_reaches_the_object_store() {
    if !running_as_root() {
        eprintln!("not root: the archive directory cannot be made unwritable for postgres");
        return;
    }
    let lab = testkit::lab_with_emulators().await;
    let ns = TestNamespace::create("emulator-archiving").await;
    let a = Member {
        name: "pg-arch-a",
        region: "eu-central",
    };
    let api = testkit::clusters(lab, a.region, ns.name()).await;
    let cluster = testkit::blog_cluster(ns.name(), a.name, a.name, a.name, &[a], false);
    testkit::create(&api, &cluster).await;
    testkit::wait_cluster(&api, a.name, "A healthy", testkit::healthy).await;
    let on_a = testkit::connect(lab, a.region, ns.name(), a.name).await;
    let archiving = |want: &'static str, reason: &'static str| {
        move |c: &topology::cnpg::Cluster| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|x| {
                    x.type_ == "ContinuousArchiving" && x.status == want && x.reason == reason
                })
            })
        }
    };
    let switch = || async {
        on_a.batch_execute("CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)")
            .await
            .expect("a write");
        on_a.batch_execute("SELECT pg_switch_wal()")
            .await
            .expect("a WAL switch");
    };
    switch().await;
    testkit::wait_cluster(
        &api,
        a.name,
        "archiving working",
        archiving("True", "ContinuousArchivingSuccess"),
    )
    .await;

    let store = EmulatorLayout::new(lab.layout.root()).object_store(&format!(
        "s3://{}-{}/",
        a.name,
        ns.name()
    ));
    assert!(store.is_dir(), "{}", store.display());
    chmod(&store, 0o500);
    switch().await;
    let failing = testkit::wait_cluster(
        &api,
        a.name,
        "archiving failing",
        archiving("False", "ContinuousArchivingFailing"),
    )
    .await;
    let message = failing
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "ContinuousArchiving")
        })
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("WAL archiver"), "{message}");
    chmod(&store, 0o700);
    switch().await;
    testkit::wait_cluster(
        &api,
        a.name,
        "archiving working again",
        archiving("True", "ContinuousArchivingSuccess"),
    )
    .await;
    testkit::delete_all(lab, ns.name(), &[a]).await;
}
