//! `GET /admin/orders`: recent orders, newest first.

use axum::extract::State;
use axum::response::Response;
use boxoffice_core::auth::Caller;
use boxoffice_core::payments::Order;
use serde::Serialize;

use super::{LIST_ROWS, Layout, Session, When, money, truncate, when};
use crate::http::api_error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
struct OrderView {
    id: String,
    hold_id: String,
    status: &'static str,
    amount: String,
    amount_cents: i64,
    currency: String,
    payment_intent_id: Option<String>,
    created_at: When,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        Self {
            id: order.id.to_string(),
            hold_id: order.hold_id.to_string(),
            status: order.status.as_str(),
            amount: money(order.amount.get(), order.currency.as_str()),
            amount_cents: order.amount.get(),
            currency: order.currency.to_string(),
            payment_intent_id: order.payment_intent_id,
            created_at: when(order.created_at),
        }
    }
}

#[derive(Serialize)]
struct OrdersPage {
    #[serde(flatten)]
    layout: Layout,
    orders: Vec<OrderView>,
    more: bool,
}

/// `GET /admin/orders`: recent orders, newest first.
pub(super) async fn recent_orders(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    let orders = state
        .boxoffice
        .list_recent_orders(&Caller::Operator, LIST_ROWS + 1)
        .await?;
    let (orders, more) = truncate(orders, LIST_ROWS);
    let page = OrdersPage {
        layout: session.layout("orders"),
        orders: orders.into_iter().map(Into::into).collect(),
        more,
    };
    Ok(state.pages.render("admin_orders.html", page))
}
