//! Rebuilding domain values from stored rows, once for both engines.
//!
//! The columns the store reads and how a column becomes a domain value are the same on
//! both engines: [`crate::sql::Row`] implements [`StoredRow`] for either, and the mappings
//! below are written once, so a new column or a stricter check is too. Values that fail to
//! parse mean the database was changed behind our back and surface as `StoreError::Other`.

use boxoffice_core::StoreError;
use boxoffice_core::Timestamp;
use boxoffice_core::auth::{StoredApiKey, TokenHash};
use boxoffice_core::catalog::{Capacity, Event, HoldSeconds, MaxPerOrder, TicketType};
use boxoffice_core::error_store::reports::{AlertKind, ErrorGroup, ErrorProject, PendingAlert, StoredError};
use boxoffice_core::failures::Severity;
use boxoffice_core::holds::{EmailAddress, Hold, HoldItem, HoldStatus, Quantity};
use boxoffice_core::ids::{ApiKeyId, EventId, HoldId, JobRunId, OrderId, OrganizationId, TicketTypeId};
use boxoffice_core::ids::{EmailId, ErrorGroupId};
use boxoffice_core::jobs::{JobOutcome, JobRun};
use boxoffice_core::mail::{EmailAttempt, EmailKind, EmailStatus, QueuedEmail};
use boxoffice_core::money::{Cents, Currency};
use boxoffice_core::organizations::{Name, Organization};
use boxoffice_core::payments::{IdempotencyRecord, Order, OrderStatus, RecoveryPoint, StoredResponse};
use boxoffice_core::tickets::Ticket;
use boxoffice_core::webhooks::{EventStatus, StoredStripeEvent};

/// Typed access to one row's columns by name, as a store's row type provides it.
pub trait StoredRow {
    /// A non-null text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// A non-null integer column.
    fn integer(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A non-null boolean column.
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;

    /// A non-null instant column (milliseconds since the epoch).
    fn timestamp(&self, column: &str) -> Result<Timestamp, StoreError> {
        self.integer(column).map(Timestamp::from_millis)
    }
}

/// The error for a stored value that does not parse.
pub fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt {what} in the database").into())
}

/// Columns: `id, name, created_at`.
pub fn organization(row: &impl StoredRow) -> Result<Organization, StoreError> {
    Ok(Organization {
        id: OrganizationId::from_trusted(row.text("id")?),
        name: Name::from_trusted(row.text("name")?),
        created_at: row.timestamp("created_at")?,
    })
}

/// Columns: `id, organization_id, secret_sha256`.
pub fn api_key(row: &impl StoredRow) -> Result<StoredApiKey, StoreError> {
    Ok(StoredApiKey {
        id: ApiKeyId::from_trusted(row.text("id")?),
        organization_id: OrganizationId::from_trusted(row.text("organization_id")?),
        secret_hash: TokenHash::from_hex(&row.text("secret_sha256")?).ok_or_else(|| corrupt("API key hash"))?,
    })
}

/// The columns [`event`] reads.
pub const EVENT_COLUMNS: &str = "id, organization_id, name, starts_at, currency, hold_seconds, created_at";

/// Columns: [`EVENT_COLUMNS`].
pub fn event(row: &impl StoredRow) -> Result<Event, StoreError> {
    Ok(Event {
        id: EventId::from_trusted(row.text("id")?),
        organization_id: OrganizationId::from_trusted(row.text("organization_id")?),
        name: Name::from_trusted(row.text("name")?),
        starts_at: row.timestamp("starts_at")?,
        currency: Currency::parse(&row.text("currency")?).map_err(|_| corrupt("event currency"))?,
        hold_seconds: row
            .optional_integer("hold_seconds")?
            .map(HoldSeconds::parse)
            .transpose()
            .map_err(|_| corrupt("event hold_seconds"))?,
        created_at: row.timestamp("created_at")?,
    })
}

/// The columns [`ticket_type`] reads.
pub const TICKET_TYPE_COLUMNS: &str =
    "id, event_id, name, price_cents, capacity, max_per_order, on_sale, sold, held, created_at";

/// Columns: [`TICKET_TYPE_COLUMNS`]. `held` is the stored counter; callers subtract
/// holds that expired but are not swept.
pub fn ticket_type(row: &impl StoredRow) -> Result<TicketType, StoreError> {
    Ok(TicketType {
        id: TicketTypeId::from_trusted(row.text("id")?),
        event_id: EventId::from_trusted(row.text("event_id")?),
        name: Name::from_trusted(row.text("name")?),
        price: Cents::from_trusted(row.integer("price_cents")?),
        capacity: Capacity::parse(row.integer("capacity")?).map_err(|_| corrupt("ticket type capacity"))?,
        max_per_order: MaxPerOrder::parse(row.integer("max_per_order")?)
            .map_err(|_| corrupt("ticket type max_per_order"))?,
        on_sale: row.boolean("on_sale")?,
        sold: row.integer("sold")?,
        held: row.integer("held")?,
        created_at: row.timestamp("created_at")?,
    })
}

/// The columns [`hold`] reads.
pub const HOLD_COLUMNS: &str = "id, event_id, status, customer_email, amount_cents, currency, created_at, expires_at";

