//! The steps of the case flow (`case_flow:`): returns (退回), extension and suspension requests
//! (延期, 挂起) and their deciders, duplicates (合并), the departments' verdicts on reports
//! (双向评价) and the reporter's verification (核查) running out.

use super::{Cx, Failure, MessageVars, To, said};
use crate::issue::{
    DeadlineKind, Refusal, ReportRating, ReportVerdict, Request, RequestKind, State, Suspension,
    Verification,
};
use crate::model::Requests;
use crate::spec::{OnLapse, VerificationLapse};

fn invalid(field: &'static str, message: impl Into<String>) -> Failure {
    Failure::Refused(Refusal::Invalid {
        field,
        message: message.into(),
    })
}

impl Cx<'_> {
    /// The department that holds the issue: its primary one.
    fn primary(&self) -> String {
        self.next.departments.first().cloned().unwrap_or_default()
    }

    /// Where a return goes: the route's `return_to`, else the triage department.
    fn dispatcher(&self) -> String {
        self.next.dispatcher.clone().unwrap_or_else(|| {
            self.rs.org.departments[self.rs.settings.triage as usize]
                .id
                .clone()
        })
    }

    pub(super) fn returned(&mut self, reason: &str) -> Result<(), Failure> {
        said(
            "reason",
            reason,
            "a return must say why the issue is not this department's",
        )?;
        let from = self.primary();
        let to = self.dispatcher();
        if from == to {
            return Err(invalid(
                "event",
                format!(
                    "{to} is the dispatcher of this issue: it assigns the issue to the department responsible instead of returning it"
                ),
            ));
        }
        let org = &self.rs.org;
        let d = org.department(&to).expect("checked when loaded");
        self.next.counts.returns += 1;
        self.next.returned_by = Some(from.clone());
        self.next.departments = vec![to.clone()];
        self.next.state = State::Assigned;
        // The dispatcher's fresh deadlines: its own, if the policy names them, else the
        // category's, counted on the dispatcher's calendar. The returning department's lateness
        // does not follow the issue to the dispatcher.
        self.next.overdue = Default::default();
        let cal = &org.calendars[org.departments[d as usize].calendar as usize];
        let (ack, res) = self.rs.case_flow.triage.unwrap_or_else(|| {
            let r = self.deadline_rule();
            (r.acknowledge, r.resolve)
        });
        let ack_at = self.set_deadline(DeadlineKind::Acknowledge, cal, self.now, ack);
        self.set_deadline(DeadlineKind::Resolve, cal, self.now, res);
        self.trace(format!(
            "returned by {from} ({reason}): back to the dispatcher {to}, acknowledge by {ack_at}"
        ));
        self.d.effects.notes.push(format!(
            "returned by {from} to the dispatcher {to}: {reason}"
        ));
        let template = if self.rs.templates.contains("returned") {
            "returned"
        } else {
            "assigned"
        };
        let vars = MessageVars {
            deadline: Some((DeadlineKind::Acknowledge, ack_at)),
            reason: Some(reason.to_string()),
            ..Default::default()
        };
        self.tell(To::Department(d), "returned", template, vars);
        Ok(())
    }

    fn requests(&self, kind: RequestKind) -> Option<&Requests> {
        match kind {
            RequestKind::Extension => self.rs.case_flow.extensions.as_ref(),
            RequestKind::Suspension => self.rs.case_flow.suspensions.as_ref(),
        }
    }

    pub(super) fn request(
        &mut self,
        kind: RequestKind,
        duration: Option<crate::calendar::WorkDuration>,
        reason: &str,
    ) -> Result<(), Failure> {
        let name = kind.as_str();
        let Some(policy) = self.requests(kind) else {
            return Err(invalid(
                "event",
                format!("the rules allow no {name} requests (no `case_flow.{name}s`)"),
            ));
        };
        said("reason", reason, &format!("a {name} request must say why"))?;
        if let Some(r) = &self.next.request {
            return Err(invalid(
                "event",
                format!(
                    "a {} request is already waiting for a decision",
                    r.kind.as_str()
                ),
            ));
        }
        let granted = match kind {
            RequestKind::Extension => self.next.counts.extensions,
            RequestKind::Suspension => self.next.counts.suspensions,
        };
        if let Some(max) = policy.max
            && granted >= max
        {
            return Err(invalid(
                "event",
                format!("{granted} {name}(s) granted already, the most the rules allow"),
            ));
        }
        if let Some(d) = duration {
            if d.is_zero() {
                return Err(invalid("duration", "an extension must ask for some time"));
            }
            if let Some(longest) = policy.longest
                && self.deadline_calendar().duration_seconds(d)
                    > self.deadline_calendar().duration_seconds(longest)
            {
                return Err(invalid(
                    "duration",
                    format!("{d} is longer than the {longest} an extension may ask for"),
                ));
            }
            // Before the deadline promised: a ladder's `extend` moves when it next looks, not
            // the promise.
            match self.next.promised(DeadlineKind::Resolve) {
                Some(at) if at > self.now => {}
                _ => {
                    return Err(invalid(
                        "duration",
                        "the resolve deadline has passed: more time is asked for before it",
                    ));
                }
            }
        }
        let within = policy.decide_within;
        let decided_by = policy.decided_by.clone();
        let cal = self.deadline_calendar();
        let decide_by = cal.add(self.now, within);
        self.d.effects.counted.push((
            crate::effects::Deadline::Decide,
            crate::effects::Basis {
                duration: within,
                calendar: cal.key(),
                from: self.now,
                left_when_stopped: false,
            },
        ));
        let department = self.primary();
        if kind == RequestKind::Extension {
            self.next.counts.extension_requests += 1;
        }
        self.next.request = Some(Request {
            kind,
            department: department.clone(),
            duration,
            reason: reason.to_string(),
            asked_at: self.now,
            decide_by: Some(decide_by),
        });
        let to = self.recipients(&decided_by);
        let names = self.names(&to);
        let what = match duration {
            Some(d) => format!("an extension of {d}"),
            None => "a suspension".to_string(),
        };
        self.trace(format!(
            "{department} asks for {what} ({reason}); {names} decide by {decide_by}"
        ));
        self.d.effects.notes.push(format!(
            "{department} asks for {what}: {reason}; {names} decide"
        ));
        let vars = MessageVars {
            reason: Some(reason.to_string()),
            deadline: self.next.resolve_by.map(|at| (DeadlineKind::Resolve, at)),
            ..Default::default()
        };
        for t in to {
            self.tell(t, "request", "request", vars.clone());
        }
        Ok(())
    }

    pub(super) fn request_decided(
        &mut self,
        kind: RequestKind,
        granted: bool,
        note: &str,
        lapsed: bool,
    ) -> Result<(), Failure> {
        let name = kind.as_str();
        let Some(request) = self.next.request.clone().filter(|r| r.kind == kind) else {
            return Err(invalid(
                "request",
                format!("no {name} request is waiting for a decision"),
            ));
        };
        if !granted && !lapsed {
            said("note", note, "a refusal must say why")?;
        }
        self.next.request = None;
        let by = if lapsed {
            "by the policy, the decider's time having run out"
        } else {
            "by the decider"
        };
        if granted {
            match kind {
                RequestKind::Extension => {
                    let d = request.duration.expect("an extension asks for time");
                    // Moved from the deadline promised, which a pending request did not stop:
                    // the new deadline is the promise now, and the issue is not overdue by it.
                    let from = self
                        .next
                        .promised(DeadlineKind::Resolve)
                        .unwrap_or(self.now);
                    let cal = self.deadline_calendar();
                    let at = self.set_deadline(DeadlineKind::Resolve, cal, from, d);
                    if at > self.now {
                        self.next.overdue.resolve = None;
                    }
                    self.next.counts.extensions += 1;
                    self.trace(format!("extension of {d} granted {by}: resolve by {at}"));
                }
                RequestKind::Suspension => {
                    let cal = self.deadline_calendar();
                    // Counted from the whole second, as deadlines fall on whole seconds: no
                    // fraction of a second is lost to rounding.
                    let from = chrono::SubsecRound::trunc_subsecs(self.now, 0);
                    let left = |at: Option<chrono::DateTime<chrono::Utc>>| {
                        at.map(|t| cal.working_seconds_between(from, t))
                    };
                    self.next.suspension = Some(Suspension {
                        since: self.now,
                        reason: request.reason.clone(),
                        resumes_in: self.next.state,
                        acknowledge_left: left(self.next.acknowledge_by),
                        resolve_left: left(self.next.resolve_by),
                    });
                    self.next.acknowledge_by = None;
                    self.next.resolve_by = None;
                    self.next.passed.clear();
                    self.next.state = State::Suspended;
                    self.next.counts.suspensions += 1;
                    self.trace(format!(
                        "suspension granted {by}: the clock stops ({})",
                        request.reason
                    ));
                }
            }
        } else {
            self.trace(format!("{name} request refused {by}: {note}"));
        }
        self.d.effects.notes.push(format!(
            "{name} request of {} {} {by}{}",
            request.department,
            if granted { "granted" } else { "refused" },
            if note.trim().is_empty() {
                String::new()
            } else {
                format!(": {note}")
            }
        ));
        let vars = MessageVars {
            reason: Some(if note.trim().is_empty() {
                format!("{name} {}", if granted { "granted" } else { "refused" })
            } else {
                note.to_string()
            }),
            deadline: self.next.resolve_by.map(|at| (DeadlineKind::Resolve, at)),
            ..Default::default()
        };
        if let Some(d) = self.rs.org.department(&request.department) {
            self.tell(To::Department(d), "decided", "decided", vars);
        }
        Ok(())
    }

    pub(super) fn request_lapsed(&mut self, kind: RequestKind) -> Result<(), Failure> {
        let due = self
            .next
            .request
            .as_ref()
            .filter(|r| r.kind == kind)
            .and_then(|r| r.decide_by)
            .filter(|at| *at <= self.now);
        if due.is_none() {
            self.trace(format!(
                "{} decision timer ignored: no request waiting",
                kind.as_str()
            ));
            return Ok(());
        }
        let granted = self
            .requests(kind)
            .is_some_and(|p| p.on_lapse == OnLapse::Grant);
        self.request_decided(kind, granted, "", true)
    }

    pub(super) fn resumed(&mut self, note: &str) -> Result<(), Failure> {
        let Some(s) = self.next.suspension.take() else {
            return Err(invalid("event", "the issue is not suspended"));
        };
        let cal = self.deadline_calendar();
        let tz = cal.tz();
        for (kind, left) in [
            (DeadlineKind::Acknowledge, s.acknowledge_left),
            (DeadlineKind::Resolve, s.resolve_left),
        ] {
            if let Some(secs) = left {
                let at = cal.add_seconds(self.now, secs);
                self.next.set_deadline(kind, Some(at));
                self.d.effects.counted.push((
                    crate::effects::Deadline::from(kind),
                    crate::effects::Basis {
                        duration: crate::calendar::WorkDuration::minutes(((secs + 30) / 60) as u32),
                        calendar: cal.key(),
                        from: self.now,
                        left_when_stopped: true,
                    },
                ));
            }
        }
        self.next.state = s.resumes_in;
        self.trace(format!(
            "resumed after the suspension since {}{}",
            s.since.with_timezone(&tz).to_rfc3339(),
            if note.trim().is_empty() {
                String::new()
            } else {
                format!(": {note}")
            }
        ));
        Ok(())
    }

    pub(super) fn duplicate(&mut self, original: &str) -> Result<(), Failure> {
        if original.trim().is_empty() {
            return Err(invalid("original", "name the issue this one duplicates"));
        }
        if original == self.issue.id {
            return Err(invalid("original", "an issue cannot duplicate itself"));
        }
        self.next.state = State::Closed;
        self.next.duplicate_of = Some(original.to_string());
        self.next.acknowledge_by = None;
        self.next.resolve_by = None;
        self.trace(format!(
            "a duplicate of issue {original}: closed; its reporter follows {original}"
        ));
        self.d
            .effects
            .notes
            .push(format!("merged into issue {original} as a duplicate"));
        Ok(())
    }

    pub(super) fn followed(&mut self, person: &str, duplicate: &str) -> Result<(), Failure> {
        if self.rs.org.person(person).is_none() {
            return Err(invalid("person", format!("unknown person `{person}`")));
        }
        if self.issue.reporter.as_deref() != Some(person)
            && !self.next.followers.iter().any(|f| f == person)
        {
            self.next.followers.push(person.to_string());
        }
        self.trace(format!(
            "{person}, the reporter of duplicate {duplicate}, follows this issue"
        ));
        Ok(())
    }

    pub(super) fn report_rated(
        &mut self,
        verdict: ReportVerdict,
        department: &str,
    ) -> Result<(), Failure> {
        if department.is_empty() {
            return Err(invalid(
                "department",
                "name the department that rates the report",
            ));
        }
        let held = self.next.departments.iter().any(|d| d == department)
            || self.next.returned_by.as_deref() == Some(department);
        if !held {
            return Err(invalid(
                "department",
                format!("{department} does not handle this issue"),
            ));
        }
        if self
            .next
            .report_ratings
            .iter()
            .any(|r| r.department == department)
        {
            return Err(invalid(
                "verdict",
                format!("{department} rated this report already"),
            ));
        }
        self.next.report_ratings.push(ReportRating {
            department: department.to_string(),
            verdict,
        });
        self.trace(format!(
            "{department} rated the report: {}",
            verdict.as_str()
        ));
        self.d.effects.notes.push(format!(
            "{department} rated the report: {}",
            verdict.as_str()
        ));
        Ok(())
    }

    pub(super) fn verification_lapsed(&mut self) -> Result<(), Failure> {
        let due = self.next.verify_by.filter(|at| *at <= self.now);
        let (Some(due), State::Resolved, Some((within, lapse))) =
            (due, self.next.state, self.rs.case_flow.verification)
        else {
            self.trace("verification timer ignored: no verification pending");
            return Ok(());
        };
        self.next.counts.verification_lapses += 1;
        self.trace(format!("nobody verified the resolution by {due}"));
        let close = |cx: &mut Self, how: Verification, what: &str| {
            cx.next.state = State::Closed;
            cx.next.verify_by = None;
            cx.next.verification = Some(how);
            cx.trace(format!("closed {what}"));
            cx.d.effects
                .notes
                .push(format!("the time to verify ran out: closed {what}"));
        };
        match lapse {
            VerificationLapse::Confirm => {
                close(self, Verification::AutoConfirmed, "as confirmed by lapse")
            }
            VerificationLapse::Unverified => close(self, Verification::Unverified, "unverified"),
            VerificationLapse::Escalate if self.next.counts.verification_lapses > 1 => close(
                self,
                Verification::Unverified,
                "unverified, the reporter's leader having been told",
            ),
            VerificationLapse::Escalate => {
                let at = self.set_verify_by(within);
                let leader = self.reporters_leader();
                let names = self.names(&leader);
                self.trace(format!(
                    "the reporter's leader {names} is told; the reporter has until {at}"
                ));
                self.d.effects.notes.push(format!(
                    "the time to verify ran out: the reporter's leader ({names}) is told"
                ));
                let vars = MessageVars {
                    reason: Some("verification overdue".into()),
                    ..Default::default()
                };
                // Its own template if the rules have one, else the ladder's `escalated`.
                let template = if self.rs.templates.contains("unverified") {
                    "unverified"
                } else {
                    "escalated"
                };
                for t in leader {
                    self.tell(t, "escalated", template, vars.clone());
                }
            }
        }
        Ok(())
    }

    /// The leader above the reporter: of the parent of the unit the reporter leads, else of the
    /// parent of the issue's unit.
    fn reporters_leader(&self) -> Vec<To> {
        let org = &self.rs.org;
        let own = self
            .issue
            .reporter
            .as_deref()
            .and_then(|r| org.person(r))
            .and_then(|p| org.units.iter().position(|u| u.leader == Some(p)));
        let unit = own.map(|u| u as crate::model::Ix).unwrap_or(self.unit);
        org.units[unit as usize]
            .parent
            .and_then(|parent| org.units[parent as usize].leader)
            .map(To::Person)
            .into_iter()
            .collect()
    }
}

