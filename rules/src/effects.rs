//! What a decision did, for the people who read an issue's timeline: the route or hook that chose
//! the departments, the deadlines set, moved or cleared (with their working-time arithmetic), the
//! ladder step that ran, the tier's change, meetings convened, who was told on which channel, and
//! for a rule failure the hook and its error. Built by `decide` with the decision, as data only
//! (a decision is on the hot path of every report); the sentences a person reads are written from
//! that data when the timeline is read (`Effects::lines`). The API, the webhook and `explain` all
//! show the same account.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::calendar::WorkDuration;
use crate::issue::{IssueState, State};
use crate::spec::Channel;

/// A decision's effects; every part is present only when the decision did it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Effects {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Change<State>>,
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
    /// Who was told, on which channel: the decision's messages, which a decision does not
    /// copy here; filled in from them when the effects are served (`Effects::told_from`).
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
    /// How each deadline the decision set was counted, as `decide` recorded it; `complete`
    /// moves each into the `deadlines` change it explains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counted: Vec<(Deadline, Basis)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change<T> {
    pub from: Option<T>,
    pub to: Option<T>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    /// The route that matched; none when the category's own department took it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<std::sync::Arc<str>>,
    /// The hook that chose the department, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Why the route matched.
    pub why: String,
}

/// A deadline (`acknowledge`, `resolve`, `verify` or `decide`) set, moved or cleared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadlineChange {
    pub kind: Deadline,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// How `to` was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
}

/// Which deadline changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deadline {
    Acknowledge,
    Resolve,
    /// The reporter's check on site.
    Verify,
    /// The decider's answer to a request.
    Decide,
}

impl From<crate::issue::DeadlineKind> for Deadline {
    fn from(k: crate::issue::DeadlineKind) -> Self {
        match k {
            crate::issue::DeadlineKind::Acknowledge => Deadline::Acknowledge,
            crate::issue::DeadlineKind::Resolve => Deadline::Resolve,
        }
    }
}

impl Deadline {
    pub fn as_str(self) -> &'static str {
        match self {
            Deadline::Acknowledge => "acknowledge",
            Deadline::Resolve => "resolve",
            Deadline::Verify => "verify",
            Deadline::Decide => "decide",
        }
    }
}

/// A deadline's arithmetic: `duration` of working time on `calendar` from `from`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Basis {
    pub duration: WorkDuration,
    pub calendar: std::sync::Arc<str>,
    pub from: DateTime<Utc>,
    /// The working time a suspended issue had left when its clock stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left_when_stopped: bool,
}

impl Basis {
    /// `2h of working time on cn-office from 2026-01-05T09:00:00+08:00`.
    pub fn describe(&self, tz: Tz) -> String {
        let what = if self.left_when_stopped {
            format!(
                "the {} of working time left when the clock stopped",
                self.duration
            )
        } else {
            format!("{} of working time", self.duration)
        };
        format!("{what} on {} from {}", self.calendar, local(self.from, tz))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    pub ladder: String,
    /// 1-based, as the ladder is written.
    pub step: u32,
    pub trigger: String,
    pub occurrence: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Convened {
    pub meeting: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Told {
    pub person: String,
    pub channel: Channel,
    pub template: String,
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReturnDecided {
    /// The department that returned the issue.
    pub department: String,
    /// Whether the dispatcher agreed (assigned it elsewhere) or sent it back.
    pub accepted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriageNote {
    pub hook: String,
    pub error: String,
}

impl crate::model::RuleSet {
    /// The sentences of a decision's effects, times in the default calendar's zone.
    pub fn effect_lines(&self, effects: &Effects) -> Vec<String> {
        effects.lines(self.org.calendars[self.settings.calendar as usize].tz())
    }
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

impl Effects {
    /// The parts a decision leaves to its other fields, filled in from them as the effects are
    /// served: who was told (its messages), and what changed between the state it found
    /// (`before`) and its next state: the state, the departments, the tier and each deadline
    /// (with how it was counted). `decide` records only what those cannot show, so that the
    /// path of every report stays short.
    pub fn complete(&mut self, before: &IssueState, d: &crate::decide::Decision) {
        self.told_by(&d.messages);
        self.compare(before, &d.next);
    }

    /// `told`, from the decision's messages.
    pub fn told_by(&mut self, messages: &[crate::decide::Message]) {
        self.told = messages
            .iter()
            .map(|m| Told {
                person: m.to.to_string(),
                channel: m.channel,
                template: m.template.to_string(),
                kind: m.kind.to_string(),
            })
            .collect();
    }

    /// `told`, from the decision's messages (as stored: `to`, `channel`, `template`, `kind`).
    pub fn told_from<'a>(&mut self, messages: impl IntoIterator<Item = &'a serde_json::Value>) {
        self.told = messages
            .into_iter()
            .filter_map(|m| {
                Some(Told {
                    person: m.get("to")?.as_str()?.to_string(),
                    channel: serde_json::from_value(m.get("channel")?.clone()).ok()?,
                    template: m.get("template")?.as_str()?.to_string(),
                    kind: m.get("kind")?.as_str()?.to_string(),
                })
            })
            .collect();
    }

    /// Fills in what comparing the state before a decision and after it shows (`complete` does
    /// it with the messages too; the timeline, which reads them from the store, calls this).
    pub fn compare(&mut self, before: &IssueState, after: &IssueState) {
        let bases = std::mem::take(&mut self.counted);
        if before.state != after.state {
            self.state = Some(Change {
                from: Some(before.state),
                to: Some(after.state),
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
            (
                Deadline::Acknowledge,
                before.acknowledge_by,
                after.acknowledge_by,
            ),
            (Deadline::Resolve, before.resolve_by, after.resolve_by),
            (Deadline::Verify, before.verify_by, after.verify_by),
            (
                Deadline::Decide,
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
    }

    /// The effects as sentences, in the order of the fields, times in `tz`.
    pub fn lines(&self, tz: Tz) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(r) = &self.routed {
            let to = self
                .departments
                .as_ref()
                .and_then(|d| d.to.as_ref())
                .map(|d| d.join(", "))
                .unwrap_or_default();
            lines.push(match (&r.route, &r.hook) {
                (Some(route), Some(h)) => {
                    format!("route `{route}` matched ({}); hook `{h}` chose {to}", r.why)
                }
                (Some(route), None) => format!("route `{route}` matched ({}): {to}", r.why),
                (None, _) => format!("{}: {to}", r.why),
            });
        }
        if let Some(c) = &self.state {
            let show = |s: Option<State>| s.map(State::as_str).unwrap_or("-");
            lines.push(format!("state {} -> {}", show(c.from), show(c.to)));
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
                (None, Some(to)) => {
                    format!("{} deadline set to {}", d.kind.as_str(), local(to, tz))
                }
                (Some(_), None) => format!("{} deadline cleared", d.kind.as_str()),
                (Some(from), Some(to)) if from != to => format!(
                    "{} deadline moved from {} to {}",
                    d.kind.as_str(),
                    local(from, tz),
                    local(to, tz)
                ),
                (_, Some(to)) => format!(
                    "{} deadline set again to {}",
                    d.kind.as_str(),
                    local(to, tz)
                ),
                (None, None) => continue,
            };
            if let Some(b) = &d.basis {
                let _ = write!(l, " ({})", b.describe(tz));
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
        lines
    }
}
