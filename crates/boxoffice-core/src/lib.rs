//! The domain of boxoffice: identifiers, money, time, organizations, events, holds and the
//! [`Store`] contract that every storage engine implements.
//!
//! Nothing here knows about HTTP or SQL. Values that cross this crate's API are parsed
//! newtypes (ids, currencies, quantities, e-mail addresses), so a handler cannot hand the
//! store an unchecked string or integer. The use cases that combine rules and storage live
//! on [`BoxOffice`].

pub mod auth;
pub mod catalog;
pub mod clock;
pub mod error_store;
pub mod failures;
pub mod faults;
pub mod holds;
pub mod idempotency;
pub mod ids;
pub mod jobs;
pub mod mail;
pub mod money;
pub mod orders;
pub mod organizations;
pub mod payments;
pub mod service;
pub mod store;
pub mod tickets;
pub mod webhooks;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use service::{BoxOffice, Settings};
pub use store::{Page, PageRequest, Store, StoreError};
