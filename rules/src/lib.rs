//! escalade's policy library: the organisation, business calendars, routes, escalation ladders,
//! joint-meeting triggers, message templates and sandboxed Rhai hooks of one rule directory, and
//! the pure decision function over them.
//!
//! Nothing here does I/O beyond reading the rule directory it is given, and nothing reads the
//! clock: `now` is always an argument. (The one exception is the Rhai watchdog, which reads a
//! monotonic clock only to stop a runaway script.)

pub mod calendar;
pub mod decide;
pub mod diag;
pub mod effects;
pub mod explain;
pub mod issue;
pub mod jobs;
mod lint;
mod load;
pub mod model;
pub mod notify;
pub mod replay;
pub mod ruletest;
pub mod scoring;
pub mod script;
pub mod spec;
pub mod template;
pub mod timeline;
mod triage;

pub use calendar::{Calendar, WorkDuration};
pub use decide::{Decision, Enforcement, Links, MeetingCall, Message, Timer};
pub use diag::{Diagnostic, Diagnostics};
pub use issue::{DeadlineKind, Event, Issue, IssueState, Outcome, Overdue, Refusal, State};
pub use jobs::{Job, Report};
pub use load::Source;
pub use model::RuleSet;
pub use notify::{Notifications, SmsEncoding, SmsSegments, cap_sms, sms_segments};
pub use spec::{Channel, Priority};
pub use timeline::Timeline;
