//! The domain of boxoffice: identifiers, money, time, the catalog, holds, orders, payments,
//! webhooks, the error store, mail, and the [`Store`] contract that the storage engine
//! implements.
//!
//! Nothing here knows about HTTP or SQL. Values that cross this crate's API are parsed
//! newtypes (ids, currencies, quantities, e-mail addresses), so a handler cannot hand the
//! store an unchecked string or integer.
//!
//! Decide here, apply in the store: every rule about what a change does (which holds fit,
//! what a Stripe event does to an order, what a repeated idempotency key means, what a
//! batch of error reports does to its group) is a pure function in the concept's module
//! (`holds`, `orders`, `payments`, `error_store::batch`), unit-tested without a database.
//! A store method locks and loads what the rule needs, asks it, and writes the plan it
//! returns in the transaction it owns. The use cases that combine rules, storage and the
//! payment provider live on [`BoxOffice`] (`service/`, one module per concept).

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
