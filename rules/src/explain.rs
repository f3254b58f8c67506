//! `explain`: the decision for a new issue, why, and what happens if nobody acts.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::issue::{Event, Issue, Refusal};
use crate::model::RuleSet;
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
    pub meetings: Vec<ProjectedMeeting>,
    pub messages: Vec<String>,
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

#[derive(Debug, Serialize)]
pub struct ProjectedMeeting {
    pub meeting: String,
    pub at: String,
    pub participants: Vec<String>,
}

/// How far ahead the ladder is projected.
const HORIZON_DAYS: i64 = 400;

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
        t.advance_to(at + chrono::Duration::days(HORIZON_DAYS));
        let mut escalations = Vec::new();
        let mut meetings: Vec<ProjectedMeeting> = first
            .meetings
            .iter()
            .map(|m| ProjectedMeeting {
                meeting: m.meeting.clone(),
                at: show(m.at),
                participants: m.participants.clone(),
            })
            .collect();
        // The issue's own tier, until a step raises it.
        let own = self
            .org
            .unit(&issue.unit)
            .map(|u| {
                self.org.tiers[self.org.units[u as usize].tier as usize]
                    .id
                    .clone()
            })
            .unwrap_or_default();
        for e in t.log.iter().skip(1) {
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
                trigger: format!("{}_overdue", deadline.as_str()),
                tier: e.decision.next.tier.clone().unwrap_or_else(|| own.clone()),
                notify,
                trace: e.decision.trace.clone(),
            });
        }
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
            meetings,
            messages: first
                .messages
                .iter()
                .map(|m| {
                    format!(
                        "{} -> {} by {} ({})",
                        m.template,
                        m.to,
                        m.channel.as_str(),
                        m.locale
                    )
                })
                .collect(),
            triage: first.triage.clone(),
            trace: first.trace.clone(),
        })
    }
}
