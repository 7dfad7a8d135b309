//! Prometheus metrics, one registry per server (tests run several servers in one process).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EmailAttemptLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    holds_created: Counter,
    holds_sold_out: Counter,
    holds_expired: Counter,
    hold_batch_size: Histogram,
    job_runs: Family<JobLabels, Counter>,
    payment_requests: Family<OutcomeLabels, Counter>,
    webhooks: Family<OutcomeLabels, Counter>,
    errors_received: Family<SourceLabels, Counter>,
    errors_stored: Counter,
    errors_spooled: Counter,
    errors_dropped: Family<ReasonLabels, Counter>,
    envelope_items_dropped: Family<ReasonLabels, Counter>,
    alerts: Family<OutcomeLabels, Counter>,
    email_attempts: Family<EmailAttemptLabels, Counter>,
    emails: Family<StatusLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("boxoffice");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            request_seconds.clone(),
        );
        let holds_created = Counter::default();
        registry.register("holds_created", "Holds placed", holds_created.clone());
        let holds_sold_out = Counter::default();
        registry.register(
            "holds_sold_out",
            "Hold requests answered sold_out",
            holds_sold_out.clone(),
        );
        let holds_expired = Counter::default();
        registry.register(
            "holds_expired",
            "Holds marked expired by the sweeper",
            holds_expired.clone(),
        );
        // 1 to 1024 holds per transaction.
        let hold_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "hold_batch_size",
            "Hold requests placed per database transaction (group commit)",
            hold_batch_size.clone(),
        );
        let job_runs = Family::<JobLabels, Counter>::default();
        registry.register(
            "job_runs",
            "Background job runs (sweeper, completer, reaper) by outcome",
            job_runs.clone(),
        );
        let payment_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "payment_intent_requests",
            "Payment-intent requests by outcome: created, replayed, in_use, key_reused, provider_unavailable, rejected",
            payment_requests.clone(),
        );
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_events",
            "Webhook events by outcome: received, duplicate, applied, ignored, refunded, deferred, invalid_signature, reconciled",
            webhooks.clone(),
        );
        let errors_received = Family::<SourceLabels, Counter>::default();
        registry.register(
            "errors_received",
            "Error events received, by source: api, envelope, browser, server",
            errors_received.clone(),
        );
        let errors_stored = Counter::default();
        registry.register(
            "errors_stored",
            "Error events written to the database (from a request or from the spool)",
            errors_stored.clone(),
        );
        let errors_spooled = Counter::default();
        registry.register(
            "errors_spooled",
            "Error events written to the local spool because the database could not take them",
            errors_spooled.clone(),
        );
        let errors_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "errors_dropped",
            "Error events refused, by reason: invalid, unauthorized, too_large, rate_limited, spool_full",
            errors_dropped.clone(),
        );
        let envelope_items_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "envelope_items_dropped",
            "Sentry envelope items accepted and dropped (not events), by item type",
            envelope_items_dropped.clone(),
        );
        let alerts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "alerts",
            "Alert delivery attempts by outcome: sent, retry, failed",
            alerts.clone(),
        );
        let email_attempts = Family::<EmailAttemptLabels, Counter>::default();
        registry.register(
            "email_attempts",
            "Buyer e-mail delivery attempts by kind (confirmation, refund) and outcome (sent, failed)",
            email_attempts.clone(),
        );
        let emails = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "emails",
            "Buyer e-mails in the outbox by status (queued, sent, failed), as of the last email-sender run",
            emails.clone(),
        );
        Self {
            email_attempts,
            emails,
            webhooks,
            errors_received,
            errors_stored,
            errors_spooled,
            errors_dropped,
            envelope_items_dropped,
            alerts,
            registry,
            requests,
            request_seconds,
            holds_created,
            holds_sold_out,
            holds_expired,
            hold_batch_size,
            job_runs,
            payment_requests,
        }
    }

    /// Counts one answered request. The method label is one of the standard methods or
    /// `other`, and the route one of the router's templates or `unmatched`: nothing a client
    /// invents becomes a label value (SPEC §2.1), so the label sets stay bounded.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method).to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts a placed hold.
    pub fn hold_created(&self) {
        self.holds_created.inc();
    }

    /// Counts a sold-out answer.
    pub fn hold_sold_out(&self) {
        self.holds_sold_out.inc();
    }

    /// A batch of hold requests placed in one transaction.
    pub fn hold_batch(&self, size: usize) {
        #[allow(clippy::cast_precision_loss)] // batch sizes are at most 1,024
        self.hold_batch_size.observe(size as f64);
    }

    /// Counts a job run; for the sweeper, also the holds it expired.
    pub fn job_run(&self, job: &str, succeeded: bool, affected: u64) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.job_runs
            .get_or_create(&JobLabels {
                job: job.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if job == boxoffice_core::jobs::EXPIRE_HOLDS {
            self.holds_expired.inc_by(affected);
        }
    }

    /// Counts a payment-intent request by outcome.
    pub fn payment_request(&self, outcome: &str) {
        self.payment_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a webhook delivery by outcome.
    pub fn webhook(&self, outcome: &str) {
        self.webhooks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts events found by the reconciler that were never delivered.
    pub fn webhooks_reconciled(&self, count: u64) {
        self.webhooks
            .get_or_create(&OutcomeLabels {
                outcome: "reconciled".to_owned(),
            })
            .inc_by(count);
    }

    /// Counts error events received from `source` (`api`, `envelope`, `server`).
    pub fn errors_received(&self, source: &str, count: u64) {
        self.errors_received
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc_by(count);
    }

    /// Counts error events written to the database.
    pub fn errors_stored(&self, count: u64) {
        self.errors_stored.inc_by(count);
    }

    /// Counts error events written to the spool.
    pub fn errors_spooled(&self, count: u64) {
        self.errors_spooled.inc_by(count);
    }

    /// Counts error events refused, by reason.
    pub fn errors_dropped(&self, reason: &str, count: u64) {
        self.errors_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(count);
    }

    /// Counts an envelope item that is not an event (accepted and dropped), by type.
    pub fn envelope_item_dropped(&self, item_type: &str) {
        self.envelope_items_dropped
            .get_or_create(&ReasonLabels {
                reason: item_type.to_owned(),
            })
            .inc();
    }

    /// Counts an alert delivery attempt by outcome (`sent`, `retry`, `failed`).
    pub fn alert(&self, outcome: &str, count: u64) {
        self.alerts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc_by(count);
    }

    /// Counts one attempt to send a buyer e-mail of `kind`, by outcome (`sent`, `failed`).
    pub fn email_attempt(&self, kind: &str, outcome: &str) {
        self.email_attempts
            .get_or_create(&EmailAttemptLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the outbox gauges: messages queued, sent and failed (the whole database's,
    /// so every instance reports the same numbers).
    pub fn email_counts(&self, queued: i64, sent: i64, failed: i64) {
        for (status, count) in [("queued", queued), ("sent", sent), ("failed", failed)] {
            self.emails
                .get_or_create(&StatusLabels {
                    status: status.to_owned(),
                })
                .set(count);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The label of an HTTP method: the standard ones by name, anything else `other`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}
