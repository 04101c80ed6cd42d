//! One test per reconcile rule (DESIGN §3).
