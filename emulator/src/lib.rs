//! Azure ML emulator: a wire-faithful stand-in for the Azure Resource Manager computes API of
//! `Microsoft.MachineLearningServices` and for Microsoft Entra ID's token endpoint, served over
//! HTTPS with a CA it generates. See `emulator/README.md` for the contract.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let emu = azureml_emulator::spawn(azureml_emulator::EmulatorConfig::fast()).await?;
//! let control = emu.control()?;
//! let state = control.state().await?;
//! assert!(state.computes.is_empty());
//! # Ok(()) }
//! ```

pub mod app;
pub mod arm;
pub mod client;
pub mod compute;
pub mod config;
pub mod control;
pub mod entra;
pub mod faults;
pub mod response;
pub mod server;
pub mod state;
pub mod throttle;
pub mod tls;
pub mod underlying;
pub mod validate;

pub use client::{ClientError, ControlClient, https_client};
pub use config::{
    ClusterExtension, EmulatorConfig, ImageReference, Settings, SettingsPatch, WorldResource,
};
pub use control::{ComputeView, RequestsView, ResourceView, StateView};
pub use faults::FaultSpec;
pub use server::{EmulatorHandle, SpawnError, spawn, spawn_detached};
