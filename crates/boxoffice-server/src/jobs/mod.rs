//! Background jobs: in-process tokio tasks, stopped by a cancellation token. Each has a
//! one-step function that tests, the admin API and the CLI call directly.

pub mod sweeper;
