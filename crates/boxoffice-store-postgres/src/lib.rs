//! The PostgreSQL store: for production, with any number of instances on one database.
//!
//! Correctness across instances rests on row locks and conditional updates, never on
//! process-local state: capacity is a conditional `UPDATE` of a counter row, the sweeper
//! takes holds with `FOR UPDATE SKIP LOCKED`, and every transaction locks in one order
//! (holds, then ticket types by id) so instances cannot deadlock each other. Should
//! PostgreSQL still report a deadlock or serialization failure, the whole use case is
//! retried, which is safe because each runs in one transaction.
//!
//! Durability: `synchronous_commit` is forced on for our sessions, whatever the server's
//! default, so a 2xx answer means the change is on disk.

mod errors;
mod events;
mod holds;
mod jobs;
mod mail;
mod organizations;
mod payments;
mod rows;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::auth::StoredApiKey;
use boxoffice_core::catalog::{Event, EventWithTicketTypes, TicketType, TicketTypeChanges};
use boxoffice_core::error_store::reports::{
    AlertDelivery, AlertPolicy, ErrorGroup, ErrorProject, ErrorReport, GroupFilter, PendingAlert, Pruned, Recorded,
    StoredError,
};
use boxoffice_core::holds::{Hold, Placement, ReservationStats};
use boxoffice_core::ids::{ApiKeyId, EventId, HoldId, OrderId, OrganizationId, TicketTypeId};
use boxoffice_core::ids::{EmailId, ErrorGroupId};
use boxoffice_core::jobs::JobRun;
use boxoffice_core::mail::{EmailAttempt, EmailDelivery, EmailStatus, EmailToSend, QueuedEmail};
use boxoffice_core::organizations::Organization;
use boxoffice_core::payments::{Begun, IdempotencyRecord, Order, OrderPhase, ProviderIntent, StoredResponse};
use boxoffice_core::store::{
    CatalogStore, ErrorStore, HoldStore, JobLog, MailStore, PaymentStore, SettingsStore, WebhookStore,
};
use boxoffice_core::webhooks::{ApplyOutcome, EventStatus, StoredStripeEvent, StripeEvent, Ticket};
use boxoffice_core::{Page, PageRequest, StoreError, Timestamp};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::holds::ExpiryScope;

/// How often a use case is retried after a deadlock or serialization failure.
const TRANSIENT_RETRIES: usize = 5;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to a `postgres://` URL and applies pending migrations. Several instances
    /// starting at once are safe: sqlx serializes migrations with an advisory lock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::Other(Box::new(err)))?
            .application_name("boxoffice")
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(map_error)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(|err| StoreError::Other(Box::new(err)))
    }

    /// Releases expired holds of one ticket type in a transaction of its own.
    async fn release_expired(&self, ticket_type: &TicketTypeId, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let released = holds::expire(&mut tx, now, holds::RELEASE_BATCH, ExpiryScope::TicketType(ticket_type)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(released)
    }

    async fn update_ticket_type_once(
        &self,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if changes.capacity.is_some() {
            self.release_expired(id, now).await?;
        }
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        events::update_ticket_type(&mut tx, id, changes).await?;
        tx.commit().await.map_err(map_error)
    }
}