/// Who decides a pending request, for the daemon's permission check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decider {
    /// The leader of this unit, or of a unit above it.
    Leader(String),
    /// The contacts of this department.
    Department(String),
    Person(String),
}

impl crate::model::RuleSet {
    /// Where a return of this issue goes: the route's `return_to`, else the triage department.
    pub fn dispatcher(&self, state: &crate::issue::IssueState) -> String {
        state.dispatcher.clone().unwrap_or_else(|| {
            self.org.departments[self.settings.triage as usize]
                .id
                .clone()
        })
    }

    /// Who decides the request waiting on this issue, if one is.
    pub fn decider(
        &self,
        issue: &crate::issue::Issue,
        state: &crate::issue::IssueState,
    ) -> Option<Decider> {
        let r = state.request.as_ref()?;
        let policy = match r.kind {
            RequestKind::Extension => self.case_flow.extensions.as_ref()?,
            RequestKind::Suspension => self.case_flow.suspensions.as_ref()?,
        };
        let org = &self.org;
        let unit = org.unit(&issue.unit)?;
        let at_tier = |t: u8| {
            org.unit_at_tier(unit, t)
                .map(|u| Decider::Leader(org.units[u as usize].id.clone()))
        };
        match &policy.decided_by {
            crate::model::Target::Tier(t) => at_tier(*t),
            crate::model::Target::Leader => {
                let t = state
                    .tier
                    .as_deref()
                    .and_then(|t| org.tier(t))
                    .unwrap_or(org.units[unit as usize].tier);
                at_tier(t)
            }
            crate::model::Target::Department(d) => {
                Some(Decider::Department(org.departments[*d as usize].id.clone()))
            }
            crate::model::Target::Person(p) => {
                Some(Decider::Person(org.people[*p as usize].id.to_string()))
            }
            crate::model::Target::Departments | crate::model::Target::Reporter => None,
        }
    }
}
