//! Stripe webhook events and their effects (see `boxoffice_core::webhooks`).
//!
//! What an event does to an order is decided by `boxoffice_core::orders`; this module
//! locks and loads what the decision needs (the event row, the hold, the order, in that
//! lock order, then ticket types by id), and writes the plan in the transaction that
//! records the event as applied, so the effect and that record commit together or not at
//! all.

use async_trait::async_trait;
use boxoffice_core::holds::{Hold, HoldStatus};
use boxoffice_core::ids::{OrderId, TicketTypeId};
use boxoffice_core::mail::EmailKind;
use boxoffice_core::orders::{self, OnPaymentFailed, OnPaymentSucceeded, OnRefunded};
use boxoffice_core::payments::{Order, OrderStatus};
use boxoffice_core::store::WebhookStore;
use boxoffice_core::webhooks::{ApplyOutcome, Effect, EventStatus, StoredStripeEvent, StripeEvent};
use boxoffice_core::{StoreError, Timestamp};

use crate::holds::{self, ExpiryScope};
use crate::rows::{self, EVENT_LISTING_COLUMNS, ORDER_COLUMNS, StoredRow};
use crate::sql::{Conn, query};
use crate::{SqlStore, in_transaction, mail, payments, with_connection};

#[async_trait]
impl WebhookStore for SqlStore {
    #[tracing::instrument(name = "store.record_webhook_event", skip_all, fields(stripe_event = %event.id, delivered))]
    async fn record_webhook_event(
        &self,
        event: &StripeEvent,
        delivered: bool,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Result<(EventStatus, bool), StoreError> {
        in_transaction!(self, |conn| record(conn, event, delivered, due_at, now).await?)
    }

    #[tracing::instrument(name = "store.apply_webhook_event", skip_all, fields(stripe_event = %event_id))]
    async fn apply_webhook_event(&self, event_id: &str, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
        in_transaction!(self, |conn| {
            let outcome = apply(conn, event_id, now).await?;
            boxoffice_core::faults::before_commit()?;
            outcome
        })
    }

    #[tracing::instrument(name = "store.complete_late_refund", skip_all, fields(stripe_event = %event_id, order = %order_id.as_str()))]
    async fn complete_late_refund(&self, event_id: &str, order_id: &OrderId, now: Timestamp) -> Result<(), StoreError> {
        in_transaction!(self, |conn| complete_late_refund(conn, event_id, order_id, now).await?)
    }

    #[tracing::instrument(name = "store.record_webhook_failure", skip_all, fields(stripe_event = %event_id))]
    async fn record_webhook_failure(&self, event_id: &str, error: &str, retry_at: Timestamp) -> Result<(), StoreError> {
        with_connection!(self, |conn| query(
            "UPDATE webhook_events SET status = 'failed', last_error = $1, attempts = attempts + 1, retry_at = $2
             WHERE id = $3 AND status IN ('pending', 'failed')"
        )
        .bind(error)
        .bind(retry_at.as_millis())
        .bind(event_id)
        .execute(conn)
        .await?);
        Ok(())
    }

    #[tracing::instrument(name = "store.due_webhook_events", skip_all, fields(limit))]
    async fn due_webhook_events(&self, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError> {
        let found = with_connection!(self, |conn| query(
            "SELECT id FROM webhook_events WHERE status IN ('pending', 'failed') AND retry_at <= $1
             ORDER BY retry_at, id LIMIT $2"
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?);
        found.iter().map(|row| row.text("id")).collect()
    }

    #[tracing::instrument(name = "store.list_webhook_events", skip_all, fields(limit))]
    async fn list_webhook_events(&self, limit: u32) -> Result<Vec<StoredStripeEvent>, StoreError> {
        let found = with_connection!(self, |conn| query(format!(
            "SELECT {EVENT_LISTING_COLUMNS} FROM webhook_events ORDER BY received_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?);
        found.iter().map(rows::stored_event).collect()
    }
}

/// Stores an event, or counts another delivery of one stored already.
async fn record(
    conn: &mut dyn Conn,
    event: &StripeEvent,
    delivered: bool,
    due_at: Timestamp,
    now: Timestamp,
) -> Result<(EventStatus, bool), StoreError> {
    let inserted = query(
        "INSERT INTO webhook_events (id, event_type, payload, status, delivery_count, received_at, retry_at)
         VALUES ($1, $2, $3, 'pending', $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(&event.payload)
    .bind(i64::from(delivered))
    .bind(now.as_millis())
    .bind(due_at.as_millis())
    .execute(conn)
    .await?;
    if inserted == 1 {
        return Ok((EventStatus::Pending, true));
    }
    let status = query("UPDATE webhook_events SET delivery_count = delivery_count + $1 WHERE id = $2 RETURNING status")
        .bind(i64::from(delivered))
        .bind(&event.id)
        .fetch_one(conn, "webhook event")
        .await?
        .text("status")?;
    Ok((
        EventStatus::parse(&status).ok_or_else(|| rows::corrupt("webhook event status"))?,
        false,
    ))
}

/// Applies a stored event and records the outcome, in the caller's transaction.
async fn apply(conn: &mut dyn Conn, event_id: &str, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
    let lock = conn.dialect().for_update();
    let row = query(format!(
        "SELECT status, payload FROM webhook_events WHERE id = $1{lock}"
    ))
    .bind(event_id)
    .fetch_one(conn, "webhook event")
    .await?;
    match EventStatus::parse(&row.text("status")?) {
        Some(EventStatus::Applied) => return Ok(ApplyOutcome::Applied("already applied".into())),
        Some(EventStatus::Ignored) => return Ok(ApplyOutcome::Ignored("already ignored".into())),
        _ => {}
    }
    let event = StripeEvent::parse(row.text("payload")?.as_bytes()).map_err(|_| rows::corrupt("webhook payload"))?;
    let outcome = effect_of(conn, &event, now).await?;
    let (status, text) = match &outcome {
        ApplyOutcome::Applied(text) => ("applied", text.clone()),
        ApplyOutcome::Ignored(text) => ("ignored", text.clone()),
        ApplyOutcome::RefundNeeded { order_id, .. } => ("pending", format!("refund of order {order_id} in progress")),
    };
    query(
        "UPDATE webhook_events
         SET status = $1, outcome = $2, attempts = attempts + 1, last_error = NULL,
             applied_at = CASE WHEN CAST($1 AS TEXT) = 'pending' THEN NULL ELSE CAST($3 AS BIGINT) END
         WHERE id = $4",
    )
    .bind(status)
    .bind(text)
    .bind(now.as_millis())
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(outcome)
}

async fn effect_of(conn: &mut dyn Conn, event: &StripeEvent, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
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
    let hold = holds::load_for_update(conn, &order.hold_id).await?;
    let order = payments::get(conn, &order.id).await?;
    match event.effect {
        Effect::PaymentSucceeded => paid(conn, &order, &hold, payment_intent_id, now).await,
        Effect::PaymentFailed => Ok(match orders::on_payment_failed(&order) {
            OnPaymentFailed::MarkFailed => {
                set_order_status(conn, &order.id, OrderStatus::Failed, now).await?;
                ApplyOutcome::Applied("order failed; the hold stays for another attempt".into())
            }
            OnPaymentFailed::Stale(status) => ApplyOutcome::Applied(orders::stale(status)),
        }),
        Effect::Refunded => refunded(conn, &order, &hold, now).await,
        Effect::Nothing => Ok(ApplyOutcome::Ignored(format!("no effect for {}", event.event_type))),
    }
}

/// The order of a PaymentIntent: by the recorded id, or by the order named in its metadata
/// when boxoffice had not recorded the PaymentIntent yet (a crash before phase 4).
async fn find_order(
    conn: &mut dyn Conn,
    payment_intent_id: &str,
    hint: Option<&OrderId>,
) -> Result<Option<Order>, StoreError> {
    if let Some(order) = order_of_intent(conn, payment_intent_id).await? {
        return Ok(Some(order));
    }
    let Some(hint) = hint else { return Ok(None) };
    let adopted = query("UPDATE orders SET payment_intent_id = $1 WHERE id = $2 AND payment_intent_id IS NULL")
        .bind(payment_intent_id)
        .bind(hint.as_str())
        .execute(conn)
        .await?;
    if adopted == 1 {
        return payments::get(conn, hint).await.map(Some);
    }
    // A concurrent apply may have adopted it a moment ago: look again, committed now.
    order_of_intent(conn, payment_intent_id).await
}

async fn order_of_intent(conn: &mut dyn Conn, payment_intent_id: &str) -> Result<Option<Order>, StoreError> {
    let row = query(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE payment_intent_id = $1"
    ))
    .bind(payment_intent_id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| rows::order(&row)).transpose()
}

async fn refund_requested(conn: &mut dyn Conn, order: &OrderId) -> Result<bool, StoreError> {
    let at = query("SELECT refund_requested_at FROM orders WHERE id = $1")
        .bind(order.as_str())
        .fetch_one(conn, "order")
        .await?
        .optional_integer("refund_requested_at")?;
    Ok(at.is_some())
}

async fn paid(
    conn: &mut dyn Conn,
    order: &Order,
    hold: &Hold,
    payment_intent_id: &str,
    now: Timestamp,
) -> Result<ApplyOutcome, StoreError> {
    let refund = || ApplyOutcome::RefundNeeded {
        order_id: order.id.clone(),
        payment_intent_id: payment_intent_id.to_owned(),
    };
    let refund_requested = refund_requested(conn, &order.id).await?;
    let late = match orders::on_payment_succeeded(order, refund_requested, hold, now) {
        OnPaymentSucceeded::AlreadyPaid => return Ok(ApplyOutcome::Applied("already paid".into())),
        OnPaymentSucceeded::Stale(status) => return Ok(ApplyOutcome::Applied(orders::stale(status))),
        OnPaymentSucceeded::Refund => return Ok(refund()),
        OnPaymentSucceeded::SellHeld => {
            // The tickets are held for this order: held becomes sold.
            for item in &hold.items {
                query("UPDATE ticket_types SET held = held - $1, sold = sold + $1 WHERE id = $2")
                    .bind(i64::from(item.quantity.get()))
                    .bind(item.ticket_type_id.as_str())
                    .execute(conn)
                    .await?;
            }
            false
        }
        OnPaymentSucceeded::TakeLate { release_first } => {
            if release_first {
                // Expired by the clock but not swept: release it first, as the sweeper would.
                holds::release_as(conn, hold, HoldStatus::Expired, now).await?;
            }
            if !take_late(conn, hold, now).await? {
                query("UPDATE orders SET refund_requested_at = $1, updated_at = $1 WHERE id = $2")
                    .bind(now.as_millis())
                    .bind(order.id.as_str())
                    .execute(conn)
                    .await?;
                return Ok(refund());
            }
            true
        }
    };
    let fulfilment = orders::fulfil(hold, late);
    query("UPDATE holds SET status = 'completed', updated_at = $1 WHERE id = $2")
        .bind(now.as_millis())
        .bind(hold.id.as_str())
        .execute(conn)
        .await?;
    for (code, ticket_type_id) in &fulfilment.tickets {
        query(
            "INSERT INTO tickets (code, order_id, ticket_type_id, status, created_at) VALUES ($1, $2, $3, 'valid', $4)",
        )
        .bind(code.as_str())
        .bind(order.id.as_str())
        .bind(ticket_type_id.as_str())
        .bind(now.as_millis())
        .execute(conn)
        .await?;
    }
    set_order_status(conn, &order.id, OrderStatus::Paid, now).await?;
    // The confirmation commits with the payment: exactly one per paid order.
    mail::enqueue(conn, &order.id, EmailKind::Confirmation, now).await?;
    Ok(ApplyOutcome::Applied(fulfilment.outcome))
}

/// Takes the tickets of a hold that no longer holds them, all or none, only if they are
/// still available. Never oversells: the same conditional update as a new hold. `held`
/// still counts other holds that ran out but were not swept yet; when a ticket type comes
/// up short, those are released first (as placing a hold does) and the update tried again,
/// so a late payment is refunded only when the tickets are really taken.
async fn take_late(conn: &mut dyn Conn, hold: &Hold, now: Timestamp) -> Result<bool, StoreError> {
    for (i, item) in hold.items.iter().enumerate() {
        let quantity = i64::from(item.quantity.get());
        let mut taken = take_if_free(conn, &item.ticket_type_id, quantity).await?;
        // Release expired holds of the type, a batch at a time, until the tickets are free
        // or no expired hold is left: however many there are, they never block this sale.
        while !taken
            && holds::expire(
                conn,
                now,
                holds::RELEASE_BATCH,
                ExpiryScope::TicketType(&item.ticket_type_id),
            )
            .await?
                > 0
        {
            taken = take_if_free(conn, &item.ticket_type_id, quantity).await?;
        }
        if !taken {
            // Give back what the earlier items took; the refund path follows.
            for earlier in &hold.items[..i] {
                return_sold(conn, &earlier.ticket_type_id, i64::from(earlier.quantity.get())).await?;
            }
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sells `quantity` tickets of a ticket type if that many are neither sold nor held.
async fn take_if_free(conn: &mut dyn Conn, ticket_type: &TicketTypeId, quantity: i64) -> Result<bool, StoreError> {
    let taken = query("UPDATE ticket_types SET sold = sold + $1 WHERE id = $2 AND capacity - sold - held >= $1")
        .bind(quantity)
        .bind(ticket_type.as_str())
        .execute(conn)
        .await?;
    Ok(taken == 1)
}

/// Puts `quantity` sold tickets of a ticket type back on sale.
async fn return_sold(conn: &mut dyn Conn, ticket_type: &TicketTypeId, quantity: i64) -> Result<(), StoreError> {
    query("UPDATE ticket_types SET sold = sold - $1 WHERE id = $2")
        .bind(quantity)
        .bind(ticket_type.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

async fn refunded(conn: &mut dyn Conn, order: &Order, hold: &Hold, now: Timestamp) -> Result<ApplyOutcome, StoreError> {
    match orders::on_refunded(order, hold) {
        OnRefunded::AlreadyRefunded => return Ok(ApplyOutcome::Applied("already refunded".into())),
        OnRefunded::VoidTickets => {
            for item in &hold.items {
                return_sold(conn, &item.ticket_type_id, i64::from(item.quantity.get())).await?;
            }
            query("UPDATE tickets SET status = 'void' WHERE order_id = $1")
                .bind(order.id.as_str())
                .execute(conn)
                .await?;
        }
        OnRefunded::NothingSold { release_hold } => {
            if release_hold {
                holds::release_as(conn, hold, HoldStatus::Cancelled, now).await?;
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
    conn: &mut dyn Conn,
    order: &OrderId,
    status: OrderStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    query("UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now.as_millis())
        .bind(order.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// After a late payment's automatic refund was created at the provider: the order
/// becomes `refunded` (with its notice) and the event `applied`.
async fn complete_late_refund(
    conn: &mut dyn Conn,
    event_id: &str,
    order: &OrderId,
    now: Timestamp,
) -> Result<(), StoreError> {
    query("UPDATE orders SET status = 'refunded', updated_at = $1 WHERE id = $2 AND status <> 'refunded'")
        .bind(now.as_millis())
        .bind(order.as_str())
        .execute(conn)
        .await?;
    mail::enqueue(conn, order, EmailKind::Refund, now).await?;
    query(
        "UPDATE webhook_events SET status = 'applied', applied_at = $1, last_error = NULL,
             outcome = 'paid after the reservation ran out and the tickets were gone: refunded automatically'
         WHERE id = $2 AND status IN ('pending', 'failed')",
    )
    .bind(now.as_millis())
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}