/// Whether an error means "try the whole transaction again".
fn is_transient(err: &StoreError) -> bool {
    let StoreError::Other(source) = err else { return false };
    source
        .downcast_ref::<sqlx::Error>()
        .and_then(|err| err.as_database_error())
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Whether an error is a unique-constraint violation.
fn is_unique_violation(err: &StoreError) -> bool {
    let StoreError::Other(source) = err else { return false };
    source
        .downcast_ref::<sqlx::Error>()
        .and_then(|err| err.as_database_error())
        .is_some_and(|db| db.is_unique_violation())
}

/// Runs a use case, retrying it after deadlocks and serialization failures.
macro_rules! retry_transient {
    ($body:expr) => {{
        let mut attempt = 0;
        loop {
            match $body {
                Err(err) if is_transient(&err) && attempt < TRANSIENT_RETRIES => attempt += 1,
                other => break other,
            }
        }
    }};
}

/// Maps sqlx errors onto the store's, keeping the cause.
pub(crate) fn map_error(err: sqlx::Error) -> StoreError {
    let unavailable = match &err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        // The server refuses this process's connections, for now: class 08 (connection
        // exceptions), 57P0x (shutting down, restarting, not accepting yet), 53300 (too
        // many connections), 3D000 (the database is gone, e.g. being restored), class 28
        // (credentials being rotated), and 55000, which a new connection gets while the
        // database does not allow connections (`ALTER DATABASE … ALLOW_CONNECTIONS false`,
        // maintenance). boxoffice's own statements never raise 55000.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("28")
                || matches!(code.as_ref(), "53300" | "3D000" | "55000")
        }),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(err))
    } else {
        StoreError::Other(Box::new(err))
    }
}

/// Maps a foreign-key violation to `NotFound(what)`: the referenced row does not exist.
pub(crate) fn missing_parent(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound(what),
        _ => map_error(err),
    }
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_error)?;
        Ok(())
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        organizations::get_setting(&self.pool, key).await
    }

    async fn insert_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        organizations::insert_setting_if_absent(&self.pool, key, value).await
    }
}

#[async_trait]
impl CatalogStore for PgStore {
    async fn create_organization(
        &self,
        organization: &Organization,
        error_public_key: &str,
    ) -> Result<ErrorProject, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let project = organizations::create(&mut tx, organization, error_public_key).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(project)
    }

    async fn get_organization(&self, id: &OrganizationId) -> Result<Organization, StoreError> {
        organizations::get(&self.pool, id).await
    }

    async fn count_organizations(&self) -> Result<i64, StoreError> {
        organizations::count(&self.pool).await
    }

    async fn create_api_key(&self, key: &StoredApiKey, created_at: Timestamp) -> Result<(), StoreError> {
        organizations::create_api_key(&self.pool, key, created_at).await
    }

    async fn find_api_key(&self, id: &ApiKeyId) -> Result<Option<StoredApiKey>, StoreError> {
        organizations::find_api_key(&self.pool, id).await
    }

    async fn create_event(&self, event: &Event) -> Result<(), StoreError> {
        events::create_event(&self.pool, event).await
    }

    async fn get_event(&self, id: &EventId, now: Timestamp) -> Result<EventWithTicketTypes, StoreError> {
        events::get_event(&self.pool, id, now).await
    }

    async fn list_events(
        &self,
        organization: Option<&OrganizationId>,
        page: &PageRequest<EventId>,
        now: Timestamp,
    ) -> Result<Page<EventWithTicketTypes>, StoreError> {
        events::list_events(&self.pool, organization, page, now).await
    }

    async fn create_ticket_type(&self, ticket_type: &TicketType) -> Result<(), StoreError> {
        events::create_ticket_type(&self.pool, ticket_type).await
    }

    async fn get_ticket_type(&self, id: &TicketTypeId, now: Timestamp) -> Result<TicketType, StoreError> {
        events::get_ticket_type(&self.pool, id, now).await
    }

    async fn update_ticket_type(
        &self,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
        now: Timestamp,
    ) -> Result<TicketType, StoreError> {
        retry_transient!(self.update_ticket_type_once(id, changes, now).await)?;
        events::get_ticket_type(&self.pool, id, now).await
    }
}

#[async_trait]
impl HoldStore for PgStore {
    async fn place_holds(&self, batch: &[&Hold], now: Timestamp) -> Result<Vec<Placement>, StoreError> {
        retry_transient!(holds::place_batch(&self.pool, batch, now).await)
    }

    async fn release_expired_holds(&self, ticket_type: &TicketTypeId, now: Timestamp) -> Result<u64, StoreError> {
        retry_transient!(self.release_expired(ticket_type, now).await)
    }

    async fn get_hold(&self, id: &HoldId) -> Result<Hold, StoreError> {
        holds::get(&self.pool, id).await
    }

