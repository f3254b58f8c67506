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
    /// The clock is stopped (挂起): no deadline runs and nothing escalates until it resumes
    /// with the working time that was left.
    Suspended,
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
            State::Suspended => "suspended",
        }
    }

    /// Every state, in lifecycle order.
    pub const ALL: [State; 8] = [
        State::Reported,
        State::Assigned,
        State::Acknowledged,
        State::InProgress,
        State::Suspended,
        State::Resolved,
        State::Closed,
        State::ClosedAtGrid,
    ];

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still held by a department, running or suspended: it shows in their queues.
    pub fn is_held(self) -> bool {
        self.is_open() || self == State::Suspended
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
    /// Returns (退回) by a department.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub returns: u32,
    /// Extensions (延期) granted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extensions: u32,
    /// Extension requests made, granted or not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extension_requests: u32,
    /// Verification deadlines that lapsed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verification_lapses: u32,
    /// Times the clock was stopped (挂起).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suspensions: u32,
}

/// A rating: a whole number, written `3` or `3.0`; a fraction or a number past 255 is refused
/// naming `rating` (its range, 1 to 5, is the decision's to check).
fn whole_rating<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = u8;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("`rating`, a whole number from 1 to 5")
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u8, E> {
            u8::try_from(n).map_err(|_| E::custom(format!("`rating` {n} is not from 1 to 5")))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u8, E> {
            u8::try_from(n).map_err(|_| E::custom(format!("`rating` {n} is not from 1 to 5")))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<u8, E> {
            if n.fract() == 0.0 && (0.0..=255.0).contains(&n) {
                Ok(n as u8)
            } else {
                Err(E::custom(format!(
                    "`rating` {n} is not a whole number from 1 to 5"
                )))
            }
        }
    }
    d.deserialize_any(Whole)
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A request that waits for its decider: more time (延期) or a stopped clock (挂起).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub kind: RequestKind,
    /// The department that asked.
    pub department: String,
    /// Extra working time asked for (extensions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<WorkDuration>,
    pub reason: String,
    pub asked_at: DateTime<Utc>,
    /// When the decider's time runs out and the policy decides instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_by: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Extension,
    Suspension,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Extension => "extension",
            RequestKind::Suspension => "suspension",
        }
    }
}

/// A suspended issue's clock: the working time each deadline had left when it stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub since: DateTime<Utc>,
    pub reason: String,
    /// The state it resumes in.
    pub resumes_in: State,
    /// Working seconds left on the acknowledge deadline, if one was pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge_left: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_left: Option<i64>,
}

/// How the reporter's on-site check (核查) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// The reporter confirmed the fix on site.
    Confirmed,
    /// Nobody checked in time and the policy confirmed it.
    AutoConfirmed,
    /// Nobody checked in time: closed, recorded as unverified.
    Unverified,
}

/// A department's verdict on a report (双向评价): it feeds the reporting grid's scorecard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportVerdict {
    Valid,
    Invalid,
    Duplicate,
    NotOurs,
}

