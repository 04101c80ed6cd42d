//! Custom resource types: `MLWorkspace` and the compute target kinds.

pub mod common;
pub mod remote_vm;

pub use common::*;
pub use remote_vm::RemoteVmTarget;
