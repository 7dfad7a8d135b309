//! The alert webhook client: Slack-compatible `{"text", "blocks"}` messages (SPEC §7),
//! POSTed to `--alert-webhook-url`. Queueing, retries and giving up are the use case's
//! (`BoxOffice::deliver_alerts`); this only formats and sends one alert.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::errors::alerts::AlertSender;
use boxoffice_core::errors::store::{AlertKind, PendingAlert};
use serde_json::{Value, json};

use crate::metrics::Metrics;

/// One delivery attempt may take this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a receiver's answer kept in the record of a failed attempt.
const MAX_REPLY_CHARS: usize = 300;

/// Sends alerts to a Slack-compatible incoming webhook.
pub struct SlackWebhook {
    client: reqwest::Client,
    url: String,
    metrics: Arc<Metrics>,
}

impl SlackWebhook {
    /// A sender to `url`. Redirects are not followed: the operator names the receiver,
    /// and a receiver must not be able to point alerts elsewhere.
    pub fn new(url: String, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client, url, metrics })
    }
}

/// The message for an alert: `text` for notifications, `blocks` for the channel.
pub fn message(alert: &PendingAlert) -> Value {
    let group = &alert.group;
    let headline = match alert.kind {
        AlertKind::NewGroup => "New error",
        AlertKind::Regression => "Regression: a resolved error is back",
        AlertKind::Critical => "Critical error",
    };
    let component = group.component.as_deref().unwrap_or("-");
    let text = format!(
        "[boxoffice] {headline} ({}): {} — {} event(s), component {component}, {}",
        group.severity.as_str(),
        group.title,
        group.count,
        group.scope
    );
    let details = format!(
        "*Severity:* {}\n*Component:* {component}\n*Scope:* {}\n*Events:* {}\n*First seen:* {}\n*Last seen:* {}\n*Group:* `{}`",
        group.severity.as_str(),
        group.scope,
        group.count,
        group.first_seen.to_rfc3339(),
        group.last_seen.to_rfc3339(),
        group.id
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", escape(&group.title))}},
            {"type": "section", "text": {"type": "mrkdwn", "text": details}},
        ],
    })
}

/// Slack's three control characters in mrkdwn.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[async_trait]
impl AlertSender for SlackWebhook {
    async fn send(&self, alert: &PendingAlert) -> Result<(), String> {
        let result = self.client.post(&self.url).json(&message(alert)).send().await;
        let outcome = match result {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let reply: String = body.chars().take(MAX_REPLY_CHARS).collect();
                Err(format!("the alert webhook answered {status}: {reply}"))
            }
            Err(err) => Err(format!(
                "the alert webhook could not be reached: {}",
                boxoffice_core::service::error_chain(&err)
            )),
        };
        self.metrics
            .alert(if outcome.is_ok() { "sent" } else { "attempt_failed" }, 1);
        outcome
    }
}
