//! The ErrorStore contract's alert outbox (SPEC §7): alerts are queued as the policy
//! decides (a new group of severity error, a critical occurrence or a regression after the
//! cooldown, never for alert deliveries themselves), claimed under a lease, retried until
//! delivered or given up on.

use boxoffice_core::StoreError;
use boxoffice_core::error_store::reports::{AlertDelivery, AlertKind, AlertPolicy};
use boxoffice_core::failures::Severity;

use super::{ALERTS, fingerprint, record, report};
use crate::{T0, at, fixture};

both_engines!(alerts_follow_the_policy, |engine| async move {
    let f = fixture(engine, &[]).await;
    let n = fingerprint("N");

    // A new group of severity error alerts, once, on its first report.
    let new = f
        .store
        .record_errors(
            &[
                report("n1", &n, Severity::Error, T0),
                report("n2", &n, Severity::Critical, T0),
            ],
            &ALERTS,
        )
        .await
        .unwrap();
    assert_eq!(
        new.iter().map(|r| r.alert).collect::<Vec<_>>(),
        [Some(AlertKind::NewGroup), None]
    );
    let group = new[0].group_id.clone();
    // A new group of severity warning does not.
    let warning = record(
        &f.store,
        report("w1", &fingerprint("W"), Severity::Warning, T0),
        &ALERTS,
    )
    .await;
    assert!(warning.new_group);
    assert_eq!(warning.alert, None);
    // A critical occurrence within the cooldown does not; after it, it does.
    let soon = record(&f.store, report("n3", &n, Severity::Critical, at(60)), &ALERTS).await;
    assert_eq!(soon.alert, None);
    let later = record(&f.store, report("n4", &n, Severity::Critical, at(601)), &ALERTS).await;
    assert_eq!(later.alert, Some(AlertKind::Critical));
    // An error in an existing group does not, cooldown or not.
    let error = record(&f.store, report("n5", &n, Severity::Error, at(1300)), &ALERTS).await;
    assert_eq!(error.alert, None);
    // A regression does, once the cooldown is over.
    f.store.resolve_error_group(&group, at(1300)).await.unwrap();
    let regression = record(&f.store, report("n6", &n, Severity::Warning, at(1301)), &ALERTS).await;
    assert!(regression.regression);
    assert_eq!(regression.alert, Some(AlertKind::Regression));
    // Nothing when alerts are off.
    let off = record(
        &f.store,
        report("o1", &fingerprint("O"), Severity::Critical, T0),
        &AlertPolicy::OFF,
    )
    .await;
    assert!(off.new_group);
    assert_eq!(off.alert, None);
    // Nothing about failing alert deliveries themselves.
    let mut failing = report("a1", &fingerprint("Alerts"), Severity::Critical, T0);
    failing.component = Some("alerts".into());
    let failing = record(&f.store, failing, &ALERTS).await;
    assert!(failing.new_group);
    assert_eq!(failing.alert, None);

    // The outbox holds exactly the alerts decided, oldest first, with the group as it is.
    let claimed = f.store.claim_alerts(at(2000), 60_000, 10).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|a| (a.kind, a.group.id.clone(), a.created_at, a.attempts))
            .collect::<Vec<_>>(),
        [
            (AlertKind::NewGroup, group.clone(), T0, 0),
            (AlertKind::Critical, group.clone(), at(601), 0),
            (AlertKind::Regression, group.clone(), at(1301), 0),
        ]
    );
    assert!(claimed.iter().all(|a| a.id.starts_with("alr_")));
    assert_ne!(claimed[0].id, claimed[1].id);
    let now = &claimed[2].group;
    assert_eq!(
        (now.count, now.severity, now.resolved, now.last_seen),
        (6, Severity::Critical, false, at(1301))
    );
});

both_engines!(claimed_alerts_are_leased_until_finished, |engine| async move {
    let f = fixture(engine, &[]).await;
    let lease = 30_000;
    let group = record(&f.store, report("l1", &fingerprint("L"), Severity::Error, T0), &ALERTS)
        .await
        .group_id;

    let first = f.store.claim_alerts(T0, lease, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].group.id.clone(), first[0].attempts), (group, 0));
    let id = first[0].id.clone();
    assert!(
        f.store.claim_alerts(at(10), lease, 10).await.unwrap().is_empty(),
        "leased to the first claimer"
    );
    // The first claimer never finished: once its lease is over, the alert is due again.
    let second = f.store.claim_alerts(at(30), lease, 10).await.unwrap();
    assert_eq!(
        (second.len(), second[0].id.clone(), second[0].attempts),
        (1, id.clone(), 0)
    );

    let retry = AlertDelivery::Retry {
        error: "HTTP 503".into(),
        retry_at: at(120),
    };
    f.store.finish_alert(&id, &retry, at(31)).await.unwrap();
    assert!(f.store.claim_alerts(at(119), lease, 10).await.unwrap().is_empty());
    let third = f.store.claim_alerts(at(120), lease, 10).await.unwrap();
    assert_eq!((third.len(), third[0].attempts), (1, 1), "the failed attempt counted");
    f.store.finish_alert(&id, &AlertDelivery::Sent, at(121)).await.unwrap();
    assert!(f.store.claim_alerts(at(10_000), lease, 10).await.unwrap().is_empty());
    // A late answer about a delivered alert changes nothing.
    f.store.finish_alert(&id, &retry, at(122)).await.unwrap();
    assert!(f.store.claim_alerts(at(10_000), lease, 10).await.unwrap().is_empty());

    // Given up: never claimed again.
    record(
        &f.store,
        report("m1", &fingerprint("M"), Severity::Error, at(200)),
        &ALERTS,
    )
    .await;
    let given_up = f.store.claim_alerts(at(200), lease, 10).await.unwrap();
    assert_eq!(given_up.len(), 1);
    let gave_up = AlertDelivery::GaveUp {
        error: "HTTP 400".into(),
    };
    f.store.finish_alert(&given_up[0].id, &gave_up, at(201)).await.unwrap();
    assert!(f.store.claim_alerts(at(10_000), lease, 10).await.unwrap().is_empty());

    assert!(matches!(
        f.store.finish_alert("alr_unknown", &AlertDelivery::Sent, at(1)).await,
        Err(StoreError::NotFound("alert"))
    ));

    // Oldest first, at most `limit`.
    for (i, name) in ["X", "Y", "Z"].into_iter().enumerate() {
        let at_ = at(300 + i as u64);
        record(
            &f.store,
            report(&format!("x{i}"), &fingerprint(name), Severity::Error, at_),
            &ALERTS,
        )
        .await;
    }
    let oldest = f.store.claim_alerts(at(400), lease, 2).await.unwrap();
    assert_eq!(
        oldest.iter().map(|a| a.created_at).collect::<Vec<_>>(),
        [at(300), at(301)]
    );
    let rest = f.store.claim_alerts(at(400), lease, 2).await.unwrap();
    assert_eq!(rest.iter().map(|a| a.created_at).collect::<Vec<_>>(), [at(302)]);
});
