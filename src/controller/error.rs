//! Errors of the controller layer. Azure errors that the reconciler can explain become
//! conditions (not errors); what remains here is Kubernetes API trouble and the finalizer's
//! "not done yet" signal.

use std::time::Duration;

use crate::azure::ArmError;

/// A reconcile error. `error_policy` picks the delay from its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API error")]
    Kube(#[source] kube::Error),
    /// Reading or writing a Secret failed.
    #[error("Secret access failed")]
    Secret(#[source] crate::controller::secrets::SecretError),
    /// An ARM call failed outside the planned steps (e.g. listKeys for the connection Secret).
    #[error("Azure call failed")]
    Arm(#[source] ArmError),
    /// Serializing an object failed.
    #[error("cannot serialize an object")]
    Serialize(#[source] serde_json::Error),
    /// A namespaced kind without a namespace (cannot happen for objects from the API server).
    #[error("object has no namespace or uid")]
    MissingNamespace,
    /// A deletion is still in progress in Azure: requeue after this long (not a failure).
    #[error("deletion in progress; checking again in {0:?}")]
    InProgress(Duration),
    /// Adding or removing the finalizer, or the wrapped reconcile, failed.
    #[error("finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The requeue delay of an in-progress deletion, looking through the finalizer wrapper.
    pub fn in_progress(&self) -> Option<Duration> {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::InProgress(d) => Some(*d),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.in_progress(),
                _ => None,
            },
            _ => None,
        }
    }

    /// True for the "not done yet" signal.
    pub fn is_in_progress(&self) -> bool {
        self.in_progress().is_some()
    }

    /// Low-cardinality metric label.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(_) | Error::Secret(_) => "kube",
            Error::Arm(e) => e.metric_label(),
            Error::Serialize(_) => "serialize",
            Error::MissingNamespace => "invalid_object",
            Error::InProgress(_) => "in_progress",
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
        }
    }

    /// How long to wait before retrying.
    pub fn retry_delay(&self) -> Duration {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::InProgress(d) => *d,
            Error::Arm(e) => e.retry_after().unwrap_or(Duration::from_secs(15)),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.retry_delay(),
                _ => Duration::from_secs(5),
            },
            Error::MissingNamespace => Duration::from_secs(300),
            _ => Duration::from_secs(5),
        }
    }
}

/// An error and its sources on one line (`a: b: c`), for conditions and logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
