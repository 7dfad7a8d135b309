//! The embedded SQLite store: the default engine, one file, no server.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, taking SQLite's single write lock
//! up front. sqlx's plain `begin()` is deferred: a transaction that reads and then writes
//! can fail with `SQLITE_BUSY_SNAPSHOT`, which no busy timeout retries. With the lock taken
//! first, writers queue on the busy timeout and never fail spuriously or deadlock; and
//! because writers are serialized, use cases that read and then write need no row locks.
//!
//! Writers of this process also queue on an in-process FIFO gate before `BEGIN IMMEDIATE`.
//! SQLite allows one writer at a time anyway; waiting in SQLite's busy handler means
//! polling with sleeps of up to 100 ms, which under a burst gave p99 latencies above a
//! second and no fairness. The gate hands the lock over at once, in arrival order; the
//! busy timeout still covers other processes that open the same file.
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction survives power loss.

mod errors;
mod events;
mod holds;
mod jobs;
mod mail;
mod organizations;
mod payments;
mod rows;
mod webhooks;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How long a writer waits for the write lock before giving up. Generous: under a burst,
/// writers queue here rather than fail.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    write_gate: Arc<Mutex<()>>,
}

/// A write transaction holding this process's write gate until it ends.
struct WriteTransaction {
    tx: Transaction<'static, Sqlite>,
    _gate: OwnedMutexGuard<()>,
}

impl WriteTransaction {
    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(map_error)
    }
}

impl Deref for WriteTransaction {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite://PATH` URL and applies
    /// pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| StoreError::Other(Box::new(err)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_error)?;
        let store = Self {
            pool,
            write_gate: Arc::new(Mutex::new(())),
        };
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

    /// Starts a write transaction holding the write gate and SQLite's write lock (see
    /// the module docs).
    async fn write(&self) -> Result<WriteTransaction, StoreError> {
        let gate = self.write_gate.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_error)?;
        Ok(WriteTransaction { tx, _gate: gate })
    }
}

/// Maps sqlx errors onto the store's, keeping the cause.
pub(crate) fn map_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound("row"),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(err))
        }
        // SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_BUSY_SNAPSHOT (517): another process
        // holds the database past the busy timeout (a backup, a migration by hand). This
        // process's own writers queue at the write gate and never meet these.
        sqlx::Error::Database(ref db) if db.code().is_some_and(|code| matches!(code.as_ref(), "5" | "6" | "517")) => {
            StoreError::Unavailable(Box::new(err))
        }
        other => StoreError::Other(Box::new(other)),
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
impl SettingsStore for SqliteStore {
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
impl CatalogStore for SqliteStore {
    async fn create_organization(
        &self,
        organization: &Organization,
        error_public_key: &str,
    ) -> Result<ErrorProject, StoreError> {
        let mut tx = self.write().await?;
        let project = organizations::create(&mut tx, organization, error_public_key).await?;
        tx.commit().await?;
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
        let mut tx = self.write().await?;
        events::update_ticket_type(&mut tx, id, changes, now).await?;
        tx.commit().await?;
        events::get_ticket_type(&self.pool, id, now).await
    }
}

#[async_trait]
impl HoldStore for SqliteStore {
    async fn place_holds(&self, batch: &[&Hold], now: Timestamp) -> Result<Vec<Placement>, StoreError> {
        let mut tx = self.write().await?;
        let placements = holds::place_batch(&mut tx, batch, now).await?;
        tx.commit().await?;
        Ok(placements)
    }

    async fn release_expired_holds(&self, ticket_type: &TicketTypeId, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let released = holds::expire(&mut tx, now, holds::RELEASE_BATCH, Some(ticket_type)).await?;
        tx.commit().await?;
        Ok(released)
    }

    async fn get_hold(&self, id: &HoldId) -> Result<Hold, StoreError> {
        holds::get(&self.pool, id).await
    }

    async fn cancel_hold(&self, id: &HoldId, now: Timestamp) -> Result<Hold, StoreError> {
        let mut tx = self.write().await?;
        let hold = holds::cancel(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(hold)
    }

    async fn expire_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let expired = holds::expire(&mut tx, now, limit, None).await?;
        tx.commit().await?;
        Ok(expired)
    }

    async fn reservation_stats(&self, now: Timestamp) -> Result<ReservationStats, StoreError> {
        holds::stats(&self.pool, now).await
    }
}

#[async_trait]
impl JobLog for SqliteStore {
    async fn record_job_run(&self, run: &JobRun, keep_after: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        jobs::record(&mut tx, run, keep_after).await?;
        tx.commit().await
    }

