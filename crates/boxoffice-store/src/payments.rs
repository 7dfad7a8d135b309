//! Orders and idempotency records: the stored phases of payment creation (see
//! `boxoffice_core::payments`, whose `on_repeated_key` and `expiry_with_payment_grace`
//! decide what the phases do).
//!
//! Concurrency: the record row is the unit of locking. `begin` inserts with
//! `ON CONFLICT DO NOTHING` (a concurrent duplicate waits for the winner's commit, then
//! finds the record and its lock) or reads the existing row locked; the completer claims
//! rows with `SKIP LOCKED`. Lock order: idempotency record, then hold, then order.

use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::holds::{Hold, HoldStatus};
use boxoffice_core::ids::{HoldId, OrderId};
use boxoffice_core::payments::{self, Begun, IdempotencyRecord, Order, OrderPhase, ProviderIntent, StoredResponse};
use boxoffice_core::store::PaymentStore;
use boxoffice_core::tickets::Ticket;
use boxoffice_core::{StoreError, Timestamp};

use crate::rows::{self, IDEMPOTENCY_COLUMNS, ORDER_COLUMNS, StoredRow};
use crate::sql::{Conn, query};
use crate::{SqlStore, holds, in_transaction, with_connection};

#[async_trait]
impl PaymentStore for SqlStore {
    #[tracing::instrument(name = "store.begin_idempotent_request", skip_all, fields(hold = %record.hold_id.as_str()))]
    async fn begin_idempotent_request(
        &self,
        record: &IdempotencyRecord,
        lock_until: Timestamp,
        now: Timestamp,
    ) -> Result<Begun, StoreError> {
        in_transaction!(self, |conn| begin(conn, record, lock_until, now).await?)
    }

    #[tracing::instrument(name = "store.create_order_for_request", skip_all, fields(order = %new_order_id.as_str()))]
    async fn create_order_for_request(
        &self,
        scope: &str,
        key: &str,
        new_order_id: &OrderId,
        grace: Duration,
        now: Timestamp,
    ) -> Result<OrderPhase, StoreError> {
        in_transaction!(self, |conn| create_order(conn, scope, key, new_order_id, grace, now)
            .await?)
    }

    #[tracing::instrument(name = "store.find_idempotent_request", skip_all)]
    async fn find_idempotent_request(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = with_connection!(self, |conn| query(format!(
            "SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE scope = $1 AND client_key = $2"
        ))
        .bind(scope)
        .bind(key)
        .fetch_optional(conn)
        .await?);
        row.map(|row| rows::idempotency_record(&row)).transpose()
    }

    #[tracing::instrument(name = "store.finish_idempotent_request", skip_all, fields(status = response.status))]
    async fn finish_idempotent_request(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
        intent: Option<(&OrderId, &ProviderIntent)>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        in_transaction!(self, |conn| finish(conn, scope, key, response, intent, now).await?)
    }

    #[tracing::instrument(name = "store.release_idempotency_lock", skip_all)]
    async fn release_idempotency_lock(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        with_connection!(self, |conn| query(
            "UPDATE idempotency_keys SET locked_until = NULL
             WHERE scope = $1 AND client_key = $2 AND recovery_point <> 'finished'"
        )
        .bind(scope)
        .bind(key)
        .execute(conn)
        .await?);
        Ok(())
    }

    #[tracing::instrument(name = "store.claim_stalled_requests", skip_all, fields(limit))]
    async fn claim_stalled_requests(
        &self,
        now: Timestamp,
        lock_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let found = in_transaction!(self, |conn| {
            let skip_locked = conn.dialect().skip_locked();
            query(format!(
                "UPDATE idempotency_keys SET locked_until = $1
                 WHERE (scope, client_key) IN (
                     SELECT scope, client_key FROM idempotency_keys
                     WHERE recovery_point = 'order_created' AND (locked_until IS NULL OR locked_until <= $2)
                     ORDER BY created_at LIMIT $3{skip_locked})
                 RETURNING {IDEMPOTENCY_COLUMNS}"
            ))
            .bind(lock_until.as_millis())
            .bind(now.as_millis())
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?
        })?;
        found.iter().map(rows::idempotency_record).collect()
    }

