//! The payment provider of the use cases, over the one Stripe HTTP client.
//!
//! In the default configuration that client talks to the built-in test double mounted at
//! `/_fake-stripe` on this very server, over real HTTP, so the default path exercises the
//! same code as production.

use async_trait::async_trait;
use boxoffice_core::ids::OrderId;
use boxoffice_core::payments::{IntentRequest, PaymentProvider, ProviderError, ProviderIntent};
use boxoffice_stripe::{CreatePaymentIntent, PaymentIntent, StripeClient, StripeError};

/// Pages of recent PaymentIntents searched when looking one up by order.
const LOOKUP_PAGES: usize = 10;

/// Pages of recent events read by one reconciliation run (100 per page).
const EVENT_PAGES: usize = 50;

/// [`PaymentProvider`] over Stripe's API.
pub struct StripeProvider {
    client: StripeClient,
}

impl StripeProvider {
    /// Wraps a client.
    pub fn new(client: StripeClient) -> Self {
        Self { client }
    }
}

fn provider_error(err: StripeError) -> ProviderError {
    let message = err.to_string();
    if err.is_indeterminate() {
        ProviderError::Indeterminate(message)
    } else {
        ProviderError::Refused(message)
    }
}

fn intent(pi: PaymentIntent) -> Result<ProviderIntent, ProviderError> {
    let client_secret = pi
        .client_secret
        .ok_or_else(|| ProviderError::Refused(format!("PaymentIntent {} came without a client_secret", pi.id)))?;
    Ok(ProviderIntent {
        status: serde_json::to_value(pi.status)
            .ok()
            .and_then(|status| status.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned()),
        id: pi.id,
        client_secret,
        amount: pi.amount,
        currency: pi.currency,
    })
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    async fn create_payment_intent(
        &self,
        request: &IntentRequest,
        idempotency_key: &str,
    ) -> Result<ProviderIntent, ProviderError> {
        let params = CreatePaymentIntent {
            amount: request.amount.get(),
            // Stripe speaks lower case.
            currency: request.currency.as_str().to_ascii_lowercase(),
            metadata: request.metadata.clone(),
            description: None,
        };
        let created = self
            .client
            .create_payment_intent(&params, idempotency_key)
            .await
            .map_err(provider_error)?;
        // The moment crash safety is about: created at Stripe, not yet recorded here.
        boxoffice_core::faults::after_payment_intent_created();
        intent(created)
    }

    async fn find_payment_intent_for_order(&self, order: &OrderId) -> Result<Option<ProviderIntent>, ProviderError> {
        let mut starting_after: Option<String> = None;
        for _ in 0..LOOKUP_PAGES {
            let page = self
                .client
                .list_payment_intents(100, starting_after.as_deref())
                .await
                .map_err(provider_error)?;
            starting_after = page.data.last().map(|pi| pi.id.clone());
            if let Some(found) = page
                .data
                .into_iter()
                .find(|pi| pi.metadata.get("order_id").map(String::as_str) == Some(order.as_str()))
            {
                return intent(found).map(Some);
            }
            if !page.has_more {
                break;
            }
        }
        Ok(None)
    }

    async fn refund(&self, payment_intent_id: &str, idempotency_key: &str) -> Result<(), ProviderError> {
        match self.client.create_refund(payment_intent_id, idempotency_key).await {
            Ok(_) => Ok(()),
            // Refunded already (by us under another key, or by an operator): the goal is met.
            Err(err) if err.api_error().and_then(|e| e.code.as_deref()) == Some("charge_already_refunded") => Ok(()),
            Err(err) => Err(provider_error(err)),
        }
    }

    async fn recent_events(&self, since_unix: i64) -> Result<Vec<String>, ProviderError> {
        let mut payloads = Vec::new();
        let mut starting_after: Option<String> = None;
        for _ in 0..EVENT_PAGES {
            let page = self
                .client
                .list_events(100, starting_after.as_deref(), Some(since_unix))
                .await
                .map_err(provider_error)?;
            starting_after = page.data.last().map(|event| event.id.clone());
            for event in &page.data {
                payloads.push(serde_json::to_string(event).map_err(|err| ProviderError::Refused(err.to_string()))?);
            }
            if !page.has_more {
                break;
            }
        }
        Ok(payloads)
    }
}
