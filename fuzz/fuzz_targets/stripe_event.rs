//! The webhook event parser: the signed body of `POST /webhooks/stripe` (and each event the
//! reconciliation job lists) turned into the event boxoffice applies
//! (`boxoffice_core::webhooks::StripeEvent::parse`), plus the Stripe client's typed view of
//! an event (`boxoffice_stripe::Event` and the objects it carries).
//!
//! Input: the raw body. Checks: never panics; an accepted event has a 1–255 byte id, a type,
//! a PaymentIntent whenever it asks for an effect, and keeps the payload as received.
#![no_main]

use boxoffice_core::webhooks::{Effect, StripeEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = StripeEvent::parse(data) {
        assert!(!event.id.is_empty() && event.id.len() <= 255);
        if event.effect != Effect::Nothing {
            assert!(event.payment_intent_id.is_some());
        }
        assert_eq!(event.payload, String::from_utf8_lossy(data));
        // Parsing what was stored gives the same event (the webhook worker re-parses it).
        assert_eq!(StripeEvent::parse(event.payload.as_bytes()).as_ref(), Ok(&event));
    }
    if let Ok(event) = serde_json::from_slice::<boxoffice_stripe::Event>(data) {
        let _ = event.object_type();
        let _ = event.payment_intent();
        let _ = event.charge();
        let _ = event.refund();
    }
    let _ = serde_json::from_slice::<boxoffice_stripe::List<boxoffice_stripe::Event>>(data);
});
