//! The buyer e-mail outbox (see `boxoffice_core::mail`). Claimers skip the rows another
//! claimer has locked (`SKIP LOCKED` on PostgreSQL; SQLite's write lock serializes them)
//! and lease the rest, so no two claimers get the same message.

use async_trait::async_trait;
use boxoffice_core::ids::{EmailId, OrderId};
use boxoffice_core::mail::{EmailAttempt, EmailDelivery, EmailKind, EmailStatus, EmailToSend, QueuedEmail};
use boxoffice_core::store::MailStore;
use boxoffice_core::{StoreError, Timestamp};

use crate::rows::{self, EMAIL_ATTEMPT_COLUMNS, EMAIL_COLUMNS, StoredRow};
use crate::sql::{Conn, query};
use crate::{SqlStore, in_transaction, payments, with_connection};

/// Ids per `IN (…)` list: far below SQLite's limit of bound parameters.
const IDS_PER_STATEMENT: usize = 500;

#[async_trait]
impl MailStore for SqlStore {
    #[tracing::instrument(name = "store.claim_emails", skip_all, fields(limit))]
    async fn claim_emails(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<EmailToSend>, StoreError> {
        in_transaction!(self, |conn| claim(conn, now, lease_ms, limit).await?)
    }

    #[tracing::instrument(name = "store.finish_email", skip_all, fields(email = %id.as_str(), outcome = delivery.outcome()))]
    async fn finish_email(&self, id: &EmailId, delivery: &EmailDelivery, now: Timestamp) -> Result<(), StoreError> {
        in_transaction!(self, |conn| finish(conn, id, delivery, now).await?)
    }

    #[tracing::instrument(name = "store.list_emails", skip_all, fields(limit))]
    async fn list_emails(
        &self,
        status: Option<EmailStatus>,
        limit: u32,
    ) -> Result<Vec<(QueuedEmail, Vec<EmailAttempt>)>, StoreError> {
        with_connection!(self, |conn| list(conn, status, limit).await)
    }

    #[tracing::instrument(name = "store.retry_email", skip_all, fields(email = %id.as_str()))]
    async fn retry_email(&self, id: &EmailId, now: Timestamp) -> Result<QueuedEmail, StoreError> {
        let row = in_transaction!(self, |conn| {
            query(
                "UPDATE emails SET status = 'queued', next_attempt_at = $1
                 WHERE id = $2 AND status IN ('queued', 'failed')",
            )
            .bind(now.as_millis())
            .bind(id.as_str())
            .execute(conn)
            .await?;
            query(format!("SELECT {EMAIL_COLUMNS} FROM emails WHERE id = $1"))
                .bind(id.as_str())
                .fetch_one(conn, "email")
                .await?
        })?;
        rows::queued_email(&row)
    }

    #[tracing::instrument(name = "store.email_counts", skip_all)]
    async fn email_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let row = with_connection!(self, |conn| query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued,
                    COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0) AS sent,
                    COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed
             FROM emails"
        )
        .fetch_one(conn, "counts")
        .await?);
        Ok((row.integer("queued")?, row.integer("sent")?, row.integer("failed")?))
    }
}

