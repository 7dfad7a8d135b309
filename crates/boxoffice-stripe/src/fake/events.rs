//! Stripe events: every state change an operation makes is recorded as an event (the
//! object snapshotted at that moment, as Stripe does) and queued for webhook delivery, and
//! `GET /v1/events` lists them — the reconciler's way to catch what webhooks missed.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::FakeStripe;
use super::api::{Outcome, RequestCtx};
use super::delivery::Delivery;
use super::params::{paginate, query_params};
use super::state::{FakeState, new_id};
use crate::client::STRIPE_API_VERSION;
use crate::unix_now;

impl FakeState {
    /// Records an event (snapshotting its object, as Stripe does) and queues its delivery
    /// for when the request commits.
    pub(super) fn emit(&mut self, event_type: &str, object: Value, ctx: &RequestCtx) {
        let id = new_id("evt", 24);
        let event = json!({
            "id": id,
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": unix_now(),
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": i64::from(ctx.webhooks_configured),
            "request": { "id": ctx.request_id, "idempotency_key": ctx.idempotency_key },
            "type": event_type,
        });
        self.outbox.push(Delivery {
            event_id: id,
            event_type: event_type.to_owned(),
            payload: Bytes::from(serde_json::to_vec(&event).unwrap_or_default()),
        });
        self.events.push(event);
    }
}

pub(super) async fn list_events(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    fake.api(
        &headers,
        "GET /v1/events".into(),
        query_params(query),
        |state, params, _| {
            let bound = |key: &str| -> Result<Option<i64>, Outcome> {
                params
                    .get(key)
                    .map(|v| {
                        v.parse::<i64>().map_err(|_| {
                            Outcome::invalid(format!("Invalid integer: {v}"), "parameter_invalid_integer", Some(key))
                        })
                    })
                    .transpose()
            };
            let bounds = (|| {
                Ok((
                    bound("created[gte]")?,
                    bound("created[gt]")?,
                    bound("created[lte]")?,
                    bound("created[lt]")?,
                ))
            })();
            let (gte, gt, lte, lt) = match bounds {
                Ok(bounds) => bounds,
                Err(outcome) => return outcome,
            };
            let event_type = params.get("type");
            let newest_first: Vec<Value> = state
                .events
                .iter()
                .rev()
                .filter(|event| {
                    let created = event["created"].as_i64().unwrap_or(0);
                    gte.is_none_or(|b| created >= b)
                        && gt.is_none_or(|b| created > b)
                        && lte.is_none_or(|b| created <= b)
                        && lt.is_none_or(|b| created < b)
                        && event_type.is_none_or(|t| event["type"].as_str() == Some(t))
                })
                .cloned()
                .collect();
            paginate(newest_first, params, "/v1/events")
        },
    )
    .await
}
