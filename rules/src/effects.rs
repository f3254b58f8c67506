//! What a decision did, for the people who read an issue's timeline: the route or hook that chose
//! the departments, the deadlines set, moved or cleared (with their working-time arithmetic), the
//! ladder step that ran, the tier's change, meetings convened, who was told on which channel, and
//! for a rule failure the hook and its error. Built by `decide` with the decision, so the API,
//! the webhook and `explain` all show the same account.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::issue::IssueState;
use crate::spec::Channel;

/// A decision's effects; every part is present only when the decision did it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Effects {
    /// The effects as sentences, in the order below.
    pub lines: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Change<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routed: Option<Routed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub departments: Option<Change<Vec<String>>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deadlines: Vec<DeadlineChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Change<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub meetings: Vec<Convened>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub told: Vec<Told>,
    /// A return (退回) decided by the dispatcher's next assignment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_decided: Option<ReturnDecided>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<TriageNote>,
    /// Steps of the case flow (returns, requests, verification) said in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change<T> {
    pub from: Option<T>,
    pub to: Option<T>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Routed {
    /// The route that matched; none when the category's own department took it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The hook that chose the department, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Why the route matched.
    pub why: String,
    pub departments: Vec<String>,
}

/// A deadline (`acknowledge`, `resolve`, `verify` or `decide`) set, moved or cleared.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadlineChange {
    pub kind: &'static str,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// How `to` was counted: `2h of working time on cn-office from 2026-01-05T09:00:00+08:00`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRun {
    pub ladder: String,
    /// 1-based, as the ladder is written.
    pub step: u32,
    pub trigger: &'static str,
    pub occurrence: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Convened {
    pub meeting: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Told {
    pub person: String,
    pub channel: Channel,
    pub template: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReturnDecided {
    /// The department that returned the issue.
    pub department: String,
    /// Whether the dispatcher agreed (assigned it elsewhere) or sent it back.
    pub accepted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TriageNote {
    pub hook: String,
    pub error: String,
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

impl Effects {
    /// Fills in what comparing the states before and after shows, then writes the sentences.
    /// `bases` are the deadlines' arithmetic recorded as they were set.
    pub(crate) fn finish(
        &mut self,
        before: &IssueState,
        after: &IssueState,
        bases: &[(&'static str, String)],
        tz: Tz,
    ) {
        if before.state != after.state {
            self.state = Some(Change {
                from: Some(before.state.as_str().to_string()),
                to: Some(after.state.as_str().to_string()),
            });
        }
        if before.departments != after.departments {
            self.departments = Some(Change {
                from: Some(before.departments.clone()).filter(|d| !d.is_empty()),
                to: Some(after.departments.clone()).filter(|d| !d.is_empty()),
            });
        }
        if before.tier != after.tier && before.tier.is_some() {
            self.tier = Some(Change {
                from: before.tier.clone(),
                to: after.tier.clone(),
            });
        }
        let pairs = [
            ("acknowledge", before.acknowledge_by, after.acknowledge_by),
            ("resolve", before.resolve_by, after.resolve_by),
            ("verify", before.verify_by, after.verify_by),
            (
                "decide",
                before.request.as_ref().and_then(|r| r.decide_by),
                after.request.as_ref().and_then(|r| r.decide_by),
            ),
        ];
        for (kind, from, to) in pairs {
            let basis = bases
                .iter()
                .rev()
                .find(|(k, _)| *k == kind)
                .map(|b| b.1.clone());
            if from != to || (basis.is_some() && to.is_some()) {
                self.deadlines.push(DeadlineChange {
                    kind,
                    from,
                    to,
                    basis,
                });
            }
        }
        let mut lines = Vec::new();
        if let Some(r) = &self.routed {
            lines.push(match (&r.route, &r.hook) {
                (Some(route), Some(h)) => format!(
                    "route `{route}` matched ({}); hook `{h}` chose {}",
                    r.why,
                    r.departments.join(", ")
                ),
                (Some(route), None) => format!(
                    "route `{route}` matched ({}): {}",
                    r.why,
                    r.departments.join(", ")
                ),
                (None, _) => format!("{}: {}", r.why, r.departments.join(", ")),
            });
        }
        if let Some(c) = &self.state {
            lines.push(format!(
                "state {} -> {}",
                c.from.as_deref().unwrap_or("-"),
                c.to.as_deref().unwrap_or("-")
            ));
        }
        if let Some(c) = &self.departments
            && self.routed.is_none()
        {
            let show = |d: &Option<Vec<String>>| {
                d.as_ref()
                    .map(|d| d.join(", "))
                    .unwrap_or_else(|| "none".into())
            };
            lines.push(format!("departments {} -> {}", show(&c.from), show(&c.to)));
        }
        if let Some(s) = &self.step {
            lines.push(format!(
                "ladder `{}` step {} ran ({}, occurrence {})",
                s.ladder, s.step, s.trigger, s.occurrence
            ));
        }
        if let Some(t) = &self.tier {
            lines.push(format!(
                "tier {} -> {}",
                t.from.as_deref().unwrap_or("-"),
                t.to.as_deref().unwrap_or("-")
            ));
        }
        for d in &self.deadlines {
            let mut l = match (d.from, d.to) {
                (None, Some(to)) => format!("{} deadline set to {}", d.kind, local(to, tz)),
                (Some(_), None) => format!("{} deadline cleared", d.kind),
                (Some(from), Some(to)) if from != to => format!(
                    "{} deadline moved from {} to {}",
                    d.kind,
                    local(from, tz),
                    local(to, tz)
                ),
                (_, Some(to)) => format!("{} deadline set again to {}", d.kind, local(to, tz)),
                (None, None) => continue,
            };
            if let Some(b) = &d.basis {
                let _ = write!(l, " ({b})");
            }
            lines.push(l);
        }
        for m in &self.meetings {
            lines.push(format!(
                "meeting `{}` convened for {}",
                m.meeting,
                local(m.at, tz)
            ));
        }
        if let Some(r) = &self.return_decided {
            lines.push(format!(
                "the return by {} was {} by the dispatcher",
                r.department,
                if r.accepted { "accepted" } else { "rejected" }
            ));
        }
        lines.extend(self.notes.iter().cloned());
        // One sentence per template: who heard, on which channels.
        let mut templates: Vec<&str> = Vec::new();
        for t in &self.told {
            if !templates.contains(&t.template.as_str()) {
                templates.push(&t.template);
            }
        }
        for tpl in templates {
            let mut people: Vec<(&str, Vec<&str>)> = Vec::new();
            for t in self.told.iter().filter(|t| t.template == tpl) {
                let ch = match t.channel {
                    Channel::Email => "email",
                    Channel::Sms => "sms",
                };
                match people.iter_mut().find(|(p, _)| *p == t.person) {
                    Some((_, chs)) => chs.push(ch),
                    None => people.push((&t.person, vec![ch])),
                }
            }
            let who: Vec<String> = people
                .iter()
                .map(|(p, chs)| format!("{p} ({})", chs.join(", ")))
                .collect();
            lines.push(format!("told {}: `{tpl}`", who.join(", ")));
        }
        if let Some(t) = &self.triage {
            lines.push(format!("rule failure in `{}`: {}", t.hook, t.error));
        }
        self.lines = lines;
    }
}