/// Queues a message about an order, in the caller's transaction (the one that marks the
/// order paid or refunded), if its hold has a customer e-mail. At most one per order and
/// kind: a second call queues nothing.
pub(crate) async fn enqueue(
    conn: &mut dyn Conn,
    order: &OrderId,
    kind: EmailKind,
    now: Timestamp,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO emails (id, order_id, kind, recipient, status, attempts, next_attempt_at, created_at)
         SELECT $1, orders.id, $2, holds.customer_email, 'queued', 0, $3, $3
         FROM orders JOIN holds ON holds.id = orders.hold_id
         WHERE orders.id = $4 AND holds.customer_email IS NOT NULL
         ON CONFLICT (order_id, kind) DO NOTHING",
    )
    .bind(EmailId::generate().as_str())
    .bind(kind.as_str())
    .bind(now.as_millis())
    .bind(order.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

async fn claim(conn: &mut dyn Conn, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<EmailToSend>, StoreError> {
    let skip_locked = conn.dialect().skip_locked();
    let mut claimed = query(format!(
        "UPDATE emails SET next_attempt_at = $1
         WHERE id IN (SELECT id FROM emails WHERE status = 'queued' AND next_attempt_at <= $2
                      ORDER BY created_at, id LIMIT $3{skip_locked})
         RETURNING {EMAIL_COLUMNS}"
    ))
    .bind(now.as_millis().saturating_add(lease_ms))
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?
    .iter()
    .map(rows::queued_email)
    .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut out = Vec::with_capacity(claimed.len());
    for email in claimed {
        out.push(details(conn, email).await?);
    }
    Ok(out)
}

/// What sending a message needs: its order, event and tickets.
async fn details(conn: &mut dyn Conn, email: QueuedEmail) -> Result<EmailToSend, StoreError> {
    let order = payments::get(conn, &email.order_id).await?;
    let event = query(
        "SELECT events.name, events.starts_at FROM holds JOIN events ON events.id = holds.event_id
         WHERE holds.id = $1",
    )
    .bind(order.hold_id.as_str())
    .fetch_one(conn, "event")
    .await?;
    let tickets = query(
        "SELECT tickets.code, tickets.ticket_type_id, tickets.status, ticket_types.name AS ticket_type_name
         FROM tickets JOIN ticket_types ON ticket_types.id = tickets.ticket_type_id
         WHERE tickets.order_id = $1 ORDER BY tickets.ticket_type_id, tickets.code",
    )
    .bind(order.id.as_str())
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| Ok((rows::ticket(row)?, row.text("ticket_type_name")?)))
    .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(EmailToSend {
        email,
        order,
        event_name: event.text("name")?,
        event_starts_at: event.timestamp("starts_at")?,
        tickets,
    })
}

async fn finish(conn: &mut dyn Conn, id: &EmailId, delivery: &EmailDelivery, now: Timestamp) -> Result<(), StoreError> {
    let (status, retry_at, error, sent_at) = match delivery {
        EmailDelivery::Sent { .. } => ("sent", None, None, Some(now.as_millis())),
        EmailDelivery::Retry { error, retry_at } => ("queued", Some(retry_at.as_millis()), Some(error.as_str()), None),
        EmailDelivery::GaveUp { error } => ("failed", None, Some(error.as_str()), None),
    };
    // Lock the message first: two senders finishing one message (the first one's lease
    // ran out) number their attempts one after the other.
    let lock = conn.dialect().for_update();
    query(format!("SELECT id FROM emails WHERE id = $1{lock}"))
        .bind(id.as_str())
        .fetch_one(conn, "email")
        .await?;
    // No longer queued (finished by another sender after this one's lease ran out): the
    // message stays as it is, but the attempt happened and is recorded.
    query(
        "UPDATE emails SET attempts = attempts + 1, status = $1,
             next_attempt_at = COALESCE($2, next_attempt_at),
             last_error = COALESCE($3, last_error),
             sent_at = COALESCE($4, sent_at)
         WHERE id = $5 AND status = 'queued'",
    )
    .bind(status)
    .bind(retry_at)
    .bind(error)
    .bind(sent_at)
    .bind(id.as_str())
    .execute(conn)
    .await?;
    query(
        "INSERT INTO email_attempts (email_id, attempt, attempted_at, outcome, reply)
         SELECT $1, COALESCE(MAX(attempt), 0) + 1, $2, $3, $4 FROM email_attempts WHERE email_id = $1",
    )
    .bind(id.as_str())
    .bind(now.as_millis())
    .bind(delivery.outcome())
    .bind(delivery.reply())
    .execute(conn)
    .await?;
    Ok(())
}

async fn list(
    conn: &mut dyn Conn,
    status: Option<EmailStatus>,
    limit: u32,
) -> Result<Vec<(QueuedEmail, Vec<EmailAttempt>)>, StoreError> {
    let emails = query(format!(
        "SELECT {EMAIL_COLUMNS} FROM emails WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(status.map(EmailStatus::as_str))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?
    .iter()
    .map(rows::queued_email)
    .collect::<Result<Vec<_>, _>>()?;
    let mut listed: Vec<(QueuedEmail, Vec<EmailAttempt>)> = emails.into_iter().map(|e| (e, Vec::new())).collect();
    let ids: Vec<String> = listed.iter().map(|(email, _)| email.id.as_str().to_owned()).collect();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let attempts = query(format!(
            "SELECT {EMAIL_ATTEMPT_COLUMNS} FROM email_attempts WHERE email_id IN ("
        ))
        .push_list(chunk.iter().map(String::as_str))
        .push(") ORDER BY email_id, attempt")
        .fetch_all(conn)
        .await?;
        for row in &attempts {
            let email_id = row.text("email_id")?;
            if let Some((_, list)) = listed.iter_mut().find(|(email, _)| email.id.as_str() == email_id) {
                list.push(rows::email_attempt(row)?);
            }
        }
    }
    Ok(listed)
}
