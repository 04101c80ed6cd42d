//! Kubernetes test environment (placeholder; being built).
