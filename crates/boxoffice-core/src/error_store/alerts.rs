//! Alert delivery: the seam to the alert webhook, and when a failed delivery is tried again.
//!
//! Alerts are queued in a durable outbox by the transaction that records the error
//! ([`AlertPolicy`](super::reports::AlertPolicy) decides which), then delivered by a job, so
//! an alert is never lost to a crash or to a receiver that is down, and never sent by two
//! instances at once.

use std::time::Duration;

use async_trait::async_trait;

use super::reports::PendingAlert;

/// Where alerts go (the server's Slack-compatible webhook client).
#[async_trait]
pub trait AlertSender: Send + Sync + 'static {
    /// Delivers one alert. `Err` carries what the receiver answered, for the record.
    async fn send(&self, alert: &PendingAlert) -> Result<(), String>;
}

/// How alert delivery retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertRetry {
    /// The wait after the first failed attempt; it doubles after each one.
    pub base: Duration,
    /// The longest wait between attempts.
    pub max_wait: Duration,
    /// Attempts before giving up (the failure is then recorded in the error store).
    pub max_attempts: u32,
}

impl Default for AlertRetry {
    /// 5 s, 10 s, 20 s … capped at 10 minutes, 10 attempts: about 25 minutes in all, long
    /// enough to ride out a receiver's restart, short enough that an alert is still news.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max_wait: Duration::from_secs(10 * 60),
            max_attempts: 10,
        }
    }
}

impl AlertRetry {
    /// The wait after `failed_attempts` failed attempts (1 for the first failure).
    pub fn wait_after(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let retry = AlertRetry::default();
        assert_eq!(retry.wait_after(1), Duration::from_secs(5));
        assert_eq!(retry.wait_after(2), Duration::from_secs(10));
        assert_eq!(retry.wait_after(4), Duration::from_secs(40));
        assert_eq!(retry.wait_after(9), Duration::from_secs(600));
        assert_eq!(retry.wait_after(u32::MAX), Duration::from_secs(600));
    }
}
