//! Orders and idempotency records: the stored phases of payment creation
//! (see `boxoffice_core::payments`). Each function runs inside a write transaction, which
//! on SQLite is exclusive, so reading a record and then changing it needs no row locks.

use std::time::Duration;

use boxoffice_core::holds::HoldStatus;
use boxoffice_core::ids::{HoldId, OrderId};
use boxoffice_core::payments::{Begun, IdempotencyRecord, Order, OrderPhase, ProviderIntent, StoredResponse};
use boxoffice_core::rows::{self, IDEMPOTENCY_COLUMNS, ORDER_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{Row, SqliteConnection};

use crate::rows::Columns;
use crate::{holds, map_error};

async fn find_record(
    conn: &mut SqliteConnection,
    scope: &str,
    key: &str,
) -> Result<Option<(IdempotencyRecord, Option<i64>)>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {IDEMPOTENCY_COLUMNS}, locked_until FROM idempotency_keys WHERE scope = ? AND client_key = ?"
    ))
    .bind(scope)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    row.map(|row| {
        let locked_until: Option<i64> = row.try_get("locked_until").map_err(map_error)?;
        Ok((rows::idempotency_record(&Columns(&row))?, locked_until))
    })
    .transpose()
}

pub(crate) async fn find(
    conn: &mut SqliteConnection,
    scope: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE scope = ? AND client_key = ?"
    ))
    .bind(scope)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    row.map(|row| rows::idempotency_record(&Columns(&row))).transpose()
}

pub(crate) async fn begin(
    conn: &mut SqliteConnection,
    record: &IdempotencyRecord,
    lock_until: Timestamp,
    now: Timestamp,
) -> Result<Begun, StoreError> {
    let Some((existing, locked_until)) = find_record(conn, &record.scope, &record.key).await? else {
        sqlx::query(
            "INSERT INTO idempotency_keys
                 (scope, client_key, hold_id, fingerprint, recovery_point, locked_until, created_at, updated_at)
             VALUES (?, ?, ?, ?, 'started', ?, ?, ?)",
        )
        .bind(&record.scope)
        .bind(&record.key)
        .bind(record.hold_id.as_str())
        .bind(&record.fingerprint)
        .bind(lock_until.as_millis())
        .bind(now.as_millis())
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        return Ok(Begun::Proceed(record.clone()));
    };
    if existing.fingerprint != record.fingerprint {
        return Ok(Begun::Mismatch);
    }
    if let Some(response) = existing.response {
        return Ok(Begun::Replay(response));
    }
    if let Some(locked_until) = locked_until.filter(|until| *until > now.as_millis()) {
        return Ok(Begun::InUse {
            locked_until: Timestamp::from_millis(locked_until),
        });
    }
    sqlx::query("UPDATE idempotency_keys SET locked_until = ?, updated_at = ? WHERE scope = ? AND client_key = ?")
        .bind(lock_until.as_millis())
        .bind(now.as_millis())
        .bind(&record.scope)
        .bind(&record.key)
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(Begun::Proceed(existing))
}

