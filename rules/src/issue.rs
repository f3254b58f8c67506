//! Issues, their lifecycle state and the events that move them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::WorkDuration;
use crate::spec::Priority;

/// What a reporter submits. Documented in the README (`escalade explain --issue FILE.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issue {
    /// Assigned by the store; empty until then.
    #[serde(default)]
    pub id: String,
    pub category: String,
    /// The grid (or any unit) the problem is in.
    pub unit: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The reporting person's id, if they are in the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The photos attached, each the SHA-256 (lowercase hex) of its bytes; the daemon stores
    /// the bytes, the rules only carry the names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// Lifecycle states. Escalation tier is an attribute, not a state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Reported,
    Assigned,
    Acknowledged,
    InProgress,
    Resolved,
    Closed,
    ClosedAtGrid,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Reported => "reported",
            State::Assigned => "assigned",
            State::Acknowledged => "acknowledged",
            State::InProgress => "in_progress",
            State::Resolved => "resolved",
            State::Closed => "closed",
            State::ClosedAtGrid => "closed_at_grid",
        }
    }

    /// Still someone's work: deadlines run and ladders climb.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            State::Assigned | State::Acknowledged | State::InProgress
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Acknowledge,
    Resolve,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Acknowledge => "acknowledge",
            DeadlineKind::Resolve => "resolve",
        }
    }
}

/// How many times things happened to an issue; ladders and meeting triggers count on them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub acknowledge_overdue: u32,
    pub resolve_overdue: u32,
    pub rejected: u32,
    /// Ladder steps run.
    pub escalations: u32,
}

/// Everything the rules know about an issue between events. A decision carries the next one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IssueState {
    pub state: State,
    pub reported_at: Option<DateTime<Utc>>,
    pub priority: Option<Priority>,
    /// Primary department first, then the co-assigned ones.
    pub departments: Vec<String>,
    /// The tier the issue is at: its own unit's from the report, then as the ladder raises it.
    pub tier: Option<String>,
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub counts: Counts,
    /// Meetings convened for this issue.
    pub meetings: Vec<String>,
    /// A rule failed on this issue; it waits in the triage department's queue.
    pub triage: bool,
    pub rating: Option<u8>,
    /// Deadlines whose passing has been handled: their timers are not set again until the
    /// deadline itself is set anew.
    #[serde(default)]
    pub passed: Vec<DeadlineKind>,
    /// The deadlines promised that passed unmet, each the first that passed: overdue is a fact,
    /// kept until the issue is acknowledged (acknowledge) or resolved (both), whatever a ladder's
    /// `extend` does to the next escalation.
    #[serde(default, skip_serializing_if = "Overdue::is_empty")]
    pub overdue: Overdue,
}

/// When each kind of deadline was missed, if it was and the issue has not caught up since.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<DateTime<Utc>>,
}

impl Overdue {
    pub fn is_empty(&self) -> bool {
        self.acknowledge.is_none() && self.resolve.is_none()
    }
}

impl IssueState {
    pub fn deadline(&self, kind: DeadlineKind) -> Option<DateTime<Utc>> {
        match kind {
            DeadlineKind::Acknowledge => self.acknowledge_by,
            DeadlineKind::Resolve => self.resolve_by,
        }
    }

    /// The deadline the issue is held to for being overdue: the first one promised that passed
    /// unmet, else the one pending. An issue is overdue at `now` when either is at or before it.
    pub fn promised(&self, kind: DeadlineKind) -> Option<DateTime<Utc>> {
        match kind {
            DeadlineKind::Acknowledge => self.overdue.acknowledge.or(self.acknowledge_by),
            DeadlineKind::Resolve => self.overdue.resolve.or(self.resolve_by),
        }
    }

    /// Whether the issue is overdue at `now`: still someone's work, with a deadline promised at
    /// or before `now`.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.state.is_open()
            && [DeadlineKind::Acknowledge, DeadlineKind::Resolve]
                .into_iter()
                .any(|k| self.promised(k).is_some_and(|at| at <= now))
    }

    /// Sets (or clears) a deadline; a new deadline has not passed yet.
    pub fn set_deadline(&mut self, kind: DeadlineKind, at: Option<DateTime<Utc>>) {
        self.passed.retain(|k| *k != kind);
        match kind {
            DeadlineKind::Acknowledge => self.acknowledge_by = at,
            DeadlineKind::Resolve => self.resolve_by = at,
        }
    }
}

