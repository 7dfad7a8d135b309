//! The ErrorStore contract (SPEC §7): reports are stored once per event id and counted in
//! their group, even when first occurrences or whole batches race; a resolved group reopens
//! on its next occurrence; retention prunes old and excess occurrences and empty groups;
//! error projects are numbered by the database. The alert outbox is in [`alerts`].

mod alerts;

use std::sync::Arc;

use boxoffice_core::error_store::grouping::{self, Fingerprint};
use boxoffice_core::error_store::reports::{
    AlertDelivery, AlertKind, AlertPolicy, ErrorProject, ErrorReport, GroupFilter, Pruned, Recorded,
};
use boxoffice_core::failures::Severity;
use boxoffice_core::ids::{ErrorGroupId, OrganizationId, random_hex};
use boxoffice_core::organizations::{Name, Organization};
use boxoffice_core::{Store, StoreError, Timestamp};

use crate::{T0, at, fixture, organization};

/// Alerts on, with the production cooldown of ten minutes.
const ALERTS: AlertPolicy = AlertPolicy {
    enabled: true,
    cooldown_ms: 10 * 60 * 1000,
};

fn report(event_id: &str, fingerprint: &Fingerprint, severity: Severity, at_: Timestamp) -> ErrorReport {
    ErrorReport {
        event_id: event_id.into(),
        scope: "server".into(),
        fingerprint: fingerprint.clone(),
        title: "Boom: <n> failures".into(),
        severity,
        component: Some("payments".into()),
        message: "Boom: 3 failures".into(),
        request_id: Some("req-1".into()),
        payload: "{\"message\":\"Boom: 3 failures\"}".into(),
        release: Some("boxoffice@1.2.3".into()),
        environment: Some("production".into()),
        received_at: at_,
    }
}

fn fingerprint(name: &str) -> Fingerprint {
    grouping::fingerprint(None, Some(name), "x", &[])
}

/// Records one report in a batch of its own.
async fn record(store: &Arc<dyn Store>, report: ErrorReport, policy: &AlertPolicy) -> Recorded {
    let mut recorded = store.record_errors(&[report], policy).await.unwrap();
    assert_eq!(recorded.len(), 1, "one answer per report");
    recorded.pop().unwrap()
}

/// (new_group, regression, duplicate) of each answer.
fn flags(recorded: &[Recorded]) -> Vec<(bool, bool, bool)> {
    recorded
        .iter()
        .map(|r| (r.new_group, r.regression, r.duplicate))
        .collect()
}

async fn event_ids(store: &Arc<dyn Store>, group: &ErrorGroupId) -> Vec<String> {
    let (_, events) = store.get_error_group(group, 100).await.unwrap();
    events.into_iter().map(|event| event.event_id).collect()
}

