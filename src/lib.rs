//! azureml-attach operator library (placeholder; being built).
