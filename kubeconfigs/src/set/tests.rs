use super::*;
use crate::kubeconfig::tests::{TOKEN, token_kubeconfig};

fn options(dir: &std::path::Path) -> CredentialOptions {
    CredentialOptions {
        directory: Some(dir.to_path_buf()),
        ..CredentialOptions::default()
    }
}

#[tokio::test]
async fn refresh_rereads_only_after_a_change_and_publishes_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eu-central"), token_kubeconfig()).unwrap();
    let set = CredentialSet::new(options(dir.path()));
    let mut changes = set.subscribe();
    assert!(set.refresh_directory().await.unwrap());
    assert!(changes.has_changed().unwrap());
    let first = changes.borrow_and_update().clone();
    assert!(first.complete, "no Secret sources: complete at once");
    let revision = first.get("eu-central").unwrap().revision();

    assert!(!set.refresh_directory().await.unwrap(), "nothing changed");
    assert!(!changes.has_changed().unwrap());

    let tmp = dir.path().join(".tmp");
    std::fs::write(&tmp, token_kubeconfig().replace("0123", "4567")).unwrap();
    std::fs::rename(&tmp, dir.path().join("eu-central")).unwrap();
    std::fs::write(dir.path().join("eu-south.kubeconfig"), token_kubeconfig()).unwrap();
    assert!(set.refresh_directory().await.unwrap());
    let second = changes.borrow_and_update().clone();
    assert_ne!(second.get("eu-central").unwrap().revision(), revision);
    assert!(second.get("eu-south").is_some());

    // A forced reload of unchanged content republishes nothing.
    set.reload_directory().await.unwrap();
    assert!(!changes.has_changed().unwrap());
}

#[tokio::test]
async fn a_vanished_directory_keeps_the_last_credentials_and_reports_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eu-central"), token_kubeconfig()).unwrap();
    let set = CredentialSet::new(options(&dir.path().join("missing")));
    assert!(set.refresh_directory().await.is_err());
    assert_eq!(set.snapshot().problems.len(), 1);

    let set = CredentialSet::new(options(dir.path()));
    set.refresh_directory().await.unwrap();
    std::fs::remove_file(dir.path().join("eu-central")).unwrap();
    std::fs::remove_dir(dir.path()).unwrap();
    assert!(set.refresh_directory().await.is_err());
    let snapshot = set.snapshot();
    assert!(snapshot.get("eu-central").is_some());
    assert!(snapshot.problems[0].to_string().contains("listing"));
}

#[tokio::test]
async fn a_member_defined_twice_is_a_conflict_and_gets_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eu-central"), token_kubeconfig()).unwrap();
    std::fs::write(dir.path().join("eu-central.yaml"), token_kubeconfig()).unwrap();
    std::fs::write(dir.path().join("eu-south"), token_kubeconfig()).unwrap();
    let set = CredentialSet::new(options(dir.path()));
    set.refresh_directory().await.unwrap();
    let snapshot = set.snapshot();
    assert_eq!(snapshot.members.keys().collect::<Vec<_>>(), ["eu-south"]);
    let conflict: Vec<_> = snapshot
        .problems_of("eu-central")
        .map(|p| p.to_string())
        .collect();
    assert_eq!(conflict.len(), 1);
    assert!(conflict[0].contains("defined twice"), "{conflict:?}");
    assert!(!format!("{set:?}").contains(TOKEN));
}

#[tokio::test]
async fn with_secret_sources_the_snapshot_is_incomplete_until_listed() {
    let set = CredentialSet::new(CredentialOptions {
        secret_namespace: Some("federator-system".into()),
        ..CredentialOptions::default()
    });
    assert!(!set.snapshot().complete);
}

#[tokio::test]
async fn sighup_rereads_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eu-central"), token_kubeconfig()).unwrap();
    let set = CredentialSet::new(options(dir.path()));
    set.reload_directory().await.unwrap();
    let mut changes = set.subscribe();
    changes.mark_unchanged();
    // Installed before the signal is sent: SIGHUP's default action would end the test process.
    let task = tokio::spawn(set.reload_on_sighup().unwrap());
    std::fs::write(dir.path().join("eu-south"), token_kubeconfig()).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reloaded = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        changes.wait_for(|s| s.get("eu-south").is_some()),
    )
    .await;
    assert!(matches!(reloaded, Ok(Ok(_))), "no reload after SIGHUP");
    task.abort();
}