both_engines!(
    occurrences_count_in_groups_and_regressions_reopen,
    |engine| async move {
        let f = fixture(engine, &[]).await;
        let boom = grouping::fingerprint(None, Some("Boom"), "3 failures", &[]);
        let other = grouping::fingerprint(None, Some("Other"), "x", &[]);
        let off = AlertPolicy::OFF;
        let first = record(&f.store, report("e1", &boom, Severity::Warning, T0), &off).await;
        assert!(first.new_group && !first.regression && !first.duplicate);
        assert_eq!(first.alert, None);
        let second = record(&f.store, report("e2", &boom, Severity::Critical, at(5)), &off).await;
        assert_eq!(
            (second.group_id.clone(), second.new_group),
            (first.group_id.clone(), false)
        );
        let again = record(&f.store, report("e2", &boom, Severity::Critical, at(6)), &off).await;
        assert!(again.duplicate, "the same event id is stored once");
        assert_eq!(again.group_id, first.group_id);
        record(&f.store, report("e3", &other, Severity::Info, at(7)), &off).await;

        let (group, events) = f.store.get_error_group(&first.group_id, 10).await.unwrap();
        assert_eq!(
            (group.count, group.severity, group.first_seen, group.last_seen),
            (2, Severity::Critical, T0, at(5))
        );
        assert_eq!(
            events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
            ["e2", "e1"]
        );
        assert_eq!(events[0].request_id.as_deref(), Some("req-1"));
        assert_eq!(events[0].release.as_deref(), Some("boxoffice@1.2.3"));
        assert_eq!(events[0].environment.as_deref(), Some("production"));

        let all = f.store.list_error_groups(&GroupFilter::default(), 10).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].last_seen, at(7), "most recently seen first");
        let critical = GroupFilter {
            severity: Some(Severity::Critical),
            resolved: None,
        };
        assert_eq!(f.store.list_error_groups(&critical, 10).await.unwrap().len(), 1);

        let resolved = f.store.resolve_error_group(&first.group_id, at(8)).await.unwrap();
        assert!(resolved.resolved);
        let only_resolved = GroupFilter {
            severity: None,
            resolved: Some(true),
        };
        assert_eq!(f.store.list_error_groups(&only_resolved, 10).await.unwrap().len(), 1);
        let regression = record(&f.store, report("e4", &boom, Severity::Error, at(9)), &off).await;
        assert!(regression.regression, "a new occurrence reopens a resolved group");
        assert!(!f.store.get_error_group(&first.group_id, 0).await.unwrap().0.resolved);
        assert!(matches!(
            f.store.resolve_error_group(&ErrorGroupId::generate(), at(9)).await,
            Err(StoreError::NotFound(_))
        ));
    }
);

both_engines!(concurrent_first_occurrences_make_one_group, |engine| async move {
    let f = fixture(engine, &[]).await;
    let fp = grouping::fingerprint(None, Some("Race"), "same", &[]);
    let reports = (0..40).map(|i| {
        let (store, fp) = (f.store.clone(), fp.clone());
        tokio::spawn(async move {
            record(
                &store,
                report(&format!("race-{i}"), &fp, Severity::Error, T0),
                &AlertPolicy::OFF,
            )
            .await
        })
    });
    let recorded: Vec<_> = futures::future::join_all(reports)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(recorded.iter().filter(|r| r.new_group).count(), 1);
    let groups = f.store.list_error_groups(&GroupFilter::default(), 10).await.unwrap();
    assert_eq!(
        (groups.len(), groups[0].count),
        (1, 40),
        "every occurrence counted once"
    );
});