    #[tracing::instrument(name = "store.delete_idempotency_records", skip_all, fields(limit))]
    async fn delete_idempotency_records(
        &self,
        finished_before: Timestamp,
        abandoned_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        in_transaction!(self, |conn| {
            let skip_locked = conn.dialect().skip_locked();
            query(format!(
                "DELETE FROM idempotency_keys WHERE (scope, client_key) IN (
                     SELECT scope, client_key FROM idempotency_keys
                     WHERE (recovery_point = 'finished' AND created_at < $1) OR created_at < $2
                     LIMIT $3{skip_locked})"
            ))
            .bind(finished_before.as_millis())
            .bind(abandoned_before.as_millis())
            .bind(i64::from(limit))
            .execute(conn)
            .await?
        })
    }

    #[tracing::instrument(name = "store.get_order", skip_all, fields(order = %id.as_str()))]
    async fn get_order(&self, id: &OrderId) -> Result<Order, StoreError> {
        with_connection!(self, |conn| get(conn, id).await)
    }

    #[tracing::instrument(name = "store.list_recent_orders", skip_all, fields(limit))]
    async fn list_recent_orders(&self, limit: u32) -> Result<Vec<Order>, StoreError> {
        let found = with_connection!(self, |conn| query(format!(
            "SELECT {ORDER_COLUMNS} FROM orders ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?);
        found.iter().map(rows::order).collect()
    }

    #[tracing::instrument(name = "store.mark_confirming", skip_all, fields(order = %order.as_str()))]
    async fn mark_confirming(&self, order: &OrderId, until: Option<Timestamp>) -> Result<(), StoreError> {
        in_transaction!(self, |conn| {
            let order = get(conn, order).await?;
            // Under the hold's lock, as the release it must exclude.
            holds::load_for_update(conn, &order.hold_id).await?;
            query("UPDATE orders SET confirming_until = $1 WHERE id = $2")
                .bind(until.map(Timestamp::as_millis))
                .bind(order.id.as_str())
                .execute(conn)
                .await?;
        })
    }

    #[tracing::instrument(name = "store.release_left_checkout", skip_all, fields(hold = %hold.as_str()))]
    async fn release_left_checkout(&self, hold: &HoldId, now: Timestamp) -> Result<Option<Hold>, StoreError> {
        in_transaction!(self, |conn| {
            holds::load_for_update(conn, hold).await?;
            let confirming = order_of_hold(conn, hold)
                .await?
                .is_some_and(|order| order.is_confirming(now));
            if confirming {
                None
            } else {
                Some(holds::cancel(conn, hold, now).await?)
            }
        })
    }

    #[tracing::instrument(name = "store.order_tickets", skip_all, fields(order = %order_id.as_str()))]
    async fn order_tickets(&self, order_id: &OrderId) -> Result<Vec<Ticket>, StoreError> {
        let found = with_connection!(self, |conn| query(
            "SELECT code, ticket_type_id, status FROM tickets WHERE order_id = $1 ORDER BY ticket_type_id, code"
        )
        .bind(order_id.as_str())
        .fetch_all(conn)
        .await?);
        found.iter().map(rows::ticket).collect()
    }
}

async fn find_record_for_update(
    conn: &mut dyn Conn,
    scope: &str,
    key: &str,
) -> Result<Option<(IdempotencyRecord, Option<Timestamp>)>, StoreError> {
    let lock = conn.dialect().for_update();
    let row = query(format!(
        "SELECT {IDEMPOTENCY_COLUMNS}, locked_until FROM idempotency_keys
         WHERE scope = $1 AND client_key = $2{lock}"
    ))
    .bind(scope)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let locked_until = row.optional_integer("locked_until")?.map(Timestamp::from_millis);
        Ok((rows::idempotency_record(&row)?, locked_until))
    })
    .transpose()
}

async fn begin(
    conn: &mut dyn Conn,
    record: &IdempotencyRecord,
    lock_until: Timestamp,
    now: Timestamp,
) -> Result<Begun, StoreError> {
    let inserted = query(
        "INSERT INTO idempotency_keys
             (scope, client_key, hold_id, fingerprint, recovery_point, locked_until, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'started', $5, $6, $6)
         ON CONFLICT (scope, client_key) DO NOTHING",
    )
    .bind(&record.scope)
    .bind(&record.key)
    .bind(record.hold_id.as_str())
    .bind(&record.fingerprint)
    .bind(lock_until.as_millis())
    .bind(now.as_millis())
    .execute(conn)
    .await?;
    if inserted == 1 {
        return Ok(Begun::Proceed(record.clone()));
    }
    let (existing, locked_until) = find_record_for_update(conn, &record.scope, &record.key)
        .await?
        .ok_or(StoreError::NotFound("idempotency key"))?;
    let begun = payments::on_repeated_key(existing, locked_until, &record.fingerprint, now);
    if matches!(begun, Begun::Proceed(_)) {
        query("UPDATE idempotency_keys SET locked_until = $1, updated_at = $2 WHERE scope = $3 AND client_key = $4")
            .bind(lock_until.as_millis())
            .bind(now.as_millis())
            .bind(&record.scope)
            .bind(&record.key)
            .execute(conn)
            .await?;
    }
    Ok(begun)
}

