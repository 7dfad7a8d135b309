//! The bookkeeping of recording a batch of reports, shared by both stores: which reports
//! stand for their event id (later repeats in the batch are duplicates of the first),
//! which are stored already, how the rest group, and one answer per report at the end.
//! The stores do only the SQL in between.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::clock::Timestamp;
use crate::error_store::reports::{ErrorReport, Recorded};
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