both_engines!(batches_skip_duplicates_within_and_across_batches, |engine| async move {
    let f = fixture(engine, &[]).await;
    let (a, b) = (fingerprint("A"), fingerprint("B"));
    let off = AlertPolicy::OFF;
    let stored = record(&f.store, report("e1", &a, Severity::Error, T0), &off).await;
    let batch = [
        report("e2", &b, Severity::Warning, at(1)),
        report("e1", &a, Severity::Error, at(1)),
        report("e3", &a, Severity::Critical, at(2)),
        report("e2", &b, Severity::Warning, at(2)),
        report("e4", &b, Severity::Error, at(3)),
        report("e3", &a, Severity::Critical, at(3)),
        report("e5", &a, Severity::Info, at(3)),
        // One event id with another fingerprint: still the same event, stored once.
        report("e5", &fingerprint("C"), Severity::Info, at(3)),
    ];
    let recorded = f.store.record_errors(&batch, &off).await.unwrap();
    assert_eq!(
        flags(&recorded),
        [
            (true, false, false),
            (false, false, true),
            (false, false, false),
            (false, false, true),
            (false, false, false),
            (false, false, true),
            (false, false, false),
            (false, false, true),
        ]
    );
    let group_a = stored.group_id;
    let group_b = recorded[0].group_id.clone();
    assert_ne!(group_a, group_b);
    let groups: Vec<_> = recorded.iter().map(|r| &r.group_id).collect();
    assert_eq!(
        groups,
        [
            &group_b, &group_a, &group_a, &group_b, &group_b, &group_a, &group_a, &group_a
        ],
        "a duplicate names the group its event is stored in"
    );

    let (a_group, _) = f.store.get_error_group(&group_a, 0).await.unwrap();
    assert_eq!(
        (a_group.count, a_group.severity, a_group.first_seen, a_group.last_seen),
        (3, Severity::Critical, T0, at(3))
    );
    let (b_group, _) = f.store.get_error_group(&group_b, 0).await.unwrap();
    assert_eq!(
        (b_group.count, b_group.severity, b_group.first_seen, b_group.last_seen),
        (2, Severity::Error, at(1), at(3))
    );
    assert_eq!(event_ids(&f.store, &group_a).await, ["e5", "e3", "e1"]);
    assert_eq!(event_ids(&f.store, &group_b).await, ["e4", "e2"]);
    assert_eq!(
        f.store
            .list_error_groups(&GroupFilter::default(), 10)
            .await
            .unwrap()
            .len(),
        2,
        "no group for a duplicate"
    );

    // The same batch again: all duplicates, nothing counted.
    let again = f.store.record_errors(&batch, &ALERTS).await.unwrap();
    assert!(again.iter().all(|r| r.duplicate && r.alert.is_none()));
    assert_eq!(again.iter().map(|r| &r.group_id).collect::<Vec<_>>(), groups);
    assert_eq!(f.store.get_error_group(&group_a, 0).await.unwrap().0.count, 3);
    assert_eq!(f.store.get_error_group(&group_b, 0).await.unwrap().0.count, 2);
    assert!(f.store.claim_alerts(at(10), 1_000, 10).await.unwrap().is_empty());

    assert!(f.store.record_errors(&[], &ALERTS).await.unwrap().is_empty());
});

both_engines!(a_resolved_group_reopens_once_per_batch, |engine| async move {
    let f = fixture(engine, &[]).await;
    let fp = fingerprint("Regress");
    let off = AlertPolicy::OFF;
    let group = record(&f.store, report("e1", &fp, Severity::Error, T0), &off)
        .await
        .group_id;
    f.store.resolve_error_group(&group, at(1)).await.unwrap();

    let batch = [
        report("e1", &fp, Severity::Error, at(2)),
        report("e2", &fp, Severity::Warning, at(2)),
        report("e3", &fp, Severity::Info, at(3)),
    ];
    let recorded = f.store.record_errors(&batch, &off).await.unwrap();
    assert_eq!(
        flags(&recorded),
        [(false, false, true), (false, true, false), (false, false, false)],
        "the first new occurrence is the regression"
    );
    let (reopened, _) = f.store.get_error_group(&group, 0).await.unwrap();
    assert_eq!(
        (reopened.resolved, reopened.count, reopened.severity, reopened.last_seen),
        (false, 3, Severity::Error, at(3))
    );

    // Only duplicates: the group stays resolved and uncounted.
    f.store.resolve_error_group(&group, at(4)).await.unwrap();
    let recorded = f.store.record_errors(&batch, &off).await.unwrap();
    assert!(recorded.iter().all(|r| r.duplicate && !r.regression));
    let (still, _) = f.store.get_error_group(&group, 0).await.unwrap();
    assert_eq!((still.resolved, still.count, still.last_seen), (true, 3, at(3)));
});

