//! The client's spans: one per call, named after the operation, with the ids it names and
//! the id it created — and never the secret key, a client secret, an idempotency key (ours
//! embed hold and order ids, which are bearer capabilities, SPEC §2) or request bodies.

mod common;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use common::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Every span opened, value recorded and event logged, one `name field=value…` line each.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<String>>>);

impl Recorded {
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lines").clone()
    }

    fn push(&self, name: &str, fields: impl FnOnce(&mut dyn Visit)) {
        let mut line = Line(name.to_owned());
        fields(&mut line);
        self.0.lock().expect("lines").push(line.0);
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorded {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        self.push(attrs.metadata().name(), |visit| attrs.record(visit));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let name = ctx.span(id).map_or("?", |span| span.name());
        self.push(name, |visit| values.record(visit));
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        self.push(event.metadata().name(), |visit| event.record(visit));
    }
}

#[tokio::test]
async fn each_call_has_a_span_with_ids_and_no_secrets() {
    let recorded = Recorded::default();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(recorded.clone()));
    let double = spawn_double(None).await;
    // One retry, so that the retry warning is checked too.
    let client = client(&double.base, 1);
    set_fault(&double.base, "http_500", 1, None).await;

    let pi = bounded(client.create_payment_intent(&params(4200, "ord_capability"), "key-ord_capability-create"))
        .await
        .expect("create");
    bounded(client.retrieve_payment_intent(&pi.id)).await.expect("retrieve");
    bounded(client.list_payment_intents(5, Some(&pi.id)))
        .await
        .expect("list");
    bounded(client.confirm_payment_intent(&pi.id, "pm_card_visa", "key-ord_capability-confirm"))
        .await
        .expect("confirm");
    let refund = bounded(client.create_refund(&pi.id, "key-ord_capability-refund"))
        .await
        .expect("refund");
    bounded(client.list_events(10, None, Some(0))).await.expect("events");

    let lines = recorded.lines();
    let pi_field = format!("payment_intent={:?}", pi.id);
    let has = |name: &str, field: &str| {
        lines
            .iter()
            .any(|line| line.starts_with(&format!("{name} ")) && line.contains(field))
    };
    assert!(has("stripe.create_payment_intent", "amount=4200"), "{lines:#?}");
    assert!(
        has("stripe.create_payment_intent", &pi_field),
        "created id recorded: {lines:#?}"
    );
    assert!(has("stripe.retrieve_payment_intent", &pi_field), "{lines:#?}");
    assert!(
        has("stripe.list_payment_intents", &format!("starting_after={:?}", pi.id)),
        "{lines:#?}"
    );
    assert!(has("stripe.confirm_payment_intent", &pi_field), "{lines:#?}");
    assert!(
        has("stripe.create_refund", &format!("refund={:?}", refund.id)),
        "{lines:#?}"
    );
    assert!(has("stripe.list_events", "created_gte=0"), "{lines:#?}");
    assert!(
        lines.iter().any(|line| line.contains("retrying")),
        "the retry warning was seen: {lines:#?}"
    );

    let client_secret = pi.client_secret.expect("client secret");
    for line in &lines {
        for secret in [API_KEY, client_secret.as_str(), "ord_capability"] {
            assert!(!line.contains(secret), "{secret:?} leaked into {line:?}");
        }
    }
}
