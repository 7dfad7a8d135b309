//! The JSON request bodies of the HTTP API: each body type through axum's `Json` extractor
//! exactly as `ApiJson` runs it (its rejection turned into the API's error answer), then the
//! checks the handler makes before touching the database (`Name`, `Currency`, RFC 3339 times,
//! prices, capacities, hold lengths, per-order limits, ids, e-mail addresses, quantities,
//! error reports with scrubbing, the payment-intent body's idempotency fingerprint).
//!
//! Input: a selector byte (ASCII `0`…`9` in the corpus), then the body.
//! Checks: never panics; a rejected body answers 4xx, never 5xx.
#![no_main]

use axum::Json;
use axum::body::Bytes;
use axum::response::IntoResponse;
use boxoffice_core::Timestamp;
use boxoffice_core::auth::Caller;
use boxoffice_core::catalog::{Capacity, HoldSeconds, MaxPerOrder};
use boxoffice_core::failures::Severity;
use boxoffice_core::holds::{EmailAddress, Quantity};
use boxoffice_core::ids::OrganizationId;
use boxoffice_core::money::{Cents, Currency};
use boxoffice_core::organizations::Name;
use boxoffice_core::service::{ErrorInput, prepare_error};
use boxoffice_fuzz::selector;
use boxoffice_server::http::api_error::ApiError;
use boxoffice_server::http::error_store::ReportError;
use boxoffice_server::http::events::{CreateEvent, CreateTicketType, UpdateTicketType};
use boxoffice_server::http::reservations::{CreateReservation, parse_request};
use boxoffice_server::http::organizations::CreateOrganization;
use boxoffice_server::http::payments::fingerprint;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// The body through axum's extractor; a rejection must be a client error.
fn extract<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    match Json::<T>::from_bytes(body) {
        Ok(Json(value)) => Some(value),
        Err(rejection) => {
            let status = ApiError::from(rejection).into_response().status();
            assert!(status.is_client_error(), "a rejected body answered {status}");
            None
        }
    }
}

/// A handler-side check failed: that must be a client error too.
fn refused(err: ApiError) {
    let status = err.into_response().status();
    assert!(status.is_client_error(), "a refused body answered {status}");
}

fuzz_target!(|data: &[u8]| {
    let (which, body) = selector(data);
    let text = String::from_utf8_lossy(body);
    match which % 10 {
        0 => {
            if let Some(reservation) = extract::<CreateReservation>(body) {
                if let Err(err) = parse_request(reservation) {
                    refused(err);
                }
            }
        }
        1 => {
            if let Some(event) = extract::<CreateEvent>(body) {
                let _ = event.organization_id.as_deref().map(OrganizationId::parse);
                let _ = Name::parse(&event.name);
                let _ = Timestamp::parse_rfc3339(&event.starts_at).map(|t| t.to_rfc3339());
                let _ = Currency::parse(&event.currency).map(|c| c.to_string());
                let _ = event.hold_seconds.map(HoldSeconds::parse);
            }
        }
        2 => {
            if let Some(ticket_type) = extract::<CreateTicketType>(body) {
                let _ = Name::parse(&ticket_type.name);
                let _ = Cents::parse_price(ticket_type.price_cents);
                let _ = Capacity::parse(ticket_type.capacity);
                let _ = ticket_type.max_per_order.map(MaxPerOrder::parse);
            }
        }
        3 => {
            if let Some(changes) = extract::<UpdateTicketType>(body) {
                let _ = changes.name.as_deref().map(Name::parse);
                let _ = changes.price_cents.map(Cents::parse_price);
                let _ = changes.capacity.map(Capacity::parse);
                let _ = changes.max_per_order.map(MaxPerOrder::parse);
            }
        }
        4 => {
            if let Some(org) = extract::<CreateOrganization>(body) {
                let _ = Name::parse(&org.name);
            }
        }
        5 => {
            if let Some(report) = extract::<ReportError>(body) {
                let input = ErrorInput {
                    severity: Severity::parse(&report.severity),
                    message: report.message,
                    stack_trace: report.stack_trace,
                    component: report.component,
                    context: report.context,
                    fingerprint: report.fingerprint,
                    request_id: None,
                };
                let caller = Caller::Organization {
                    organization_id: OrganizationId::generate(),
                    api_key_id: boxoffice_core::ids::ApiKeyId::generate(),
                };
                let _ = prepare_error(&caller, input, Timestamp::from_millis(1_700_000_000_000));
            }
        }
        6 => {
            // The payment-intent body: any JSON object or nothing, fingerprinted.
            let path = "/api/v1/reservations/hold_x/payment-intent";
            match fingerprint(path, &Bytes::copy_from_slice(body)) {
                Ok(digest) => assert_eq!(digest.len(), 64),
                Err(err) => refused(err),
            }
        }
        7 => {
            if let Ok(email) = EmailAddress::parse(&text) {
                let address = email.as_str();
                assert!(address.len() <= 254 && address.contains('@'), "{address:?}");
                assert_eq!(EmailAddress::parse(address).as_ref(), Ok(&email));
            }
        }
        8 => {
            for raw in body.chunks(8) {
                let mut bytes = [0u8; 8];
                bytes[..raw.len()].copy_from_slice(raw);
                let n = i64::from_le_bytes(bytes);
                if let Ok(quantity) = Quantity::parse(n) {
                    assert!(quantity.get() >= 1 && i64::from(quantity.get()) == n);
                }
                let _ = Capacity::parse(n);
                let _ = MaxPerOrder::parse(n);
                let _ = HoldSeconds::parse(n);
                let _ = Cents::parse_price(n);
            }
        }
        _ => {
            // Any body into any of the typed bodies (the selector may not match the shape).
            let _ = extract::<CreateReservation>(body).map(parse_request);
            let _ = extract::<CreateEvent>(body);
            let _ = extract::<CreateTicketType>(body);
            let _ = extract::<UpdateTicketType>(body);
            let _ = extract::<ReportError>(body);
        }
    }
});