both_engines!(
    pruning_removes_old_and_excess_occurrences_and_empty_groups,
    |engine| async move {
        let f = fixture(engine, &[]).await;
        let off = AlertPolicy::OFF;
        // A: five occurrences ten seconds apart; its alert was delivered.
        let group_a = record(&f.store, report("a0", &fingerprint("A"), Severity::Error, T0), &ALERTS)
            .await
            .group_id;
        let rest: Vec<_> = (1..5)
            .map(|i| report(&format!("a{i}"), &fingerprint("A"), Severity::Error, at(i * 10)))
            .collect();
        f.store.record_errors(&rest, &off).await.unwrap();
        // B: one old occurrence; its alert is still pending.
        let group_b = record(&f.store, report("b0", &fingerprint("B"), Severity::Error, T0), &ALERTS)
            .await
            .group_id;
        // C: three recent occurrences received at one instant.
        let same: Vec<_> = (1..=3)
            .map(|i| report(&format!("c{i}"), &fingerprint("C"), Severity::Error, at(50)))
            .collect();
        let group_c = f.store.record_errors(&same, &off).await.unwrap()[0].group_id.clone();
        // D: an old and a recent occurrence; its alert was given up on.
        let group_d = record(
            &f.store,
            report("d0", &fingerprint("D"), Severity::Error, at(10)),
            &ALERTS,
        )
        .await
        .group_id;
        record(&f.store, report("d1", &fingerprint("D"), Severity::Error, at(20)), &off).await;
        // E: an old and a recent occurrence; its alert is still pending.
        let group_e = record(&f.store, report("e0", &fingerprint("E"), Severity::Error, T0), &ALERTS)
            .await
            .group_id;
        record(&f.store, report("e1", &fingerprint("E"), Severity::Error, at(20)), &off).await;

        for alert in f.store.claim_alerts(at(20), 1_000, 10).await.unwrap() {
            if alert.group.id == group_a {
                f.store
                    .finish_alert(&alert.id, &AlertDelivery::Sent, at(21))
                    .await
                    .unwrap();
            } else if alert.group.id == group_d {
                let gave_up = AlertDelivery::GaveUp {
                    error: "HTTP 400".into(),
                };
                f.store.finish_alert(&alert.id, &gave_up, at(21)).await.unwrap();
            }
        }

        let pruned = f.store.prune_errors(at(15), 2).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                // a0, a1, b0, d0, e0 by age; a2 and c1 beyond the cap.
                events: 7,
                groups: 1,
                // A's delivered and D's abandoned alerts; B's with its group.
                alerts: 3,
            }
        );
        assert_eq!(event_ids(&f.store, &group_a).await, ["a4", "a3"]);
        assert_eq!(event_ids(&f.store, &group_c).await, ["c3", "c2"], "ties go by event id");
        assert_eq!(event_ids(&f.store, &group_d).await, ["d1"]);
        assert_eq!(event_ids(&f.store, &group_e).await, ["e1"]);
        assert!(matches!(
            f.store.get_error_group(&group_b, 0).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            f.store.get_error_group(&group_a, 0).await.unwrap().0.count,
            5,
            "the count is of occurrences seen, not kept"
        );
        let pending = f.store.claim_alerts(at(100), 1_000, 10).await.unwrap();
        assert_eq!(
            pending.iter().map(|a| &a.group.id).collect::<Vec<_>>(),
            [&group_e],
            "a pending alert of a kept group stays"
        );
        assert_eq!(f.store.prune_errors(at(15), 2).await.unwrap(), Pruned::default());

        // Recently seen groups stay even with no occurrence kept; later they go.
        let emptied = f.store.prune_errors(at(15), 0).await.unwrap();
        assert_eq!(
            emptied,
            Pruned {
                events: 6,
                groups: 0,
                alerts: 0
            }
        );
        assert_eq!(
            f.store
                .list_error_groups(&GroupFilter::default(), 10)
                .await
                .unwrap()
                .len(),
            4
        );
        let all = f.store.prune_errors(at(1_000), 0).await.unwrap();
        assert_eq!(
            all,
            Pruned {
                events: 0,
                groups: 4,
                alerts: 1
            }
        );
        assert!(
            f.store
                .list_error_groups(&GroupFilter::default(), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

both_engines!(error_projects_are_numbered_by_the_database, |engine| async move {
    let f = fixture(engine, &[]).await;
    let first = f.store.get_error_project(&f.org).await.unwrap();
    assert_eq!((first.project_id, &first.organization_id), (1, &f.org));
    assert_eq!(first.public_key.len(), 32);

    let org = Organization {
        id: OrganizationId::generate(),
        name: Name::parse("Second").unwrap(),
        created_at: T0,
    };
    let key = random_hex();
    let second = f.store.create_organization(&org, &key).await.unwrap();
    assert_eq!(
        second,
        ErrorProject {
            project_id: 2,
            organization_id: org.id.clone(),
            public_key: key.clone(),
        }
    );
    let third = f
        .store
        .get_error_project(&organization(&f.store, "Third").await)
        .await
        .unwrap();
    assert_eq!(third.project_id, 3);
    assert_ne!(third.public_key, second.public_key);

    assert_eq!(f.store.find_error_project(2).await.unwrap(), Some(second.clone()));
    assert_eq!(f.store.get_error_project(&org.id).await.unwrap(), second);
    assert_eq!(f.store.find_error_project(99).await.unwrap(), None);
    assert!(matches!(
        f.store.get_error_project(&OrganizationId::generate()).await,
        Err(StoreError::NotFound("organization"))
    ));

    // Atomic: when the project cannot be stored (its key is taken), neither is the
    // organization.
    let clash = Organization {
        id: OrganizationId::generate(),
        name: Name::parse("Clash").unwrap(),
        created_at: T0,
    };
    assert!(f.store.create_organization(&clash, &key).await.is_err());
    assert!(matches!(
        f.store.get_organization(&clash.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(f.store.count_organizations().await.unwrap(), 3);
    let fourth = f
        .store
        .get_error_project(&organization(&f.store, "Fourth").await)
        .await
        .unwrap();
    assert!(fourth.project_id > third.project_id);
});

both_engines!(concurrent_batches_count_exactly, |engine| async move {
    let f = fixture(engine, &[]).await;
    let groups = [fingerprint("G0"), fingerprint("G1"), fingerprint("G2")];
    let (tasks, batches, per_batch) = (8, 10, 12);
    let recorders = (0..tasks).map(|task| {
        let (store, groups) = (f.store.clone(), groups.clone());
        tokio::spawn(async move {
            let mut recorded = Vec::new();
            for batch in 0..batches {
                // The groups in an order of this task's own; one report repeated within
                // the batch, and one from the batch before.
                let id = |batch: usize, i: usize| format!("t{task}-b{batch}-{i}");
                let group = |batch: usize, i: usize| &groups[(i + task + batch) % groups.len()];
                let mut reports: Vec<ErrorReport> = (0..per_batch)
                    .map(|i| report(&id(batch, i), group(batch, i), Severity::Critical, T0))
                    .collect();
                reports.push(reports[3].clone());
                if batch > 0 {
                    reports.push(report(&id(batch - 1, 1), group(batch - 1, 1), Severity::Critical, T0));
                }
                recorded.extend(store.record_errors(&reports, &ALERTS).await.unwrap());
            }
            recorded
        })
    });
    let recorded: Vec<Recorded> = futures::future::join_all(recorders)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    assert_eq!(
        recorded.iter().filter(|r| r.duplicate).count(),
        tasks * batches + tasks * (batches - 1)
    );
    assert_eq!(recorded.iter().filter(|r| r.new_group).count(), groups.len());
    assert_eq!(
        recorded.iter().filter(|r| r.alert.is_some()).count(),
        groups.len(),
        "one alert per group: the cooldown holds across concurrent batches"
    );
    let stored = f.store.list_error_groups(&GroupFilter::default(), 10).await.unwrap();
    assert_eq!(stored.len(), groups.len());
    let expected = (tasks * batches * per_batch / groups.len()) as i64;
    assert!(
        stored.iter().all(|group| group.count == expected),
        "every occurrence counted once: {stored:?}"
    );
    for group in &stored {
        assert_eq!(event_ids(&f.store, &group.id).await.len() as i64, expected.min(100));
    }
    let alerts = f.store.claim_alerts(T0, 60_000, 10).await.unwrap();
    assert_eq!(alerts.len(), groups.len());
    assert!(alerts.iter().all(|a| a.kind == AlertKind::NewGroup));
});
