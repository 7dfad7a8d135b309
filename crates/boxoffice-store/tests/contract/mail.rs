//! The MailStore contract (SPEC §9): a paid order queues one confirmation and a refunded one
//! one notice, in the transaction that changes the order and only when the buyer gave an
//! address; claims are leased so no message goes to two senders, every attempt is
//! recorded, and a failed message can be retried.

use std::collections::HashSet;
use std::time::Duration;

use boxoffice_core::holds::{EmailAddress, Hold};
use boxoffice_core::ids::{EmailId, OrderId};
use boxoffice_core::mail::{EmailDelivery, EmailKind, EmailStatus, QueuedEmail};
use boxoffice_core::payments::OrderStatus;
use boxoffice_core::webhooks::ApplyOutcome;
use boxoffice_core::{StoreError, Timestamp};

use crate::{Fixture, T0, at, fixture, hold, order_for_hold, webhook_event};

const BUYER: &str = "buyer@example.com";
const LEASE_MS: i64 = 60_000;

/// A hold of `quantity` of ticket type 0 for `email`, with an order whose PaymentIntent
/// is `pi`.
async fn ordered(f: &Fixture, quantity: u32, pi: &str, email: Option<&str>, now: Timestamp) -> (Hold, OrderId) {
    let mut hold = hold(&f.event, &[(&f.ticket_types[0], quantity)], now);
    hold.customer_email = email.map(|e| EmailAddress::parse(e).unwrap());
    f.store.place_hold(&hold, now).await.unwrap();
    let order = order_for_hold(f, &hold, pi, now).await;
    (hold, order)
}

/// Records and applies a webhook event of `event_type` for PaymentIntent `pi`.
async fn apply(f: &Fixture, id: &str, event_type: &str, pi: &str, now: Timestamp) -> ApplyOutcome {
    let event = webhook_event(id, event_type, pi);
    f.store.record_webhook_event(&event, true, now, now).await.unwrap();
    f.store.apply_webhook_event(id, now).await.unwrap()
}

/// A paid order for `email`, paid at `now`.
async fn paid(f: &Fixture, pi: &str, email: Option<&str>, now: Timestamp) -> OrderId {
    let (_, order) = ordered(f, 1, pi, email, now).await;
    assert!(matches!(
        apply(f, &format!("evt_{pi}"), "payment_intent.succeeded", pi, now).await,
        ApplyOutcome::Applied(_)
    ));
    order
}

async fn emails(f: &Fixture) -> Vec<QueuedEmail> {
    f.store
        .list_emails(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(email, _)| email)
        .collect()
}

both_engines!(
    a_payment_queues_one_confirmation_and_a_refund_one_notice,
    |engine| async move {
        let f = fixture(engine, &[10]).await;
        assert!(emails(&f).await.is_empty());
        assert_eq!(f.store.email_counts().await.unwrap(), (0, 0, 0));

        let (_, order) = ordered(&f, 2, "pi_mail", Some(BUYER), T0).await;
        apply(&f, "evt_paid", "payment_intent.succeeded", "pi_mail", at(1)).await;
        let queued = emails(&f).await;
        assert_eq!(queued.len(), 1);
        let confirmation = &queued[0];
        assert!(confirmation.id.as_str().starts_with("eml_"));
        assert_eq!(
            (
                &confirmation.order_id,
                confirmation.kind,
                confirmation.recipient.as_str(),
                confirmation.status,
                confirmation.attempts,
            ),
            (&order, EmailKind::Confirmation, BUYER, EmailStatus::Queued, 0)
        );
        assert_eq!(
            (
                confirmation.next_attempt_at,
                confirmation.created_at,
                confirmation.sent_at
            ),
            (at(1), at(1), None)
        );
        assert_eq!(confirmation.last_error, None);

        // The same event redelivered, and another success event for the same payment.
        apply(&f, "evt_paid", "payment_intent.succeeded", "pi_mail", at(2)).await;
        apply(&f, "evt_paid_again", "payment_intent.succeeded", "pi_mail", at(2)).await;
        assert_eq!(emails(&f).await.len(), 1, "one confirmation per paid order");

        // An order without an e-mail address gets no mail.
        let silent = paid(&f, "pi_silent", None, at(3)).await;
        assert_eq!(f.store.get_order(&silent).await.unwrap().status, OrderStatus::Paid);
        assert_eq!(emails(&f).await.len(), 1);

        apply(&f, "evt_refund", "charge.refunded", "pi_mail", at(4)).await;
        apply(&f, "evt_refund_again", "charge.refunded", "pi_mail", at(5)).await;
        apply(&f, "evt_silent_refund", "charge.refunded", "pi_silent", at(5)).await;
        let queued = emails(&f).await;
        assert_eq!(
            queued
                .iter()
                .map(|e| (e.order_id.clone(), e.kind, e.created_at))
                .collect::<Vec<_>>(),
            [
                (order.clone(), EmailKind::Refund, at(4)),
                (order.clone(), EmailKind::Confirmation, at(1))
            ],
            "newest first; one refund notice"
        );
        assert_eq!(f.store.email_counts().await.unwrap(), (2, 0, 0));
    }
);