    async fn list_job_runs(&self, job: &str, limit: u32) -> Result<Vec<JobRun>, StoreError> {
        jobs::list(&self.pool, job, limit).await
    }
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn begin_idempotent_request(
        &self,
        record: &IdempotencyRecord,
        lock_until: Timestamp,
        now: Timestamp,
    ) -> Result<Begun, StoreError> {
        let mut tx = self.write().await?;
        let begun = payments::begin(&mut tx, record, lock_until, now).await?;
        tx.commit().await?;
        Ok(begun)
    }

    async fn create_order_for_request(
        &self,
        scope: &str,
        key: &str,
        new_order_id: &OrderId,
        grace: Duration,
        now: Timestamp,
    ) -> Result<OrderPhase, StoreError> {
        let mut tx = self.write().await?;
        let phase = payments::create_order(&mut tx, scope, key, new_order_id, grace, now).await?;
        tx.commit().await?;
        Ok(phase)
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
        let mut tx = self.write().await?;
        payments::finish(&mut tx, scope, key, response, intent, now).await?;
        tx.commit().await
    }

    async fn release_idempotency_lock(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        payments::release(&mut tx, scope, key).await?;
        tx.commit().await
    }

    async fn claim_stalled_requests(
        &self,
        now: Timestamp,
        lock_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let mut tx = self.write().await?;
        let claimed = payments::claim_stalled(&mut tx, now, lock_until, limit).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn delete_idempotency_records(
        &self,
        finished_before: Timestamp,
        abandoned_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let deleted = payments::delete_old(&mut tx, finished_before, abandoned_before, limit).await?;
        tx.commit().await?;
        Ok(deleted)
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
impl WebhookStore for SqliteStore {
    async fn record_webhook_event(
        &self,
        event: &StripeEvent,
        delivered: bool,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Result<(EventStatus, bool), StoreError> {
        let mut tx = self.write().await?;
        let recorded = webhooks::record(&mut tx, event, delivered, due_at, now).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn apply_webhook_event(&self, event_id: &str, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
        let mut tx = self.write().await?;
        let outcome = webhooks::apply(&mut tx, event_id, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn complete_late_refund(&self, event_id: &str, order_id: &OrderId, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        webhooks::complete_late_refund(&mut tx, event_id, order_id, now).await?;
        tx.commit().await
    }

    async fn record_webhook_failure(&self, event_id: &str, error: &str, retry_at: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        webhooks::record_failure(&mut tx, event_id, error, retry_at).await?;
        tx.commit().await
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
impl ErrorStore for SqliteStore {
    async fn record_errors(&self, reports: &[ErrorReport], policy: &AlertPolicy) -> Result<Vec<Recorded>, StoreError> {
        let mut tx = self.write().await?;
        let recorded = errors::record(&mut tx, reports, policy).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn get_error_project(&self, organization_id: &OrganizationId) -> Result<ErrorProject, StoreError> {
        organizations::get_error_project(&self.pool, organization_id).await
    }

    async fn find_error_project(&self, project_id: i64) -> Result<Option<ErrorProject>, StoreError> {
        organizations::find_error_project(&self.pool, project_id).await
    }

    async fn claim_alerts(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<PendingAlert>, StoreError> {
        let mut tx = self.write().await?;
        let claimed = errors::claim_alerts(&mut tx, now, lease_ms, limit).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_alert(&self, alert_id: &str, delivery: &AlertDelivery, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        errors::finish_alert(&mut tx, alert_id, delivery, now).await?;
        tx.commit().await
    }

    async fn prune_errors(&self, older_than: Timestamp, per_group_cap: u32) -> Result<Pruned, StoreError> {
        errors::prune(self, older_than, per_group_cap).await
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
        let mut tx = self.write().await?;
        errors::resolve(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(self.get_error_group(id, 0).await?.0)
    }
}

#[async_trait]
impl MailStore for SqliteStore {
    async fn claim_emails(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<EmailToSend>, StoreError> {
        let mut tx = self.write().await?;
        let claimed = mail::claim(&mut tx, now, lease_ms, limit).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_email(&self, id: &EmailId, delivery: &EmailDelivery, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        mail::finish(&mut tx, id, delivery, now).await?;
        tx.commit().await
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
        let mut tx = self.write().await?;
        let email = mail::retry(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(email)
    }

    async fn email_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_error)?;
        mail::counts(&mut conn).await
    }
}
