//! The bookkeeping of recording a batch of reports, shared by both stores: which reports
//! stand for their event id (later repeats in the batch are duplicates of the first),
//! which are stored already, how the rest group, and one answer per report at the end.
//! The stores do only the SQL in between; what a batch does to each group (its count,
//! last seen, severity, whether it alerts, and who hears the news) is [`record_in_group`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::clock::Timestamp;
use crate::error_store::reports::{AlertKind, AlertPolicy, ErrorReport, Occurrence, Recorded};
use crate::failures::Severity;
use crate::ids::ErrorGroupId;
use crate::store::StoreError;

/// A group key: (scope, fingerprint). Groups are visited, and locked, in this order.
pub type GroupKey<'a> = (&'a str, &'a str);

/// A batch being recorded.
pub struct Batch<'a> {
    reports: &'a [ErrorReport],
    first_of: HashMap<&'a str, usize>,
    repeats: Vec<(usize, usize)>,
    answers: Vec<Option<Recorded>>,
}

impl<'a> Batch<'a> {
    /// Indexes a batch by event id.
    pub fn new(reports: &'a [ErrorReport]) -> Self {
        let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(reports.len());
        let mut repeats = Vec::new();
        for (i, report) in reports.iter().enumerate() {
            match first_of.entry(&report.event_id) {
                Entry::Occupied(first) => repeats.push((i, *first.get())),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
        Self {
            reports,
            first_of,
            repeats,
            answers: vec![None; reports.len()],
        }
    }

    /// The reports.
    pub fn reports(&self) -> &'a [ErrorReport] {
        self.reports
    }

    /// The latest receipt in the batch: "now" for alert decisions. `None` when empty.
    pub fn now(&self) -> Option<Timestamp> {
        self.reports.iter().map(|report| report.received_at).max()
    }

    /// The distinct event ids, to look up which are stored already.
    pub fn event_ids(&self) -> Vec<&'a str> {
        self.first_of.keys().copied().collect()
    }

    /// Answers the reports whose event id is stored already (`stored`: event id → group
    /// id) as duplicates, and groups the others by key, each group's members in batch order.
    pub fn group(&mut self, stored: &HashMap<String, String>) -> BTreeMap<GroupKey<'a>, Vec<usize>> {
        let reports = self.reports;
        let mut groups: BTreeMap<GroupKey<'a>, Vec<usize>> = BTreeMap::new();
        for (i, report) in reports.iter().enumerate() {
            if self.first_of.get(report.event_id.as_str()) != Some(&i) {
                continue;
            }
            match stored.get(&report.event_id) {
                Some(group) => self.answers[i] = Some(duplicate(group)),
                None => groups
                    .entry((report.scope.as_str(), report.fingerprint.as_str()))
                    .or_default()
                    .push(i),
            }
        }
        groups
    }

    /// Records what recording report `i` did.
    pub fn answer(&mut self, i: usize, recorded: Recorded) {
        if let Some(slot) = self.answers.get_mut(i) {
            *slot = Some(recorded);
        }
    }

    /// Answers report `i` as a duplicate of an event stored in `group_id`.
    pub fn answer_duplicate(&mut self, i: usize, group_id: &str) {
        self.answer(i, duplicate(group_id));
    }

    /// One answer per report, in order; repeats within the batch answer as duplicates of
    /// their first. Fails if a report was left unanswered (a store bug).
    pub fn finish(mut self) -> Result<Vec<Recorded>, StoreError> {
        for (i, first) in std::mem::take(&mut self.repeats) {
            let group = self.answers[first]
                .as_ref()
                .map(|first| first.group_id.as_str().to_owned());
            if let Some(group) = group {
                self.answer_duplicate(i, &group);
            }
        }
        self.answers
            .into_iter()
            .map(|recorded| recorded.ok_or_else(|| StoreError::Other("an error report was not recorded".into())))
            .collect()
    }
}

/// What recording a report whose event id is stored already did: nothing.
pub fn duplicate(group_id: &str) -> Recorded {
    Recorded {
        group_id: ErrorGroupId::from_trusted(group_id.to_owned()),
        new_group: false,
        regression: false,
        duplicate: true,
        alert: None,
    }
}

/// A group as recording finds it, locked (or just created) by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// `grp_…`.
    pub id: String,
    /// Created by this transaction.
    pub new: bool,
    /// Resolved before this transaction.
    pub resolved: bool,
    /// When it last alerted (the cooldown).
    pub last_alerted_at: Option<Timestamp>,
    /// Its component.
    pub component: Option<String>,
}

/// What a batch's occurrences do to one group's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUpdate {
    /// Occurrences to add to its count.
    pub count: i64,
    /// The latest of them (`last_seen` never moves back).
    pub last_seen: Timestamp,
    /// The most severe of them (the group's severity only ever rises).
    pub severity: Severity,
    /// The alert to queue, if the policy calls for one: then `last_alerted_at` is `now`.
    pub alert: Option<AlertKind>,
}

/// What recording a group's members did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecording {
    /// The row update; `None` when none of the members was inserted (all stored already
    /// by a concurrent batch): nothing counts.
    pub update: Option<GroupUpdate>,
    /// The group was created by this transaction and ends up without an occurrence: it
    /// must not stay behind.
    pub remove_empty_group: bool,
    /// Per member, in order: what recording it did, or `None` when it turned out to be
    /// stored already (answered afterwards as a duplicate).
    pub answers: Vec<Option<Recorded>>,
}

