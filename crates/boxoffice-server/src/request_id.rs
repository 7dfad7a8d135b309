//! The request id: taken from the client's `x-request-id` when it is harmless, generated
//! otherwise, answered on every response and shown on error pages.
//!
//! Its own module because both the API (`http`) and the pages read it, and the
//! observation middleware that assigns it wraps them both.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rand::RngCore;

/// The request id header, read from the request when it carries one and always answered.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, for handlers and logs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's own id from `headers` when it is acceptable, else a fresh one.
    pub fn of(headers: &HeaderMap) -> Self {
        Self(
            headers
                .get(&REQUEST_ID)
                .and_then(acceptable_request_id)
                .unwrap_or_else(generate_request_id),
        )
    }
}

/// A client's own request id is kept when it is 1–128 visible ASCII characters;
/// anything else is replaced, so logs and headers never carry hostile text.
fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_owned())
}

fn generate_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_request_ids_are_replaced() {
        assert_eq!(
            acceptable_request_id(&HeaderValue::from_static("abc-123")),
            Some("abc-123".into())
        );
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("has space")), None);
        let long = "x".repeat(129);
        assert_eq!(
            acceptable_request_id(&HeaderValue::from_str(&long).expect("ascii")),
            None
        );
    }
}
