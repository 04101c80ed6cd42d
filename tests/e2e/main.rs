//! End-to-end tests: real kube-apiserver (testenv) + the Azure ML emulator + the operator as a
//! process under deploy/base/rbac.yaml. Test names name the rule they prove.

mod gitops;
mod harness;
mod identity;
mod import;
mod lifecycle;
mod measure;
mod memory;
mod metrics;
mod ops;
mod outage;
mod preflight;
mod rules;
mod secrets;
mod validation;

#[allow(dead_code)] // shared with tests/packaging.rs
#[path = "../common/monitoring.rs"]
mod monitoring;