/// Columns: [`HOLD_COLUMNS`], with the hold's items read separately.
pub fn hold(row: &impl StoredRow, items: Vec<HoldItem>) -> Result<Hold, StoreError> {
    Ok(Hold {
        id: HoldId::from_trusted(row.text("id")?),
        event_id: EventId::from_trusted(row.text("event_id")?),
        stored_status: HoldStatus::parse(&row.text("status")?).ok_or_else(|| corrupt("hold status"))?,
        customer_email: row.optional_text("customer_email")?.map(EmailAddress::from_trusted),
        items,
        amount: Cents::from_trusted(row.integer("amount_cents")?),
        currency: Currency::parse(&row.text("currency")?).map_err(|_| corrupt("hold currency"))?,
        created_at: row.timestamp("created_at")?,
        expires_at: row.timestamp("expires_at")?,
    })
}

/// Columns: `ticket_type_id, quantity, unit_price_cents`.
pub fn hold_item(row: &impl StoredRow) -> Result<HoldItem, StoreError> {
    Ok(HoldItem {
        ticket_type_id: TicketTypeId::from_trusted(row.text("ticket_type_id")?),
        quantity: Quantity::from_trusted(
            u32::try_from(row.integer("quantity")?).map_err(|_| corrupt("hold quantity"))?,
        ),
        unit_price: Cents::from_trusted(row.integer("unit_price_cents")?),
    })
}

/// The columns [`job_run`] reads.
pub const JOB_RUN_COLUMNS: &str = "id, job, started_at, finished_at, outcome, affected, error";

/// Columns: [`JOB_RUN_COLUMNS`].
pub fn job_run(row: &impl StoredRow) -> Result<JobRun, StoreError> {
    Ok(JobRun {
        id: JobRunId::from_trusted(row.text("id")?),
        job: row.text("job")?,
        started_at: row.timestamp("started_at")?,
        finished_at: row.timestamp("finished_at")?,
        outcome: JobOutcome::parse(&row.text("outcome")?).ok_or_else(|| corrupt("job outcome"))?,
        affected: u64::try_from(row.integer("affected")?).unwrap_or(0),
        error: row.optional_text("error")?,
    })
}

/// The columns [`order`] reads.
pub const ORDER_COLUMNS: &str =
    "id, hold_id, status, amount_cents, currency, payment_intent_id, client_secret, confirming_until, created_at";

/// Columns: [`ORDER_COLUMNS`].
pub fn order(row: &impl StoredRow) -> Result<Order, StoreError> {
    Ok(Order {
        id: OrderId::from_trusted(row.text("id")?),
        hold_id: HoldId::from_trusted(row.text("hold_id")?),
        status: OrderStatus::parse(&row.text("status")?).ok_or_else(|| corrupt("order status"))?,
        amount: Cents::from_trusted(row.integer("amount_cents")?),
        currency: Currency::parse(&row.text("currency")?).map_err(|_| corrupt("order currency"))?,
        payment_intent_id: row.optional_text("payment_intent_id")?,
        client_secret: row.optional_text("client_secret")?,
        confirming_until: row.optional_integer("confirming_until")?.map(Timestamp::from_millis),
        created_at: row.timestamp("created_at")?,
    })
}

/// The columns [`idempotency_record`] reads.
pub const IDEMPOTENCY_COLUMNS: &str =
    "scope, client_key, hold_id, fingerprint, recovery_point, order_id, response_status, response_body, created_at";

/// Columns: [`IDEMPOTENCY_COLUMNS`].
pub fn idempotency_record(row: &impl StoredRow) -> Result<IdempotencyRecord, StoreError> {
    let response = match (
        row.optional_integer("response_status")?,
        row.optional_text("response_body")?,
    ) {
        (Some(status), Some(body)) => Some(StoredResponse {
            status: u16::try_from(status).map_err(|_| corrupt("idempotency response status"))?,
            body,
        }),
        _ => None,
    };
    Ok(IdempotencyRecord {
        scope: row.text("scope")?,
        key: row.text("client_key")?,
        hold_id: HoldId::from_trusted(row.text("hold_id")?),
        fingerprint: row.text("fingerprint")?,
        recovery_point: RecoveryPoint::parse(&row.text("recovery_point")?)
            .ok_or_else(|| corrupt("idempotency recovery point"))?,
        order_id: row.optional_text("order_id")?.map(OrderId::from_trusted),
        response,
        created_at: row.timestamp("created_at")?,
    })
}

/// The columns [`stored_event`] reads.
pub const EVENT_LISTING_COLUMNS: &str =
    "id, event_type, status, outcome, last_error, delivery_count, attempts, received_at, applied_at";

/// Columns: [`EVENT_LISTING_COLUMNS`].
pub fn stored_event(row: &impl StoredRow) -> Result<StoredStripeEvent, StoreError> {
    Ok(StoredStripeEvent {
        id: row.text("id")?,
        event_type: row.text("event_type")?,
        status: EventStatus::parse(&row.text("status")?).ok_or_else(|| corrupt("webhook event status"))?,
        outcome: row.optional_text("outcome")?,
        last_error: row.optional_text("last_error")?,
        delivery_count: row.integer("delivery_count")?,
        attempts: row.integer("attempts")?,
        received_at: row.timestamp("received_at")?,
        applied_at: row.optional_integer("applied_at")?.map(Timestamp::from_millis),
    })
}

