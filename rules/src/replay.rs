//! Replay: a past issue lived again through candidate rules and through the rules that decided
//! it, and what differs between the two lives.
//!
//! An issue's history is its report and the actions people took on it (timers left out), at
//! their recorded times. Each life runs on a [`Timeline`], the candidate's timers and the
//! recorded rules' timers firing between the actions as the daemon's scheduler fires them, up to
//! a horizon. A recorded action that the candidate's life does not take while the recorded
//! rules' life does (its actor may no longer act on the issue as the candidate left it, or the
//! candidate's decision refuses it) ends both lives there: the issue diverged at that event,
//! and the lives are compared up to it. An action that neither life takes is passed over.
//!
//! [`Summary`] groups what differs over many issues by kind of change; it merges, so that
//! issues replayed in parallel add up to the same summary in any order.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::decide::Decision;
use crate::issue::{DeadlineKind, Event, Issue, IssueState, State};
use crate::model::RuleSet;
use crate::spec::Priority;
use crate::timeline::{Entry, Timeline};

/// A person's recorded action on an issue.
#[derive(Clone, Debug)]
pub struct Action {
    /// Its place in the store's event log.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// Who took it, as events record it (`department:urban#3`).
    pub actor: String,
    pub event: Event,
}

/// A past issue: what was reported, when, and the actions taken on it in order.
#[derive(Clone, Debug)]
pub struct History {
    pub issue: Issue,
    pub reported_at: DateTime<Utc>,
    /// Timers and the report itself are not actions: a life fires its own timers.
    pub actions: Vec<Action>,
}

/// Why `actor` may not post `event` to the issue as `rules` see it in `state`; `None` if it
/// may. The daemon answers with its authorisation rules; the rules crate knows no tokens.
pub type Permission<'a> =
    dyn Fn(&RuleSet, &str, &Issue, &IssueState, &Event) -> Option<String> + Sync + 'a;

/// A tier reached, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierAt {
    pub tier: String,
    pub at: DateTime<Utc>,
}

/// A ladder step run: its trigger, which occurrence of it, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepAt {
    pub at: DateTime<Utc>,
    pub trigger: &'static str,
    pub occurrence: u32,
}

/// A meeting convened, and when it sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeetingAt {
    pub meeting: String,
    pub at: DateTime<Utc>,
}

/// What one life of an issue came to: what replay compares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Life {
    /// The departments the report went to (the route's result).
    pub departments: Vec<String>,
    pub priority: Option<Priority>,
    /// The deadlines the report set.
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    /// How the report's deadlines were counted: `4h on cn-office`.
    pub acknowledge_rule: Option<String>,
    pub resolve_rule: Option<String>,
    /// The departments at the end.
    pub final_departments: Vec<String>,
    /// The state at the end.
    pub state: State,
    pub tiers: Vec<TierAt>,
    pub steps: Vec<StepAt>,
    pub meetings: Vec<MeetingAt>,
    /// Why a rule failed on the issue, the first time one did.
    pub triage: Option<String>,
    /// Messages by recipient and template.
    pub messages: BTreeMap<(Arc<str>, Arc<str>), u32>,
}

impl Life {
    /// The life written in a timeline's log (the report first).
    pub fn of(log: &[Entry]) -> Life {
        let mut life = Life::default();
        let Some(first) = log.first() else {
            return life;
        };
        let d = &first.decision;
        life.departments = d.next.departments.clone();
        life.priority = d.next.priority;
        life.acknowledge_by = d.next.acknowledge_by;
        life.resolve_by = d.next.resolve_by;
        if let Some(b) = &d.deadline_basis {
            life.acknowledge_rule = b.acknowledge.map(|a| format!("{a} on {}", b.calendar));
            life.resolve_rule = Some(format!("{} on {}", b.resolve, b.calendar));
        }
        let mut before = IssueState::default();
        for e in log {
            let d = &e.decision;
            if let Some(x) = &d.escalated {
                life.tiers.push(TierAt {
                    tier: x.to.clone(),
                    at: e.at,
                });
            }
            if let Some(step) = step_of(&e.event, &before, d) {
                life.steps.push(StepAt { at: e.at, ..step });
            }
            for m in &d.meetings {
                life.meetings.push(MeetingAt {
                    meeting: m.meeting.clone(),
                    at: m.at,
                });
            }
            if life.triage.is_none() {
                life.triage = d.triage.clone();
            }
            for m in &d.messages {
                *life
                    .messages
                    .entry((m.to.clone(), m.template.clone()))
                    .or_default() += 1;
            }
            before = d.next.clone();
        }
        life.final_departments = before.departments;
        life.state = before.state;
        life
    }
}

