//! Use cases of the operator's dashboard that the JSON API has no counterpart for (yet).

use super::{BoxOffice, Error, require_operator};
use crate::auth::Caller;
use crate::payments::Order;

/// The most orders one listing returns.
const MAX_RECENT_ORDERS: u32 = 500;

impl BoxOffice {
    /// The most recently created orders, newest first (operator). `limit` is clamped to
    /// 1..=500.
    #[tracing::instrument(level = "debug", skip_all, fields(limit))]
    pub async fn list_recent_orders(&self, caller: &Caller, limit: u32) -> Result<Vec<Order>, Error> {
        require_operator(caller)?;
        Ok(self
            .payment_store()
            .list_recent_orders(limit.clamp(1, MAX_RECENT_ORDERS))
            .await?)
    }
}
