//! Webhook events and their effects (see `boxoffice_core::webhooks`). Every function runs
//! inside a write transaction, locked in one order (event, hold, order, ticket types by id): the effect of an event and the record
//! that it took place commit together or not at all.

use boxoffice_core::holds::{Hold, HoldStatus};
use boxoffice_core::ids::{OrderId, TicketTypeId};
use boxoffice_core::mail::EmailKind;
use boxoffice_core::payments::{Order, OrderStatus};
use boxoffice_core::rows::{self, EVENT_LISTING_COLUMNS, ORDER_COLUMNS};
use boxoffice_core::webhooks::{
    self, ApplyOutcome, Effect, EventStatus, StoredStripeEvent, StripeEvent, Ticket, new_ticket_code,
};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgConnection, Row};

use crate::rows::Columns;
use crate::{holds, mail, map_error};

pub(crate) async fn record(
    conn: &mut PgConnection,
    event: &StripeEvent,
    delivered: bool,
    due_at: Timestamp,
    now: Timestamp,
) -> Result<(EventStatus, bool), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_events (id, event_type, payload, status, delivery_count, received_at, retry_at)
         VALUES ($1, $2, $3, 'pending', $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(&event.payload)
    .bind(i64::from(delivered))
    .bind(now.as_millis())
    .bind(due_at.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    if inserted.rows_affected() == 1 {
        return Ok((EventStatus::Pending, true));
    }
    let status: String = sqlx::query_scalar(
        "UPDATE webhook_events SET delivery_count = delivery_count + $1 WHERE id = $2 RETURNING status",
    )
    .bind(i64::from(delivered))
    .bind(&event.id)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok((
        EventStatus::parse(&status).ok_or_else(|| rows::corrupt("webhook event status"))?,
        false,
    ))
}

pub(crate) async fn apply(conn: &mut PgConnection, event_id: &str, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
    let row = sqlx::query("SELECT status, payload FROM webhook_events WHERE id = $1 FOR UPDATE")
        .bind(event_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("webhook event"))?;
    let status: String = row.try_get("status").map_err(map_error)?;
    match EventStatus::parse(&status) {
        Some(EventStatus::Applied) => return Ok(ApplyOutcome::Applied("already applied".into())),
        Some(EventStatus::Ignored) => return Ok(ApplyOutcome::Ignored("already ignored".into())),
        _ => {}
    }
    let payload: String = row.try_get("payload").map_err(map_error)?;
    let event = StripeEvent::parse(payload.as_bytes()).map_err(|_| rows::corrupt("webhook payload"))?;
    let outcome = effect_of(conn, &event, now).await?;
    let (status, text) = match &outcome {
        ApplyOutcome::Applied(text) => ("applied", text.clone()),
        ApplyOutcome::Ignored(text) => ("ignored", text.clone()),
        ApplyOutcome::RefundNeeded { order_id, .. } => ("pending", format!("refund of order {order_id} in progress")),
    };
    sqlx::query(
        "UPDATE webhook_events
         SET status = $1, outcome = $2, attempts = attempts + 1, last_error = NULL,
             applied_at = CASE WHEN $3::TEXT = 'pending' THEN NULL ELSE $4::BIGINT END
         WHERE id = $5",
    )
    .bind(status)
    .bind(text)
    .bind(status)
    .bind(now.as_millis())
    .bind(event_id)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    webhooks::faults::before_commit()?;
    Ok(outcome)
}

async fn effect_of(conn: &mut PgConnection, event: &StripeEvent, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
    let Some(payment_intent_id) = event.payment_intent_id.as_deref() else {
        return Ok(ApplyOutcome::Ignored(format!("no effect for {}", event.event_type)));
    };
    let Some(order) = find_order(conn, payment_intent_id, event.order_hint.as_ref()).await? else {
        return Ok(ApplyOutcome::Ignored(format!(
            "PaymentIntent {payment_intent_id} is not one of ours"
        )));
    };
    // Lock the hold, then read the order again under that lock: two distinct events for
    // one PaymentIntent, applied at once, are serialized here and the second sees the
    // first one's effect.
    holds::load(conn, &order.hold_id, true).await?;
    let order = crate::payments::get(conn, &order.id).await?;
    match event.effect {
        Effect::PaymentSucceeded => paid(conn, &order, payment_intent_id, now).await,
        Effect::PaymentFailed => Ok(if order.status == OrderStatus::Pending {
            set_order_status(conn, &order.id, OrderStatus::Failed, now).await?;
            ApplyOutcome::Applied("order failed; the hold stays for another attempt".into())
        } else {
            ApplyOutcome::Applied(format!("stale: the order is already {}", order.status.as_str()))
        }),
        Effect::Refunded => refunded(conn, &order, now).await,
        Effect::Nothing => Ok(ApplyOutcome::Ignored(format!("no effect for {}", event.event_type))),
    }
}

/// The order of a PaymentIntent: by the recorded id, or by the order named in its metadata
/// when boxoffice had not recorded the PaymentIntent yet (a crash before phase 4).
async fn find_order(
    conn: &mut PgConnection,
    payment_intent_id: &str,
    hint: Option<&OrderId>,
) -> Result<Option<Order>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE payment_intent_id = $1"
    ))
    .bind(payment_intent_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    if let Some(row) = row {
        return rows::order(&Columns(&row)).map(Some);
    }
    let Some(hint) = hint else { return Ok(None) };
    let adopted = sqlx::query("UPDATE orders SET payment_intent_id = $1 WHERE id = $2 AND payment_intent_id IS NULL")
        .bind(payment_intent_id)
        .bind(hint.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    if adopted.rows_affected() == 1 {
        return crate::payments::get(conn, hint).await.map(Some);
    }
    // A concurrent apply may have adopted it a moment ago: look again, committed now.
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE payment_intent_id = $1"
    ))
    .bind(payment_intent_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    row.map(|row| rows::order(&Columns(&row))).transpose()
}

