//! The one error type of this crate.

use std::{path::PathBuf, time::Duration};

/// What can go wrong while starting or using the test control plane.
///
/// The messages are written for a person reading a failed test: each says what was being done
/// and, for start-up failures, carries the end of the relevant process log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// kube-apiserver, kube-controller-manager or etcd is not in the binary directory.
    #[error(
        "the test control plane binaries are missing from {dir} (missing: {missing}).\n\
         Build them once with `make testenv` in the repository root (a cold build takes \
         tens of minutes), or set AZUREML_ATTACH_TESTENV_BIN to a directory that holds \
         kube-apiserver, kube-controller-manager, etcd, kubectl and helm"
    )]
    BinariesMissing {
        /// The directory that was searched.
        dir: PathBuf,
        /// The missing file names, comma separated.
        missing: String,
    },

    /// `promtool` (built by `make testenv` next to the control-plane binaries) is missing.
    #[error(
        "promtool is missing (looked for {searched}).\n\
         Build it once with `make testenv` in the repository root, or set \
         AZUREML_ATTACH_PROMTOOL to a promtool binary"
    )]
    PromtoolMissing {
        /// The paths that were tried, comma separated.
        searched: String,
    },

    /// The node ([`crate::Node`]) lacks its runtime, CNI plugins or binaries.
    #[error(
        "the test node cannot start, missing: {missing}.\n\
         Run `make testenv` in the repository root: it builds kubelet, kube-scheduler and the \
         pause image, and installs containerd, runc, the CNI plugins and umoci with apt-get"
    )]
    NodeUnavailable {
        /// What is missing, comma separated.
        missing: String,
    },

    /// A local file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Generating the CA, certificates or keys failed.
    #[error("generating the test PKI: {0}")]
    Pki(#[from] rcgen::Error),

    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },

    /// A kubeconfig this crate wrote could not be loaded.
    #[error("loading kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// A control-plane process exited or never became ready.
    #[error(
        "{component} {reason}; its log {log} (kept only with AZUREML_ATTACH_TESTENV_KEEP=1) ends with:\n{tail}"
    )]
    Startup {
        /// `etcd`, `kube-apiserver` or `kube-controller-manager`.
        component: &'static str,
        /// What went wrong, e.g. "exited with exit status: 1".
        reason: String,
        /// The process log file (removed at exit unless AZUREML_ATTACH_TESTENV_KEEP=1).
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },

    /// A condition did not become true in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long was waited.
        after: Duration,
    },

    /// The API server answered something this crate cannot use.
    #[error("unexpected answer from the API server: {0}")]
    UnexpectedAnswer(String),

    /// A manifest given to [`crate::TestEnv::apply_yaml`] cannot be applied.
    #[error("invalid manifest: {0}")]
    Manifest(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube { what, source }
    }
}