    async fn cancel_hold(&self, id: &HoldId, now: Timestamp) -> Result<Hold, StoreError> {
        retry_transient!(
            async {
                let mut tx = self.pool.begin().await.map_err(map_error)?;
                let hold = holds::cancel(&mut tx, id, now).await?;
                tx.commit().await.map_err(map_error)?;
                Ok(hold)
            }
            .await
        )
    }

    async fn expire_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        retry_transient!(
            async {
                let mut tx = self.pool.begin().await.map_err(map_error)?;
                let expired = holds::expire(&mut tx, now, limit, ExpiryScope::Sweep).await?;
                tx.commit().await.map_err(map_error)?;
                Ok(expired)
            }
            .await
        )
    }

    async fn reservation_stats(&self, now: Timestamp) -> Result<ReservationStats, StoreError> {
        holds::stats(&self.pool, now).await
    }
}

#[async_trait]
impl JobLog for PgStore {
    async fn record_job_run(&self, run: &JobRun, keep_after: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        jobs::record(&mut tx, run, keep_after).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn list_job_runs(&self, job: &str, limit: u32) -> Result<Vec<JobRun>, StoreError> {
        jobs::list(&self.pool, job, limit).await
    }
}

#[async_trait]
impl PaymentStore for PgStore {
    async fn begin_idempotent_request(
        &self,
        record: &IdempotencyRecord,
        lock_until: Timestamp,
        now: Timestamp,
    ) -> Result<Begun, StoreError> {
        retry_transient!(
            async {
                let mut tx = self.pool.begin().await.map_err(map_error)?;
                let begun = payments::begin(&mut tx, record, lock_until, now).await?;
                tx.commit().await.map_err(map_error)?;
                Ok(begun)
            }
            .await
        )
    }

    async fn create_order_for_request(
        &self,
        scope: &str,
        key: &str,
        new_order_id: &OrderId,
        grace: Duration,
        now: Timestamp,
    ) -> Result<OrderPhase, StoreError> {
        retry_transient!(
            async {
                let mut tx = self.pool.begin().await.map_err(map_error)?;
                let phase = payments::create_order(&mut tx, scope, key, new_order_id, grace, now).await?;
                tx.commit().await.map_err(map_error)?;
                Ok(phase)
            }
            .await
        )
    }

    async fn find_idempotent_request(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        payments::find(&mut conn, scope, key).await
    }

    async fn finish_idempotent_request(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
        intent: Option<(&OrderId, &ProviderIntent)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        payments::finish(&mut tx, scope, key, response, intent, now).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn release_idempotency_lock(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        payments::release(&mut conn, scope, key).await
    }

    async fn claim_stalled_requests(
        &self,
        now: Timestamp,
        lock_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        payments::claim_stalled(&mut conn, now, lock_until, limit).await
    }

    async fn delete_idempotency_records(
        &self,
        finished_before: Timestamp,
        abandoned_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        payments::delete_old(&mut conn, finished_before, abandoned_before, limit).await
    }

    async fn get_order(&self, id: &OrderId) -> Result<Order, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        payments::get(&mut conn, id).await
    }

    async fn list_recent_orders(&self, limit: u32) -> Result<Vec<Order>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        payments::list_recent(&mut conn, limit).await
    }

    async fn order_tickets(&self, order_id: &OrderId) -> Result<Vec<Ticket>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        webhooks::tickets(&mut conn, order_id).await
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn record_webhook_event(
        &self,
        event: &StripeEvent,
        delivered: bool,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Result<(EventStatus, bool), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let recorded = webhooks::record(&mut tx, event, delivered, due_at, now).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(recorded)
    }

    async fn apply_webhook_event(&self, event_id: &str, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
        retry_transient!(
            async {
                let mut tx = self.pool.begin().await.map_err(map_error)?;
                let outcome = webhooks::apply(&mut tx, event_id, now).await?;
                tx.commit().await.map_err(map_error)?;
                Ok(outcome)
            }
            .await
        )
    }

