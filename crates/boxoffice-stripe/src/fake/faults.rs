//! The fault switches (`POST /_control/faults`): each armed fault is a count of API
//! requests or webhook deliveries still to affect, so that a test reproduces exactly the
//! network failure it means to. This module decides which fault hits the next request or
//! delivery; `api` and `delivery` act on that decision. A new fault is
//! a field here, a name in [`Faults::arm`], and a branch where it is taken.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

/// Armed faults, each a count of requests (or deliveries) still to affect.
#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct Faults {
    delay: u32,
    delay_ms: u64,
    http_500: u32,
    drop_connection: u32,
    drop_response_after_commit: u32,
    duplicate_webhooks: u32,
    reorder_webhooks: u32,
    drop_webhooks: u32,
}

/// What a fault does to one API request (besides an optional delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ApiFault {
    Http500,
    DropConnection,
    DropResponseAfterCommit,
}

/// What a fault does to one webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WebhookFault {
    Drop,
    /// Held back, then released in reverse order with the last reordered one.
    Reorder,
    Duplicate,
}

impl Faults {
    /// Arms `count` of the fault named `fault`; the message says why it cannot.
    pub(super) fn arm(&mut self, fault: &str, count: u32, delay_ms: Option<u64>) -> Result<(), String> {
        let slot = match fault {
            "delay" => {
                let Some(delay_ms) = delay_ms else {
                    return Err("the delay fault needs delay_ms".to_owned());
                };
                self.delay_ms = delay_ms;
                &mut self.delay
            }
            "http_500" => &mut self.http_500,
            "drop_connection" => &mut self.drop_connection,
            "drop_response_after_commit" => &mut self.drop_response_after_commit,
            "duplicate_webhooks" => &mut self.duplicate_webhooks,
            "reorder_webhooks" => &mut self.reorder_webhooks,
            "drop_webhooks" => &mut self.drop_webhooks,
            other => return Err(format!("unknown fault {other:?}")),
        };
        *slot = count;
        Ok(())
    }

    /// The faults for the next API request: an optional delay plus at most one failure.
    pub(super) fn take_for_request(&mut self) -> (Option<Duration>, Option<ApiFault>) {
        let delay = take(&mut self.delay).then(|| Duration::from_millis(self.delay_ms));
        let fault = if take(&mut self.drop_connection) {
            Some(ApiFault::DropConnection)
        } else if take(&mut self.http_500) {
            Some(ApiFault::Http500)
        } else if take(&mut self.drop_response_after_commit) {
            Some(ApiFault::DropResponseAfterCommit)
        } else {
            None
        };
        (delay, fault)
    }

    /// The fault for the next webhook delivery, at most one.
    pub(super) fn take_for_delivery(&mut self) -> Option<WebhookFault> {
        if take(&mut self.drop_webhooks) {
            Some(WebhookFault::Drop)
        } else if take(&mut self.reorder_webhooks) {
            Some(WebhookFault::Reorder)
        } else if take(&mut self.duplicate_webhooks) {
            Some(WebhookFault::Duplicate)
        } else {
            None
        }
    }

    /// True while deliveries are still to be held back by `reorder_webhooks`.
    pub(super) fn reordering(&self) -> bool {
        self.reorder_webhooks > 0
    }
}

fn take(count: &mut u32) -> bool {
    if *count > 0 {
        *count -= 1;
        true
    } else {
        false
    }
}

pub(super) async fn sleep_opt(delay: Option<Duration>) {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

/// A response whose body fails, so hyper aborts the connection: with `None` before any
/// byte of the answer is written, with `Some(body)` after the head and part of the body.
/// Either way the client cannot tell whether the work was done.
pub(super) fn cut_connection(body: Option<Bytes>) -> Response {
    let (status, prefix, declared_len) = match body {
        Some(body) => (StatusCode::OK, body.slice(..body.len() / 2), body.len()),
        None => (StatusCode::OK, Bytes::new(), 1),
    };
    let stream = futures::stream::iter([
        Ok(prefix),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection cut by a test double fault",
        )),
    ]);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(declared_len));
    response
}
