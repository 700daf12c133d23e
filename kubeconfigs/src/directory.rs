//! Member credentials from a directory of kubeconfig files: one file per member, named
//! `<member>`, `<member>.kubeconfig`, `<member>.yaml` or `<member>.yml`; each file's current
//! context is used. Hidden entries (`.x`, and the `..data` links of a mounted Secret volume) and
//! subdirectories are skipped.
//!
//! One file per member (rather than one context per member in a shared file) so a member maps to
//! exactly one file: a change to the file reloads exactly that member, and a directory mounted
//! from a Secret (one key per member) has this shape already.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::credential::MemberCredential;
use crate::error::{CredentialError, Result};
use crate::kubeconfig::{self, Rules, Trust};
use crate::origin::Origin;

const EXTENSIONS: [&str; 3] = [".kubeconfig", ".yaml", ".yml"];

/// What a cheap `stat` of the directory sees: name, size, mtime and inode of every candidate
/// file (following symlinks, so the atomic `..data` swap of a Secret volume shows). Equal
/// fingerprints mean there is nothing to re-read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, u64, i64, i64, u64)>);

/// The result of reading the directory: per file, a credential or why there is none.
#[derive(Debug)]
pub struct DirectoryLoad {
    pub fingerprint: Fingerprint,
    pub results: Vec<Result<MemberCredential>>,
}

/// Is `name` a DNS-1123 label (what Kubernetes object names and member names are)?
pub fn is_member_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The member a file name stands for, before validation.
fn member_of(file_name: &str) -> &str {
    EXTENSIONS
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))
        .unwrap_or(file_name)
}

/// Candidate files, sorted by name.
fn candidates(dir: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let entries = std::fs::read_dir(dir).map_err(CredentialError::io("listing", dir))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(CredentialError::io("listing", dir))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // A dangling symlink is a file being replaced or removed; the next look sees the result.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_file() {
            files.push((path, metadata));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Stats the directory and its candidate files; reads no content.
pub fn fingerprint(dir: &Path) -> Result<Fingerprint> {
    Ok(Fingerprint(
        candidates(dir)?
            .into_iter()
            .map(|(path, m)| (path, m.size(), m.mtime(), m.mtime_nsec(), m.ino()))
            .collect(),
    ))
}

/// Reads every member kubeconfig in `dir`. Fails as a whole only when the directory cannot be
/// listed; a bad file is one `Err` among the results.
pub async fn load(dir: &Path, trust: Trust) -> Result<DirectoryLoad> {
    // Fingerprint first: a file changed while we read is seen as changed on the next look.
    let fingerprint = fingerprint(dir)?;
    let mut results = Vec::new();
    for (path, size, ..) in &fingerprint.0 {
        results.push(load_file(path, *size, trust).await);
    }
    Ok(DirectoryLoad {
        fingerprint,
        results,
    })
}

async fn load_file(path: &Path, size: u64, trust: Trust) -> Result<MemberCredential> {
    let origin = Origin::File(path.to_path_buf());
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let member = member_of(&file_name);
    if !is_member_name(member) {
        return Err(CredentialError::Invalid {
            member: None,
            origin,
            message: format!(
                "{member:?} is not a member name (a DNS-1123 label); name the file \
                 <member>, <member>.kubeconfig, <member>.yaml or <member>.yml"
            ),
        });
    }
    kubeconfig::check_size(
        usize::try_from(size).unwrap_or(usize::MAX),
        Some(member),
        &origin,
        "the file",
    )?;
    let bytes = std::fs::read(path).map_err(CredentialError::io("reading kubeconfig", path))?;
    kubeconfig::check_size(bytes.len(), Some(member), &origin, "the file")?;
    let parsed = kubeconfig::read(path, member, &origin)?;
    let rules = Rules::for_file(trust);
    let revision = kubeconfig::revision(&[path.as_os_str().as_encoded_bytes(), &bytes]);
    kubeconfig::credential(parsed, member, origin, rules, revision).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeconfig::tests::{TOKEN, kubeconfig_with_user, token_kubeconfig};

    #[test]
    fn member_names_are_dns_labels() {
        assert!(is_member_name("eu-central"));
        for bad in ["", "-a", "a-", "Eu", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_member_name(bad), "{bad:?}");
        }
        assert_eq!(member_of("eu-south.kubeconfig"), "eu-south");
        assert_eq!(member_of("eu-south.yaml"), "eu-south");
        assert_eq!(member_of("eu-south"), "eu-south");
    }

    #[tokio::test]
    async fn each_file_is_one_member_and_bad_files_do_not_hide_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("eu-central.kubeconfig"), token_kubeconfig()).unwrap();
        std::fs::write(dir.path().join("eu-western"), token_kubeconfig()).unwrap();
        std::fs::write(dir.path().join("Not_A_Member.yaml"), token_kubeconfig()).unwrap();
        std::fs::write(dir.path().join(".hidden"), "garbage").unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        let exec = kubeconfig_with_user("    exec:\n      command: gke-gcloud-auth-plugin\n");
        std::fs::write(dir.path().join("eu-south.yml"), exec).unwrap();

        let loaded = load(dir.path(), Trust::default()).await.unwrap();
        let ok: Vec<_> = loaded.results.iter().flatten().map(|c| c.name()).collect();
        assert_eq!(ok, ["eu-central", "eu-western"]);
        let errors: Vec<_> = loaded
            .results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("Not_A_Member"), "{errors:?}");
        assert!(errors[1].contains("eu-south.yml") && errors[1].contains("users[0].user.exec"));
        assert!(!format!("{loaded:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn the_fingerprint_changes_when_a_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eu-central");
        std::fs::write(&path, token_kubeconfig()).unwrap();
        let before = fingerprint(dir.path()).unwrap();
        assert_eq!(before, fingerprint(dir.path()).unwrap());
        // Replace atomically, as a Secret volume or an editor does: new inode, same size.
        let tmp = dir.path().join(".tmp");
        std::fs::write(&tmp, token_kubeconfig().replace("0123", "4567")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_ne!(before, fingerprint(dir.path()).unwrap());
    }

    #[tokio::test]
    async fn relative_paths_in_a_file_resolve_against_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let text = kubeconfig_with_user("    tokenFile: token\n");
        std::fs::write(dir.path().join("eu-central"), text).unwrap();
        let loaded = load(dir.path(), Trust::default()).await.unwrap();
        let credential = loaded.results.into_iter().next().unwrap().unwrap();
        assert_eq!(credential.auth_method(), crate::AuthMethod::TokenFile);
    }
}