    async fn complete_late_refund(&self, event_id: &str, order_id: &OrderId, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        webhooks::complete_late_refund(&mut tx, event_id, order_id, now).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn record_webhook_failure(&self, event_id: &str, error: &str, retry_at: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        webhooks::record_failure(&mut tx, event_id, error, retry_at).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn due_webhook_events(&self, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        webhooks::due(&mut conn, now, limit).await
    }

    async fn list_webhook_events(&self, limit: u32) -> Result<Vec<StoredStripeEvent>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        webhooks::list(&mut conn, limit).await
    }
}

#[async_trait]
impl ErrorStore for PgStore {
    async fn record_errors(&self, reports: &[ErrorReport], policy: &AlertPolicy) -> Result<Vec<Recorded>, StoreError> {
        let mut attempt = 0;
        loop {
            let recorded = async {
                let mut tx = self.pool.begin().await.map_err(map_error)?;
                let recorded = errors::record(&mut tx, reports, policy).await?;
                tx.commit().await.map_err(map_error)?;
                Ok(recorded)
            }
            .await;
            match recorded {
                // `ON CONFLICT` settles the races of groups and event ids; a unique
                // violation all the same (say, two alert ids alike) is worth another try too.
                Err(err) if attempt < TRANSIENT_RETRIES && (is_transient(&err) || is_unique_violation(&err)) => {
                    attempt += 1
                }
                other => return other,
            }
        }
    }

    async fn get_error_project(&self, organization_id: &OrganizationId) -> Result<ErrorProject, StoreError> {
        organizations::get_error_project(&self.pool, organization_id).await
    }

    async fn find_error_project(&self, project_id: i64) -> Result<Option<ErrorProject>, StoreError> {
        organizations::find_error_project(&self.pool, project_id).await
    }

    async fn claim_alerts(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<PendingAlert>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        errors::claim_alerts(&mut conn, now, lease_ms, limit).await
    }

    async fn finish_alert(&self, alert_id: &str, delivery: &AlertDelivery, now: Timestamp) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        errors::finish_alert(&mut conn, alert_id, delivery, now).await
    }

    async fn prune_errors(&self, older_than: Timestamp, per_group_cap: u32) -> Result<Pruned, StoreError> {
        errors::prune(&self.pool, older_than, per_group_cap).await
    }

    async fn list_error_groups(&self, filter: &GroupFilter, limit: u32) -> Result<Vec<ErrorGroup>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        errors::list(&mut conn, filter, limit).await
    }

    async fn get_error_group(
        &self,
        id: &ErrorGroupId,
        events: u32,
    ) -> Result<(ErrorGroup, Vec<StoredError>), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        errors::get(&mut conn, id, events).await
    }

    async fn resolve_error_group(&self, id: &ErrorGroupId, now: Timestamp) -> Result<ErrorGroup, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        errors::resolve(&mut conn, id, now).await?;
        Ok(self.get_error_group(id, 0).await?.0)
    }
}

#[async_trait]
impl MailStore for PgStore {
    async fn claim_emails(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<EmailToSend>, StoreError> {
        retry_transient!(
            async {
                let mut tx = self.pool.begin().await.map_err(map_error)?;
                let claimed = mail::claim(&mut tx, now, lease_ms, limit).await?;
                tx.commit().await.map_err(map_error)?;
                Ok(claimed)
            }
            .await
        )
    }

    async fn finish_email(&self, id: &EmailId, delivery: &EmailDelivery, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        mail::finish(&mut tx, id, delivery, now).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn list_emails(
        &self,
        status: Option<EmailStatus>,
        limit: u32,
    ) -> Result<Vec<(QueuedEmail, Vec<EmailAttempt>)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        mail::list(&mut conn, status, limit).await
    }

    async fn retry_email(&self, id: &EmailId, now: Timestamp) -> Result<QueuedEmail, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let email = mail::retry(&mut tx, id, now).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(email)
    }

    async fn email_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        mail::counts(&mut conn).await
    }
}
