//! An issue's life replayed in memory: events in time order, timers firing between them as the
//! daemon's scheduler would fire them. Rule tests and `explain` run on it.

use chrono::{DateTime, Utc};

use crate::decide::{Decision, Timer};
use crate::issue::{Event, Issue, IssueState, Refusal};
use crate::model::RuleSet;

/// One decided event.
#[derive(Clone, Debug)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub event: Event,
    pub decision: Decision,
}

pub struct Timeline<'r> {
    rules: &'r RuleSet,
    pub issue: Issue,
    pub state: IssueState,
    pub timers: Vec<Timer>,
    pub log: Vec<Entry>,
}

/// Timers fired in one `advance_to` at most: a ladder whose extensions were shorter than a
/// second could otherwise spin; a real one climbs a handful of steps.
const MAX_FIRINGS: usize = 10_000;

impl<'r> Timeline<'r> {
    /// Reports `issue` at `at`.
    pub fn report(rules: &'r RuleSet, issue: Issue, at: DateTime<Utc>) -> Result<Self, Refusal> {
        let mut t = Timeline {
            rules,
            issue,
            state: IssueState::default(),
            timers: Vec::new(),
            log: Vec::new(),
        };
        t.apply(at, Event::Reported)?;
        Ok(t)
    }

    /// Takes up an issue where it stands: its state and its pending timers (in any order).
    pub fn resume(
        rules: &'r RuleSet,
        issue: Issue,
        state: IssueState,
        mut timers: Vec<Timer>,
    ) -> Self {
        timers.sort_by_key(|t| t.at);
        Timeline {
            rules,
            issue,
            state,
            timers,
            log: Vec::new(),
        }
    }

    /// Fires, in due order, every timer due at or before `until`.
    pub fn advance_to(&mut self, until: DateTime<Utc>) {
        for _ in 0..MAX_FIRINGS {
            let Some(next) = self.timers.first().filter(|t| t.at <= until).cloned() else {
                return;
            };
            self.timers.remove(0);
            // A timer event is never refused: it is allowed in every state.
            if let Ok(d) = self
                .rules
                .decide(&self.issue, &self.state, &next.event, next.at)
            {
                self.commit(next.at, next.event, d);
            }
        }
    }

    /// Lets due timers fire, then applies a person's event at `at`.
    pub fn apply(&mut self, at: DateTime<Utc>, event: Event) -> Result<&Decision, Refusal> {
        self.advance_to(at);
        let d = self.rules.decide(&self.issue, &self.state, &event, at)?;
        self.commit(at, event, d);
        Ok(&self.log.last().expect("just pushed").decision)
    }

    fn commit(&mut self, at: DateTime<Utc>, event: Event, decision: Decision) {
        self.state = decision.next.clone();
        self.timers = decision.timers.clone();
        self.log.push(Entry {
            at,
            event,
            decision,
        });
    }

    /// The tier the issue is at: its escalation tier, else its own unit's.
    pub fn tier(&self) -> String {
        self.state.tier.clone().unwrap_or_else(|| {
            let org = &self.rules.org;
            org.unit(&self.issue.unit)
                .map(|u| org.tiers[org.units[u as usize].tier as usize].id.clone())
                .unwrap_or_default()
        })
    }
}
