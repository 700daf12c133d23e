//! What the real tier runs, found where `make deps-real` (`hack/install-deps.sh --real`) caches
//! it. `lab up --cnpg real` builds nothing: a missing piece fails with the piece and the command
//! that makes it. Versions are read from the build scripts' defaults (embedded at compile time)
//! or the same environment variables the scripts honour, so each version is one variable.

use std::path::{Path, PathBuf};

use crate::lab::error::{LabError, Result};

const BUILD_KUBE: &str = include_str!("../../../../hack/build-kube.sh");
const BUILD_COREDNS: &str = include_str!("../../../../hack/build-coredns.sh");
const BUILD_CNPG: &str = include_str!("../../../../hack/build-cnpg.sh");
const BUILD_IMAGES: &str = include_str!("../../../../hack/build-real-images.sh");
const INSTALL_MOTO: &str = include_str!("../../../../hack/install-moto.sh");

/// Host programs the tier needs (Debian packages `containerd`, `runc`, `iproute2`,
/// `util-linux`, `iptables`, `containernetworking-plugins`).
const HOST_PROGRAMS: [&str; 6] = ["containerd", "runc", "ctr", "ip", "nsenter", "iptables"];
/// Where Debian's `containernetworking-plugins` installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The value `NAME="${ENV:-default}"` or `NAME=default` gives in `script`, with `ENV` from the
/// environment taking precedence as in the script.
fn script_default(script: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let line = script.lines().find(|l| l.starts_with(&prefix))?;
    let value = line[prefix.len()..].trim().trim_matches('"');
    if let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        let (env, default) = inner.split_once(":-")?;
        if let Some(set) = std::env::var_os(env).filter(|v| !v.is_empty()) {
            return Some(set.to_string_lossy().into_owned());
        }
        return Some(default.to_owned());
    }
    Some(value.to_owned())
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("FEDERATOR_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/federator")
}

/// Everything found, with versions.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub kube_version: String,
    pub kubelet: PathBuf,
    pub controller_manager: PathBuf,
    pub scheduler: PathBuf,
    pub kube_proxy: PathBuf,
    pub coredns: PathBuf,
    pub cnpg_version: String,
    /// CNPG's release manifest (`cnpg-<version>.yaml`).
    pub cnpg_manifest: PathBuf,
    pub images: Vec<Image>,
    /// The reference of the PostgreSQL image: the operator's default image.
    pub postgres_image: String,
    /// The reference of the pod sandbox image (containerd's `sandbox_image`).
    pub pause_image: String,
    /// The lab's `federator-lab-netns-proxy`, built next to the running binary.
    pub netns_proxy: PathBuf,
    /// The python of moto's virtualenv (the S3 endpoint of the WAL-archive channel).
    pub moto_python: PathBuf,
}

impl Artifacts {
    /// The images a region's node needs: all of them in a member region; only the sandbox image
    /// on the hub, which runs no CloudNativePG (Federator's image is imported by whoever installs
    /// it, docs/install.md).
    pub fn images_for(&self, region: &super::plan::RegionPlan) -> Vec<Image> {
        self.images
            .iter()
            .filter(|i| !region.is_hub() || i.reference == self.pause_image)
            .cloned()
            .collect()
    }
}

/// An OCI archive and the reference it is imported as.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
    pub archive: PathBuf,
}

impl Image {
    /// The reference without its tag (`ctr image import --base-name`).
    pub fn base_name(&self) -> &str {
        self.reference
            .rsplit_once(':')
            .map_or(self.reference.as_str(), |(base, _)| base)
    }
}

fn missing(what: &str, path: &Path) -> LabError {
    LabError::Config(format!(
        "the real tier needs {what} at {}; build it with `make deps-real` \
         (hack/install-deps.sh --real, cached by version)",
        path.display()
    ))
}

fn file(what: &str, path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(what, &path))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(program).is_file())
}

