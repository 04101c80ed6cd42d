//! Bad manifests are refused by the API server with a readable message.