both_engines!(late_payments_queue_what_happened_to_them, |engine| async move {
    let f = fixture(engine, &[1]).await;
    // Paid late, tickets still there: a confirmation.
    let (late, order) = ordered(&f, 1, "pi_lucky", Some(BUYER), T0).await;
    let now = late.expires_at.plus(Duration::from_secs(60));
    assert!(matches!(
        apply(&f, "evt_lucky", "payment_intent.succeeded", "pi_lucky", now).await,
        ApplyOutcome::Applied(_)
    ));
    let queued = emails(&f).await;
    assert_eq!(
        queued.iter().map(|e| (&e.order_id, e.kind)).collect::<Vec<_>>(),
        [(&order, EmailKind::Confirmation)]
    );

    // Paid late, tickets gone: no confirmation; a refund notice once refunded.
    let f = fixture(engine, &[1]).await;
    let (late, order) = ordered(&f, 1, "pi_late", Some(BUYER), T0).await;
    f.place(&[(0, 1)], late.expires_at.plus(Duration::from_secs(300)))
        .await
        .unwrap();
    let now = late.expires_at.plus(Duration::from_secs(301));
    assert!(matches!(
        apply(&f, "evt_late", "payment_intent.succeeded", "pi_late", now).await,
        ApplyOutcome::RefundNeeded { .. }
    ));
    assert!(emails(&f).await.is_empty(), "nothing until the refund is recorded");
    f.store.complete_late_refund("evt_late", &order, now).await.unwrap();
    f.store.complete_late_refund("evt_late", &order, now).await.unwrap();
    // Stripe then reports the refund it made.
    apply(&f, "evt_late_refund", "charge.refunded", "pi_late", now).await;
    let queued = emails(&f).await;
    assert_eq!(
        queued
            .iter()
            .map(|e| (&e.order_id, e.kind, e.recipient.as_str(), e.status))
            .collect::<Vec<_>>(),
        [(&order, EmailKind::Refund, BUYER, EmailStatus::Queued)]
    );
    let claimed = f.store.claim_emails(now, LEASE_MS, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        claimed[0].tickets.is_empty(),
        "a refunded late payment never had tickets"
    );
    assert_eq!(claimed[0].order.status, OrderStatus::Refunded);
});