/// Columns: `code, ticket_type_id, status`.
pub fn ticket(row: &impl StoredRow) -> Result<Ticket, StoreError> {
    Ok(Ticket {
        code: row.text("code")?,
        ticket_type_id: TicketTypeId::from_trusted(row.text("ticket_type_id")?),
        status: row.text("status")?,
    })
}

/// The columns [`error_group`] reads.
pub const ERROR_GROUP_COLUMNS: &str = "id, scope, fingerprint, grouping_version, title, severity, component, \
     event_count, first_seen, last_seen, resolved";

/// Columns: [`ERROR_GROUP_COLUMNS`].
pub fn error_group(row: &impl StoredRow) -> Result<ErrorGroup, StoreError> {
    Ok(ErrorGroup {
        id: ErrorGroupId::from_trusted(row.text("id")?),
        scope: row.text("scope")?,
        fingerprint: row.text("fingerprint")?,
        grouping_version: row.integer("grouping_version")?,
        title: row.text("title")?,
        severity: Severity::parse(&row.text("severity")?).ok_or_else(|| corrupt("error severity"))?,
        component: row.optional_text("component")?,
        count: row.integer("event_count")?,
        first_seen: row.timestamp("first_seen")?,
        last_seen: row.timestamp("last_seen")?,
        resolved: row.boolean("resolved")?,
    })
}

/// The columns [`stored_error`] reads.
pub const STORED_ERROR_COLUMNS: &str =
    "event_id, severity, message, request_id, release, environment, payload, received_at";

/// Columns: [`STORED_ERROR_COLUMNS`].
pub fn stored_error(row: &impl StoredRow) -> Result<StoredError, StoreError> {
    Ok(StoredError {
        event_id: row.text("event_id")?,
        severity: Severity::parse(&row.text("severity")?).ok_or_else(|| corrupt("error severity"))?,
        message: row.text("message")?,
        request_id: row.optional_text("request_id")?,
        release: row.optional_text("release")?,
        environment: row.optional_text("environment")?,
        payload: row.text("payload")?,
        received_at: row.timestamp("received_at")?,
    })
}

/// The columns [`error_project`] reads.
pub const ERROR_PROJECT_COLUMNS: &str = "project_id, organization_id, public_key";

/// Columns: [`ERROR_PROJECT_COLUMNS`].
pub fn error_project(row: &impl StoredRow) -> Result<ErrorProject, StoreError> {
    Ok(ErrorProject {
        project_id: row.integer("project_id")?,
        organization_id: OrganizationId::from_trusted(row.text("organization_id")?),
        public_key: row.text("public_key")?,
    })
}

/// Columns: `alert_id, kind, attempts, alert_created_at` and [`ERROR_GROUP_COLUMNS`].
pub fn pending_alert(row: &impl StoredRow) -> Result<PendingAlert, StoreError> {
    Ok(PendingAlert {
        id: row.text("alert_id")?,
        kind: AlertKind::parse(&row.text("kind")?).ok_or_else(|| corrupt("alert kind"))?,
        group: error_group(row)?,
        attempts: row.integer("attempts")?,
        created_at: row.timestamp("alert_created_at")?,
    })
}

/// The columns [`queued_email`] reads.
pub const EMAIL_COLUMNS: &str =
    "id, order_id, kind, recipient, status, attempts, next_attempt_at, last_error, created_at, sent_at";

/// Columns: [`EMAIL_COLUMNS`].
pub fn queued_email(row: &impl StoredRow) -> Result<QueuedEmail, StoreError> {
    Ok(QueuedEmail {
        id: EmailId::from_trusted(row.text("id")?),
        order_id: OrderId::from_trusted(row.text("order_id")?),
        kind: EmailKind::parse(&row.text("kind")?).ok_or_else(|| corrupt("email kind"))?,
        recipient: row.text("recipient")?,
        status: EmailStatus::parse(&row.text("status")?).ok_or_else(|| corrupt("email status"))?,
        attempts: row.integer("attempts")?,
        next_attempt_at: row.timestamp("next_attempt_at")?,
        last_error: row.optional_text("last_error")?,
        created_at: row.timestamp("created_at")?,
        sent_at: row.optional_integer("sent_at")?.map(Timestamp::from_millis),
    })
}

/// The columns [`email_attempt`] reads.
pub const EMAIL_ATTEMPT_COLUMNS: &str = "email_id, attempt, attempted_at, outcome, reply";

/// Columns: [`EMAIL_ATTEMPT_COLUMNS`] (`email_id` and `attempt` are for grouping and order).
pub fn email_attempt(row: &impl StoredRow) -> Result<EmailAttempt, StoreError> {
    Ok(EmailAttempt {
        attempted_at: row.timestamp("attempted_at")?,
        outcome: row.text("outcome")?,
        reply: row.text("reply")?,
    })
}