/// The ladder step a decision ran, if it ran one (its time left to the caller).
fn step_of(event: &Event, before: &IssueState, d: &Decision) -> Option<StepAt> {
    if d.next.counts.escalations <= before.counts.escalations {
        return None;
    }
    let c = &d.next.counts;
    let (trigger, occurrence) = match event {
        Event::DeadlinePassed {
            deadline: DeadlineKind::Acknowledge,
        } => ("acknowledge_overdue", c.acknowledge_overdue),
        Event::DeadlinePassed {
            deadline: DeadlineKind::Resolve,
        } => ("resolve_overdue", c.resolve_overdue),
        Event::Rejected { .. } => ("rejected", c.rejected),
        _ => ("other", c.escalations),
    };
    Some(StepAt {
        at: DateTime::<Utc>::MIN_UTC,
        trigger,
        occurrence,
    })
}

/// One thing that differs between the recorded rules' life (`before`) and the candidate's
/// (`after`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The departments the report went to.
    Route {
        before: Vec<String>,
        after: Vec<String>,
    },
    Priority {
        before: Option<Priority>,
        after: Option<Priority>,
    },
    /// A deadline the report set.
    Deadline {
        deadline: DeadlineKind,
        before: Option<DateTime<Utc>>,
        after: Option<DateTime<Utc>>,
        rule_before: Option<String>,
        rule_after: Option<String>,
    },
    /// The departments at the end, when the report went to the same ones.
    Departments {
        before: Vec<String>,
        after: Vec<String>,
    },
    /// The state at the end.
    State { before: State, after: State },
    Tiers {
        before: Vec<TierAt>,
        after: Vec<TierAt>,
    },
    Steps {
        before: Vec<StepAt>,
        after: Vec<StepAt>,
    },
    Meetings {
        before: Vec<MeetingAt>,
        after: Vec<MeetingAt>,
    },
    Triage {
        before: Option<String>,
        after: Option<String>,
    },
    /// Messages to one recipient with one template (each channel counts).
    Messages {
        recipient: String,
        template: String,
        before: u32,
        after: u32,
    },
}

/// What differs between two lives, in a fixed order.
pub fn diff(before: &Life, after: &Life) -> Vec<Change> {
    let mut out = Vec::new();
    if before.departments != after.departments {
        out.push(Change::Route {
            before: before.departments.clone(),
            after: after.departments.clone(),
        });
    }
    if before.priority != after.priority {
        out.push(Change::Priority {
            before: before.priority,
            after: after.priority,
        });
    }
    for (kind, b, a, rb, ra) in [
        (
            DeadlineKind::Acknowledge,
            before.acknowledge_by,
            after.acknowledge_by,
            &before.acknowledge_rule,
            &after.acknowledge_rule,
        ),
        (
            DeadlineKind::Resolve,
            before.resolve_by,
            after.resolve_by,
            &before.resolve_rule,
            &after.resolve_rule,
        ),
    ] {
        if b != a {
            out.push(Change::Deadline {
                deadline: kind,
                before: b,
                after: a,
                rule_before: rb.clone(),
                rule_after: ra.clone(),
            });
        }
    }
    if before.departments == after.departments
        && before.final_departments != after.final_departments
    {
        out.push(Change::Departments {
            before: before.final_departments.clone(),
            after: after.final_departments.clone(),
        });
    }
    if before.state != after.state {
        out.push(Change::State {
            before: before.state,
            after: after.state,
        });
    }
    if before.tiers != after.tiers {
        out.push(Change::Tiers {
            before: before.tiers.clone(),
            after: after.tiers.clone(),
        });
    }
    if before.steps != after.steps {
        out.push(Change::Steps {
            before: before.steps.clone(),
            after: after.steps.clone(),
        });
    }
    if before.meetings != after.meetings {
        out.push(Change::Meetings {
            before: before.meetings.clone(),
            after: after.meetings.clone(),
        });
    }
    if before.triage != after.triage {
        out.push(Change::Triage {
            before: before.triage.clone(),
            after: after.triage.clone(),
        });
    }
    let mut keys: Vec<&(Arc<str>, Arc<str>)> = before
        .messages
        .keys()
        .chain(after.messages.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let b = before.messages.get(k).copied().unwrap_or(0);
        let a = after.messages.get(k).copied().unwrap_or(0);
        if b != a {
            out.push(Change::Messages {
                recipient: k.0.to_string(),
                template: k.1.to_string(),
                before: b,
                after: a,
            });
        }
    }
    out
}

