//! The decision function: given an issue, its state, an event and the time, what happens.
//!
//! Pure: the same inputs and rules give the same decision. The decision carries the issue's
//! next state whole, the full set of its pending timers, and every message, so whoever stores
//! it has nothing to work out.

mod flow;

pub use flow::Decider;

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use rhai::Dynamic;
use serde::Serialize;

use crate::calendar::{Calendar, WorkDuration};
use crate::effects::{Convened, Effects, Routed, StepRun, TriageNote};
use crate::issue::{
    DeadlineKind, Event, Issue, IssueState, Outcome, Refusal, RequestKind, State, allowed_actions,
};
use crate::model::{Action, Category, Ix, Raise, RouteTarget, RuleSet, Target};
use crate::script::{CallError, HookError, map, string};
use crate::spec::{Channel, Priority, Trigger};

/// The longest comment taken, in characters.
pub const MAX_COMMENT_CHARS: usize = 4000;
/// The longest description of a report, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// The longest address of a report, in characters.
pub const MAX_ADDRESS_CHARS: usize = 500;

/// What a report must be before anything is decided on it: a description that says something,
/// texts within their lengths and without NUL characters, coordinates on the globe.
fn check_report(issue: &Issue) -> Result<(), Refusal> {
    let bad = |field: &'static str, message: String| Refusal::Invalid { field, message };
    for (field, text) in [
        ("category", Some(issue.category.as_str())),
        ("unit", Some(issue.unit.as_str())),
        ("description", Some(issue.description.as_str())),
        ("reporter", issue.reporter.as_deref()),
        ("address", issue.address.as_deref()),
    ] {
        if text.is_some_and(|t| t.contains('\0')) {
            return Err(bad(field, format!("`{field}` contains a NUL character")));
        }
    }
    if issue.description.trim().is_empty() {
        return Err(bad(
            "description",
            "a report must say what the problem is".into(),
        ));
    }
    if issue.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(bad(
            "description",
            format!("a description has at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if issue
        .address
        .as_ref()
        .is_some_and(|a| a.chars().count() > MAX_ADDRESS_CHARS)
    {
        return Err(bad(
            "address",
            format!("an address has at most {MAX_ADDRESS_CHARS} characters"),
        ));
    }
    if let Some(l) = issue.location {
        if !(l.lat.is_finite() && (-90.0..=90.0).contains(&l.lat)) {
            return Err(bad(
                "location.lat",
                format!("latitude {} is not between -90 and 90", l.lat),
            ));
        }
        if !(l.lon.is_finite() && (-180.0..=180.0).contains(&l.lon)) {
            return Err(bad(
                "location.lon",
                format!("longitude {} is not between -180 and 180", l.lon),
            ));
        }
    }
    Ok(())
}

/// What the rules decided for one event.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub rules_version: Arc<str>,
    pub event: &'static str,
    /// The issue's state after this event.
    pub next: IssueState,
    /// Every timer the issue has pending after this event; it replaces the previous set.
    pub timers: Vec<Timer>,
    /// How the deadlines set by this decision were computed, for `explain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_basis: Option<DeadlineBasis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated: Option<Escalation>,
    pub meetings: Vec<MeetingCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    pub supervision: Vec<Supervision>,
    pub messages: Vec<Message>,
    /// A rule failed: the issue went to the triage department, with this error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<String>,
    /// Which rule or step matched and why, in order.
    pub trace: Vec<String>,
    /// What the decision did, for the timeline.
    pub effects: Effects,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timer {
    pub at: DateTime<Utc>,
    pub event: Event,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeadlineBasis {
    pub from: DateTime<Utc>,
    pub calendar: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<WorkDuration>,
    pub resolve: WorkDuration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Escalation {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeetingCall {
    pub meeting: String,
    pub at: DateTime<Utc>,
    /// Person ids.
    pub participants: Vec<String>,
    pub departments: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Enforcement {
    pub meeting: String,
    pub departments: Vec<String>,
    pub resolve_by: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Supervision {
    pub tier: String,
    pub unit: String,
    pub leader: Option<String>,
    pub departments: Vec<String>,
}

/// A message to one person on one channel; rendered with `RuleSet::render`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub kind: &'static str,
    pub template: Arc<str>,
    /// Person id.
    pub to: Arc<str>,
    pub channel: Channel,
    /// The locale of the template variant to use.
    pub locale: Arc<str>,
    /// The email address or phone number.
    pub address: Arc<str>,
    /// The issue's effective priority is `urgent`: sent at once, even in quiet hours.
    pub urgent: bool,
    #[serde(skip_serializing_if = "MessageVars::is_empty")]
    pub vars: MessageVars,
}

/// What a message says beyond the issue itself. Read back from the outbox to render it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MessageVars {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<(DeadlineKind, DateTime<Utc>)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting: Option<(String, DateTime<Utc>)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<(Trigger, u32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The department the message is for, when it goes to a department's people: whose
    /// acknowledgement an `assigned` message's link stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<Arc<str>>,
}

/// Links the daemon puts in a message at delivery, computed outside the rules (which hold no
/// secrets): each `None` when not configured, and always `None` in rule tests and `explain`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Links {
    /// The one-click acknowledgement of the issue for `MessageVars::department`, bound to the
    /// acknowledge deadline of `MessageVars::deadline`.
    pub acknowledge: Option<String>,
}

impl MessageVars {
    fn is_empty(&self) -> bool {
        *self == MessageVars::default()
    }
}

/// A text a person must write (a progress note, a rejection's reason): not blank. Its length
/// and characters are checked for every event's texts (`Event::texts`) before it is decided.
fn said(field: &'static str, text: &str, blank: &str) -> Result<(), Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::Invalid {
            field,
            message: blank.to_string(),
        });
    }
    Ok(())
}

/// The people of a recipient, without allocating.
enum People<'a> {
    One(Option<Ix>),
    Many(std::slice::Iter<'a, Ix>),
}

impl Iterator for People<'_> {
    type Item = Ix;

    fn next(&mut self) -> Option<Ix> {
        match self {
            People::One(p) => p.take(),
            People::Many(it) => it.next().copied(),
        }
    }
}

/// Who a message goes to, before channels are chosen.
#[derive(Clone, Copy)]
enum To {
    Person(Ix),
    Department(Ix),
}

impl RuleSet {
    /// Decides what `event` does to an issue in `state` at `now`.
    ///
    /// Refuses (changing nothing) an event the state does not allow or input that names
    /// something the rules do not know. A failing Rhai hook is not a refusal: the decision sends
    /// the issue to triage and says why. A hook stopped by the wall clock is: how far it got
    /// depends on the machine's load, so nothing is decided (`Refusal::Overloaded`).
    pub fn decide(
        &self,
        issue: &Issue,
        state: &IssueState,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Decision, Refusal> {
        if !event.allowed_in(state.state) {
            return Err(Refusal::NotAllowed {
                event: event.name(),
                state: state.state.as_str(),
                allowed: allowed_actions(state.state),
            });
        }
        if *event == Event::Reported {
            check_report(issue)?;
        }
        // Every text an event carries is bounded and free of NUL characters.
        for (field, text) in event.texts() {
            if text.contains('\0') {
                return Err(Refusal::Invalid {
                    field,
                    message: format!("`{field}` contains a NUL character"),
                });
            }
            if text.chars().count() > MAX_COMMENT_CHARS {
                return Err(Refusal::Invalid {
                    field,
                    message: format!("`{field}` has at most {MAX_COMMENT_CHARS} characters"),
                });
            }
        }
        if let Event::SentToTriage { reason } = event {
            // Decided without the category or unit: the new rules may not know them.
            return Ok(self.sent_to_triage(issue, state, reason, now));
        }
        let category = self
            .category(&issue.category)
            .ok_or_else(|| Refusal::Invalid {
                field: "category",
                message: format!("unknown category `{}`", issue.category),
            })?;
        let unit = self.org.unit(&issue.unit).ok_or_else(|| Refusal::Invalid {
            field: "unit",
            message: format!("unknown unit `{}`", issue.unit),
        })?;
        if let Some(r) = &issue.reporter
            && self.org.person(r).is_none()
        {
            return Err(Refusal::Invalid {
                field: "reporter",
                message: format!("unknown person `{r}`"),
            });
        }
        let mut cx = Cx {
            rs: self,
            issue,
            category: &self.categories[category as usize],
            unit,
            now,
            next: state.clone(),
            hook_map: std::cell::RefCell::new(None),
            d: Decision {
                rules_version: self.version.clone(),
                event: event.name(),
                next: IssueState::default(),
                timers: Vec::new(),
                deadline_basis: None,
                escalated: None,
                meetings: Vec::new(),
                enforcement: None,
                supervision: Vec::new(),
                messages: Vec::with_capacity(8),
                triage: None,
                trace: Vec::with_capacity(4),
                effects: Effects::default(),
            },
        };
        let outcome = cx.event(event);
        if let Err(e) = outcome {
            match e {
                Failure::Refused(r) => return Err(r),
                Failure::Hook(h) => cx.triage(h),
            }
        }
        if event.may_convene() {
            match cx.meeting_triggers() {
                Err(Failure::Hook(h)) => cx.triage(h),
                Err(Failure::Refused(r)) => return Err(r),
                Ok(()) => {}
            }
        }
        // Acknowledged (or further), the issue has met its acknowledgement; resolved or closed,
        // it owes nothing more.
        match cx.next.state {
            State::Reported | State::Assigned => {}
            State::Acknowledged | State::InProgress => cx.next.overdue.acknowledge = None,
            State::Resolved | State::Closed | State::ClosedAtGrid => {
                cx.next.overdue = Default::default()
            }
            State::Suspended => {}
        }
        if !cx.next.state.is_held() {
            cx.next.request = None;
        }
        cx.timers();
        cx.d.next = cx.next;
        Ok(cx.d)
    }

    /// Renders a message of a decision, without links.
    pub fn render(
        &self,
        issue: &Issue,
        state: &IssueState,
        msg: &Message,
    ) -> Result<crate::template::Rendered, String> {
        self.render_with(issue, state, msg, &Links::default())
    }

    /// Renders a message of a decision with the links the daemon made for it (`links`).
    pub fn render_with(
        &self,
        issue: &Issue,
        state: &IssueState,
        msg: &Message,
        links: &Links,
    ) -> Result<crate::template::Rendered, String> {
        let locale = &*msg.locale;
        let org = &self.org;
        let unit = org.unit(&issue.unit);
        let cat = self
            .category(&issue.category)
            .map(|c| &self.categories[c as usize]);
        let tier_id = state
            .tier
            .clone()
            .or_else(|| unit.map(|u| org.tiers[org.units[u as usize].tier as usize].id.clone()))
            .unwrap_or_default();
        let tier_name = org
            .tier(&tier_id)
            .map(|t| org.tiers[t as usize].names.get(locale).to_string());
        let depts: Vec<(&str, &str)> = state
            .departments
            .iter()
            .filter_map(|d| org.department(d))
            .map(|d| {
                let d = &org.departments[d as usize];
                (d.id.as_str(), d.names.get(locale))
            })
            .collect();
        let tz = org.calendars[self.settings.calendar as usize].tz();
        let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
        let person = org.person(&msg.to).map(|p| &org.people[p as usize]);
        let ctx = serde_json::json!({
            "issue": {
                "id": issue.id,
                "category": issue.category,
                "category_name": cat.map(|c| c.names.get(locale)).unwrap_or(&issue.category),
                "unit": issue.unit,
                "unit_name": unit.map(|u| org.units[u as usize].names.get(locale)).unwrap_or(&issue.unit),
                "description": issue.description,
                "priority": state.priority.map(Priority::as_str).unwrap_or("normal"),
                "tier": tier_id,
                "tier_name": tier_name.unwrap_or_default(),
                "state": state.state.as_str(),
                "reported_at": state.reported_at.map(local).unwrap_or_default(),
                "address": issue.address.clone().unwrap_or_default(),
            },
            "department": depts.first().map(|(id, name)| serde_json::json!({"id": id, "name": name})),
            "departments": depts.iter().map(|d| d.1).collect::<Vec<_>>(),
            "deadline": msg.vars.deadline.map(|(k, at)| serde_json::json!({"kind": k.as_str(), "at": local(at)})),
            "recipient": {"id": msg.to, "name": person.map(|p| p.name.as_str()).unwrap_or("")},
            "meeting": msg.vars.meeting.as_ref().map(|(id, at)| {
                let name = self.meeting(id).map(|m| self.meetings[m as usize].names.get(locale)).unwrap_or(id);
                serde_json::json!({"id": id, "name": name, "at": local(*at)})
            }),
            "step": msg.vars.step.map(|(t, n)| serde_json::json!({"trigger": t.as_str(), "occurrence": n})),
            "reason": msg.vars.reason.clone().unwrap_or_default(),
            "links": links,
        });
        self.templates
            .render(&msg.template, msg.channel, locale, &ctx)
    }

    /// Renders a report or digest template (`overdue_digest`, `scorecard`, `digest`: see
    /// [`crate::template::REPORT_KINDS`]) for a person of `locale` on `channel`: their locale's
    /// variant if it has that channel, else the default locale's. `vars` are the report's
    /// variables, such as [`crate::jobs::OverdueDigestVars`] or a `serde_json::Value` of the same
    /// shape. An SMS body is not shortened here: see [`crate::notify::Notifications::cap_sms`].
    pub fn render_report(
        &self,
        kind: &str,
        locale: &str,
        channel: Channel,
        vars: &impl Serialize,
    ) -> Result<crate::template::Rendered, String> {
        if !crate::template::REPORT_KINDS.contains(&kind) {
            return Err(format!(
                "`{kind}` is not a report template: expected one of {}",
                crate::template::REPORT_KINDS.join(", ")
            ));
        }
        if !self.templates.contains(kind) {
            return Err(format!("the rules have no template `{kind}`"));
        }
        let locale = self.templates.locale_for(kind, channel, &Arc::from(locale));
        self.templates.render(kind, channel, &locale, vars)
    }
}

enum Failure {
    Refused(Refusal),
    Hook(HookError),
}

impl From<HookError> for Failure {
    fn from(h: HookError) -> Self {
        Failure::Hook(h)
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Failed(h) => Failure::Hook(h),
            CallError::Overloaded { hook, message } => {
                Failure::Refused(Refusal::Overloaded { hook, message })
            }
        }
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

/// One decision in the making.
struct Cx<'a> {
    rs: &'a RuleSet,
    issue: &'a Issue,
    category: &'a Category,
    unit: Ix,
    now: DateTime<Utc>,
    next: IssueState,
    d: Decision,
    /// The issue as hooks see it, built at the first hook call of this decision.
    hook_map: std::cell::RefCell<Option<rhai::Map>>,
}

impl<'a> Cx<'a> {
    fn trace(&mut self, line: impl Into<String>) {
        self.d.trace.push(line.into());
    }

    fn event(&mut self, event: &Event) -> Result<(), Failure> {
        match event {
            Event::Reported => self.reported(),
            Event::Acknowledged => {
                self.next.state = State::Acknowledged;
                self.next.acknowledge_by = None;
                self.trace("acknowledged: the acknowledge deadline is cleared");
                Ok(())
            }
            Event::Progress { note } => {
                said("note", note, "a progress note must say what is being done")?;
                self.next.state = State::InProgress;
                self.trace("handling opinion noted: in progress");
                Ok(())
            }
            Event::Resolved { photos, .. } => self.resolved(photos),
            Event::Confirmed => {
                self.next.state = State::Closed;
                self.next.verify_by = None;
                self.next.verification = Some(crate::issue::Verification::Confirmed);
                self.trace("confirmed by the reporter: closed");
                Ok(())
            }
            Event::ClosedAtGrid { .. } => {
                self.next.state = State::ClosedAtGrid;
                self.next.acknowledge_by = None;
                self.next.resolve_by = None;
                self.trace("closed at grid level: a small matter the reporter handled");
                Ok(())
            }
            Event::Rejected { reason } => {
                said(
                    "reason",
                    reason,
                    "a rejection must say why the fix is not accepted",
                )?;
                self.next.verify_by = None;
                self.rejected(reason)
            }
            Event::DeadlinePassed { deadline } => self.deadline_passed(*deadline),
            Event::ReminderDue { deadline } => {
                match self.next.deadline(*deadline) {
                    Some(at) if at > self.now && self.next.state.is_open() => {
                        self.trace(format!(
                            "reminder: the {} deadline falls due at {at}",
                            deadline.as_str()
                        ));
                        let vars = MessageVars {
                            deadline: Some((*deadline, at)),
                            ..Default::default()
                        };
                        self.tell_departments("reminder", "reminder", vars);
                    }
                    _ => self.trace(format!(
                        "reminder for the {} deadline ignored: no longer pending",
                        deadline.as_str()
                    )),
                }
                Ok(())
            }
            Event::Reassigned { department } => self.reassigned(department),
            Event::MeetingOutcome {
                meeting,
                outcome,
                departments,
                resolve,
            } => self.meeting_outcome(meeting, *outcome, departments, *resolve),
            Event::Evaluated { rating, .. } => {
                if !(1..=5).contains(rating) {
                    return Err(Refusal::Invalid {
                        field: "rating",
                        message: format!("rating {rating} is not between 1 and 5"),
                    }
                    .into());
                }
                if self.next.rating.is_some() {
                    return Err(Refusal::Invalid {
                        field: "rating",
                        message: "the issue was already evaluated".into(),
                    }
                    .into());
                }
                self.next.rating = Some(*rating);
                self.trace(format!("evaluated by the reporter: {rating}/5"));
                self.d
                    .effects
                    .notes
                    .push(format!("the reporter rated the handling {rating}/5"));
                Ok(())
            }
            // Decided before a context is built: see `RuleSet::sent_to_triage`.
            Event::SentToTriage { .. } => Ok(()),
            Event::Commented { text } => {
                said("text", text, "a comment needs text")?;
                self.trace("comment added");
                Ok(())
            }
            Event::Returned { reason } => self.returned(reason),
            Event::ExtensionRequested { duration, reason } => {
                self.request(RequestKind::Extension, Some(*duration), reason)
            }
            Event::SuspensionRequested { reason } => {
                self.request(RequestKind::Suspension, None, reason)
            }
            Event::RequestDecided {
                request,
                granted,
                note,
            } => self.request_decided(*request, *granted, note, false),
            Event::RequestLapsed { request } => self.request_lapsed(*request),
            Event::Resumed { note } => self.resumed(note),
            Event::Duplicate { original } => self.duplicate(original),
            Event::Followed { person, duplicate } => self.followed(person, duplicate),
            Event::ReportRated {
                verdict,
                department,
                ..
            } => self.report_rated(*verdict, department),
            Event::VerificationLapsed => self.verification_lapsed(),
        }
    }

    // ---- reported ----

    fn reported(&mut self) -> Result<(), Failure> {
        let cat = self.category;
        self.next.reported_at = Some(self.now);
        // An issue's tier is never empty: it starts at its own unit's tier.
        if self.next.tier.is_none() {
            let org = &self.rs.org;
            self.next.tier = Some(
                org.tiers[org.units[self.unit as usize].tier as usize]
                    .id
                    .clone(),
            );
        }
        let mut priority = self.issue.priority.unwrap_or(cat.priority);
        if let Some(h) = &cat.priority_hook {
            let v = self.call(h, priority)?;
            let s = v.clone().into_immutable_string().ok();
            priority = s
                .as_deref()
                .and_then(Priority::parse)
                .ok_or_else(|| HookError {
                    hook: h.clone(),
                    kind: format!(
                        "returned {}, not one of \"low\", \"normal\", \"high\", \"urgent\"",
                        show(&v)
                    ),
                })?;
            self.trace(format!(
                "priority_hook `{h}` set priority {}",
                priority.as_str()
            ));
        }
        self.next.priority = Some(priority);

        let (primary, co) = self.route(priority)?;
        let mut departments = vec![primary];
        for c in co {
            if !departments.contains(&c) {
                departments.push(c);
            }
        }
        self.next.departments = departments
            .iter()
            .map(|&d| self.rs.org.departments[d as usize].id.clone())
            .collect();
        self.next.state = State::Assigned;

        let rule = &cat.deadlines[priority as usize];
        let (mut ack, mut res) = (rule.acknowledge, rule.resolve);
        if let Some(h) = &cat.deadline_hook {
            let v = self.call(h, priority)?;
            let bad = |what: String| HookError {
                hook: h.clone(),
                kind: what,
            };
            let m = v.clone().try_cast::<rhai::Map>().ok_or_else(|| {
                bad(format!(
                    "returned {}, not a map like #{{resolve: \"2d\"}}",
                    show(&v)
                ))
            })?;
            for (k, val) in m {
                let d = duration_of(&val).ok_or_else(|| bad(format!("returned {k}: {}, not a positive duration such as \"4h\" or a number of minutes", show(&val))))?;
                match k.as_str() {
                    "acknowledge" => ack = d,
                    "resolve" => res = d,
                    other => {
                        return Err(bad(format!(
                            "returned unknown key `{other}` (expected acknowledge, resolve)"
                        ))
                        .into());
                    }
                }
            }
            self.trace(format!(
                "deadline_hook `{h}` set acknowledge {ack}, resolve {res}"
            ));
        }
        let cal = self.deadline_calendar();
        let ack_at = self.set_deadline(DeadlineKind::Acknowledge, cal, self.now, ack);
        self.set_deadline(DeadlineKind::Resolve, cal, self.now, res);
        self.d.deadline_basis = Some(DeadlineBasis {
            from: self.now,
            calendar: cal.key(),
            acknowledge: Some(ack),
            resolve: res,
        });
        // The instants are in the decision's next state; the trace says how they were counted.
        self.trace(format!(
            "deadlines at priority {} on calendar {}: acknowledge {ack}, resolve {res}",
            priority.as_str(),
            cal.id(),
        ));
        self.tell_departments(
            "assigned",
            "assigned",
            MessageVars {
                deadline: Some((DeadlineKind::Acknowledge, ack_at)),
                ..Default::default()
            },
        );
        Ok(())
    }

    /// The first matching route's departments, or the category's.
    fn route(&mut self, priority: Priority) -> Result<(Ix, Vec<Ix>), Failure> {
        let rs = self.rs;
        let cat_ix = self.rs.category(&self.issue.category).expect("checked");
        let cal = &rs.org.calendars[rs.settings.calendar as usize];
        let local = self.now.with_timezone(&cal.tz());
        let minute = local.hour() * 60 + local.minute();
        let mut lowered: Option<String> = None;
        // Conditions are tested first and the reason written only for the route that matches:
        // most routes fail, and formatting is the dearest part of a decision.
        for r in &rs.routes {
            if r.categories
                .as_ref()
                .is_some_and(|cs| !cs.contains(&cat_ix))
            {
                continue;
            }
            let unit = match &r.units {
                Some(us) => match us.iter().find(|&&u| rs.org.in_subtree(self.unit, u)) {
                    Some(&u) => Some(u),
                    None => continue,
                },
                None => None,
            };
            if r.priorities
                .as_ref()
                .is_some_and(|ps| !ps.contains(&priority))
            {
                continue;
            }
            let word = match &r.text_any {
                Some(words) => {
                    let text = lowered.get_or_insert_with(|| self.issue.description.to_lowercase());
                    match words.iter().find(|w| text.contains(w.as_str())) {
                        Some(w) => Some(w),
                        None => continue,
                    }
                }
                None => None,
            };
            if let Some((a, b)) = r.time {
                let inside = if a < b {
                    minute >= a && minute < b
                } else {
                    minute >= a || minute < b
                };
                if !inside {
                    continue;
                }
            }
            if r.working
                .is_some_and(|w| cal.is_working_time(self.now) != w)
            {
                continue;
            }
            let mut why = String::new();
            let mut part = |p: std::fmt::Arguments| {
                if !why.is_empty() {
                    why.push_str(", ");
                }
                let _ = why.write_fmt(p);
            };
            if r.categories.is_some() {
                part(format_args!("category {}", self.issue.category));
            }
            if let Some(u) = unit {
                part(format_args!("unit within {}", rs.org.units[u as usize].id));
            }
            if r.priorities.is_some() {
                part(format_args!("priority {}", priority.as_str()));
            }
            if let Some(w) = word {
                part(format_args!("text contains \"{w}\""));
            }
            if let Some((a, b)) = r.time {
                part(format_args!(
                    "local time {:02}:{:02} in {:02}:{:02}-{:02}:{:02}",
                    minute / 60,
                    minute % 60,
                    a / 60,
                    a % 60,
                    b / 60,
                    b % 60
                ));
            }
            if let Some(w) = r.working {
                part(format_args!(
                    "{} working time",
                    if w { "in" } else { "outside" }
                ));
            }
            let primary = match &r.target {
                RouteTarget::Department(d) => *d,
                RouteTarget::Hook(h) => {
                    let v = self.call(h, priority)?;
                    let id = v.clone().into_immutable_string().map_err(|_| HookError {
                        hook: h.clone(),
                        kind: format!("returned {}, not a department id", show(&v)),
                    })?;
                    let d = rs.org.department(&id).ok_or_else(|| HookError {
                        hook: h.clone(),
                        kind: format!("returned `{id}`, which is not a department"),
                    })?;
                    part(format_args!("department_hook `{h}` chose {id}"));
                    d
                }
            };
            if why.is_empty() {
                why.push_str("no conditions");
            }
            self.trace(format!(
                "route `{}` matched ({why}): {}",
                r.name, rs.org.departments[primary as usize].id
            ));
            self.d.effects.routed = Some(Routed {
                route: Some(r.name.clone()),
                hook: match &r.target {
                    RouteTarget::Hook(h) => Some(h.clone()),
                    RouteTarget::Department(_) => None,
                },
                why,
            });
            self.next.dispatcher = r
                .return_to
                .map(|d| rs.org.departments[d as usize].id.clone());
            return Ok((primary, r.co_assign.clone()));
        }
        let d = self.category.department;
        self.trace(format!(
            "no route matched: category {} goes to its department {}",
            self.category.code, rs.org.departments[d as usize].id
        ));
        self.d.effects.routed = Some(Routed {
            route: None,
            hook: None,
            why: format!(
                "no route matched: category {} goes to its own department",
                self.category.code
            ),
        });
        Ok((d, Vec::new()))
    }

    // ---- escalation ----

    fn deadline_passed(&mut self, kind: DeadlineKind) -> Result<(), Failure> {
        let due = match self.next.deadline(kind) {
            Some(at)
                if at <= self.now
                    && self.next.state.is_open()
                    && !self.next.passed.contains(&kind) =>
            {
                at
            }
            _ => {
                self.trace(format!(
                    "{} deadline timer ignored: no longer pending",
                    kind.as_str()
                ));
                return Ok(());
            }
        };
        // Overdue from the first deadline missed, until the issue catches up.
        let missed = match kind {
            DeadlineKind::Acknowledge => &mut self.next.overdue.acknowledge,
            DeadlineKind::Resolve => &mut self.next.overdue.resolve,
        };
        missed.get_or_insert(due);
        let (trigger, count) = match kind {
            DeadlineKind::Acknowledge => {
                self.next.counts.acknowledge_overdue += 1;
                (
                    Trigger::AcknowledgeOverdue,
                    self.next.counts.acknowledge_overdue,
                )
            }
            DeadlineKind::Resolve => {
                self.next.counts.resolve_overdue += 1;
                (Trigger::ResolveOverdue, self.next.counts.resolve_overdue)
            }
        };
        // Handled: its timer is not set again unless a step extends the deadline.
        self.next.passed.push(kind);
        self.trace(format!(
            "the {} deadline {due} passed (occurrence {count})",
            kind.as_str()
        ));
        self.ladder(trigger, count, kind)
    }

    fn rejected(&mut self, reason: &str) -> Result<(), Failure> {
        self.next.counts.rejected += 1;
        self.next.state = State::InProgress;
        let rule = self.deadline_rule();
        let cal = self.deadline_calendar();
        let at = self.set_deadline(DeadlineKind::Resolve, cal, self.now, rule.resolve);
        self.trace(format!(
            "rejected by the reporter (rejection {}): reopened, resolve {} -> {at}",
            self.next.counts.rejected, rule.resolve
        ));
        let vars = MessageVars {
            reason: Some(reason.to_string()),
            deadline: Some((DeadlineKind::Resolve, at)),
            ..Default::default()
        };
        self.tell_departments("reopened", "reopened", vars);
        let n = self.next.counts.rejected;
        self.ladder(Trigger::Rejected, n, DeadlineKind::Resolve)
    }

    fn ladder(
        &mut self,
        trigger: Trigger,
        occurrence: u32,
        deadline: DeadlineKind,
    ) -> Result<(), Failure> {
        let rs = self.rs;
        let ladder = &rs.ladders[self.category.ladder as usize];
        let Some((index, step)) = ladder.step(trigger, occurrence) else {
            self.trace(format!(
                "ladder `{}` has no step for {} occurrence {occurrence}",
                ladder.id,
                trigger.as_str()
            ));
            return Ok(());
        };
        self.next.counts.escalations += 1;
        self.trace(format!(
            "ladder `{}` step {} ({}, occurrence {occurrence})",
            ladder.id,
            index + 1,
            trigger.as_str()
        ));
        self.d.effects.step = Some(StepRun {
            ladder: ladder.id.clone(),
            step: index as u32 + 1,
            trigger: trigger.as_str().to_string(),
            occurrence,
        });
        let vars = MessageVars {
            step: Some((trigger, occurrence)),
            deadline: self.next.deadline(deadline).map(|at| (deadline, at)),
            ..Default::default()
        };
        for action in &step.actions {
            match action {
                Action::Remind { template } => {
                    self.tell_departments("overdue", template, vars.clone());
                }
                Action::Notify { target, template } => {
                    let to = self.recipients(target);
                    self.trace(format!(
                        "notify {}: {}",
                        target_name(rs, target),
                        self.names(&to)
                    ));
                    for t in to {
                        self.tell(t, "escalated", template, vars.clone());
                    }
                }
                Action::Raise(raise) => self.raise(*raise),
                Action::Extend(d) => {
                    let cal = self.deadline_calendar();
                    let at = self.set_deadline(deadline, cal, self.now, *d);
                    self.trace(format!(
                        "the {} deadline is extended by {d} to {}",
                        deadline.as_str(),
                        at.with_timezone(&cal.tz()).to_rfc3339()
                    ));
                }
                Action::Supervise { tier, template } => {
                    let t = &rs.org.tiers[*tier as usize];
                    let unit = rs.org.unit_at_tier(self.unit, *tier);
                    let leader = unit.and_then(|u| rs.org.units[u as usize].leader);
                    self.d.supervision.push(Supervision {
                        tier: t.id.clone(),
                        unit: unit
                            .map(|u| rs.org.units[u as usize].id.clone())
                            .unwrap_or_default(),
                        leader: leader.map(|p| rs.org.people[p as usize].id.to_string()),
                        departments: self.next.departments.clone(),
                    });
                    self.trace(format!("supervision notice from the {} tier", t.id));
                    if let Some(p) = leader {
                        self.tell(To::Person(p), "supervision", template, vars.clone());
                    }
                    for d in self.department_ixs() {
                        self.tell(To::Department(d), "supervision", template, vars.clone());
                    }
                }
                Action::Convene(m) => self.convene(*m, "the ladder"),
            }
        }
        Ok(())
    }

    fn current_tier(&self) -> u8 {
        self.next
            .tier
            .as_deref()
            .and_then(|t| self.rs.org.tier(t))
            .unwrap_or(self.rs.org.units[self.unit as usize].tier)
    }

    fn raise(&mut self, raise: Raise) {
        let org = &self.rs.org;
        let current = self.current_tier();
        // The lowest unit of the branch above the current tier (next) or at or above `t`.
        let target = self
            .rs
            .org
            .branch(self.unit)
            .map(|u| org.units[u as usize].tier)
            .find(|&t| match raise {
                Raise::Next => t > current,
                // An issue at or above the wanted tier stays where it is: the tier rises to
                // `want`, never past it.
                Raise::To(want) => current < want && t >= want,
            });
        match target {
            Some(t) => {
                let from = org.tiers[current as usize].id.clone();
                let to = org.tiers[t as usize].id.clone();
                self.trace(format!("tier raised from {from} to {to}"));
                self.d.escalated = Some(Escalation {
                    from,
                    to: to.clone(),
                });
                self.next.tier = Some(to);
            }
            None => {
                let at = &org.tiers[current as usize].id;
                match raise {
                    Raise::To(want) if current >= want => self.trace(format!(
                        "tier stays {at}: already at or above {}",
                        org.tiers[want as usize].id
                    )),
                    _ => self.trace(format!(
                        "tier stays {at}: no higher tier in the issue's branch"
                    )),
                }
            }
        }
    }

    // ---- other events ----

    fn reassigned(&mut self, department: &str) -> Result<(), Failure> {
        let d = self
            .rs
            .org
            .department(department)
            .ok_or_else(|| Refusal::Invalid {
                field: "department",
                message: format!("unknown department `{department}`"),
            })?;
        if self.next.departments.first().map(String::as_str) == Some(department) {
            return Err(Refusal::Unchanged {
                field: "department",
                message: format!(
                    "issue {} is already {department}'s: reassigning it there would only restart its deadlines",
                    self.issue.id
                ),
            }
            .into());
        }
        let was_triage = self.next.triage;
        // The dispatcher's answer to a return: assigned elsewhere, the return was right.
        let returned = self.next.returned_by.take();
        if let Some(r) = returned.clone() {
            let accepted = r != department;
            self.trace(format!(
                "the return by {r} is {}",
                if accepted {
                    "accepted"
                } else {
                    "rejected: it goes back"
                }
            ));
            self.d.effects.return_decided = Some(crate::effects::ReturnDecided {
                department: r,
                accepted,
            });
        }
        self.next.triage = false;
        self.next.departments = vec![department.to_string()];
        self.next.state = State::Assigned;
        let rule = self.deadline_rule();
        let cal = self.deadline_calendar();
        let ack = self.set_deadline(DeadlineKind::Acknowledge, cal, self.now, rule.acknowledge);
        if was_triage || returned.is_some() || self.next.resolve_by.is_none() {
            self.set_deadline(DeadlineKind::Resolve, cal, self.now, rule.resolve);
        }
        self.trace(format!("reassigned to {department}: acknowledge by {ack}"));
        let vars = MessageVars {
            deadline: Some((DeadlineKind::Acknowledge, ack)),
            ..Default::default()
        };
        self.tell(To::Department(d), "assigned", "assigned", vars);
        Ok(())
    }

    fn meeting_outcome(
        &mut self,
        meeting: &str,
        outcome: Outcome,
        departments: &[String],
        resolve: Option<WorkDuration>,
    ) -> Result<(), Failure> {
        if !self.next.meetings.iter().any(|m| m == meeting) {
            return Err(Refusal::Invalid {
                field: "meeting",
                message: format!("meeting `{meeting}` was not convened for this issue"),
            }
            .into());
        }
        match outcome {
            Outcome::Noted => self.trace(format!("meeting `{meeting}` noted the issue")),
            Outcome::Resolved => {
                self.trace(format!("meeting `{meeting}` resolved the issue"));
                self.resolved_now();
            }
            Outcome::Enforcement => {
                if departments.is_empty() {
                    return Err(Refusal::Invalid {
                        field: "departments",
                        message: "a joint enforcement action needs departments".into(),
                    }
                    .into());
                }
                let mut ixs = Vec::new();
                for d in departments {
                    ixs.push(self.rs.org.department(d).ok_or_else(|| Refusal::Invalid {
                        field: "departments",
                        message: format!("unknown department `{d}`"),
                    })?);
                }
                let rule = self.deadline_rule();
                let d = resolve.unwrap_or(rule.resolve);
                let cal = self.deadline_calendar();
                for dept in departments {
                    if !self.next.departments.contains(dept) {
                        self.next.departments.push(dept.clone());
                    }
                }
                self.next.state = State::InProgress;
                let at = self.set_deadline(DeadlineKind::Resolve, cal, self.now, d);
                self.d.enforcement = Some(Enforcement {
                    meeting: meeting.to_string(),
                    departments: departments.to_vec(),
                    resolve_by: at,
                });
                self.trace(format!(
                    "meeting `{meeting}` ordered joint enforcement by {}: resolve {d} -> {at}",
                    departments.join(", ")
                ));
                let vars = MessageVars {
                    deadline: Some((DeadlineKind::Resolve, at)),
                    ..Default::default()
                };
                for i in ixs {
                    self.tell(To::Department(i), "assigned", "assigned", vars.clone());
                }
            }
        }
        Ok(())
    }

    // ---- meetings ----

    fn meeting_triggers(&mut self) -> Result<(), Failure> {
        if !self.next.state.is_open() || self.next.triage {
            return Ok(());
        }
        for (i, m) in self.rs.meetings.iter().enumerate() {
            if self.next.meetings.contains(&m.id) {
                continue;
            }
            let c = &self.next.counts;
            let why = if m
                .departments_at_least
                .is_some_and(|n| self.next.departments.len() as u32 >= n)
            {
                Some(format!(
                    "{} departments on the issue",
                    self.next.departments.len()
                ))
            } else if m.escalations_at_least.is_some_and(|n| c.escalations >= n) {
                Some(format!("{} escalations", c.escalations))
            } else if m.rejections_at_least.is_some_and(|n| c.rejected >= n) {
                Some(format!("{} rejections", c.rejected))
            } else {
                None
            };
            let why = match (why, &m.hook) {
                (Some(w), _) => Some(w),
                (None, Some(h)) => {
                    let p = self.next.priority.unwrap_or(self.category.priority);
                    let v = self.call(h, p)?;
                    let yes = v.as_bool().map_err(|_| HookError {
                        hook: h.clone(),
                        kind: format!("returned {}, not true or false", show(&v)),
                    })?;
                    yes.then(|| format!("hook `{h}` said so"))
                }
                (None, None) => None,
            };
            if let Some(w) = why {
                self.convene(i as Ix, &w);
            }
        }
        Ok(())
    }

    fn convene(&mut self, m: Ix, why: &str) {
        let rs = self.rs;
        let meeting = &rs.meetings[m as usize];
        if self.next.meetings.contains(&meeting.id) {
            self.trace(format!(
                "meeting `{}` already convened for this issue",
                meeting.id
            ));
            return;
        }
        let cal = &rs.org.calendars[meeting.calendar as usize];
        let at = meeting_time(cal, self.now, meeting.working_days_later, meeting.at);
        let mut people: Vec<To> = Vec::new();
        let mut depts = Vec::new();
        for t in &meeting.invite {
            for to in self.recipients(t) {
                if let To::Department(d) = to {
                    depts.push(rs.org.departments[d as usize].id.clone());
                }
                people.push(to);
            }
        }
        let participants: Vec<String> = people
            .iter()
            .flat_map(|&t| self.people_of(t))
            .map(|p| rs.org.people[p as usize].id.to_string())
            .fold(Vec::new(), |mut v, p| {
                if !v.contains(&p) {
                    v.push(p);
                }
                v
            });
        self.trace(format!(
            "meeting `{}` convened ({why}) for {}",
            meeting.id,
            at.with_timezone(&cal.tz()).to_rfc3339()
        ));
        self.next.meetings.push(meeting.id.clone());
        self.d.effects.meetings.push(Convened {
            meeting: meeting.id.clone(),
            at,
        });
        let vars = MessageVars {
            meeting: Some((meeting.id.clone(), at)),
            ..Default::default()
        };
        for t in people {
            self.tell(t, "meeting", &meeting.template, vars.clone());
        }
        self.d.meetings.push(MeetingCall {
            meeting: meeting.id.clone(),
            at,
            participants,
            departments: depts,
        });
    }

    // ---- failure ----

    /// A rule failed. At the report, the issue goes to the triage queue and nothing else of this
    /// decision stands but the counters and the state the event itself set; on a later event,
    /// what was decided before the failure stands and the triage department is told.
    fn triage(&mut self, e: HookError) {
        let rs = self.rs;
        let triage = &rs.org.departments[rs.settings.triage as usize];
        // A later event of an issue already routed: the issue keeps its departments and
        // deadlines (and so keeps escalating); the failure is recorded and the triage department
        // is told. Only an issue that was never routed goes to triage.
        self.d.effects.triage = Some(TriageNote {
            hook: e.hook.clone(),
            error: e.kind.clone(),
        });
        if self.d.event != "reported" && !self.next.departments.is_empty() {
            self.trace(format!(
                "rule failure: {e}; the issue keeps its departments and deadlines, and the triage department ({}) is told",
                triage.id
            ));
            self.d.triage = Some(e.to_string());
            let vars = MessageVars {
                reason: Some(e.to_string()),
                ..Default::default()
            };
            self.tell(To::Department(rs.settings.triage), "triage", "triage", vars);
            return;
        }
        self.trace(format!(
            "rule failure: {e}; the issue goes to triage ({})",
            triage.id
        ));
        self.d.messages.clear();
        self.d.meetings.clear();
        self.d.supervision.clear();
        self.d.enforcement = None;
        self.d.escalated = None;
        self.d.deadline_basis = None;
        self.d.effects.routed = None;
        self.d.effects.step = None;
        self.d.effects.meetings.clear();
        self.d.effects.counted.clear();
        self.next.triage = true;
        self.next.departments = vec![triage.id.clone()];
        if matches!(self.next.state, State::Reported) {
            self.next.state = State::Assigned;
        }
        self.next.acknowledge_by = None;
        self.next.resolve_by = None;
        // The triage department is held to its own deadlines, if the policy names them, and
        // the issue escalates on its category's ladder like any other.
        if let Some((ack, res)) = rs.case_flow.triage {
            let cal = &rs.org.calendars[triage.calendar as usize];
            self.set_deadline(DeadlineKind::Acknowledge, cal, self.now, ack);
            self.set_deadline(DeadlineKind::Resolve, cal, self.now, res);
        }
        self.d.triage = Some(e.to_string());
        let vars = MessageVars {
            reason: Some(e.to_string()),
            ..Default::default()
        };
        self.tell(To::Department(rs.settings.triage), "triage", "triage", vars);
    }

    // ---- timers ----

    fn timers(&mut self) {
        if self.next.state == State::Resolved
            && let Some(at) = self.next.verify_by
        {
            self.d.timers.push(Timer {
                at,
                event: Event::VerificationLapsed,
            });
        }
        if !self.next.state.is_open() {
            return;
        }
        if let Some(r) = &self.next.request
            && let Some(at) = r.decide_by
        {
            self.d.timers.push(Timer {
                at,
                event: Event::RequestLapsed { request: r.kind },
            });
        }
        let rule = self.deadline_rule();
        let cal = self.deadline_calendar();
        for kind in [DeadlineKind::Acknowledge, DeadlineKind::Resolve] {
            let Some(at) = self.next.deadline(kind) else {
                continue;
            };
            // A deadline due now or earlier whose passing was not handled yet (say, a reminder
            // fired late, after a restart) keeps its timer: it fires next.
            if self.next.passed.contains(&kind) {
                continue;
            }
            for r in &rule.remind_before {
                let t = cal.sub_seconds(at, cal.duration_seconds(*r));
                if t > self.now && t < at {
                    self.d.timers.push(Timer {
                        at: t,
                        event: Event::ReminderDue { deadline: kind },
                    });
                }
            }
            self.d.timers.push(Timer {
                at,
                event: Event::DeadlinePassed { deadline: kind },
            });
        }
        self.d.timers.sort_by_key(|t| t.at);
    }

    // ---- helpers ----

    /// Sets a deadline `d` of working time on `cal` after `from`, and records how it was counted.
    fn set_deadline(
        &mut self,
        kind: DeadlineKind,
        cal: &Calendar,
        from: DateTime<Utc>,
        d: WorkDuration,
    ) -> DateTime<Utc> {
        let at = cal.add(from, d);
        self.next.set_deadline(kind, Some(at));
        self.d.effects.counted.push((
            crate::effects::Deadline::from(kind),
            crate::effects::Basis {
                duration: d,
                calendar: cal.key(),
                from,
                left_when_stopped: false,
            },
        ));
        at
    }

    /// The reporter's check on site falls due `within` of working time on the default calendar.
    pub(super) fn set_verify_by(&mut self, within: WorkDuration) -> DateTime<Utc> {
        let cal = &self.rs.org.calendars[self.rs.settings.calendar as usize];
        let at = cal.add(self.now, within);
        self.next.verify_by = Some(at);
        self.d.effects.counted.push((
            crate::effects::Deadline::Verify,
            crate::effects::Basis {
                duration: within,
                calendar: cal.key(),
                from: self.now,
                left_when_stopped: false,
            },
        ));
        at
    }

    /// The issue is resolved: deadlines end, the reporter is asked to verify (within the
    /// policy's time, if it sets one) and the reporters of merged duplicates are told.
    fn resolved_now(&mut self) {
        self.next.state = State::Resolved;
        self.next.acknowledge_by = None;
        self.next.resolve_by = None;
        self.next.suspension = None;
        if let Some((within, _)) = self.rs.case_flow.verification {
            self.set_verify_by(within);
        }
        self.tell_reporter("resolved", MessageVars::default());
        for f in self.next.followers.clone() {
            if let Some(p) = self.rs.org.person(&f) {
                self.tell(
                    To::Person(p),
                    "resolved",
                    "resolved",
                    MessageVars::default(),
                );
            }
        }
    }

    fn resolved(&mut self, photos: &[String]) -> Result<(), Failure> {
        if let Some(bad) = photos.iter().find(|p| {
            p.len() != 64
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }) {
            return Err(Refusal::Invalid {
                field: "photos",
                message: format!("`{bad}` is not a photo's SHA-256 (64 lowercase hex digits)"),
            }
            .into());
        }
        let cat = self.rs.category(&self.issue.category).expect("checked");
        if photos.is_empty() && self.rs.case_flow.after_photos.contains(&cat) {
            return Err(Refusal::Invalid {
                field: "photos",
                message: format!(
                    "a resolution of category {} needs a photo of the fixed site (case_flow.after_photos)",
                    self.issue.category
                ),
            }
            .into());
        }
        self.trace(if photos.is_empty() {
            "resolved: deadlines cleared; the reporter is asked to confirm".to_string()
        } else {
            format!(
                "resolved with {} photo(s) of the fixed site: deadlines cleared; the reporter is asked to confirm",
                photos.len()
            )
        });
        for p in photos {
            if !self.next.after_photos.contains(p) {
                self.next.after_photos.push(p.clone());
            }
        }
        self.resolved_now();
        Ok(())
    }

    fn deadline_rule(&self) -> &'a crate::model::DeadlineRule {
        let p = self.next.priority.unwrap_or(self.category.priority);
        &self.category.deadlines[p as usize]
    }

    /// The deadline's own calendar, else the primary department's, else the default.
    fn deadline_calendar(&self) -> &'a Calendar {
        let p = self.next.priority.unwrap_or(self.category.priority);
        self.rs
            .deadline_calendar(self.category, p, &self.next.departments)
    }

    fn department_ixs(&self) -> Vec<Ix> {
        self.next
            .departments
            .iter()
            .filter_map(|d| self.rs.org.department(d))
            .collect()
    }

    fn recipients(&self, t: &Target) -> Vec<To> {
        let org = &self.rs.org;
        let leader_of = |tier: u8| {
            org.unit_at_tier(self.unit, tier)
                .and_then(|u| org.units[u as usize].leader)
        };
        match t {
            Target::Leader => leader_of(self.current_tier())
                .map(To::Person)
                .into_iter()
                .collect(),
            Target::Tier(tier) => leader_of(*tier).map(To::Person).into_iter().collect(),
            Target::Departments => self
                .department_ixs()
                .into_iter()
                .map(To::Department)
                .collect(),
            Target::Reporter => self
                .issue
                .reporter
                .as_deref()
                .and_then(|r| org.person(r))
                .map(To::Person)
                .into_iter()
                .collect(),
            Target::Department(d) => vec![To::Department(*d)],
            Target::Person(p) => vec![To::Person(*p)],
        }
    }

    /// The people a message to `to` reaches: a person, or a department's on-duty person or
    /// contacts.
    fn people_of(&self, to: To) -> People<'a> {
        match to {
            To::Person(p) => People::One(Some(p)),
            To::Department(d) => {
                let d = &self.rs.org.departments[d as usize];
                match &d.rota {
                    Some(r) => People::One(Some(r.on_duty(self.now))),
                    None => People::Many(d.contacts.iter()),
                }
            }
        }
    }

    fn names(&self, to: &[To]) -> String {
        let org = &self.rs.org;
        let v: Vec<String> = to
            .iter()
            .flat_map(|&t| self.people_of(t))
            .map(|p| org.people[p as usize].id.to_string())
            .collect();
        if v.is_empty() {
            "nobody (no leader on record)".into()
        } else {
            v.join(", ")
        }
    }

    fn tell_departments(&mut self, kind: &'static str, template: &str, vars: MessageVars) {
        for d in self.department_ixs() {
            self.tell(To::Department(d), kind, template, vars.clone());
        }
    }

    fn tell_reporter(&mut self, kind: &'static str, vars: MessageVars) {
        if let Some(p) = self
            .issue
            .reporter
            .as_deref()
            .and_then(|r| self.rs.org.person(r))
        {
            self.tell(To::Person(p), kind, kind, vars);
        }
    }

    /// One message per person and channel, never twice for the same kind in one decision. A
    /// message to a department's people names the department.
    fn tell(&mut self, to: To, kind: &'static str, template: &str, mut vars: MessageVars) {
        let org = &self.rs.org;
        if let To::Department(d) = to {
            vars.department = Some(org.departments[d as usize].key.clone());
        }
        // Loading checked every template a rule names, and every kind has its own.
        let Some(template) = self.rs.templates.interned(template) else {
            self.trace(format!("no template `{template}`: nothing sent"));
            return;
        };
        let urgent = self.next.priority.unwrap_or(self.category.priority) == Priority::Urgent;
        for p in self.people_of(to) {
            let person = &org.people[p as usize];
            for &channel in &person.channels {
                if self.d.messages.iter().any(|m| {
                    m.to == person.id
                        && m.channel == channel
                        && m.kind == kind
                        && m.template == template
                }) {
                    continue;
                }
                let address = match channel {
                    Channel::Email => &person.email,
                    Channel::Sms => &person.phone,
                };
                let Some(address) = address.clone() else {
                    continue;
                };
                let locale = self
                    .rs
                    .templates
                    .locale_for(&template, channel, &person.locale);
                self.d.messages.push(Message {
                    kind,
                    template: template.clone(),
                    to: person.id.clone(),
                    channel,
                    locale,
                    address,
                    urgent,
                    vars: vars.clone(),
                });
            }
        }
    }

    /// Calls a hook with the issue as a map. The map is built once per decision and cloned for
    /// each call (a clone shares its strings); only the priority may differ between calls.
    fn call(&self, hook: &str, priority: Priority) -> Result<Dynamic, Failure> {
        let mut cached = self.hook_map.borrow_mut();
        let base = cached.get_or_insert_with(|| self.issue_map());
        base.insert("priority".into(), string(priority.as_str()));
        let issue = base.clone();
        drop(cached);
        Ok(self.rs.scripts.call(hook, issue)?)
    }

    fn issue_map(&self) -> rhai::Map {
        let rs = self.rs;
        let cal = &rs.org.calendars[rs.settings.calendar as usize];
        let local = self.now.with_timezone(&cal.tz());
        let unit = &rs.org.units[self.unit as usize];
        map([
            ("id", string(&self.issue.id)),
            ("category", string(&self.issue.category)),
            ("unit", string(&self.issue.unit)),
            ("unit_tier", string(&rs.org.tiers[unit.tier as usize].id)),
            ("description", string(&self.issue.description)),
            ("priority", Dynamic::UNIT),
            (
                "reporter",
                self.issue
                    .reporter
                    .as_deref()
                    .map(string)
                    .unwrap_or(Dynamic::UNIT),
            ),
            ("now", Dynamic::from_int(self.now.timestamp())),
            ("hour", Dynamic::from_int(local.hour() as i64)),
            ("minute", Dynamic::from_int(local.minute() as i64)),
            ("weekday", string(weekday(local.weekday()))),
            ("working", Dynamic::from_bool(cal.is_working_time(self.now))),
        ])
    }
}

