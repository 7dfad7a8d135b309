//! The server side of the error store (SPEC §7): the ingestion pipeline that batches
//! reports into one commit and spools them while the database is down, the alert webhook
//! client, and forwarding to Sentry. The rules (scrubbing, grouping, alert decisions) are
//! in `boxoffice_core::error_store`; the Sentry wire format is in `crate::sentry`.

pub mod alerts;
pub mod forward;
pub mod pipeline;
pub mod spool;

pub use pipeline::{Accepted, ErrorPipeline, PipelineWriter, Refused};
pub use spool::Spool;
