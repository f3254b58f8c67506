//! `explain`: the decision for a new issue, why, and what happens if nobody acts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::decide::{Message, Timer};
use crate::issue::{DeadlineKind, Event, Issue, IssueState, Refusal};
use crate::model::{Action, RuleSet};
use crate::spec::{Channel, Trigger};
use crate::timeline::Timeline;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub rules_version: String,
    pub reported_at: String,
    pub priority: String,
    pub departments: Vec<String>,
    pub deadlines: Deadlines,
    /// How the deadlines were counted across non-working time.
    pub deadline_steps: Vec<String>,
    /// The ladder projected forward: who is told when, if nobody acts.
    pub escalations: Vec<Projected>,
    /// Where the projection was cut short, and why: a step that repeats with nothing else
    /// changing, shown a few times; a decision that could not be made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<String>,
    pub meetings: Vec<ProjectedMeeting>,
    /// The messages of the report, rendered as their recipients get them.
    pub messages: Vec<ExplainedMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<String>,
    pub trace: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Deadlines {
    pub acknowledge: Option<String>,
    pub resolve: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Projected {
    pub at: String,
    pub trigger: String,
    /// The issue's tier after this step.
    pub tier: String,
    /// Person ids told by this step (escalation and supervision messages).
    pub notify: Vec<String>,
    pub trace: Vec<String>,
}

/// What happens to an issue where it stands if nobody acts.
#[derive(Debug, Serialize)]
pub struct Ahead {
    /// The tier the issue is at now: its escalation tier, else its unit's.
    pub tier: String,
    /// The ladder's steps to come, in time order.
    pub escalations: Vec<Projected>,
    /// Where the projection was cut short, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<String>,
    /// Meetings the steps to come convene.
    pub meetings: Vec<ProjectedMeeting>,
}

/// A message rendered in the recipient's locale (an SMS cut to the policy's length).
#[derive(Debug, Serialize)]
pub struct ExplainedMessage {
    pub to: String,
    pub channel: Channel,
    pub template: String,
    pub locale: String,
    /// An email's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The body, or why it could not be rendered.
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct ProjectedMeeting {
    pub meeting: String,
    pub at: String,
    pub participants: Vec<String>,
}

/// How far ahead the ladder is projected.
const HORIZON_DAYS: i64 = 400;

/// How many times a step that repeats with nothing else changing is shown.
pub const SHOWN_REPEATS: u32 = 3;

/// Timers fired at most in a projection.
const MAX_FIRINGS: usize = 10_000;

impl RuleSet {
    pub fn explain(&self, issue: &Issue, at: DateTime<Utc>) -> Result<Explanation, Refusal> {
        let mut t = Timeline::report(self, issue.clone(), at)?;
        let tz: Tz = self.org.calendars[self.settings.calendar as usize].tz();
        let show = |x: DateTime<Utc>| x.with_timezone(&tz).to_rfc3339();
        let first = t.log[0].decision.clone();
        let mut steps = Vec::new();
        if let Some(b) = &first.deadline_basis
            && let Some(c) = self.org.calendar(&b.calendar)
        {
            let cal = &self.org.calendars[c as usize];
            let local = |x: DateTime<Utc>| {
                x.with_timezone(&cal.tz())
                    .format("%a %Y-%m-%d %H:%M")
                    .to_string()
            };
            let ack = b.acknowledge.iter().map(|d| ("acknowledge", *d));
            for (what, d) in ack.chain(std::iter::once(("resolve", b.resolve))) {
                let (end, spans) = cal.add_traced(b.from, d);
                steps.push(format!(
                    "{what} {d} on calendar {} from {}:",
                    b.calendar,
                    local(b.from)
                ));
                let mut prev: Option<DateTime<Utc>> = None;
                for (s, e) in spans {
                    if let Some(p) = prev
                        && s > p
                    {
                        steps.push(format!(
                            "  skip {} .. {} (not working time)",
                            local(p),
                            local(s)
                        ));
                    }
                    let mins = (e - s).num_minutes();
                    steps.push(format!(
                        "  count {} .. {} ({}h{:02}m)",
                        local(s),
                        local(e),
                        mins / 60,
                        mins % 60
                    ));
                    prev = Some(e);
                }
                steps.push(format!("  = {}", show(end)));
            }
        }
        let mut meetings: Vec<ProjectedMeeting> = first
            .meetings
            .iter()
            .map(|m| ProjectedMeeting {
                meeting: m.meeting.clone(),
                at: show(m.at),
                participants: m.participants.clone(),
            })
            .collect();
        let horizon = at + chrono::Duration::days(HORIZON_DAYS);
        let ahead = self.project(&mut t, horizon, &show);
        meetings.extend(ahead.meetings);
        let (escalations, cut) = (ahead.escalations, ahead.cut);
        Ok(Explanation {
            rules_version: self.version.to_string(),
            reported_at: show(at),
            priority: first
                .next
                .priority
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            departments: first.next.departments.clone(),
            deadlines: Deadlines {
                acknowledge: first.next.acknowledge_by.map(show),
                resolve: first.next.resolve_by.map(show),
            },
            deadline_steps: steps,
            escalations,
            cut,
            meetings,
            messages: first
                .messages
                .iter()
                .map(|m| self.explain_message(issue, &first.next, m))
                .collect(),
            triage: first.triage.clone(),
            trace: first.trace.clone(),
        })
    }

    /// What happens to `issue`, in `state` with its pending `timers`, if nobody acts from
    /// `now` on: its ladder projected forward as `explain` projects a new one's.
    pub fn ahead(
        &self,
        issue: &Issue,
        state: &IssueState,
        timers: Vec<Timer>,
        now: DateTime<Utc>,
    ) -> Ahead {
        let tz: Tz = self.org.calendars[self.settings.calendar as usize].tz();
        let show = |x: DateTime<Utc>| x.with_timezone(&tz).to_rfc3339();
        let mut t = Timeline::resume(self, issue.clone(), state.clone(), timers);
        let tier = t.tier();
        let p = self.project(&mut t, now + chrono::Duration::days(HORIZON_DAYS), &show);
        Ahead {
            tier,
            escalations: p.escalations,
            cut: p.cut,
            meetings: p.meetings,
        }
    }

    /// The ladder projected forward from where timeline `t` stands, firing its timers in due
    /// order up to `horizon` as if nobody acted: the escalation steps, where the projection was
    /// cut short, and the meetings convened on the way.
    fn project(
        &self,
        t: &mut Timeline,
        horizon: DateTime<Utc>,
        show: &dyn Fn(DateTime<Utc>) -> String,
    ) -> Projection {
        // The issue's own tier, until a step raises it, and the top of its branch.
        let issue = t.issue.clone();
        let mut meetings = Vec::new();
        let unit = self.org.unit(&issue.unit);
        let own = unit
            .map(|u| {
                self.org.tiers[self.org.units[u as usize].tier as usize]
                    .id
                    .clone()
            })
            .unwrap_or_default();
        let top = unit.and_then(|u| {
            self.org
                .branch(u)
                .map(|b| self.org.units[b as usize].tier)
                .max()
        });
        let ladder = self
            .category(&issue.category)
            .map(|c| &self.ladders[self.categories[c as usize].ladder as usize]);
        let mut escalations = Vec::new();
        let mut cut = Vec::new();
        // Per trigger: the runs of a repeating step in a row since anything last changed.
        let mut repeats: HashMap<Trigger, Repeats> = HashMap::new();
        // Runs not shown, said when something changes or the projection ends.
        let flush = |repeats: &mut HashMap<Trigger, Repeats>, cut: &mut Vec<String>| {
            let mut notes: Vec<(Trigger, String)> = repeats
                .drain()
                .filter_map(|(k, r)| {
                    let (from, to) = r.hidden?;
                    let n = r.runs - SHOWN_REPEATS;
                    Some((
                        k,
                        format!(
                            "{}: shown {SHOWN_REPEATS} times, then {n} more run{} from {} to {} not shown",
                            r.what,
                            if n == 1 { "" } else { "s" },
                            show(from),
                            show(to)
                        ),
                    ))
                })
                .collect();
            notes.sort_by_key(|(k, _)| k.as_str());
            cut.extend(notes.into_iter().map(|(_, n)| n));
        };
        let mut stopped = false;
        for _ in 0..MAX_FIRINGS {
            let Some(next) = t.timers.first().filter(|x| x.at <= horizon).cloned() else {
                break;
            };
            let before = t.state.clone();
            // The decision's timers replace the whole set; none fires on the way.
            let pending = std::mem::take(&mut t.timers);
            if let Err(r) = t.apply(next.at, next.event.clone()) {
                t.timers = pending;
                cut.push(format!(
                    "stopped at {}: the {} timer could not be decided: {r}",
                    show(next.at),
                    next.event.name()
                ));
                break;
            }
            let e = t.log.last().expect("just applied");
            for m in &e.decision.meetings {
                meetings.push(ProjectedMeeting {
                    meeting: m.meeting.clone(),
                    at: show(m.at),
                    participants: m.participants.clone(),
                });
            }
            let Event::DeadlinePassed { deadline } = &e.event else {
                continue;
            };
            let after = &e.decision.next;
            let (trigger, occurrence) = match deadline {
                DeadlineKind::Acknowledge => (
                    Trigger::AcknowledgeOverdue,
                    after.counts.acknowledge_overdue,
                ),
                DeadlineKind::Resolve => (Trigger::ResolveOverdue, after.counts.resolve_overdue),
            };
            let tier = after.tier.clone().unwrap_or_else(|| own.clone());
            if changed(&before, after) {
                flush(&mut repeats, &mut cut);
            }
            // A step run past the last of its trigger's steps: the repeating one.
            let repeating = ladder.and_then(|l| {
                let (index, step) = l.step(trigger, occurrence)?;
                let steps = l.steps.iter().filter(|s| s.on == trigger).count();
                (occurrence as usize > steps).then_some((l, index, step))
            });
            let shown = match repeating {
                Some((l, index, step)) if !changed(&before, after) => {
                    let at_top = top.is_some_and(|t| self.org.tier(&tier) == Some(t));
                    let every = step
                        .actions
                        .iter()
                        .find_map(|a| match a {
                            Action::Extend(d) => Some(format!(" every {d}")),
                            _ => None,
                        })
                        .unwrap_or_default();
                    let r = repeats.entry(trigger).or_default();
                    r.runs += 1;
                    r.what = format!(
                        "{}: ladder `{}` step {} repeats{every} {} with nothing else changing",
                        trigger.as_str(),
                        l.id,
                        index + 1,
                        if at_top {
                            format!("at the top tier ({tier})")
                        } else {
                            format!("at tier {tier}")
                        },
                    );
                    if r.runs > SHOWN_REPEATS {
                        r.hidden = Some((r.hidden.map_or(e.at, |h| h.0), e.at));
                    }
                    r.runs <= SHOWN_REPEATS
                }
                _ => true,
            };
            if shown {
                let mut notify: Vec<String> = Vec::new();
                for m in &e.decision.messages {
                    if matches!(m.kind, "escalated" | "supervision" | "overdue")
                        && !notify.iter().any(|n| **n == *m.to)
                    {
                        notify.push(m.to.to_string());
                    }
                }
                escalations.push(Projected {
                    at: show(e.at),
                    trigger: trigger.as_str().to_string(),
                    tier,
                    notify,
                    trace: e.decision.trace.clone(),
                });
            }
            // Stop when every deadline still pending only repeats what was shown, and no
            // meeting waits for more escalations.
            let state = &t.state;
            let deadlines: Vec<Trigger> = t
                .timers
                .iter()
                .filter_map(|x| match x.event {
                    Event::DeadlinePassed { deadline } => Some(match deadline {
                        DeadlineKind::Acknowledge => Trigger::AcknowledgeOverdue,
                        DeadlineKind::Resolve => Trigger::ResolveOverdue,
                    }),
                    _ => None,
                })
                .collect();
            let waiting = self.meetings.iter().any(|m| {
                !state.meetings.contains(&m.id)
                    && m.escalations_at_least
                        .is_some_and(|n| state.counts.escalations < n)
            });
            let done = !deadlines.is_empty()
                && deadlines
                    .iter()
                    .all(|d| repeats.get(d).is_some_and(|r| r.runs > SHOWN_REPEATS));
            if done && !waiting {
                let mut notes: Vec<(Trigger, String)> = repeats
                    .drain()
                    .filter(|(_, r)| r.runs > SHOWN_REPEATS)
                    .map(|(k, r)| {
                        let note = format!(
                            "{}: shown {SHOWN_REPEATS} times, then the projection stops",
                            r.what
                        );
                        (k, note)
                    })
                    .collect();
                notes.sort_by_key(|(k, _)| k.as_str());
                cut.extend(notes.into_iter().map(|(_, n)| n));
                stopped = true;
                break;
            }
        }
        if !stopped {
            flush(&mut repeats, &mut cut);
        }
        Projection {
            escalations,
            cut,
            meetings,
        }
    }

    /// A message as its recipient reads it.
    fn explain_message(&self, issue: &Issue, state: &IssueState, m: &Message) -> ExplainedMessage {
        let (subject, text) = match self.render(issue, state, m) {
            Ok(r) => {
                let text = match m.channel {
                    Channel::Sms => self.notifications.cap_sms(&r.body),
                    Channel::Email => r.body,
                };
                (r.subject, text)
            }
            Err(e) => (None, format!("(not rendered: {e})")),
        };
        ExplainedMessage {
            to: m.to.to_string(),
            channel: m.channel,
            template: m.template.to_string(),
            locale: m.locale.to_string(),
            subject,
            text,
        }
    }
}

/// What a projection found.
struct Projection {
    escalations: Vec<Projected>,
    cut: Vec<String>,
    meetings: Vec<ProjectedMeeting>,
}

/// The runs of one trigger's repeating step since anything last changed.
#[derive(Default)]
struct Repeats {
    runs: u32,
    /// What the step does, for the note.
    what: String,
    /// The first and last run not shown.
    hidden: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Whether a decision changed what the ladder's steps act on: the tier, the departments, the
/// meetings convened, the lifecycle state.
fn changed(before: &IssueState, after: &IssueState) -> bool {
    before.tier != after.tier
        || before.departments != after.departments
        || before.meetings != after.meetings
        || before.state != after.state
        || before.triage != after.triage
}
