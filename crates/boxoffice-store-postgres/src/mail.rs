//! The buyer e-mail outbox (see `boxoffice_core::mail`). Claimers skip the rows another
//! claimer has locked (`FOR UPDATE SKIP LOCKED`) and lease the rest, so no two claimers
//! get the same message.

use boxoffice_core::ids::{EmailId, OrderId};
use boxoffice_core::mail::{EmailAttempt, EmailDelivery, EmailKind, EmailStatus, EmailToSend, QueuedEmail};
use boxoffice_core::rows::{self, EMAIL_ATTEMPT_COLUMNS, EMAIL_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgConnection, Row};

use crate::map_error;
use crate::rows::Columns;

/// Queues a message about an order, in the caller's transaction (the one that marks the
/// order paid or refunded), if its hold has a customer e-mail. At most one per order and
/// kind: a second call queues nothing.
pub(crate) async fn enqueue(
    conn: &mut PgConnection,
    order: &OrderId,
    kind: EmailKind,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO emails (id, order_id, kind, recipient, status, attempts, next_attempt_at, created_at)
         SELECT $1, orders.id, $2, holds.customer_email, 'queued', 0, $3, $4
         FROM orders JOIN holds ON holds.id = orders.hold_id
         WHERE orders.id = $5 AND holds.customer_email IS NOT NULL
         ON CONFLICT (order_id, kind) DO NOTHING",
    )
    .bind(EmailId::generate().as_str())
    .bind(kind.as_str())
    .bind(now.as_millis())
    .bind(now.as_millis())
    .bind(order.as_str())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn claim(
    conn: &mut PgConnection,
    now: Timestamp,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<EmailToSend>, StoreError> {
    let mut claimed = sqlx::query(&format!(
        "WITH due AS (
             SELECT id AS due_id FROM emails WHERE status = 'queued' AND next_attempt_at <= $2
             ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
         UPDATE emails SET next_attempt_at = $1 FROM due WHERE emails.id = due.due_id
         RETURNING {EMAIL_COLUMNS}"
    ))
    .bind(now.as_millis().saturating_add(lease_ms))
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?
    .iter()
    .map(|row| rows::queued_email(&Columns(row)))
    .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut out = Vec::with_capacity(claimed.len());
    for email in claimed {
        out.push(details(conn, email).await?);
    }
    Ok(out)
}

/// What sending a message needs: its order, event and tickets.
async fn details(conn: &mut PgConnection, email: QueuedEmail) -> Result<EmailToSend, StoreError> {
    let order = crate::payments::get(conn, &email.order_id).await?;
    let event = sqlx::query(
        "SELECT events.name, events.starts_at FROM holds JOIN events ON events.id = holds.event_id
         WHERE holds.id = $1",
    )
    .bind(order.hold_id.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(map_error)?;
    let tickets = sqlx::query(
        "SELECT tickets.code, tickets.ticket_type_id, tickets.status, ticket_types.name AS ticket_type_name
         FROM tickets JOIN ticket_types ON ticket_types.id = tickets.ticket_type_id
         WHERE tickets.order_id = $1 ORDER BY tickets.ticket_type_id, tickets.code",
    )
    .bind(order.id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?
    .iter()
    .map(|row| {
        let ticket = rows::ticket(&Columns(row))?;
        let name: String = row.try_get("ticket_type_name").map_err(map_error)?;
        Ok((ticket, name))
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(EmailToSend {
        email,
        order,
        event_name: event.try_get("name").map_err(map_error)?,
        event_starts_at: Timestamp::from_millis(event.try_get("starts_at").map_err(map_error)?),
        tickets,
    })
}

pub(crate) async fn finish(
    conn: &mut PgConnection,
    id: &EmailId,
    delivery: &EmailDelivery,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (status, retry_at, error, sent_at) = match delivery {
        EmailDelivery::Sent { .. } => ("sent", None, None, Some(now.as_millis())),
        EmailDelivery::Retry { error, retry_at } => ("queued", Some(retry_at.as_millis()), Some(error.as_str()), None),
        EmailDelivery::GaveUp { error } => ("failed", None, Some(error.as_str()), None),
    };
    // Lock the message first: two senders finishing one message (the first one's lease
    // ran out) number their attempts one after the other.
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM emails WHERE id = $1 FOR UPDATE")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
    if exists.is_none() {
        return Err(StoreError::NotFound("email"));
    }
    // No longer queued (finished by another sender after this one's lease ran out): the
    // message stays as it is, but the attempt happened and is recorded.
    sqlx::query(
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
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    sqlx::query(
        "INSERT INTO email_attempts (email_id, attempt, attempted_at, outcome, reply)
         SELECT $1, COALESCE(MAX(attempt), 0) + 1, $2, $3, $4 FROM email_attempts WHERE email_id = $5",
    )
    .bind(id.as_str())
    .bind(now.as_millis())
    .bind(delivery.outcome())
    .bind(delivery.reply())
    .bind(id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn list(
    conn: &mut PgConnection,
    status: Option<EmailStatus>,
    limit: u32,
) -> Result<Vec<(QueuedEmail, Vec<EmailAttempt>)>, StoreError> {
    let emails = sqlx::query(&format!(
        "SELECT {EMAIL_COLUMNS} FROM emails WHERE ($1::TEXT IS NULL OR status = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(status.map(EmailStatus::as_str))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?
    .iter()
    .map(|row| rows::queued_email(&Columns(row)))
    .collect::<Result<Vec<_>, _>>()?;
    let mut listed: Vec<(QueuedEmail, Vec<EmailAttempt>)> = emails.into_iter().map(|e| (e, Vec::new())).collect();
    if listed.is_empty() {
        return Ok(listed);
    }
    let ids: Vec<&str> = listed.iter().map(|(email, _)| email.id.as_str()).collect();
    let attempts = sqlx::query(&format!(
        "SELECT {EMAIL_ATTEMPT_COLUMNS} FROM email_attempts WHERE email_id = ANY($1) ORDER BY email_id, attempt"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    for row in &attempts {
        let email_id: String = row.try_get("email_id").map_err(map_error)?;
        if let Some((_, list)) = listed.iter_mut().find(|(email, _)| email.id.as_str() == email_id) {
            list.push(rows::email_attempt(&Columns(row))?);
        }
    }
    Ok(listed)
}

pub(crate) async fn retry(conn: &mut PgConnection, id: &EmailId, now: Timestamp) -> Result<QueuedEmail, StoreError> {
    sqlx::query(
        "UPDATE emails SET status = 'queued', next_attempt_at = $1 WHERE id = $2 AND status IN ('queued', 'failed')",
    )
    .bind(now.as_millis())
    .bind(id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    let row = sqlx::query(&format!("SELECT {EMAIL_COLUMNS} FROM emails WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("email"))?;
    rows::queued_email(&Columns(&row))
}

pub(crate) async fn counts(conn: &mut PgConnection) -> Result<(i64, i64, i64), StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) FILTER (WHERE status = 'queued') AS queued,
                COUNT(*) FILTER (WHERE status = 'sent') AS sent,
                COUNT(*) FILTER (WHERE status = 'failed') AS failed
         FROM emails",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok((
        row.try_get("queued").map_err(map_error)?,
        row.try_get("sent").map_err(map_error)?,
        row.try_get("failed").map_err(map_error)?,
    ))
}