async fn refund_requested(conn: &mut PgConnection, order: &OrderId) -> Result<bool, StoreError> {
    let at: Option<i64> = sqlx::query_scalar("SELECT refund_requested_at FROM orders WHERE id = $1")
        .bind(order.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(at.is_some())
}

async fn paid(
    conn: &mut PgConnection,
    order: &Order,
    payment_intent_id: &str,
    now: Timestamp,
) -> Result<ApplyOutcome, StoreError> {
    match order.status {
        OrderStatus::Paid => return Ok(ApplyOutcome::Applied("already paid".into())),
        OrderStatus::Refunded | OrderStatus::Cancelled => {
            return Ok(ApplyOutcome::Applied(format!(
                "stale: the order is already {}",
                order.status.as_str()
            )));
        }
        OrderStatus::Pending | OrderStatus::Failed => {}
    }
    let refund = ApplyOutcome::RefundNeeded {
        order_id: order.id.clone(),
        payment_intent_id: payment_intent_id.to_owned(),
    };
    if refund_requested(conn, &order.id).await? {
        return Ok(refund);
    }
    let mut hold = holds::load(conn, &order.hold_id, true).await?;
    let on_time = match (hold.stored_status, hold.status_at(now)) {
        (HoldStatus::Active, HoldStatus::Active) => {
            // The tickets are held for this order: held becomes sold.
            for item in &hold.items {
                move_held_to_sold(conn, item.ticket_type_id.as_str(), i64::from(item.quantity.get())).await?;
            }
            true
        }
        (HoldStatus::Completed, _) => return Ok(ApplyOutcome::Applied("already paid".into())),
        (stored, _) => {
            if stored == HoldStatus::Active {
                // Expired by the clock but not swept: release it first, as the sweeper would.
                holds::release_as(conn, &hold, HoldStatus::Expired, now).await?;
            }
            if !take_late(conn, &hold, now).await? {
                sqlx::query("UPDATE orders SET refund_requested_at = $1, updated_at = $2 WHERE id = $3")
                    .bind(now.as_millis())
                    .bind(now.as_millis())
                    .bind(order.id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_error)?;
                return Ok(refund);
            }
            false
        }
    };
    sqlx::query("UPDATE holds SET status = 'completed', updated_at = $1 WHERE id = $2")
        .bind(now.as_millis())
        .bind(hold.id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    hold.stored_status = HoldStatus::Completed;
    let issued = issue_tickets(conn, order, &hold, now).await?;
    set_order_status(conn, &order.id, OrderStatus::Paid, now).await?;
    // The confirmation commits with the payment: exactly one per paid order.
    mail::enqueue(conn, &order.id, EmailKind::Confirmation, now).await?;
    Ok(ApplyOutcome::Applied(if on_time {
        format!("order paid, {issued} tickets issued")
    } else {
        format!("paid after the reservation ran out; the tickets were still available: {issued} issued")
    }))
}

async fn move_held_to_sold(conn: &mut PgConnection, ticket_type: &str, quantity: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE ticket_types SET held = held - $1, sold = sold + $2 WHERE id = $3")
        .bind(quantity)
        .bind(quantity)
        .bind(ticket_type)
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(())
}

/// Takes the tickets of a hold that no longer holds them, all or none, only if they are
/// still available. Never oversells: the same conditional update as a new hold. `held`
/// still counts other holds that ran out but were not swept yet; when a ticket type comes
/// up short, those are released first (as placing a hold does) and the update tried again,
/// so a late payment is refunded only when the tickets are really taken.
async fn take_late(conn: &mut PgConnection, hold: &Hold, now: Timestamp) -> Result<bool, StoreError> {
    for (i, item) in hold.items.iter().enumerate() {
        let quantity = i64::from(item.quantity.get());
        let mut taken = take_if_free(conn, &item.ticket_type_id, quantity).await?;
        if !taken
            && holds::expire(
                conn,
                now,
                holds::RELEASE_BATCH,
                holds::ExpiryScope::TicketType(&item.ticket_type_id),
            )
            .await?
                > 0
        {
            taken = take_if_free(conn, &item.ticket_type_id, quantity).await?;
        }
        if !taken {
            // Give back what the earlier items took; the refund path follows.
            for earlier in &hold.items[..i] {
                sqlx::query("UPDATE ticket_types SET sold = sold - $1 WHERE id = $2")
                    .bind(i64::from(earlier.quantity.get()))
                    .bind(earlier.ticket_type_id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_error)?;
            }
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sells `quantity` tickets of a ticket type if that many are neither sold nor held.
async fn take_if_free(conn: &mut PgConnection, ticket_type: &TicketTypeId, quantity: i64) -> Result<bool, StoreError> {
    let taken = sqlx::query("UPDATE ticket_types SET sold = sold + $1 WHERE id = $2 AND capacity - sold - held >= $3")
        .bind(quantity)
        .bind(ticket_type.as_str())
        .bind(quantity)
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(taken.rows_affected() == 1)
}

async fn issue_tickets(conn: &mut PgConnection, order: &Order, hold: &Hold, now: Timestamp) -> Result<u32, StoreError> {
    let mut issued = 0;
    for item in &hold.items {
        for _ in 0..item.quantity.get() {
            sqlx::query("INSERT INTO tickets (code, order_id, ticket_type_id, status, created_at) VALUES ($1, $2, $3, 'valid', $4)")
                .bind(new_ticket_code())
                .bind(order.id.as_str())
                .bind(item.ticket_type_id.as_str())
                .bind(now.as_millis())
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
            issued += 1;
        }
    }
    Ok(issued)
}

async fn refunded(conn: &mut PgConnection, order: &Order, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
    match order.status {
        OrderStatus::Refunded => return Ok(ApplyOutcome::Applied("already refunded".into())),
        OrderStatus::Paid => {
            // Tickets void, capacity back.
            let hold = holds::load(conn, &order.hold_id, true).await?;
            for item in &hold.items {
                sqlx::query("UPDATE ticket_types SET sold = sold - $1 WHERE id = $2")
                    .bind(i64::from(item.quantity.get()))
                    .bind(item.ticket_type_id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_error)?;
            }
            sqlx::query("UPDATE tickets SET status = 'void' WHERE order_id = $1")
                .bind(order.id.as_str())
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
        }
        OrderStatus::Pending | OrderStatus::Failed | OrderStatus::Cancelled => {
            // Refunded before its payment was applied (events out of order, or our own
            // late-payment refund): nothing was sold; release a hold still holding.
            let hold = holds::load(conn, &order.hold_id, true).await?;
            if hold.stored_status == HoldStatus::Active {
                holds::release_as(conn, &hold, HoldStatus::Cancelled, now).await?;
            }
        }
    }
    set_order_status(conn, &order.id, OrderStatus::Refunded, now).await?;
    mail::enqueue(conn, &order.id, EmailKind::Refund, now).await?;
    Ok(ApplyOutcome::Applied(
        "order refunded; tickets void, capacity released".into(),
    ))
}

async fn set_order_status(
    conn: &mut PgConnection,
    order: &OrderId,
    status: OrderStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now.as_millis())
        .bind(order.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn complete_late_refund(
    conn: &mut PgConnection,
    event_id: &str,
    order: &OrderId,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE orders SET status = 'refunded', updated_at = $1 WHERE id = $2 AND status <> 'refunded'")
        .bind(now.as_millis())
        .bind(order.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    mail::enqueue(conn, order, EmailKind::Refund, now).await?;
    sqlx::query(
        "UPDATE webhook_events SET status = 'applied', applied_at = $1, last_error = NULL,
             outcome = 'paid after the reservation ran out and the tickets were gone: refunded automatically'
         WHERE id = $2 AND status IN ('pending', 'failed')",
    )
    .bind(now.as_millis())
    .bind(event_id)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn record_failure(
    conn: &mut PgConnection,
    event_id: &str,
    error: &str,
    retry_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_events SET status = 'failed', last_error = $1, attempts = attempts + 1, retry_at = $2
         WHERE id = $3 AND status IN ('pending', 'failed')",
    )
    .bind(error)
    .bind(retry_at.as_millis())
    .bind(event_id)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn due(conn: &mut PgConnection, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT id FROM webhook_events WHERE status IN ('pending', 'failed') AND retry_at <= $1
         ORDER BY retry_at, id LIMIT $2",
    )
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)
}

pub(crate) async fn list(conn: &mut PgConnection, limit: u32) -> Result<Vec<StoredStripeEvent>, StoreError> {
    let found = sqlx::query(&format!(
        "SELECT {EVENT_LISTING_COLUMNS} FROM webhook_events ORDER BY received_at DESC, id DESC LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    found.iter().map(|row| rows::stored_event(&Columns(row))).collect()
}

pub(crate) async fn tickets(conn: &mut PgConnection, order: &OrderId) -> Result<Vec<Ticket>, StoreError> {
    let found = sqlx::query(
        "SELECT code, ticket_type_id, status FROM tickets WHERE order_id = $1 ORDER BY ticket_type_id, code",
    )
    .bind(order.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    found.iter().map(|row| rows::ticket(&Columns(row))).collect()
}
