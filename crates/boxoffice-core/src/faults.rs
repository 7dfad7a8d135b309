//! Fault injection for tests: points inside boxoffice where a test can make it fail or
//! crash at the worst moment, to prove that nothing is lost or applied twice.
//!
//! The hooks are compiled in only with the cargo feature `faults`, which no release build
//! enables: the crates whose tests need them turn it on through their
//! `[dev-dependencies]` (the server's `faults` feature enables this one, the binary's
//! enables the server's). Without the feature every hook compiles to nothing
//! ([`before_commit`] is `Ok(())`), so callers need no `cfg` of their own, and in a release
//! binary no environment variable reaches these hooks.
//!
//! Two hooks: [`before_commit`] sits inside the transaction that applies a webhook event,
//! right before it commits, the moment "nothing half-applied" is about (SPEC §6); and
//! [`after_payment_intent_created`] right after Stripe created a PaymentIntent and before
//! boxoffice recorded it, the moment "never charged twice" is about (SPEC §5).

use crate::store::StoreError;

/// Called by stores right before committing the application of a webhook event. With the
/// `faults` feature it aborts the process when `CRASH_POINT_ENV` says
/// `CRASH_DURING_WEBHOOK_APPLY`, and fails the apply when a test called
/// `fail_next_applies`; without it, it does nothing.
#[inline]
pub fn before_commit() -> Result<(), StoreError> {
    #[cfg(feature = "faults")]
    armed::before_commit()?;
    Ok(())
}

/// Called by the payment provider right after Stripe created a PaymentIntent, before
/// boxoffice records it. With the `faults` feature it aborts the process (as a kill -9 at
/// the worst moment would) when `CRASH_POINT_ENV` says `CRASH_AFTER_PAYMENT_INTENT_CREATED`,
/// so a test can prove that the completer or a retry finishes without a second charge;
/// without it, it does nothing.
#[inline]
pub fn after_payment_intent_created() {
    #[cfg(feature = "faults")]
    armed::after_payment_intent_created();
}

#[cfg(feature = "faults")]
pub use armed::{CRASH_AFTER_PAYMENT_INTENT_CREATED, CRASH_DURING_WEBHOOK_APPLY, CRASH_POINT_ENV, fail_next_applies};

/// The hooks themselves, present only with the `faults` feature.
#[cfg(feature = "faults")]
mod armed {
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::store::StoreError;

    static FAIL_NEXT_APPLIES: AtomicU32 = AtomicU32::new(0);

    /// The environment variable and value that make the process abort there (as kill -9).
    pub const CRASH_POINT_ENV: &str = "BOXOFFICE_TEST_CRASH_POINT";
    /// See [`CRASH_POINT_ENV`].
    pub const CRASH_DURING_WEBHOOK_APPLY: &str = "during-webhook-apply";
    /// See [`CRASH_POINT_ENV`].
    pub const CRASH_AFTER_PAYMENT_INTENT_CREATED: &str = "after-payment-intent-created";

    pub(super) fn after_payment_intent_created() {
        if std::env::var(CRASH_POINT_ENV).is_ok_and(|point| point == CRASH_AFTER_PAYMENT_INTENT_CREATED) {
            tracing::error!("test crash point reached: aborting after a PaymentIntent was created");
            std::process::abort();
        }
    }

    /// Makes the next `count` applies in this process fail after their writes, before commit.
    pub fn fail_next_applies(count: u32) {
        FAIL_NEXT_APPLIES.store(count, Ordering::SeqCst);
    }

    pub(super) fn before_commit() -> Result<(), StoreError> {
        if std::env::var(CRASH_POINT_ENV).is_ok_and(|point| point == CRASH_DURING_WEBHOOK_APPLY) {
            std::process::abort();
        }
        let armed = FAIL_NEXT_APPLIES.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if armed.is_ok() {
            return Err(StoreError::Other(
                "injected fault while applying a webhook event".into(),
            ));
        }
        Ok(())
    }
}