async fn create_order(
    conn: &mut dyn Conn,
    scope: &str,
    key: &str,
    new_order_id: &OrderId,
    grace: Duration,
    now: Timestamp,
) -> Result<OrderPhase, StoreError> {
    let (record, _) = find_record_for_update(conn, scope, key)
        .await?
        .ok_or(StoreError::NotFound("idempotency key"))?;
    if let Some(order_id) = &record.order_id {
        return Ok(OrderPhase::Ready(get(conn, order_id).await?));
    }
    // The hold row lock serializes two keys paying for one reservation: the second finds
    // the first one's order.
    let hold = holds::load_for_update(conn, &record.hold_id).await?;
    let status = hold.status_at(now);
    if status != HoldStatus::Active {
        return Ok(OrderPhase::HoldNotActive(status));
    }
    let order = match order_of_hold(conn, &hold.id).await? {
        Some(order) => order,
        None => {
            query(
                "INSERT INTO orders (id, hold_id, status, amount_cents, currency, created_at, updated_at)
                 VALUES ($1, $2, 'pending', $3, $4, $5, $5)",
            )
            .bind(new_order_id.as_str())
            .bind(hold.id.as_str())
            .bind(hold.amount.get())
            .bind(hold.currency.as_str())
            .bind(now.as_millis())
            .execute(conn)
            .await?;
            get(conn, new_order_id).await?
        }
    };
    // Once per hold (the flag), so retries and a second key cannot extend it again.
    query(
        "UPDATE holds SET expires_at = $1, payment_grace_applied = TRUE, updated_at = $2
         WHERE id = $3 AND status = 'active' AND NOT payment_grace_applied",
    )
    .bind(payments::expiry_with_payment_grace(hold.expires_at, now, grace).as_millis())
    .bind(now.as_millis())
    .bind(hold.id.as_str())
    .execute(conn)
    .await?;
    query(
        "UPDATE idempotency_keys SET recovery_point = 'order_created', order_id = $1, updated_at = $2
         WHERE scope = $3 AND client_key = $4",
    )
    .bind(order.id.as_str())
    .bind(now.as_millis())
    .bind(scope)
    .bind(key)
    .execute(conn)
    .await?;
    Ok(OrderPhase::Ready(order))
}

async fn finish(
    conn: &mut dyn Conn,
    scope: &str,
    key: &str,
    response: &StoredResponse,
    intent: Option<(&OrderId, &ProviderIntent)>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some((order_id, intent)) = intent {
        let recorded = query(
            "UPDATE orders SET payment_intent_id = $1, client_secret = $2, updated_at = $3
             WHERE id = $4 AND (payment_intent_id IS NULL OR payment_intent_id = $1)",
        )
        .bind(&intent.id)
        .bind(&intent.client_secret)
        .bind(now.as_millis())
        .bind(order_id.as_str())
        .execute(conn)
        .await?;
        if recorded != 1 {
            return Err(StoreError::Other(
                format!("order {order_id} already has another PaymentIntent").into(),
            ));
        }
    }
    query(
        "UPDATE idempotency_keys
         SET recovery_point = 'finished', response_status = $1, response_body = $2, locked_until = NULL, updated_at = $3
         WHERE scope = $4 AND client_key = $5",
    )
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(now.as_millis())
    .bind(scope)
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads an order.
pub(crate) async fn get(conn: &mut dyn Conn, id: &OrderId) -> Result<Order, StoreError> {
    let row = query(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
        .bind(id.as_str())
        .fetch_one(conn, "order")
        .await?;
    rows::order(&row)
}

async fn order_of_hold(conn: &mut dyn Conn, hold: &HoldId) -> Result<Option<Order>, StoreError> {
    let row = query(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE hold_id = $1"))
        .bind(hold.as_str())
        .fetch_optional(conn)
        .await?;
    row.map(|row| rows::order(&row)).transpose()
}