/// Something that happened to an issue: a person's action or a timer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    Reported,
    Acknowledged,
    Progress {
        #[serde(default)]
        note: String,
    },
    Resolved {
        #[serde(default)]
        note: String,
    },
    Confirmed,
    Rejected {
        #[serde(default)]
        reason: String,
    },
    ClosedAtGrid {
        #[serde(default)]
        note: String,
    },
    DeadlinePassed {
        deadline: DeadlineKind,
    },
    ReminderDue {
        deadline: DeadlineKind,
    },
    Reassigned {
        department: String,
    },
    MeetingOutcome {
        meeting: String,
        outcome: Outcome,
        #[serde(default)]
        departments: Vec<String>,
        #[serde(default)]
        resolve: Option<WorkDuration>,
    },
    Evaluated {
        rating: u8,
        #[serde(default)]
        comment: String,
    },
    /// A remark on the timeline by anyone who may see the issue; it changes nothing else.
    Commented {
        text: String,
    },
    /// The daemon's own: new rules no longer know something this open issue uses (its
    /// category, unit, department, tier, ladder or meeting), and they were put live anyway;
    /// the issue goes to the triage department with the reason, so it is not stranded.
    SentToTriage {
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The meeting solved it.
    Resolved,
    /// The meeting ordered a joint enforcement action.
    Enforcement,
    /// Discussed; the issue carries on as it was.
    Noted,
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Reported => "reported",
            Event::Acknowledged => "acknowledged",
            Event::Progress { .. } => "progress",
            Event::Resolved { .. } => "resolved",
            Event::Confirmed => "confirmed",
            Event::Rejected { .. } => "rejected",
            Event::ClosedAtGrid { .. } => "closed_at_grid",
            Event::DeadlinePassed { .. } => "deadline_passed",
            Event::ReminderDue { .. } => "reminder_due",
            Event::Reassigned { .. } => "reassigned",
            Event::MeetingOutcome { .. } => "meeting_outcome",
            Event::Evaluated { .. } => "evaluated",
            Event::Commented { .. } => "commented",
            Event::SentToTriage { .. } => "sent_to_triage",
        }
    }

    /// Timers are system events: one that finds the issue moved on is ignored, not refused.
    pub fn is_timer(&self) -> bool {
        matches!(
            self,
            Event::DeadlinePassed { .. } | Event::ReminderDue { .. }
        )
    }

    /// Whether the event can change what meeting triggers see: the departments, the counts of
    /// escalations and rejections, or (for hooks) a new look at the issue. Acknowledgements,
    /// notes, reminders and evaluations cannot, so triggers, hooks included, are not evaluated
    /// again for them.
    pub fn may_convene(&self) -> bool {
        matches!(
            self,
            Event::Reported
                | Event::Rejected { .. }
                | Event::DeadlinePassed { .. }
                | Event::Reassigned { .. }
                | Event::MeetingOutcome { .. }
        )
    }

    /// Whether the event may happen in `state`.
    pub fn allowed_in(&self, state: State) -> bool {
        use State::*;
        match self {
            Event::Reported => state == Reported,
            Event::Acknowledged => state == Assigned,
            Event::Progress { .. } => matches!(state, Acknowledged | InProgress),
            Event::Resolved { .. } => state.is_open(),
            Event::Confirmed | Event::Rejected { .. } => state == Resolved,
            Event::ClosedAtGrid { .. } => matches!(state, Reported | Assigned | Acknowledged),
            Event::DeadlinePassed { .. } | Event::ReminderDue { .. } => true,
            Event::Reassigned { .. } | Event::MeetingOutcome { .. } => state.is_open(),
            Event::Evaluated { .. } => matches!(state, Resolved | Closed | ClosedAtGrid),
            Event::Commented { .. } => true,
            Event::SentToTriage { .. } => !matches!(state, Closed | ClosedAtGrid),
        }
    }
}

/// The actions a person may take in `state`, for "not allowed" answers.
pub fn allowed_actions(state: State) -> Vec<&'static str> {
    let samples = [
        Event::Acknowledged,
        Event::Progress {
            note: String::new(),
        },
        Event::Resolved {
            note: String::new(),
        },
        Event::Confirmed,
        Event::Rejected {
            reason: String::new(),
        },
        Event::ClosedAtGrid {
            note: String::new(),
        },
        Event::Reassigned {
            department: String::new(),
        },
        Event::MeetingOutcome {
            meeting: String::new(),
            outcome: Outcome::Noted,
            departments: Vec::new(),
            resolve: None,
        },
        Event::Evaluated {
            rating: 0,
            comment: String::new(),
        },
        Event::Commented {
            text: String::new(),
        },
    ];
    samples
        .iter()
        .filter(|e| e.allowed_in(state))
        .map(Event::name)
        .collect()
}

/// Why `decide` would not take an event: the caller's input is wrong, nothing happened.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("`{event}` is not allowed while the issue is {state}; allowed: {}", allowed.join(", "))]
    NotAllowed {
        event: &'static str,
        state: &'static str,
        allowed: Vec<&'static str>,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A hook was stopped by the wall-clock limit, which depends on the machine's load rather
    /// than on the rules and the issue: no decision rests on it. The same event may be tried
    /// again later.
    #[error(
        "hook `{hook}` {message}: the machine is too busy to decide now; nothing changed, try again later"
    )]
    Overloaded { hook: String, message: String },
}
