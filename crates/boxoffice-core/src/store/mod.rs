//! The storage contract: one trait per concept, and [`Store`], their sum.
//!
//! Each method is a whole use case that owns its transaction: no pool, connection or
//! transaction crosses these traits, so the rules about locking and atomicity live next to
//! the SQL that needs them. A use case that needs only holds takes a `&dyn HoldStore`;
//! `Arc<dyn Store>` upcasts to any of them. The contract test suite
//! (`boxoffice-store/tests/contract/`) runs every method against both engines.
//!
//! Every method that takes `now` treats holds with `expires_at <= now` as expired, whether
//! or not they are marked: such a hold never blocks a sale and is never counted as held.

mod catalog;
mod error_store;
mod holds;
mod jobs;
mod mail;
mod payments;
mod settings;
mod webhooks;

use std::collections::{BTreeMap, HashSet};

pub use catalog::CatalogStore;
pub use error_store::ErrorStore;
pub use holds::HoldStore;
pub use jobs::JobLog;
pub use mail::MailStore;
pub use payments::PaymentStore;
pub use settings::SettingsStore;
pub use webhooks::WebhookStore;

use crate::clock::Timestamp;
use crate::holds::{Hold, Placement};
use crate::ids::TicketTypeId;

/// A boxed error from a storage engine, kept whole for logs and the error store.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store method.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A hold could not be placed: this ticket type lacks capacity. Nothing was held.
    #[error("{ticket_type_name} is sold out")]
    SoldOut {
        /// The ticket type that lacks capacity.
        ticket_type_id: TicketTypeId,
        /// Its name, for the buyer.
        ticket_type_name: String,
    },
    /// The hold is paid and can no longer be cancelled.
    #[error("the hold is completed")]
    HoldCompleted,
    /// A capacity change would leave fewer tickets than are sold and held.
    #[error("capacity cannot go below {committed} (sold + held)")]
    CapacityBelowCommitted {
        /// Tickets sold plus tickets in unexpired holds.
        committed: i64,
    },
    /// The database cannot be reached (connection refused, pool timed out).
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else the engine reported.
    #[error("storage error")]
    Other(#[source] BoxError),
}

impl StoreError {
    /// A copy of this error for each of several callers that shared the operation that
    /// failed (a batch of holds). Sources are kept as text.
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::NotFound(what) => StoreError::NotFound(what),
            StoreError::SoldOut {
                ticket_type_id,
                ticket_type_name,
            } => StoreError::SoldOut {
                ticket_type_id: ticket_type_id.clone(),
                ticket_type_name: ticket_type_name.clone(),
            },
            StoreError::HoldCompleted => StoreError::HoldCompleted,
            StoreError::CapacityBelowCommitted { committed } => {
                StoreError::CapacityBelowCommitted { committed: *committed }
            }
            StoreError::Unavailable(source) => StoreError::Unavailable(source_text(source.as_ref()).into()),
            StoreError::Other(source) => StoreError::Other(source_text(source.as_ref()).into()),
        }
    }
}

/// An error and its causes on one line.
fn source_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Places a batch of holds and answers each one: [`HoldStore::place_holds`] first; for the
/// ticket types that came up short, releases their expired holds (each in its own
/// transaction, never inside a placing one: the lock order) and tries the short holds
/// again, at most once per ticket type. A hold still short after that is `SoldOut`.
///
/// `Err` only when the first transaction fails, and then nothing was placed. Later
/// failures answer the holds still waiting with a copy of the error; holds placed earlier
/// stay placed (they are committed).
pub async fn place_in_rounds<S: HoldStore + ?Sized>(
    store: &S,
    holds: &[&Hold],
    now: Timestamp,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut answers: Vec<Option<Result<(), StoreError>>> = holds.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..holds.len()).collect();
    let mut released: HashSet<TicketTypeId> = HashSet::new();
    let mut first_round = true;
    while !pending.is_empty() {
        let batch: Vec<&Hold> = pending.iter().map(|&i| holds[i]).collect();
        let placements = match store.place_holds(&batch, now).await {
            Ok(placements) => placements,
            Err(err) if first_round => return Err(err),
            Err(err) => {
                for &i in &pending {
                    answers[i] = Some(Err(err.duplicate()));
                }
                break;
            }
        };
        first_round = false;
        // Short holds by ticket type, in id order (releases lock in that order too).
        let mut short: BTreeMap<TicketTypeId, Vec<(usize, String)>> = BTreeMap::new();
        for (&i, placement) in pending.iter().zip(placements) {
            match placement {
                Placement::Placed => answers[i] = Some(Ok(())),
                Placement::UnknownTicketType(_) => answers[i] = Some(Err(StoreError::NotFound("ticket type"))),
                Placement::Short {
                    ticket_type_id,
                    ticket_type_name,
                } => short.entry(ticket_type_id).or_default().push((i, ticket_type_name)),
            }
        }
        let mut retry = Vec::new();
        for (ticket_type_id, waiting) in short {
            let freed = if released.insert(ticket_type_id.clone()) {
                store.release_expired_holds(&ticket_type_id, now).await
            } else {
                Ok(0)
            };
            for (i, ticket_type_name) in waiting {
                match &freed {
                    Ok(0) => {
                        answers[i] = Some(Err(StoreError::SoldOut {
                            ticket_type_id: ticket_type_id.clone(),
                            ticket_type_name,
                        }))
                    }
                    Ok(_) => retry.push(i),
                    Err(err) => answers[i] = Some(Err(err.duplicate())),
                }
            }
        }
        retry.sort_unstable();
        pending = retry;
    }
    // Every round answers or retries each of its holds, so every hold has its answer.
    Ok(answers
        .into_iter()
        .map(|answer| answer.unwrap_or(Err(StoreError::NotFound("reservation"))))
        .collect())
}

/// One page of a list request, as Stripe pages: newest first, after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<C> {
    /// At most this many (1..=500).
    pub limit: u32,
    /// Only items older than this one.
    pub starting_after: Option<C>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub data: Vec<T>,
    /// Whether more items follow the last one.
    pub has_more: bool,
}

/// The storage engine: every concept's store. Implemented by the SQLite and PostgreSQL
/// engines of `boxoffice-store`; anything that implements every concept trait is a `Store`.
pub trait Store:
    SettingsStore + CatalogStore + HoldStore + JobLog + PaymentStore + WebhookStore + ErrorStore + MailStore
{
}

impl<T> Store for T where
    T: SettingsStore + CatalogStore + HoldStore + JobLog + PaymentStore + WebhookStore + ErrorStore + MailStore
{
}
