//! Azure ML emulator (placeholder; being built).