/// Checks the host (root, programs, CNI plugins) and finds every cached piece.
pub fn find() -> Result<Artifacts> {
    if !rustix::process::geteuid().is_root() {
        return Err(LabError::Config(
            "the real tier needs root (network namespaces, cgroups, containerd)".into(),
        ));
    }
    let absent: Vec<&str> = HOST_PROGRAMS.into_iter().filter(|p| !on_path(p)).collect();
    if !absent.is_empty() {
        return Err(LabError::Config(format!(
            "the real tier needs {} on PATH; install them with `make deps-real`",
            absent.join(", ")
        )));
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        file(
            &format!("the CNI plugin {plugin}"),
            Path::new(CNI_BIN_DIR).join(plugin),
        )?;
    }
    let script_value = |script: &str, name: &str| {
        script_default(script, name).ok_or_else(|| {
            LabError::Config(format!("cannot read {name} from the embedded build script"))
        })
    };
    let cache = cache_root();
    let kube_version = script_value(BUILD_KUBE, "VERSION")?;
    let kube = cache.join(&kube_version);
    let coredns_version = script_value(BUILD_COREDNS, "VERSION")?;
    let cnpg_version = script_value(BUILD_CNPG, "VERSION")?;
    let cnpg = cache.join(format!("cnpg-{cnpg_version}"));
    let recipe = script_value(BUILD_IMAGES, "RECIPE")?;
    let suite = script_value(BUILD_IMAGES, "SUITE")?;
    let pg_major = script_value(BUILD_IMAGES, "PG_MAJOR")?;
    let images_dir = cache.join("images");
    let moto = cache.join(format!("moto-{}", script_value(INSTALL_MOTO, "VERSION")?));
    if !moto.join(".complete").is_file() {
        return Err(missing("moto (the S3 endpoint)", &moto));
    }

    let pg_archive = images_dir.join(format!("postgresql-{pg_major}-{suite}-r{recipe}.oci.tar"));
    let pg_archive = file("the PostgreSQL image", pg_archive)?;
    let tag_file = PathBuf::from(format!("{}.tag", pg_archive.display()));
    let pg_tag = std::fs::read_to_string(&tag_file)
        .map_err(|_| missing("the PostgreSQL image's tag", &tag_file))?;
    let postgres_image = format!("localhost/postgresql:{}", pg_tag.trim());
    let pause_image = format!("localhost/pause:lab-r{recipe}");
    let images = vec![
        Image {
            reference: postgres_image.clone(),
            archive: pg_archive,
        },
        Image {
            reference: pause_image.clone(),
            archive: file(
                "the pause image",
                images_dir.join(format!("pause-r{recipe}.oci.tar")),
            )?,
        },
        Image {
            reference: format!("ghcr.io/cloudnative-pg/cloudnative-pg:{cnpg_version}"),
            archive: file(
                "the CloudNativePG operator image",
                images_dir.join(format!("cnpg-operator-{cnpg_version}-r{recipe}.oci.tar")),
            )?,
        },
    ];
    let netns_proxy = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            // Test binaries live in target/<profile>/deps/, the lab's binaries one level up.
            let dir = exe.parent()?;
            [dir, dir.parent()?]
                .into_iter()
                .map(|d| d.join("federator-lab-netns-proxy"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            LabError::Config(
                "federator-lab-netns-proxy is not built next to this binary; run \
                 `cargo build -p federator-e2e --bins`"
                    .into(),
            )
        })?;
    Ok(Artifacts {
        kubelet: file("kubelet", kube.join("kubelet"))?,
        controller_manager: file(
            "kube-controller-manager",
            kube.join("kube-controller-manager"),
        )?,
        scheduler: file("kube-scheduler", kube.join("kube-scheduler"))?,
        kube_proxy: file("kube-proxy", kube.join("kube-proxy"))?,
        kube_version,
        coredns: file(
            "CoreDNS",
            cache.join(format!("coredns-{coredns_version}/coredns")),
        )?,
        cnpg_manifest: file(
            "CloudNativePG's release manifest",
            cnpg.join(format!("cnpg-{cnpg_version}.yaml")),
        )?,
        cnpg_version,
        images,
        postgres_image,
        pause_image,
        netns_proxy,
        moto_python: moto.join("bin/python"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_build_scripts() {
        assert!(
            script_default(BUILD_KUBE, "VERSION")
                .unwrap()
                .starts_with("v1.")
        );
        let cnpg = script_default(BUILD_CNPG, "VERSION").unwrap();
        assert!(cnpg.starts_with("1."), "{cnpg}");
        assert!(script_default(BUILD_IMAGES, "RECIPE").is_some());
        assert_eq!(
            script_default("X=\"${NO_SUCH_LAB_VAR_SET:-7}\"\n", "X").as_deref(),
            Some("7")
        );
    }

    #[test]
    fn an_image_base_name_drops_the_tag_only() {
        let image = Image {
            reference: "localhost/postgresql:15.20".into(),
            archive: PathBuf::new(),
        };
        assert_eq!(image.base_name(), "localhost/postgresql");
    }
}
