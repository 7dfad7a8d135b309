//! The boxoffice server: configuration, the HTTP API, background jobs and telemetry,
//! assembled around the use cases of `boxoffice-core`.
//!
//! Layout: `http/` has the JSON API, one module per resource plus the shared plumbing
//! (errors, extractors, middleware); `pages/` the server-rendered pages built on that
//! plumbing; `app` puts the two side by side in one router; `state` is what their handlers
//! share, `request_id` the id every request carries; `jobs/` the background tasks;
//! `sentry/` parses Sentry's ingestion protocol; `mail/` builds and sends buyer e-mail;
//! `startup` wires a store, the use cases, the router and the jobs into a running
//! [`startup::Server`].

pub mod app;
pub mod config;
pub mod demo;
pub mod error_store;
pub mod faults;
pub mod http;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod pages;
pub mod payments;
pub mod request_id;
pub mod sentry;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;

pub use config::ServerConfig;
pub use startup::Server;
