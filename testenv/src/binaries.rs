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
const PROMTOOL_GO_MOD: &str = include_str!("../go/promtool/go.mod");

/// Environment variable naming the `promtool` binary itself (overrides the cache lookup).
pub const PROMTOOL_ENV: &str = "AZUREML_ATTACH_PROMTOOL";

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

fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The build script's cache root: `$AZUREML_ATTACH_CACHE`, else `$XDG_CACHE_HOME/azureml-attach`,
/// else `~/.cache/azureml-attach`.
fn cache_root() -> PathBuf {
    var("AZUREML_ATTACH_CACHE").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|home| home.join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("azureml-attach")
    })
}

/// The directory the build script fills: the cache root plus the version key.
pub fn default_bin_dir(versions: &Versions) -> PathBuf {
    cache_root().join(versions.cache_key())
}

/// The binary directory to use: [`BIN_ENV`] if set, else [`default_bin_dir`]. Fails, naming
/// `make testenv`, when a binary the control plane needs is missing.
pub fn locate(versions: &Versions) -> Result<PathBuf, Error> {
    let dir = var(BIN_ENV).unwrap_or_else(|| default_bin_dir(versions));
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

/// `github.com/prometheus/prometheus` as pinned by `testenv/go/promtool/go.mod`, e.g. `v0.316.0`
/// (Prometheus 3.16.0).
pub fn prometheus_version() -> &'static str {
    required_version(PROMTOOL_GO_MOD, "github.com/prometheus/prometheus").unwrap_or("unknown")
}

/// The directory the build script puts `promtool` in, next to the control-plane directory and
/// keyed by its own version (so pinning another Prometheus never rebuilds Kubernetes).
pub fn promtool_cache_key() -> String {
    format!("testenv-prometheus-{}", prometheus_version())
}

/// The `promtool` built by `make testenv`: [`PROMTOOL_ENV`] if set; else next to the directory
/// [`BIN_ENV`] names (`make test` sets it to the script's output); else in the default cache.
pub fn promtool() -> Result<PathBuf, Error> {
    let mut candidates = Vec::new();
    if let Some(file) = var(PROMTOOL_ENV) {
        candidates.push(file);
    } else {
        if let Some(parent) = var(BIN_ENV).as_deref().and_then(Path::parent) {
            candidates.push(parent.join(promtool_cache_key()).join("promtool"));
        }
        candidates.push(cache_root().join(promtool_cache_key()).join("promtool"));
    }
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(Error::PromtoolMissing {
            searched: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
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
    fn promtool_is_keyed_by_the_pinned_prometheus_module() {
        assert!(
            prometheus_version().starts_with("v0.3"),
            "{}",
            prometheus_version()
        );
        assert_eq!(
            promtool_cache_key(),
            format!("testenv-prometheus-{}", prometheus_version())
        );
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