/// Why the candidate's life did not take a recorded action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The actor may not act on the issue as the candidate left it.
    Forbidden,
    /// The candidate's decision refused the event.
    Refused,
}

/// The recorded action at which the candidate's life left the recorded one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event: &'static str,
    pub actor: String,
    pub cause: Cause,
    pub reason: String,
    /// The candidate's departments on the issue at that moment.
    pub departments: Vec<String>,
}

/// One issue replayed: what differs, if anything.
#[derive(Clone, Debug, Serialize)]
pub struct IssueReplay {
    pub id: String,
    pub category: String,
    pub unit: String,
    pub reported_at: DateTime<Utc>,
    /// The rules its recorded life was lived through.
    pub rules_version: Arc<str>,
    /// The candidate refuses the report itself (say, its category is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged: Option<Divergence>,
    pub changes: Vec<Change>,
    /// The unit's area (its ancestor just under the top of the organisation), for grouping.
    #[serde(skip)]
    pub area: String,
}

impl IssueReplay {
    pub fn changed(&self) -> bool {
        self.refused.is_some() || self.diverged.is_some() || !self.changes.is_empty()
    }
}

/// The area of `unit` in `rules`: its ancestor at the tier just under the top, else the unit.
fn area(rules: &RuleSet, unit: &str) -> Option<String> {
    let org = &rules.org;
    let u = org.unit(unit)?;
    let top = org.tiers.len().checked_sub(1)? as u8;
    let at = top
        .checked_sub(1)
        .and_then(|t| org.unit_at_tier(u, t))
        .unwrap_or(u);
    Some(org.units[at as usize].id.clone())
}

/// Lives `history` through the rules that recorded it (`recorded`) and through `candidate`, up
/// to `horizon`, and says what differs. `Err` says why the issue cannot be replayed: the
/// recorded rules themselves refuse its report.
///
/// Rules of the same version are the same rules: the issue is unchanged without living it.
pub fn replay_issue(
    recorded: &RuleSet,
    candidate: &RuleSet,
    history: &History,
    horizon: DateTime<Utc>,
    permission: &Permission<'_>,
) -> Result<IssueReplay, String> {
    let issue = &history.issue;
    let mut out = IssueReplay {
        id: issue.id.clone(),
        category: issue.category.clone(),
        unit: issue.unit.clone(),
        reported_at: history.reported_at,
        rules_version: recorded.version.clone(),
        refused: None,
        diverged: None,
        changes: Vec::new(),
        area: area(candidate, &issue.unit)
            .or_else(|| area(recorded, &issue.unit))
            .unwrap_or_else(|| issue.unit.clone()),
    };
    if recorded.version == candidate.version {
        return Ok(out);
    }
    let mut b = Timeline::report(recorded, issue.clone(), history.reported_at)
        .map_err(|r| format!("its recorded rules refuse its report: {r}"))?;
    let mut c = match Timeline::report(candidate, issue.clone(), history.reported_at) {
        Ok(t) => t,
        Err(r) => {
            out.refused = Some(r.to_string());
            return Ok(out);
        }
    };
    // The recorded life's log is compared up to here: all of it, unless the lives parted.
    let mut upto = None;
    for a in &history.actions {
        if a.at > horizon {
            break;
        }
        if a.event.is_timer() || a.event == Event::Reported {
            continue;
        }
        c.advance_to(a.at);
        let taken = match permission(candidate, &a.actor, &c.issue, &c.state, &a.event) {
            Some(why) => Err((Cause::Forbidden, why)),
            None => c
                .apply(a.at, a.event.clone())
                .map(|_| ())
                .map_err(|r| (Cause::Refused, r.to_string())),
        };
        b.advance_to(a.at);
        let before = b.log.len();
        let recorded_takes = permission(recorded, &a.actor, &b.issue, &b.state, &a.event).is_none()
            && b.apply(a.at, a.event.clone()).is_ok();
        if let (Err((cause, reason)), true) = (taken, recorded_takes) {
            upto = Some(before);
            out.diverged = Some(Divergence {
                seq: a.seq,
                at: a.at,
                event: a.event.name(),
                actor: a.actor.clone(),
                cause,
                reason,
                departments: c.state.departments.clone(),
            });
            break;
        }
    }
    if upto.is_none() {
        b.advance_to(horizon);
        c.advance_to(horizon);
    }
    let before = Life::of(&b.log[..upto.unwrap_or(b.log.len())]);
    let after = Life::of(&c.log);
    out.changes = diff(&before, &after);
    Ok(out)
}