impl ReportVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportVerdict::Valid => "valid",
            ReportVerdict::Invalid => "invalid",
            ReportVerdict::Duplicate => "duplicate",
            ReportVerdict::NotOurs => "not_ours",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRating {
    pub department: String,
    pub verdict: ReportVerdict,
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
    /// Where a return (退回) goes: the route's `return_to`, else the triage department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatcher: Option<String>,
    /// A department returned the issue and the dispatcher has not assigned it again yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_by: Option<String>,
    /// An extension or suspension request waiting for its decider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// The stopped clock of a suspended issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
    /// The reporter's on-site check is due by then (resolved issues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_by: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Closed as a duplicate of this issue (合并).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// Reporters of merged duplicates, told when this issue is resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<String>,
    /// The departments' verdicts on the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report_ratings: Vec<ReportRating>,
    /// Photos of the fixed site that resolutions carried (处置后照片), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_photos: Vec<String>,
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
        /// Photos of the fixed site (处置后照片), each the SHA-256 of its bytes.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        photos: Vec<String>,
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
        /// An integer as JSON Schema counts them: `3.0` is 3.
        #[serde(deserialize_with = "whole_rating")]
        rating: u8,
        #[serde(default)]
        comment: String,
    },
    /// A remark on the timeline by anyone who may see the issue; it changes nothing else.
    Commented {
        text: String,
    },
    /// 退回: a department that is not responsible gives the issue back to its dispatcher.
    Returned {
        #[serde(default)]
        reason: String,
    },
    /// 延期: a department asks for more working time on its resolve deadline.
    ExtensionRequested {
        duration: WorkDuration,
        #[serde(default)]
        reason: String,
    },
    /// 挂起: a department asks for the clock to stop.
    SuspensionRequested {
        #[serde(default)]
        reason: String,
    },
    /// The decider's answer to the pending request.
    RequestDecided {
        request: RequestKind,
        granted: bool,
        #[serde(default)]
        note: String,
    },
    /// The clock of a suspended issue starts again.
    Resumed {
        #[serde(default)]
        note: String,
    },
    /// 合并: the issue duplicates `original`; it closes and its reporter follows the original.
    Duplicate {
        original: String,
    },
    /// The daemon's own: the reporter of a merged duplicate follows this issue.
    Followed {
        person: String,
        duplicate: String,
    },
    /// 双向评价: a department's verdict on the report.
    ReportRated {
        verdict: ReportVerdict,
        #[serde(default)]
        comment: String,
        /// The rating department; the daemon sets it from a department's token.
        #[serde(default)]
        department: String,
    },
    /// The decider's time for a pending request ran out.
    RequestLapsed {
        request: RequestKind,
    },
    /// The reporter's time to verify a resolution ran out.
    VerificationLapsed,
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
            Event::Returned { .. } => "returned",
            Event::ExtensionRequested { .. } => "extension_requested",
            Event::SuspensionRequested { .. } => "suspension_requested",
            Event::RequestDecided { .. } => "request_decided",
            Event::Resumed { .. } => "resumed",
            Event::Duplicate { .. } => "duplicate",
            Event::Followed { .. } => "followed",
            Event::ReportRated { .. } => "report_rated",
            Event::RequestLapsed { .. } => "request_lapsed",
            Event::VerificationLapsed => "verification_lapsed",
        }
    }

    /// Timers are system events: one that finds the issue moved on is ignored, not refused.
    pub fn is_timer(&self) -> bool {
        matches!(
            self,
            Event::DeadlinePassed { .. }
                | Event::ReminderDue { .. }
                | Event::RequestLapsed { .. }
                | Event::VerificationLapsed
        )
    }

    /// The free texts a person writes into the event, by field, for the checks every text passes
    /// (the daemon's own reasons are not a person's).
    pub fn texts(&self) -> Vec<(&'static str, &str)> {
        match self {
            Event::Progress { note }
            | Event::Resolved { note, .. }
            | Event::ClosedAtGrid { note }
            | Event::RequestDecided { note, .. }
            | Event::Resumed { note } => vec![("note", note)],
            Event::Rejected { reason }
            | Event::Returned { reason }
            | Event::SuspensionRequested { reason }
            | Event::ExtensionRequested { reason, .. } => vec![("reason", reason)],
            Event::Evaluated { comment, .. } | Event::ReportRated { comment, .. } => {
                vec![("comment", comment)]
            }
            Event::Commented { text } => vec![("text", text)],
            Event::Duplicate { original } => vec![("original", original)],
            _ => Vec::new(),
        }
    }

    /// The daemon's own events, never posted by a person.
    pub fn is_system(&self) -> bool {
        self.is_timer()
            || matches!(
                self,
                Event::Reported | Event::SentToTriage { .. } | Event::Followed { .. }
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
                | Event::Returned { .. }
        )
    }

    /// Whether the event may happen in `state`.
    pub fn allowed_in(&self, state: State) -> bool {
        use State::*;
        match self {
            Event::Reported => state == Reported,
            Event::Acknowledged => state == Assigned,
            Event::Progress { .. } => matches!(state, Acknowledged | InProgress),
            Event::Resolved { .. } => state.is_held(),
            Event::Confirmed | Event::Rejected { .. } => state == Resolved,
            Event::ClosedAtGrid { .. } => matches!(state, Reported | Assigned | Acknowledged),
            Event::DeadlinePassed { .. }
            | Event::ReminderDue { .. }
            | Event::RequestLapsed { .. }
            | Event::VerificationLapsed => true,
            Event::Reassigned { .. } => state.is_open(),
            Event::MeetingOutcome { .. } => state.is_open(),
            Event::Evaluated { .. } => matches!(state, Resolved | Closed | ClosedAtGrid),
            Event::Commented { .. } => true,
            Event::SentToTriage { .. } => !matches!(state, Closed | ClosedAtGrid),
            Event::Returned { .. } => matches!(state, Assigned | Acknowledged),
            Event::ExtensionRequested { .. } => state.is_open(),
            Event::SuspensionRequested { .. } => state.is_open(),
            Event::RequestDecided { .. } => state.is_open(),
            Event::Resumed { .. } => state == Suspended,
            Event::Duplicate { .. } => matches!(state, Assigned | Acknowledged | InProgress),
            Event::Followed { .. } => !matches!(state, Closed | ClosedAtGrid),
            Event::ReportRated { .. } => state != Reported,
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
            photos: Vec::new(),
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
        Event::Returned {
            reason: String::new(),
        },
        Event::ExtensionRequested {
            duration: WorkDuration::minutes(0),
            reason: String::new(),
        },
        Event::SuspensionRequested {
            reason: String::new(),
        },
        Event::RequestDecided {
            request: RequestKind::Extension,
            granted: false,
            note: String::new(),
        },
        Event::Resumed {
            note: String::new(),
        },
        Event::Duplicate {
            original: String::new(),
        },
        Event::ReportRated {
            verdict: ReportVerdict::Valid,
            comment: String::new(),
            department: String::new(),
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
    /// The event would change nothing but restart a clock (reassigning an issue to the
    /// department that holds it): refused, so that nobody postpones an escalation so.
    #[error("{field}: {message}")]
    Unchanged {
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
