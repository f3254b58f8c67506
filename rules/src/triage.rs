//! An open issue sent to triage because new rules no longer know what it uses.
//!
//! A reload that removes a department, category, unit, tier, ladder or meeting kind still used
//! by open issues is refused unless forced; when forced, each such issue gets a
//! `sent_to_triage` event. Its decision cannot go through the usual path, which starts from the
//! issue's category and unit: the new rules may know neither. So it is decided here, from the
//! settings alone: the issue goes to the triage department, whose people are told why.

use chrono::{DateTime, Utc};

use crate::decide::{Decision, Message, MessageVars};
use crate::issue::{Issue, IssueState, State};
use crate::model::RuleSet;
use crate::spec::{Channel, Priority};

impl RuleSet {
    /// The decision of a `sent_to_triage` event: the triage department takes the issue, its
    /// deadlines and timers are cleared (a ladder may be gone), and the triage department's
    /// people are told the reason.
    pub(crate) fn sent_to_triage(
        &self,
        issue: &Issue,
        state: &IssueState,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Decision {
        let org = &self.org;
        let triage = &org.departments[self.settings.triage as usize];
        let mut next = state.clone();
        next.triage = true;
        next.departments = vec![triage.id.clone()];
        if next.state == State::Reported {
            next.state = State::Assigned;
        }
        next.acknowledge_by = None;
        next.resolve_by = None;
        next.passed.clear();
        let urgent = state.priority == Some(Priority::Urgent);
        let vars = MessageVars {
            reason: Some(reason.to_string()),
            ..Default::default()
        };
        let people: Vec<_> = match &triage.rota {
            Some(r) => vec![r.on_duty(now)],
            None => triage.contacts.clone(),
        };
        let mut messages = Vec::new();
        if let Some(template) = self.templates.interned("triage") {
            for p in people {
                let person = &org.people[p as usize];
                for &channel in &person.channels {
                    let address = match channel {
                        Channel::Email => &person.email,
                        Channel::Sms => &person.phone,
                    };
                    let Some(address) = address.clone() else {
                        continue;
                    };
                    messages.push(Message {
                        kind: "triage",
                        template: template.clone(),
                        to: person.id.clone(),
                        channel,
                        locale: self
                            .templates
                            .locale_for(&template, channel, &person.locale),
                        address,
                        urgent,
                        vars: vars.clone(),
                    });
                }
            }
        }
        let effects = crate::effects::Effects {
            notes: vec![format!("the rules changed: {reason}")],
            ..Default::default()
        };
        Decision {
            effects,
            rules_version: self.version.clone(),
            event: "sent_to_triage",
            next,
            timers: Vec::new(),
            deadline_basis: None,
            escalated: None,
            meetings: Vec::new(),
            enforcement: None,
            supervision: Vec::new(),
            messages,
            triage: Some(reason.to_string()),
            trace: vec![format!(
                "the rules changed: {reason}; issue {} goes to triage ({})",
                issue.id, triage.id
            )],
        }
    }
}
