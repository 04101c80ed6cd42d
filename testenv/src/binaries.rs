//! Where the Go-built binaries are, and which versions they are.
//!
//! The versions are the ones the wrapper Go modules in `testenv/go/*/go.mod` pin; they are read at
//! compile time so the cache key computed here always matches the one
//! `testenv/scripts/build-binaries.sh` builds into.

use std::path::{Path, PathBuf};

use crate::Error;

/// Environment variable naming the directory that holds the binaries (set by `make test`).
pub const BIN_ENV: &str = "AZUREML_ATTACH_TESTENV_BIN";

const K8S_GO_MOD: &str = include_str!("../go/k8s/go.mod");
const ETCD_GO_MOD: &str = include_str!("../go/etcd/go.mod");
const HELM_GO_MOD: &str = include_str!("../go/helm/go.mod");

/// Binaries needed to start the control plane; kubectl and helm are only needed by their helpers.
const REQUIRED: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

/// The versions of the binaries, as pinned by the wrapper Go modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// `k8s.io/kubernetes`, e.g. `v1.36.3`.
    pub kubernetes: String,
    /// `go.etcd.io/etcd/server/v3`, e.g. `v3.6.16`.
    pub etcd: String,
    /// `helm.sh/helm/v3`, e.g. `v3.19.5`.
    pub helm: String,
}

impl Versions {
    /// The versions pinned in this checkout's `testenv/go/*/go.mod`.
    pub fn pinned() -> Versions {
        Versions {
            kubernetes: required_version(K8S_GO_MOD, "k8s.io/kubernetes")
                .unwrap_or("unknown")
                .into(),
            etcd: required_version(ETCD_GO_MOD, "go.etcd.io/etcd/server/v3")
                .unwrap_or("unknown")
                .into(),
            helm: required_version(HELM_GO_MOD, "helm.sh/helm/v3")
                .unwrap_or("unknown")
                .into(),
        }
    }

    /// The cache directory name, identical to the build script's.
    pub fn cache_key(&self) -> String {
        format!(
            "testenv-k8s-{}-etcd-{}-helm-{}",
            self.kubernetes, self.etcd, self.helm
        )
    }
}

/// The version `go_mod` requires of `module`: the first line whose first word (after an optional
/// `require`) is the module path. Same rule as the build script's `modver`.
fn required_version<'a>(go_mod: &'a str, module: &str) -> Option<&'a str> {
    go_mod.lines().find_map(|line| {
        let mut words = line.split_whitespace().peekable();
        if words.peek() == Some(&"require") {
            words.next();
        }
        if words.next()? == module {
            words.next()
        } else {
            None
        }
    })
}

/// The directory the build script fills: `$AZUREML_ATTACH_CACHE`, else
/// `$XDG_CACHE_HOME/azureml-attach`, else `~/.cache/azureml-attach`, plus the version key.
pub fn default_bin_dir(versions: &Versions) -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = var("AZUREML_ATTACH_CACHE").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|home| home.join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("azureml-attach")
    });
    cache.join(versions.cache_key())
}

/// The binary directory to use: [`BIN_ENV`] if set, else [`default_bin_dir`]. Fails, naming
/// `make testenv`, when a binary the control plane needs is missing.
pub fn locate(versions: &Versions) -> Result<PathBuf, Error> {
    let dir = std::env::var_os(BIN_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| default_bin_dir(versions));
    let missing = missing_binaries(&dir);
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(Error::BinariesMissing {
            dir,
            missing: missing.join(", "),
        })
    }
}

fn missing_binaries(dir: &Path) -> Vec<&'static str> {
    REQUIRED
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_require_lines_in_both_forms() {
        let go_mod = "module x\n\nreplace (\n\tk8s.io/api => k8s.io/api v0.36.3\n)\n\n\
                      require k8s.io/kubernetes v1.36.3\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.16\n)\n";
        assert_eq!(
            required_version(go_mod, "k8s.io/kubernetes"),
            Some("v1.36.3")
        );
        assert_eq!(
            required_version(go_mod, "go.etcd.io/etcd/server/v3"),
            Some("v3.6.16")
        );
        assert_eq!(required_version(go_mod, "helm.sh/helm/v3"), None);
    }

    #[test]
    fn pinned_versions_come_from_the_wrapper_modules() {
        let v = Versions::pinned();
        assert!(v.kubernetes.starts_with("v1."), "{v:?}");
        assert!(v.etcd.starts_with("v3."), "{v:?}");
        assert!(v.helm.starts_with("v3."), "{v:?}");
        assert_eq!(
            v.cache_key(),
            format!(
                "testenv-k8s-{}-etcd-{}-helm-{}",
                v.kubernetes, v.etcd, v.helm
            )
        );
    }
}