pub(crate) async fn create_order(
    conn: &mut SqliteConnection,
    scope: &str,
    key: &str,
    new_order_id: &OrderId,
    grace: Duration,
    now: Timestamp,
) -> Result<OrderPhase, StoreError> {
    let (record, _) = find_record(conn, scope, key)
        .await?
        .ok_or(StoreError::NotFound("idempotency key"))?;
    if let Some(order_id) = &record.order_id {
        return Ok(OrderPhase::Ready(get(conn, order_id).await?));
    }
    let hold = holds::load(conn, &record.hold_id).await?;
    let status = hold.status_at(now);
    if status != HoldStatus::Active {
        return Ok(OrderPhase::HoldNotActive(status));
    }
    let order = match order_of_hold(conn, &hold.id).await? {
        Some(order) => order,
        None => {
            sqlx::query(
                "INSERT INTO orders (id, hold_id, status, amount_cents, currency, created_at, updated_at)
                 VALUES (?, ?, 'pending', ?, ?, ?, ?)",
            )
            .bind(new_order_id.as_str())
            .bind(hold.id.as_str())
            .bind(hold.amount.get())
            .bind(hold.currency.as_str())
            .bind(now.as_millis())
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
            get(conn, new_order_id).await?
        }
    };
    sqlx::query(
        "UPDATE holds SET expires_at = MAX(expires_at, ?), payment_grace_applied = TRUE, updated_at = ?
         WHERE id = ? AND status = 'active' AND NOT payment_grace_applied",
    )
    .bind(now.plus(grace).as_millis())
    .bind(now.as_millis())
    .bind(hold.id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    sqlx::query(
        "UPDATE idempotency_keys SET recovery_point = 'order_created', order_id = ?, updated_at = ?
         WHERE scope = ? AND client_key = ?",
    )
    .bind(order.id.as_str())
    .bind(now.as_millis())
    .bind(scope)
    .bind(key)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(OrderPhase::Ready(order))
}

pub(crate) async fn finish(
    conn: &mut SqliteConnection,
    scope: &str,
    key: &str,
    response: &StoredResponse,
    intent: Option<(&OrderId, &ProviderIntent)>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some((order_id, intent)) = intent {
        let recorded = sqlx::query(
            "UPDATE orders SET payment_intent_id = ?, client_secret = ?, updated_at = ?
             WHERE id = ? AND (payment_intent_id IS NULL OR payment_intent_id = ?)",
        )
        .bind(&intent.id)
        .bind(&intent.client_secret)
        .bind(now.as_millis())
        .bind(order_id.as_str())
        .bind(&intent.id)
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        if recorded.rows_affected() != 1 {
            return Err(StoreError::Other(
                format!("order {order_id} already has another PaymentIntent").into(),
            ));
        }
    }
    sqlx::query(
        "UPDATE idempotency_keys
         SET recovery_point = 'finished', response_status = ?, response_body = ?, locked_until = NULL, updated_at = ?
         WHERE scope = ? AND client_key = ?",
    )
    .bind(i64::from(response.status))
    .bind(&response.body)
    .bind(now.as_millis())
    .bind(scope)
    .bind(key)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn release(conn: &mut SqliteConnection, scope: &str, key: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET locked_until = NULL
         WHERE scope = ? AND client_key = ? AND recovery_point <> 'finished'",
    )
    .bind(scope)
    .bind(key)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn claim_stalled(
    conn: &mut SqliteConnection,
    now: Timestamp,
    lock_until: Timestamp,
    limit: u32,
) -> Result<Vec<IdempotencyRecord>, StoreError> {
    let found = sqlx::query(&format!(
        "SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys
         WHERE recovery_point = 'order_created' AND (locked_until IS NULL OR locked_until <= ?)
         ORDER BY created_at LIMIT ?"
    ))
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    let claimed = found
        .iter()
        .map(|row| rows::idempotency_record(&Columns(row)))
        .collect::<Result<Vec<_>, _>>()?;
    for record in &claimed {
        sqlx::query("UPDATE idempotency_keys SET locked_until = ? WHERE scope = ? AND client_key = ?")
            .bind(lock_until.as_millis())
            .bind(&record.scope)
            .bind(&record.key)
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
    }
    Ok(claimed)
}

pub(crate) async fn delete_old(
    conn: &mut SqliteConnection,
    finished_before: Timestamp,
    abandoned_before: Timestamp,
    limit: u32,
) -> Result<u64, StoreError> {
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (scope, client_key) IN (
             SELECT scope, client_key FROM idempotency_keys
             WHERE (recovery_point = 'finished' AND created_at < ?) OR created_at < ?
             LIMIT ?)",
    )
    .bind(finished_before.as_millis())
    .bind(abandoned_before.as_millis())
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(deleted.rows_affected())
}

pub(crate) async fn get(conn: &mut SqliteConnection, id: &OrderId) -> Result<Order, StoreError> {
    let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("order"))?;
    rows::order(&Columns(&row))
}

async fn order_of_hold(conn: &mut SqliteConnection, hold: &HoldId) -> Result<Option<Order>, StoreError> {
    let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE hold_id = ?"))
        .bind(hold.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
    row.map(|row| rows::order(&Columns(&row))).transpose()
}

/// The `limit` most recently created orders, newest first (the operator's dashboard).
pub(crate) async fn list_recent(conn: &mut SqliteConnection, limit: u32) -> Result<Vec<Order>, StoreError> {
    let found = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders ORDER BY created_at DESC, id DESC LIMIT ?"
    ))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    found.iter().map(|row| rows::order(&Columns(row))).collect()
}