/// Which way a count or a time moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    More,
    Fewer,
    Earlier,
    Later,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::More => "more",
            Direction::Fewer => "fewer",
            Direction::Earlier => "earlier",
            Direction::Later => "later",
        }
    }
}

/// Issues and a sum (of steps or messages) moved one way.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    issues: u64,
    total: i64,
}

/// Issues whose deadline moved, and the least and greatest shift (seconds).
#[derive(Clone, Copy, Debug)]
struct Span {
    issues: u64,
    min: i64,
    max: i64,
}

type RouteKey = (Vec<String>, Vec<String>, String);
type DeadlineKey = (DeadlineKind, Option<String>, Option<String>, Direction);
type DivergenceKey = (&'static str, String, Cause, String, Vec<String>);

/// What differs over many issues, grouped by kind of change. Built with [`Summary::add`],
/// combined with [`Summary::merge`], read with [`Summary::groups`].
#[derive(Clone, Debug, Default)]
pub struct Summary {
    routes: HashMap<RouteKey, BTreeMap<String, u64>>,
    priorities: HashMap<(Option<Priority>, Option<Priority>, String), u64>,
    deadlines: HashMap<DeadlineKey, Span>,
    departments: HashMap<(Vec<String>, Vec<String>), u64>,
    states: HashMap<(State, State), u64>,
    tiers: HashMap<(String, Direction), u64>,
    steps: HashMap<(&'static str, Direction), Tally>,
    meetings: HashMap<(String, Direction), u64>,
    triage: HashMap<(Direction, String), u64>,
    messages: HashMap<(String, Direction), Tally>,
    divergences: HashMap<DivergenceKey, u64>,
    refusals: HashMap<String, u64>,
}

/// A group of issues that changed the same way, as a line and as data.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    /// route, priority, deadlines, departments, state, escalations, steps, meetings, triage,
    /// messages, diverged or refused.
    pub kind: &'static str,
    pub issues: u64,
    /// The line a person reads: `route: 312 issues urban -> market (street_vendors in d-erqi)`.
    pub line: String,
    /// The group's key and figures.
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

const KINDS: [&str; 12] = [
    "refused",
    "route",
    "priority",
    "deadlines",
    "departments",
    "state",
    "escalations",
    "steps",
    "meetings",
    "triage",
    "messages",
    "diverged",
];

/// The actor as groups show it: a department keeps its scope (the department), other roles
/// lose theirs (a unit), and every token its id.
fn actor_kind(actor: &str) -> String {
    let name = actor.split('#').next().unwrap_or(actor);
    match name.split_once(':') {
        Some(("department", _)) => name.to_string(),
        Some((role, _)) => role.to_string(),
        None => name.to_string(),
    }
}

/// The first line of a triage reason, shortened.
fn reason_key(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or("");
    let mut s: String = line.chars().take(120).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    s
}

impl Summary {
    /// Counts one replayed issue.
    pub fn add(&mut self, r: &IssueReplay) {
        if let Some(why) = &r.refused {
            *self.refusals.entry(why.clone()).or_default() += 1;
            return;
        }
        let mut steps: HashMap<&'static str, i64> = HashMap::new();
        let mut messages: HashMap<&str, i64> = HashMap::new();
        for c in &r.changes {
            match c {
                Change::Route { before, after } => {
                    *self
                        .routes
                        .entry((before.clone(), after.clone(), r.category.clone()))
                        .or_default()
                        .entry(r.area.clone())
                        .or_default() += 1;
                }
                Change::Priority { before, after } => {
                    *self
                        .priorities
                        .entry((*before, *after, r.category.clone()))
                        .or_default() += 1;
                }
                Change::Deadline {
                    deadline,
                    before,
                    after,
                    rule_before,
                    rule_after,
                } => {
                    let (dir, shift) = match (before, after) {
                        (Some(b), Some(a)) if a > b => (Direction::Later, (*a - *b).num_seconds()),
                        (Some(b), Some(a)) => (Direction::Earlier, (*b - *a).num_seconds()),
                        (None, _) => (Direction::More, 0),
                        (_, None) => (Direction::Fewer, 0),
                    };
                    let key = (*deadline, rule_before.clone(), rule_after.clone(), dir);
                    let s = self.deadlines.entry(key).or_insert(Span {
                        issues: 0,
                        min: i64::MAX,
                        max: i64::MIN,
                    });
                    s.issues += 1;
                    s.min = s.min.min(shift);
                    s.max = s.max.max(shift);
                }
                Change::Departments { before, after } => {
                    *self
                        .departments
                        .entry((before.clone(), after.clone()))
                        .or_default() += 1;
                }
                Change::State { before, after } => {
                    *self.states.entry((*before, *after)).or_default() += 1;
                }
                Change::Tiers { before, after } => {
                    let first =
                        |v: &[TierAt], t: &str| v.iter().find(|x| x.tier == t).map(|x| x.at);
                    let mut tiers: Vec<&str> = before
                        .iter()
                        .chain(after.iter())
                        .map(|t| t.tier.as_str())
                        .collect();
                    tiers.sort_unstable();
                    tiers.dedup();
                    for t in tiers {
                        let dir = match (first(before, t), first(after, t)) {
                            (Some(_), None) => Direction::Fewer,
                            (None, Some(_)) => Direction::More,
                            (Some(b), Some(a)) if a < b => Direction::Earlier,
                            (Some(b), Some(a)) if a > b => Direction::Later,
                            _ => continue,
                        };
                        *self.tiers.entry((t.to_string(), dir)).or_default() += 1;
                    }
                }
                Change::Steps { before, after } => {
                    for s in before {
                        *steps.entry(s.trigger).or_default() -= 1;
                    }
                    for s in after {
                        *steps.entry(s.trigger).or_default() += 1;
                    }
                }
                Change::Meetings { before, after } => {
                    let has = |v: &[MeetingAt], m: &str| v.iter().any(|x| x.meeting == m);
                    let mut ids: Vec<&str> = before
                        .iter()
                        .chain(after.iter())
                        .map(|m| m.meeting.as_str())
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    for m in ids {
                        let dir = match (has(before, m), has(after, m)) {
                            (true, false) => Direction::Fewer,
                            (false, true) => Direction::More,
                            _ => continue,
                        };
                        *self.meetings.entry((m.to_string(), dir)).or_default() += 1;
                    }
                }
                Change::Triage { before, after } => {
                    let key = match (before, after) {
                        (None, Some(a)) => (Direction::More, reason_key(a)),
                        (Some(b), None) => (Direction::Fewer, reason_key(b)),
                        (Some(_), Some(a)) => (Direction::Later, reason_key(a)),
                        (None, None) => continue,
                    };
                    *self.triage.entry(key).or_default() += 1;
                }
                Change::Messages {
                    template,
                    before,
                    after,
                    ..
                } => {
                    *messages.entry(template).or_default() += *after as i64 - *before as i64;
                }
            }
        }
        for (trigger, n) in steps {
            if n != 0 {
                let t = self
                    .steps
                    .entry((
                        trigger,
                        if n > 0 {
                            Direction::More
                        } else {
                            Direction::Fewer
                        },
                    ))
                    .or_default();
                t.issues += 1;
                t.total += n;
            }
        }
        for (template, n) in messages {
            if n != 0 {
                let dir = if n > 0 {
                    Direction::More
                } else {
                    Direction::Fewer
                };
                let t = self
                    .messages
                    .entry((template.to_string(), dir))
                    .or_default();
                t.issues += 1;
                t.total += n;
            }
        }
        if let Some(d) = &r.diverged {
            let departments = match d.cause {
                Cause::Forbidden => d.departments.clone(),
                Cause::Refused => Vec::new(),
            };
            let reason = match d.cause {
                Cause::Forbidden => String::new(),
                Cause::Refused => reason_key(&d.reason),
            };
            *self
                .divergences
                .entry((d.event, actor_kind(&d.actor), d.cause, reason, departments))
                .or_default() += 1;
        }
    }

    /// Adds another summary's counts to this one.
    pub fn merge(&mut self, other: Summary) {
        fn add<K: std::hash::Hash + Eq>(to: &mut HashMap<K, u64>, from: HashMap<K, u64>) {
            for (k, n) in from {
                *to.entry(k).or_default() += n;
            }
        }
        fn tally<K: std::hash::Hash + Eq>(to: &mut HashMap<K, Tally>, from: HashMap<K, Tally>) {
            for (k, n) in from {
                let t = to.entry(k).or_default();
                t.issues += n.issues;
                t.total += n.total;
            }
        }
        for (k, areas) in other.routes {
            let to = self.routes.entry(k).or_default();
            for (a, n) in areas {
                *to.entry(a).or_default() += n;
            }
        }
        add(&mut self.priorities, other.priorities);
        for (k, s) in other.deadlines {
            let to = self.deadlines.entry(k).or_insert(Span {
                issues: 0,
                min: i64::MAX,
                max: i64::MIN,
            });
            to.issues += s.issues;
            to.min = to.min.min(s.min);
            to.max = to.max.max(s.max);
        }
        add(&mut self.departments, other.departments);
        add(&mut self.states, other.states);
        add(&mut self.tiers, other.tiers);
        tally(&mut self.steps, other.steps);
        add(&mut self.meetings, other.meetings);
        add(&mut self.triage, other.triage);
        tally(&mut self.messages, other.messages);
        add(&mut self.divergences, other.divergences);
        add(&mut self.refusals, other.refusals);
    }

    /// Whether nothing differed.
    pub fn is_empty(&self) -> bool {
        self.groups().is_empty()
    }

    /// The groups, by kind (refusals and routes first, divergences last), then the most issues
    /// first.
    pub fn groups(&self) -> Vec<Group> {
        let mut out = Vec::new();
        let mut push = |kind: &'static str, issues: u64, text: String, detail: Value| {
            let Value::Object(detail) = detail else {
                unreachable!("details are objects")
            };
            out.push(Group {
                kind,
                issues,
                line: format!("{kind}: {text}"),
                detail,
            });
        };
        for (why, n) in &self.refusals {
            push(
                "refused",
                *n,
                format!("{} the candidate refuses at report: {why}", issues(*n)),
                json!({"reason": why}),
            );
        }
        for ((before, after, category), areas) in &self.routes {
            let n: u64 = areas.values().sum();
            let mut by: Vec<(&String, &u64)> = areas.iter().collect();
            by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let places = if by.len() == 1 {
                by[0].0.clone()
            } else {
                let mut s = by
                    .iter()
                    .take(3)
                    .map(|(a, n)| format!("{a} {}", count(**n)))
                    .collect::<Vec<_>>()
                    .join(", ");
                if by.len() > 3 {
                    let _ = write!(s, ", {} more", by.len() - 3);
                }
                s
            };
            push(
                "route",
                n,
                format!(
                    "{} {} -> {} ({category} in {places})",
                    issues(n),
                    depts(before),
                    depts(after)
                ),
                json!({"before": before, "after": after, "category": category, "areas": areas}),
            );
        }
        for ((before, after, category), n) in &self.priorities {
            let p = |p: &Option<Priority>| p.map(Priority::as_str).unwrap_or("none");
            push(
                "priority",
                *n,
                format!("{} {} -> {} ({category})", issues(*n), p(before), p(after)),
                json!({"before": before, "after": after, "category": category}),
            );
        }
        for ((kind, rb, ra, dir), s) in &self.deadlines {
            let shift = match dir {
                Direction::Later | Direction::Earlier => {
                    let (a, b) = (human(s.min), human(s.max));
                    if a == b {
                        format!(" {} by {a}", dir.as_str())
                    } else {
                        format!(" {} by {a} to {b}", dir.as_str())
                    }
                }
                Direction::More => " set where none was".into(),
                Direction::Fewer => " no longer set".into(),
            };
            let rule = |r: &Option<String>| r.clone().unwrap_or_else(|| "none".into());
            let why = if rb == ra {
                format!("{}, counted anew", rule(rb))
            } else {
                format!("{} -> {}", rule(rb), rule(ra))
            };
            push(
                "deadlines",
                s.issues,
                format!("{} {}{shift} ({why})", issues(s.issues), kind.as_str()),
                json!({"deadline": kind, "direction": dir, "rule_before": rb, "rule_after": ra,
                       "least_seconds": s.min, "most_seconds": s.max}),
            );
        }
        for ((before, after), n) in &self.departments {
            push(
                "departments",
                *n,
                format!(
                    "{} end with {} -> {}",
                    issues(*n),
                    depts(before),
                    depts(after)
                ),
                json!({"before": before, "after": after}),
            );
        }
        for ((before, after), n) in &self.states {
            push(
                "state",
                *n,
                format!(
                    "{} end {} -> {}",
                    issues(*n),
                    before.as_str(),
                    after.as_str()
                ),
                json!({"before": before, "after": after}),
            );
        }
        for ((tier, dir), n) in &self.tiers {
            let text = match dir {
                Direction::More | Direction::Fewer => {
                    format!("{} {} reached the {tier}", count(*n), dir.as_str())
                }
                _ => format!("{} reached the {tier} {}", issues(*n), dir.as_str()),
            };
            push(
                "escalations",
                *n,
                text,
                json!({"tier": tier, "direction": dir}),
            );
        }
        for ((trigger, dir), t) in &self.steps {
            push(
                "steps",
                t.issues,
                format!(
                    "{} with {} {trigger} steps ({:+})",
                    issues(t.issues),
                    dir.as_str(),
                    t.total
                ),
                json!({"trigger": trigger, "direction": dir, "steps": t.total}),
            );
        }
        for ((meeting, dir), n) in &self.meetings {
            push(
                "meetings",
                *n,
                format!("{} {} convened {meeting}", count(*n), dir.as_str()),
                json!({"meeting": meeting, "direction": dir}),
            );
        }
        for ((dir, reason), n) in &self.triage {
            let text = match dir {
                Direction::More => format!("{} more went to triage ({reason})", count(*n)),
                Direction::Fewer => format!("{} fewer went to triage (was: {reason})", count(*n)),
                _ => format!(
                    "{} went to triage for another reason ({reason})",
                    issues(*n)
                ),
            };
            push(
                "triage",
                *n,
                text,
                json!({"direction": dir, "reason": reason}),
            );
        }
        for ((template, dir), t) in &self.messages {
            push(
                "messages",
                t.issues,
                format!(
                    "{} with {} `{template}` ({:+})",
                    issues(t.issues),
                    dir.as_str(),
                    t.total
                ),
                json!({"template": template, "direction": dir, "messages": t.total}),
            );
        }
        for ((event, actor, cause, reason, departments), n) in &self.divergences {
            let why = match cause {
                Cause::Forbidden => format!(
                    "{actor} may no longer act: the candidate gave them to {}",
                    depts(departments)
                ),
                Cause::Refused => format!("the candidate refuses it: {reason}"),
            };
            push(
                "diverged",
                *n,
                format!("{} at `{event}` by {actor} ({why})", issues(*n)),
                json!({"event": event, "actor": actor, "cause": cause, "reason": reason,
                       "departments": departments}),
            );
        }
        out.sort_by(|a, b| {
            let rank = |k: &str| KINDS.iter().position(|x| *x == k);
            rank(a.kind)
                .cmp(&rank(b.kind))
                .then(b.issues.cmp(&a.issues))
                .then(a.line.cmp(&b.line))
        });
        out
    }
}

fn depts(d: &[String]) -> String {
    if d.is_empty() {
        "none".into()
    } else {
        d.join("+")
    }
}

/// `1 issue`, `1,204 issues`.
fn issues(n: u64) -> String {
    format!("{} issue{}", count(n), if n == 1 { "" } else { "s" })
}

/// A count with thousands separated: `1,204`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A wall-clock span in days, hours and minutes: `1d 4h`, `30m`, `0m`.
pub fn human(seconds: i64) -> String {
    let d = Duration::seconds(seconds.abs());
    let (days, hours, minutes) = (d.num_days(), d.num_hours() % 24, d.num_minutes() % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 || parts.is_empty() {
        parts.push(format!("{minutes}m"));
    }
    parts.join(" ")
}
