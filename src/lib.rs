//! azureml-attach: a Kubernetes operator that attaches existing Azure compute to Azure ML
//! workspaces as compute targets.

pub mod api;
pub mod azure;
pub mod controller;
pub mod import;
pub mod ops;
