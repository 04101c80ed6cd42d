//! Operations: metrics, the admin HTTP server (health, readiness, metrics), logging and
//! shutdown signals.

pub mod admin;
pub mod logging;
pub mod metrics;
pub mod shutdown;

pub use admin::{AdminServer, Readiness};
pub use logging::LogFormat;
pub use metrics::Metrics;