/// The rule for one group: the members whose event ids were `inserted` count; the group's
/// severity rises to theirs, it is reopened, and the alert policy decides at `now` with the
/// group's cooldown. Its news (new, regressed, alerted) goes to its first stored member
/// only, so one transaction announces a group once.
pub fn record_in_group(
    group: &GroupState,
    members: &[&ErrorReport],
    inserted: &HashSet<String>,
    policy: &AlertPolicy,
    now: Timestamp,
) -> GroupRecording {
    let stored: Vec<&ErrorReport> = members
        .iter()
        .copied()
        .filter(|report| inserted.contains(&report.event_id))
        .collect();
    let Some(first_stored) = stored.first() else {
        return GroupRecording {
            update: None,
            remove_empty_group: group.new,
            answers: vec![None; members.len()],
        };
    };
    let severity = stored
        .iter()
        .map(|report| report.severity)
        .fold(Severity::Debug, Ord::max);
    let last_seen = stored
        .iter()
        .map(|report| report.received_at)
        .fold(first_stored.received_at, Ord::max);
    let alert = policy.decide(
        &Occurrence {
            new_group: group.new,
            regression: group.resolved,
            severity,
            component: group.component.clone(),
        },
        group.last_alerted_at,
        now,
    );
    let mut first = true;
    let answers = members
        .iter()
        .map(|report| {
            if !inserted.contains(&report.event_id) {
                return None;
            }
            let recorded = Recorded {
                group_id: ErrorGroupId::from_trusted(group.id.clone()),
                new_group: first && group.new,
                regression: first && group.resolved,
                duplicate: false,
                alert: if first { alert } else { None },
            };
            first = false;
            Some(recorded)
        })
        .collect();
    GroupRecording {
        update: Some(GroupUpdate {
            count: i64::try_from(stored.len()).unwrap_or(i64::MAX),
            last_seen,
            severity,
            alert,
        }),
        remove_empty_group: false,
        answers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_store::grouping::Fingerprint;

    const POLICY: AlertPolicy = AlertPolicy {
        enabled: true,
        cooldown_ms: 600_000,
    };

    fn report(event_id: &str, severity: Severity, received_at: i64) -> ErrorReport {
        ErrorReport {
            event_id: event_id.into(),
            scope: "server".into(),
            fingerprint: Fingerprint::from_trusted("f".repeat(64)),
            title: "boom".into(),
            severity,
            component: None,
            message: "boom".into(),
            request_id: None,
            payload: "{}".into(),
            release: None,
            environment: None,
            received_at: Timestamp::from_millis(received_at),
        }
    }

    fn group(new: bool, resolved: bool, last_alerted_at: Option<i64>) -> GroupState {
        GroupState {
            id: "grp_1".into(),
            new,
            resolved,
            last_alerted_at: last_alerted_at.map(Timestamp::from_millis),
            component: None,
        }
    }

    fn inserted(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn a_new_group_counts_its_stored_members_and_announces_itself_once() {
        let (a, b, c) = (
            report("a", Severity::Warning, 10),
            report("b", Severity::Error, 30),
            report("c", Severity::Critical, 20),
        );
        let now = Timestamp::from_millis(40);
        // `c` was stored meanwhile by another batch: it does not count here.
        let recording = record_in_group(
            &group(true, false, None),
            &[&a, &b, &c],
            &inserted(&["a", "b"]),
            &POLICY,
            now,
        );
        assert_eq!(
            recording.update,
            Some(GroupUpdate {
                count: 2,
                last_seen: Timestamp::from_millis(30),
                severity: Severity::Error,
                alert: Some(AlertKind::NewGroup),
            })
        );
        assert!(!recording.remove_empty_group);
        let answers = &recording.answers;
        assert_eq!(answers.len(), 3);
        let first = answers[0].as_ref().expect("a was stored");
        assert!(first.new_group && first.alert == Some(AlertKind::NewGroup) && !first.duplicate);
        let second = answers[1].as_ref().expect("b was stored");
        assert!(!second.new_group && second.alert.is_none());
        assert!(answers[2].is_none());
    }

    #[test]
    fn a_resolved_group_regresses_once_within_its_cooldown() {
        let r = report("a", Severity::Info, 10);
        let now = Timestamp::from_millis(1_000_000);
        let reopened = record_in_group(&group(false, true, None), &[&r], &inserted(&["a"]), &POLICY, now);
        assert_eq!(
            reopened.update.as_ref().and_then(|u| u.alert),
            Some(AlertKind::Regression)
        );
        assert!(reopened.answers[0].as_ref().is_some_and(|r| r.regression));
        // Alerted five minutes ago: the cooldown holds the alert back, the count does not.
        let cooling = record_in_group(
            &group(false, true, Some(700_000)),
            &[&r],
            &inserted(&["a"]),
            &POLICY,
            now,
        );
        assert_eq!(cooling.update.as_ref().map(|u| (u.count, u.alert)), Some((1, None)));
    }

    #[test]
    fn a_group_created_for_members_all_stored_elsewhere_is_removed() {
        let r = report("a", Severity::Error, 10);
        let now = Timestamp::from_millis(10);
        let created = record_in_group(&group(true, false, None), &[&r], &inserted(&[]), &POLICY, now);
        assert_eq!(created.update, None);
        assert!(created.remove_empty_group);
        assert_eq!(created.answers, vec![None]);
        let existing = record_in_group(&group(false, false, None), &[&r], &inserted(&[]), &POLICY, now);
        assert!(!existing.remove_empty_group);
    }
}