both_engines!(claims_are_leased_and_every_attempt_is_recorded, |engine| async move {
    let f = fixture(engine, &[10]).await;
    let first = paid(&f, "pi_1", Some(BUYER), at(1)).await;
    let second = paid(&f, "pi_2", Some("other@example.org"), at(2)).await;
    assert!(
        f.store.claim_emails(T0, LEASE_MS, 10).await.unwrap().is_empty(),
        "not due yet"
    );

    let claimed = f.store.claim_emails(at(10), LEASE_MS, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|m| &m.email.order_id).collect::<Vec<_>>(),
        [&first, &second],
        "oldest first"
    );
    let mail = &claimed[0];
    assert_eq!(mail.order.id, first);
    assert_eq!(mail.order.status, OrderStatus::Paid);
    assert_eq!(
        (mail.event_name.as_str(), mail.event_starts_at),
        ("Concert", at(86_400))
    );
    assert_eq!(mail.tickets.len(), 1);
    let (ticket, type_name) = &mail.tickets[0];
    assert_eq!(
        (&ticket.ticket_type_id, ticket.status.as_str(), type_name.as_str()),
        (&f.ticket_types[0], "valid", "Type 0")
    );
    assert_eq!(f.store.order_tickets(&first).await.unwrap()[0].code, ticket.code);
    assert_eq!(
        mail.email.next_attempt_at,
        at(10).plus(Duration::from_secs(60)),
        "the lease"
    );
    assert!(
        f.store.claim_emails(at(11), LEASE_MS, 10).await.unwrap().is_empty(),
        "leased to the first claimer"
    );

    let (a, b) = (claimed[0].email.id.clone(), claimed[1].email.id.clone());
    f.store
        .finish_email(&a, &EmailDelivery::Sent { reply: "250 OK".into() }, at(12))
        .await
        .unwrap();
    f.store
        .finish_email(
            &b,
            &EmailDelivery::Retry {
                error: "421 try later".into(),
                retry_at: at(100),
            },
            at(12),
        )
        .await
        .unwrap();
    assert!(f.store.claim_emails(at(99), LEASE_MS, 10).await.unwrap().is_empty());
    let again = f.store.claim_emails(at(100), LEASE_MS, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((&again[0].email.id, again[0].email.attempts), (&b, 1));
    assert_eq!(again[0].email.last_error.as_deref(), Some("421 try later"));
    f.store
        .finish_email(
            &b,
            &EmailDelivery::GaveUp {
                error: "550 no such user".into(),
            },
            at(101),
        )
        .await
        .unwrap();
    assert!(f.store.claim_emails(at(10_000), LEASE_MS, 10).await.unwrap().is_empty());

    let listed = f.store.list_emails(None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    let (failed, failed_attempts) = &listed[0];
    let (sent, sent_attempts) = &listed[1];
    assert_eq!(
        (&sent.id, sent.status, sent.attempts, sent.sent_at),
        (&a, EmailStatus::Sent, 1, Some(at(12)))
    );
    assert_eq!(
        sent_attempts
            .iter()
            .map(|t| (t.attempted_at, t.outcome.as_str(), t.reply.as_str()))
            .collect::<Vec<_>>(),
        [(at(12), "sent", "250 OK")]
    );
    assert_eq!(
        (
            &failed.id,
            failed.status,
            failed.attempts,
            failed.sent_at,
            failed.last_error.as_deref()
        ),
        (&b, EmailStatus::Failed, 2, None, Some("550 no such user"))
    );
    assert_eq!(
        failed_attempts
            .iter()
            .map(|t| (t.attempted_at, t.outcome.as_str(), t.reply.as_str()))
            .collect::<Vec<_>>(),
        [
            (at(12), "failed", "421 try later"),
            (at(101), "failed", "550 no such user")
        ]
    );

    let by_status = |status| {
        let store = f.store.clone();
        async move {
            store
                .list_emails(Some(status), 10)
                .await
                .unwrap()
                .into_iter()
                .map(|(e, _)| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(by_status(EmailStatus::Sent).await, std::slice::from_ref(&a));
    assert_eq!(by_status(EmailStatus::Failed).await, std::slice::from_ref(&b));
    assert!(by_status(EmailStatus::Queued).await.is_empty());
    let newest = f.store.list_emails(None, 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].0.id, b);
    assert_eq!(f.store.email_counts().await.unwrap(), (0, 1, 1));

    // A late finish by a sender whose lease ran out: the message stays as it is, the
    // attempt is recorded.
    f.store
        .finish_email(
            &a,
            &EmailDelivery::Sent {
                reply: "250 again".into(),
            },
            at(200),
        )
        .await
        .unwrap();
    let listed = f.store.list_emails(Some(EmailStatus::Sent), 10).await.unwrap();
    assert_eq!(
        (listed[0].0.status, listed[0].0.attempts, listed[0].0.sent_at),
        (EmailStatus::Sent, 1, Some(at(12)))
    );
    assert_eq!(listed[0].1.len(), 2);
    assert!(matches!(
        f.store
            .finish_email(
                &EmailId::generate(),
                &EmailDelivery::Sent { reply: "x".into() },
                at(200)
            )
            .await,
        Err(StoreError::NotFound("email"))
    ));
});

both_engines!(failed_emails_can_be_retried, |engine| async move {
    let f = fixture(engine, &[10]).await;
    paid(&f, "pi_1", Some(BUYER), at(1)).await;
    paid(&f, "pi_2", Some(BUYER), at(2)).await;
    let claimed = f.store.claim_emails(at(10), LEASE_MS, 10).await.unwrap();
    let (sent, failed) = (claimed[0].email.id.clone(), claimed[1].email.id.clone());
    f.store
        .finish_email(&sent, &EmailDelivery::Sent { reply: "250 OK".into() }, at(11))
        .await
        .unwrap();
    f.store
        .finish_email(
            &failed,
            &EmailDelivery::GaveUp {
                error: "timeout".into(),
            },
            at(11),
        )
        .await
        .unwrap();

    let retried = f.store.retry_email(&failed, at(500)).await.unwrap();
    assert_eq!(
        (&retried.id, retried.status, retried.next_attempt_at, retried.attempts),
        (&failed, EmailStatus::Queued, at(500), 1)
    );
    assert_eq!(f.store.email_counts().await.unwrap(), (1, 1, 0));
    let again = f.store.claim_emails(at(500), LEASE_MS, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].email.id, failed);

    // A queued message is made due now; a sent one stays sent.
    let requeued = f.store.retry_email(&failed, at(501)).await.unwrap();
    assert_eq!(
        (requeued.status, requeued.next_attempt_at),
        (EmailStatus::Queued, at(501))
    );
    let unchanged = f.store.retry_email(&sent, at(501)).await.unwrap();
    assert_eq!((unchanged.status, unchanged.sent_at), (EmailStatus::Sent, Some(at(11))));
    assert!(matches!(
        f.store.retry_email(&EmailId::generate(), at(501)).await,
        Err(StoreError::NotFound("email"))
    ));
});

both_engines!(concurrent_claims_never_share_a_message, |engine| async move {
    let f = fixture(engine, &[100]).await;
    for i in 0..24 {
        paid(&f, &format!("pi_{i}"), Some(BUYER), at(i)).await;
    }
    let now = at(1_000);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = f.store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_emails(now, LEASE_MS, 2).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|m| m.email.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), all.len(), "no message handed to two claimers");
    assert!(f.store.claim_emails(now, LEASE_MS, 100).await.unwrap().is_empty());
    assert_eq!(all.len(), 24, "every message claimed once");
});