fn weekday(w: chrono::Weekday) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][w.num_days_from_monday() as usize]
}

fn target_name(rs: &RuleSet, t: &Target) -> String {
    match t {
        Target::Leader => "the leader of the current tier".into(),
        Target::Departments => "the departments".into(),
        Target::Reporter => "the reporter".into(),
        Target::Tier(x) => format!("the {} leader", rs.org.tiers[*x as usize].id),
        Target::Department(d) => rs.org.departments[*d as usize].id.clone(),
        Target::Person(p) => rs.org.people[*p as usize].id.to_string(),
    }
}

/// A hook's value as the error message shows it.
fn show(v: &Dynamic) -> String {
    if v.is_string() {
        format!("\"{v}\"")
    } else if v.is_unit() {
        "nothing".into()
    } else {
        format!("{v} ({})", v.type_name())
    }
}

/// A positive duration from a hook: "4h" or a number of minutes.
fn duration_of(v: &Dynamic) -> Option<WorkDuration> {
    if let Ok(m) = v.as_int() {
        return u32::try_from(m)
            .ok()
            .filter(|&m| m > 0)
            .map(WorkDuration::minutes);
    }
    let s = v.clone().into_immutable_string().ok()?;
    WorkDuration::parse(&s).ok().filter(|d| !d.is_zero())
}

/// `at` (minutes after midnight) on the `later`-th working day after today; with `later` 0,
/// today if that time is still ahead on a working day, else the next working day.
fn meeting_time(cal: &Calendar, now: DateTime<Utc>, later: u32, at: u32) -> DateTime<Utc> {
    let tz = cal.tz();
    let today = now.with_timezone(&tz).date_naive();
    let on = |d: NaiveDate| {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight") + Duration::minutes(at as i64);
        tz.from_local_datetime(&t)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    let mut day = today;
    let mut left = later;
    if later == 0 && cal.is_working_day(today) && on(today).is_some_and(|t| t > now) {
        return on(today).expect("checked");
    }
    left = left.max(1);
    // Bounded: a calendar has working weekdays, so a working day comes within a few weeks of
    // holidays; ten years is a safe cap.
    for _ in 0..3660 {
        day = day.succ_opt().expect("date in range");
        if cal.is_working_day(day) {
            left -= 1;
            if left == 0
                && let Some(t) = on(day)
            {
                return t;
            }
        }
    }
    now
}
