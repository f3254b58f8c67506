//! Rule tests: `DIR/tests/*.yaml`, each case an issue, its later events and what must follow.
//!
//! A failing expectation carries a [`Fix`], the value that would make it pass; [`rewrite`] puts
//! fixes into a test file's text at the expectation's position, leaving every other byte as it
//! was (`escalade test --update`).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use yaml_rust2::parser::{Event as YamlEvent, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::{Diagnostic, SourceFile, from_serde};
use crate::issue::{Event, Issue, IssueState, Refusal, State};
use crate::model::RuleSet;
use crate::spec::{Channel, Priority};
use crate::timeline::Timeline;

/// What runs a rule test's issue: the in-memory [`Timeline`] for `escalade test`, the daemon
/// through its API in the daemon's own tests. The cases and their checks are the same.
pub trait Replay {
    /// Reports the issue at `at`.
    fn report(&mut self, issue: &Issue, at: DateTime<Utc>) -> Result<(), String>;
    /// Lets due timers fire, then applies a person's event at `at`.
    fn apply(&mut self, at: DateTime<Utc>, event: Event) -> Result<(), String>;
    /// Fires, in due order, every timer due at or before `until`.
    fn advance_to(&mut self, until: DateTime<Utc>);
    /// The issue's state now.
    fn state(&self) -> IssueState;
    /// Every message queued for the issue so far.
    fn messages(&self) -> Vec<Sent>;
    /// Every message queued so far with the instant it was queued (the time of the decision
    /// that made it), for expectations with `at`. `None`: this replay cannot tell, and a case
    /// that expects a message at a time fails saying so.
    fn timed_messages(&self) -> Option<Vec<(DateTime<Utc>, Sent)>> {
        None
    }
    /// Why the last failing rule failed, if one did.
    fn triage_reason(&self) -> Option<String>;
    /// A decision that could not be made (a hook stopped by the wall clock), if one was due:
    /// the replay stopped there, and the case fails rather than judge an issue half replayed.
    fn stalled(&self) -> Option<String> {
        None
    }
}

/// A queued message, as a test sees it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub to: String,
    pub channel: Channel,
    pub template: String,
    pub kind: String,
}

/// The in-memory replay: a [`Timeline`].
pub struct InMemory<'r> {
    rules: &'r RuleSet,
    timeline: Option<Timeline<'r>>,
    stalled: Option<String>,
}

/// Timers fired in one `advance_to` at most, as the timeline fires them.
const MAX_FIRINGS: usize = 10_000;

impl<'r> InMemory<'r> {
    pub fn new(rules: &'r RuleSet) -> InMemory<'r> {
        InMemory {
            rules,
            timeline: None,
            stalled: None,
        }
    }

    fn t(&self) -> &Timeline<'r> {
        self.timeline.as_ref().expect("the issue is reported first")
    }
}

impl Replay for InMemory<'_> {
    fn report(&mut self, issue: &Issue, at: DateTime<Utc>) -> Result<(), String> {
        match Timeline::report(self.rules, issue.clone(), at) {
            Ok(t) => {
                self.timeline = Some(t);
                Ok(())
            }
            Err(r @ Refusal::Overloaded { .. }) => {
                let s = format!(
                    "the report at {} could not be decided: {r}",
                    at.to_rfc3339()
                );
                self.stalled = Some(s.clone());
                Err(s)
            }
            Err(r) => Err(r.to_string()),
        }
    }

    fn apply(&mut self, at: DateTime<Utc>, event: Event) -> Result<(), String> {
        self.advance_to(at);
        if let Some(s) = &self.stalled {
            return Err(s.clone());
        }
        let t = self.timeline.as_mut().expect("the issue is reported first");
        let name = event.name();
        match t.apply(at, event) {
            Ok(_) => Ok(()),
            Err(r @ Refusal::Overloaded { .. }) => {
                let s = format!(
                    "event `{name}` at {} could not be decided: {r}",
                    at.to_rfc3339()
                );
                self.stalled = Some(s.clone());
                Err(s)
            }
            Err(r) => Err(r.to_string()),
        }
    }

    /// Fires the timers one by one, so that a timer whose decision cannot be made (the only
    /// refusal a timer gets: a hook stopped by the wall clock) stops the replay there, its timer
    /// left pending as the daemon leaves it, instead of being passed over.
    fn advance_to(&mut self, until: DateTime<Utc>) {
        let Some(t) = self.timeline.as_mut() else {
            return;
        };
        for _ in 0..MAX_FIRINGS {
            if self.stalled.is_some() {
                return;
            }
            let Some(next) = t.timers.first().filter(|x| x.at <= until).cloned() else {
                return;
            };
            // The decision's timers replace the whole set; none fires on the way.
            let pending = std::mem::take(&mut t.timers);
            if let Err(r) = t.apply(next.at, next.event.clone()) {
                t.timers = pending;
                self.stalled = Some(format!(
                    "the {} timer at {} could not be decided: {r}",
                    next.event.name(),
                    next.at.to_rfc3339()
                ));
            }
        }
    }

    fn state(&self) -> IssueState {
        self.t().state.clone()
    }

    fn messages(&self) -> Vec<Sent> {
        self.timed_messages()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    fn timed_messages(&self) -> Option<Vec<(DateTime<Utc>, Sent)>> {
        Some(
            self.t()
                .log
                .iter()
                .flat_map(|e| e.decision.messages.iter().map(move |m| (e.at, m)))
                .map(|(at, m)| {
                    (
                        at,
                        Sent {
                            to: m.to.to_string(),
                            channel: m.channel,
                            template: m.template.to_string(),
                            kind: m.kind.to_string(),
                        },
                    )
                })
                .collect(),
        )
    }

    fn stalled(&self) -> Option<String> {
        self.stalled.clone()
    }

    fn triage_reason(&self) -> Option<String> {
        self.t()
            .log
            .iter()
            .rev()
            .find_map(|e| e.decision.triage.clone())
    }
}

/// The tier an issue is at: its escalation tier, else its own unit's.
fn tier_of(rules: &RuleSet, issue: &Issue, state: &IssueState) -> String {
    state.tier.clone().unwrap_or_else(|| {
        let org = &rules.org;
        org.unit(&issue.unit)
            .map(|u| org.tiers[org.units[u as usize].tier as usize].id.clone())
            .unwrap_or_default()
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    issue: Issue,
    at: DateTime<FixedOffset>,
    #[serde(default)]
    events: Vec<serde_yaml::Value>,
    until: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    departments: Option<Vec<String>>,
    state: Option<State>,
    priority: Option<Priority>,
    deadlines: Option<ExpectDeadlines>,
    tier: Option<String>,
    tier_at: Option<Vec<TierAt>>,
    meetings: Option<Vec<String>>,
    messages: Option<Vec<ExpectMessage>>,
    /// Messages that must not have been sent.
    messages_absent: Option<Vec<ExpectMessage>>,
    triage: Option<bool>,
    /// How the reporter's verification ended (`confirmed`, `auto_confirmed`, `unverified`).
    verification: Option<crate::issue::Verification>,
    /// The issue this one was merged into as a duplicate.
    duplicate_of: Option<String>,
    /// A request (`extension`, `suspension`) still waiting for its decider; `null`: none.
    #[serde(default, deserialize_with = "some_request")]
    request: Option<Option<crate::issue::RequestKind>>,
}

fn some_request<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<crate::issue::RequestKind>>, D::Error> {
    Option::<crate::issue::RequestKind>::deserialize(d).map(Some)
}

/// `null` expects the deadline cleared; absent means not checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDeadlines {
    #[serde(default, deserialize_with = "some")]
    acknowledge: Option<Option<DateTime<FixedOffset>>>,
    #[serde(default, deserialize_with = "some")]
    resolve: Option<Option<DateTime<FixedOffset>>>,
}

fn some<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<DateTime<FixedOffset>>>, D::Error> {
    Option::<DateTime<FixedOffset>>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierAt {
    at: DateTime<FixedOffset>,
    tier: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectMessage {
    to: String,
    channel: Option<Channel>,
    template: Option<String>,
    kind: Option<String>,
    /// When it was queued: the time of the decision that made it.
    at: Option<DateTime<FixedOffset>>,
}

impl ExpectMessage {
    /// Whether a message queued at `at` is this one; `at` is checked when both are known.
    fn matches(&self, at: Option<DateTime<Utc>>, s: &Sent) -> bool {
        s.to == self.to
            && self.channel.is_none_or(|c| c == s.channel)
            && self.template.as_ref().is_none_or(|x| *x == s.template)
            && self.kind.as_ref().is_none_or(|k| *k == s.kind)
            && match (self.at, at) {
                (Some(want), Some(got)) => want.with_timezone(&Utc) == got,
                _ => true,
            }
    }

    /// `to p-li (assigned, sms) at 2026-03-02T10:00:00+08:00`, for failure messages.
    fn describe(&self) -> String {
        let mut what = vec![
            self.template
                .as_deref()
                .unwrap_or("any template")
                .to_string(),
        ];
        what.extend(self.channel.map(|c| c.as_str().to_string()));
        what.extend(self.kind.as_ref().map(|k| format!("kind {k}")));
        let at = self
            .at
            .map(|a| format!(" at {}", a.to_rfc3339()))
            .unwrap_or_default();
        format!("to {} ({}){at}", self.to, what.join(", "))
    }
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub file: String,
    /// The case's position in its file's `cases`.
    pub index: usize,
    pub name: String,
    /// Empty when the case passed; else each line says expected against actual.
    pub failures: Vec<String>,
    /// For the failures that are an expectation against an actual result: the expectation
    /// rewritten to the result.
    pub fixes: Vec<Fix>,
    /// The failures no rewrite of an expectation can mend (a refused event, a decision that
    /// could not be made).
    pub unfixable: Vec<String>,
}

/// An expectation rewritten to what happened: the node at `path` of the test file
/// (`cases[2].expect.state`) becomes `to`, or goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    pub path: String,
    pub to: FixTo,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FixTo {
    /// A scalar, as YAML text.
    Scalar(String),
    /// A list of scalars, each as YAML text.
    List(Vec<String>),
    /// The item goes from its list (a message expectation that no longer holds).
    Remove,
}

/// The outcome of a run: case results, or the diagnostics of test files that did not parse.
#[derive(Debug, Default)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    pub errors: Vec<Diagnostic>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failures.is_empty()).count()
    }
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Runs every case of `dir/tests/*.yaml` against `rules`, in memory.
pub fn run(rules: &RuleSet, dir: &Path) -> Report {
    run_with(rules, dir, || InMemory::new(rules))
}

/// Runs every case of `dir/tests/*.yaml`, each on a fresh replay from `replay`.
pub fn run_with<R: Replay>(rules: &RuleSet, dir: &Path, mut replay: impl FnMut() -> R) -> Report {
    let mut report = Report::default();
    let tests = dir.join("tests");
    let mut names: Vec<String> = match std::fs::read_dir(&tests) {
        Ok(e) => e
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect(),
        Err(e) => {
            report.errors.push(Diagnostic::new(format!(
                "cannot read {}: {e}",
                tests.display()
            )));
            return report;
        }
    };
    names.sort();
    for n in names {
        let rel = format!("tests/{n}");
        let text = match std::fs::read_to_string(dir.join(&rel)) {
            Ok(t) => t,
            Err(e) => {
                report
                    .errors
                    .push(Diagnostic::new(format!("cannot read {rel}: {e}")));
                continue;
            }
        };
        let mut file = SourceFile::new(rel.clone(), text);
        if let Err(d) = file.index_yaml() {
            report.errors.push(d);
            continue;
        }
        let parsed: TestFile = match serde_yaml::from_str(file.text()) {
            Ok(t) => t,
            Err(e) => {
                report.errors.push(from_serde(&file, &e));
                continue;
            }
        };
        for (i, case) in parsed.cases.into_iter().enumerate() {
            let mut events = Vec::new();
            let mut bad = false;
            for (j, v) in case.events.iter().enumerate() {
                match parse_event(v) {
                    Ok(e) => events.push(e),
                    Err(msg) => {
                        report
                            .errors
                            .push(file.at_path(&format!("cases[{i}].events[{j}]"), msg));
                        bad = true;
                    }
                }
            }
            if bad {
                continue;
            }
            let mut failures = Vec::new();
            let mut fixes = Vec::new();
            let mut unfixable = Vec::new();
            for f in run_case(rules, &mut replay(), &case, i, events) {
                match f.fix {
                    Some(x) => fixes.push(x),
                    None => unfixable.push(f.message.clone()),
                }
                failures.push(f.message);
            }
            report.cases.push(CaseResult {
                file: rel.clone(),
                index: i,
                name: case.name,
                failures,
                fixes,
                unfixable,
            });
        }
    }
    report
}

/// An event of a test: a map with `at`, `event` and the event's fields, and `refused` (a part of
/// the refusal's message) when the rules must refuse it.
fn parse_event(v: &serde_yaml::Value) -> Result<TestEvent, String> {
    let mut m = v
        .as_mapping()
        .cloned()
        .ok_or("an event is a map with `at` and `event`")?;
    let at = m
        .remove("at")
        .ok_or("an event needs `at`, the time it happens")?;
    let at: DateTime<FixedOffset> =
        serde_yaml::from_value(at).map_err(|e| format!("invalid `at`: {e}"))?;
    let refused = match m.remove("refused") {
        Some(serde_yaml::Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(_) => {
            return Err(
                "`refused` is a part of the refusal's message, such as `not allowed`".into(),
            );
        }
        None => None,
    };
    let event: Event = serde_yaml::from_value(serde_yaml::Value::Mapping(m))
        .map_err(|e| format!("invalid event: {e}"))?;
    if event.is_timer() || event == Event::Reported {
        return Err(format!(
            "`{}` is not an event a test gives: timers fire on their own and the case reports the issue",
            event.name()
        ));
    }
    if matches!(event, Event::SentToTriage { .. }) {
        return Err(format!(
            "`{}` is not an event a test gives: the daemon sends it when new rules no longer know an open issue",
            event.name()
        ));
    }
    if event.is_system() {
        return Err(format!(
            "`{}` is not an event a test gives: the daemon sends it",
            event.name()
        ));
    }
    Ok(TestEvent {
        at: at.with_timezone(&Utc),
        event,
        refused,
    })
}

/// An event a case gives, and whether it must be refused.
struct TestEvent {
    at: DateTime<Utc>,
    event: Event,
    refused: Option<String>,
}

/// One failed expectation, and how to make it hold.
struct Failed {
    message: String,
    fix: Option<Fix>,
}

impl Failed {
    fn new(message: impl Into<String>) -> Failed {
        Failed {
            message: message.into(),
            fix: None,
        }
    }

    fn fix(mut self, path: String, to: FixTo) -> Failed {
        self.fix = Some(Fix { path, to });
        self
    }
}

fn run_case(
    rules: &RuleSet,
    t: &mut impl Replay,
    case: &Case,
    index: usize,
    events: Vec<TestEvent>,
) -> Vec<Failed> {
    let mut failures = Vec::new();
    let expect = format!("cases[{index}].expect");
    fn stalled(t: &impl Replay) -> Option<Failed> {
        t.stalled()
            .map(|s| Failed::new(format!("a decision could not be made: {s}")))
    }
    if let Err(e) = t.report(&case.issue, case.at.with_timezone(&Utc)) {
        return vec![
            stalled(t).unwrap_or_else(|| Failed::new(format!("the report was refused: {e}"))),
        ];
    }
    // Events and tier checkpoints, in time order (events first at equal times).
    enum Point<'a> {
        Event(Event, Option<String>),
        Tier(usize, &'a TierAt),
    }
    let mut points: Vec<(DateTime<Utc>, u8, Point)> = events
        .into_iter()
        .map(|e| (e.at, 0, Point::Event(e.event, e.refused)))
        .collect();
    for (k, c) in case.expect.tier_at.iter().flatten().enumerate() {
        points.push((c.at.with_timezone(&Utc), 1, Point::Tier(k, c)));
    }
    points.sort_by_key(|p| (p.0, p.1));
    let mut last = case.at.with_timezone(&Utc);
    for (at, _, p) in points {
        last = last.max(at);
        match p {
            Point::Event(e, refused) => {
                let name = e.name();
                match (t.apply(at, e), refused) {
                    (Ok(()), None) => {}
                    (Err(r), Some(want)) if r.contains(&want) => {}
                    (Err(r), Some(want)) => {
                        failures.push(Failed::new(format!(
                            "event `{name}` at {at} was refused, but not for `{want}`: {r}"
                        )));
                        return failures;
                    }
                    (Ok(()), Some(want)) => {
                        failures.push(Failed::new(format!(
                            "event `{name}` at {at} was taken, but should be refused ({want})"
                        )));
                        return failures;
                    }
                    (Err(r), None) => {
                        failures.push(stalled(t).unwrap_or_else(|| {
                            Failed::new(format!("event `{name}` at {at} was refused: {r}"))
                        }));
                        return failures;
                    }
                }
            }
            Point::Tier(k, c) => {
                t.advance_to(at);
                if let Some(f) = stalled(t) {
                    failures.push(f);
                    return failures;
                }
                let tier = tier_of(rules, &case.issue, &t.state());
                if tier != c.tier {
                    failures.push(
                        Failed::new(format!("tier at {}: expected {}, got {tier}", c.at, c.tier))
                            .fix(format!("{expect}.tier_at[{k}].tier"), scalar(&tier)),
                    );
                }
            }
        }
    }
    if let Some(u) = case.until {
        t.advance_to(u.with_timezone(&Utc));
    } else {
        t.advance_to(last);
    }
    if let Some(f) = stalled(t) {
        failures.push(f);
        return failures;
    }
    let e = &case.expect;
    let st = &t.state();
    if let Some(d) = &e.departments
        && *d != st.departments
    {
        failures.push(
            Failed::new(format!(
                "departments: expected {d:?}, got {:?}",
                st.departments
            ))
            .fix(format!("{expect}.departments"), list(&st.departments)),
        );
    }
    if let Some(s) = e.state
        && s != st.state
    {
        failures.push(
            Failed::new(format!(
                "state: expected {}, got {}",
                s.as_str(),
                st.state.as_str()
            ))
            .fix(format!("{expect}.state"), scalar(st.state.as_str())),
        );
    }
    if let Some(p) = e.priority
        && Some(p) != st.priority
    {
        let f = Failed::new(format!(
            "priority: expected {}, got {}",
            p.as_str(),
            st.priority.map(Priority::as_str).unwrap_or("none")
        ));
        failures.push(match st.priority {
            Some(got) => f.fix(format!("{expect}.priority"), scalar(got.as_str())),
            None => f,
        });
    }
    if let Some(d) = &e.deadlines {
        for (what, want, got) in [
            ("acknowledge", d.acknowledge, st.acknowledge_by),
            ("resolve", d.resolve, st.resolve_by),
        ] {
            let Some(want) = want else { continue };
            if want.map(|w| w.with_timezone(&Utc)) != got {
                let tz = want.map(|w| *w.offset()).unwrap_or(*case.at.offset());
                let show = |x: Option<DateTime<Utc>>| match x {
                    Some(x) => x.with_timezone(&tz).to_rfc3339(),
                    None => "none".into(),
                };
                failures.push(
                    Failed::new(format!(
                        "{what} deadline: expected {}, got {}",
                        show(want.map(|w| w.with_timezone(&Utc))),
                        show(got)
                    ))
                    .fix(
                        format!("{expect}.deadlines.{what}"),
                        FixTo::Scalar(match got {
                            Some(g) => g.with_timezone(&tz).to_rfc3339(),
                            None => "null".into(),
                        }),
                    ),
                );
            }
        }
    }
    if let Some(want) = &e.tier {
        let got = tier_of(rules, &case.issue, st);
        if *want != got {
            failures.push(
                Failed::new(format!("tier: expected {want}, got {got}"))
                    .fix(format!("{expect}.tier"), scalar(&got)),
            );
        }
    }
    if let Some(m) = &e.meetings
        && *m != st.meetings
    {
        failures.push(
            Failed::new(format!("meetings: expected {m:?}, got {:?}", st.meetings))
                .fix(format!("{expect}.meetings"), list(&st.meetings)),
        );
    }
    if let Some(want) = e.verification
        && Some(want) != st.verification
    {
        failures.push(Failed::new(format!(
            "verification: expected {want:?}, got {:?}",
            st.verification
        )));
    }
    if let Some(want) = &e.duplicate_of
        && Some(want) != st.duplicate_of.as_ref()
    {
        failures.push(Failed::new(format!(
            "duplicate_of: expected {want}, got {:?}",
            st.duplicate_of
        )));
    }
    if let Some(want) = e.request {
        let got = st.request.as_ref().map(|r| r.kind);
        if want != got {
            failures.push(Failed::new(format!(
                "request: expected {want:?}, got {got:?}"
            )));
        }
    }
    if let Some(want) = e.triage
        && want != st.triage
    {
        let why = t.triage_reason().unwrap_or_else(|| "no rule failed".into());
        failures.push(
            Failed::new(format!(
                "triage: expected {want}, got {} ({why})",
                st.triage
            ))
            .fix(
                format!("{expect}.triage"),
                FixTo::Scalar(st.triage.to_string()),
            ),
        );
    }
    let timed = e
        .messages
        .iter()
        .chain(&e.messages_absent)
        .flatten()
        .any(|m| m.at.is_some());
    let sent: Vec<(Option<DateTime<Utc>>, Sent)> = if timed {
        match t.timed_messages() {
            Some(v) => v.into_iter().map(|(at, s)| (Some(at), s)).collect(),
            None => {
                failures.push(Failed::new(
                    "messages: an expectation gives `at`, and this replay cannot tell when messages were queued",
                ));
                return failures;
            }
        }
    } else {
        t.messages().into_iter().map(|s| (None, s)).collect()
    };
    let show_sent = |s: &(Option<DateTime<Utc>>, Sent), tz: FixedOffset| {
        let at =
            s.0.filter(|_| timed)
                .map(|a| format!(" at {}", a.with_timezone(&tz).to_rfc3339()))
                .unwrap_or_default();
        format!("{}/{}{at}", s.1.template, s.1.channel.as_str())
    };
    let tz = *case.at.offset();
    for (k, m) in e.messages.iter().flatten().enumerate() {
        if sent.iter().any(|(at, s)| m.matches(*at, s)) {
            continue;
        }
        let to_them: Vec<String> = sent
            .iter()
            .filter(|s| *s.1.to == *m.to)
            .map(|s| show_sent(s, m.at.map(|a| *a.offset()).unwrap_or(tz)))
            .collect();
        let f = Failed::new(format!(
            "message {}: not sent; sent to them: {}",
            m.describe(),
            if to_them.is_empty() {
                "nothing".into()
            } else {
                to_them.join(", ")
            }
        ));
        let path = format!("{expect}.messages[{k}]");
        // Sent at another time: the time is what was wrong. Not sent at all: the expectation
        // goes.
        let other_time = m.at.and_then(|want| {
            sent.iter()
                .find(|(_, s)| m.matches(None, s))
                .and_then(|(at, _)| *at)
                .map(|got| got.with_timezone(want.offset()).to_rfc3339())
        });
        failures.push(match other_time {
            Some(at) => f.fix(format!("{path}.at"), FixTo::Scalar(at)),
            None => f.fix(path, FixTo::Remove),
        });
    }
    for (k, m) in e.messages_absent.iter().flatten().enumerate() {
        let found: Vec<String> = sent
            .iter()
            .filter(|(at, s)| m.matches(*at, s))
            .map(|s| show_sent(s, m.at.map(|a| *a.offset()).unwrap_or(tz)))
            .collect();
        if found.is_empty() {
            continue;
        }
        failures.push(
            Failed::new(format!(
                "message {}: expected not sent, but sent: {}",
                m.describe(),
                found.join(", ")
            ))
            .fix(format!("{expect}.messages_absent[{k}]"), FixTo::Remove),
        );
    }
    failures
}

/// A string as a YAML scalar that reads back as the same string, in block and flow context
/// alike: plain when that is safe, else double-quoted (a JSON string is a YAML one).
fn yaml_scalar(s: &str) -> String {
    let plain = serde_yaml::to_string(s).is_ok_and(|y| y.trim_end() == s)
        && !s.is_empty()
        && !s.contains([',', '[', ']', '{', '}', '#', ':', '"', '\''])
        && !s.starts_with(['-', '?', '!', '&', '*', '|', '>', '%', '@', '`', ' '])
        && !s.ends_with(' ');
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

fn scalar(s: &str) -> FixTo {
    FixTo::Scalar(yaml_scalar(s))
}

fn list(items: &[String]) -> FixTo {
    FixTo::List(items.iter().map(|s| yaml_scalar(s)).collect())
}

/// What one fix changed in a test file.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub path: String,
    /// Where the old text began, 1-based, the column in characters.
    pub line: usize,
    pub column: usize,
    pub old: String,
    /// `None`: the item was removed.
    pub new: Option<String>,
}

/// A test file's text with fixes applied.
#[derive(Debug)]
pub struct Rewrite {
    pub text: String,
    pub applied: Vec<Applied>,
    /// Fixes that could not be applied, each at its expectation.
    pub skipped: Vec<Diagnostic>,
}

/// Applies `fixes` to the test file `name` whose text is `text`: each replaces the text of one
/// expectation's value (or removes one item of an expectation list), and nothing else changes,
/// comments and layout included. A scalar keeps its place, a list keeps its form (flow `[a, b]`
/// or one `- item` a line). A fix whose node cannot be rewritten in place (a multi-line or
/// block scalar, an anchor) is skipped with a diagnostic. The result is checked to parse as a
/// test file again; if it does not, nothing is applied.
pub fn rewrite(name: &str, text: &str, fixes: &[Fix]) -> Rewrite {
    let mut file = SourceFile::new(name, text);
    let skip = |file: &SourceFile, f: &Fix, why: &str| {
        file.at_path(&f.path, format!("cannot update `{}`: {why}", f.path))
    };
    let mut out = Rewrite {
        text: text.to_string(),
        applied: Vec::new(),
        skipped: Vec::new(),
    };
    if let Err(d) = file.index_yaml() {
        out.skipped.push(d);
        return out;
    }
    let nodes = match Nodes::of(text) {
        Ok(n) => n,
        Err(d) => {
            out.skipped.push(file.at(1, 1, d));
            return out;
        }
    };
    let mut edits: Vec<Edit> = Vec::new();
    for (i, f) in fixes.iter().enumerate() {
        let Some(node) = nodes.get(&f.path) else {
            out.skipped.push(skip(&file, f, "not found in the file"));
            continue;
        };
        let edit = match &f.to {
            FixTo::Scalar(v) => match node.form {
                Form::Scalar => Some((node.start, node.end, v.clone(), Some(v.clone()))),
                _ => None,
            },
            FixTo::List(items) => {
                let flow = format!("[{}]", items.join(", "));
                match node.form {
                    Form::Scalar | Form::Flow => {
                        Some((node.start, node.end, flow.clone(), Some(flow)))
                    }
                    Form::Block if items.is_empty() => {
                        Some((node.start, node.end, flow.clone(), Some(flow)))
                    }
                    Form::Block => {
                        let indent = " ".repeat(column_of(text, node.start) - 1);
                        let block = items
                            .iter()
                            .map(|x| format!("- {x}"))
                            .collect::<Vec<_>>()
                            .join(&format!("\n{indent}"));
                        Some((node.start, node.end, block, Some(flow)))
                    }
                    Form::Other => None,
                }
            }
            FixTo::Remove => nodes
                .removal(text, &f.path)
                .map(|(a, b, by)| (a, b, by, None)),
        };
        match edit {
            Some((cut, end, by, shown)) => edits.push(Edit {
                cut: (cut, end),
                by,
                fix: i,
                node: (node.start, node.end),
                shown,
            }),
            None => out.skipped.push(skip(
                &file,
                f,
                "its value is not written in a form that can be rewritten in place (one line, plain or quoted)",
            )),
        }
    }
    edits.sort_by_key(|e| e.cut);
    let mut kept: Vec<Edit> = Vec::new();
    for e in edits {
        if kept.last().is_some_and(|k| e.cut.0 < k.cut.1) {
            out.skipped
                .push(skip(&file, &fixes[e.fix], "it overlaps another update"));
            continue;
        }
        kept.push(e);
    }
    let mut new = text.to_string();
    for e in kept.iter().rev() {
        new.replace_range(e.cut.0..e.cut.1, &e.by);
    }
    if let Err(e) = serde_yaml::from_str::<TestFile>(&new) {
        out.skipped.push(Diagnostic::new(format!(
            "{name}: not updated: the updated file would not read back ({e})"
        )));
        return out;
    }
    out.text = new;
    for e in kept {
        let (a, b) = e.node;
        out.applied.push(Applied {
            path: fixes[e.fix].path.clone(),
            line: text[..a].matches('\n').count() + 1,
            column: column_of(text, a),
            old: text[a..b].to_string(),
            new: e.shown,
        });
    }
    out
}

/// One fix as a change of text.
struct Edit {
    /// The bytes replaced, `[start, end)`.
    cut: (usize, usize),
    by: String,
    /// Which fix.
    fix: usize,
    /// The node's own text, for what is shown.
    node: (usize, usize),
    shown: Option<String>,
}

/// The 1-based column, in characters, of byte `at`.
fn column_of(text: &str, at: usize) -> usize {
    let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    text[line_start..at].chars().count() + 1
}

/// How a node is written, as far as rewriting it goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    /// A one-line plain or quoted scalar.
    Scalar,
    /// `[...]` or `{...}`.
    Flow,
    /// A block sequence or mapping.
    Block,
    /// Anything else: multi-line and block scalars, aliases.
    Other,
}

/// Where a node's text lies: `[start, end)` in bytes.
#[derive(Clone, Copy, Debug)]
struct Node {
    start: usize,
    end: usize,
    form: Form,
}

/// The extent of every node of a YAML text by path (`cases[0].expect.departments`), from
/// yaml-rust2's events: a scalar ends where its token ends, a flow collection at its closing
/// bracket, a block collection with its last node.
struct Nodes {
    nodes: HashMap<String, Node>,
}

impl Nodes {
    fn of(text: &str) -> Result<Nodes, String> {
        let mut r = Extents {
            text,
            bytes: text
                .char_indices()
                .map(|(b, _)| b)
                .chain(std::iter::once(text.len()))
                .collect(),
            nodes: HashMap::new(),
            stack: Vec::new(),
        };
        Parser::new_from_str(text)
            .load(&mut r, false)
            .map_err(|e| format!("invalid YAML: {}", e.info()))?;
        Ok(Nodes { nodes: r.nodes })
    }

    fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The text to cut to remove list item `path` (`...messages[2]`), and what replaces it: its
    /// whole lines in a block list (comments on lines of their own stay), the item and one comma
    /// in a flow list.
    fn removal(&self, text: &str, path: &str) -> Option<(usize, usize, String)> {
        let item = self.nodes.get(path)?;
        let parent = self.nodes.get(path.rsplit_once('[')?.0)?;
        match parent.form {
            Form::Block => {
                let line_start = text[..item.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
                let before = text[line_start..item.start].trim_start();
                if before
                    .strip_prefix('-')
                    .is_none_or(|r| !r.trim().is_empty())
                {
                    return None;
                }
                let line_end = text[item.end..]
                    .find('\n')
                    .map(|i| item.end + i + 1)
                    .unwrap_or(text.len());
                let rest = text[item.end..line_end].trim();
                if !(rest.is_empty() || rest.starts_with('#')) {
                    return None;
                }
                Some((line_start, line_end, String::new()))
            }
            Form::Flow => {
                let after = &text[item.end..parent.end];
                let trimmed = after.trim_start();
                if let Some(rest) = trimmed.strip_prefix(',') {
                    let end = parent.end - rest.trim_start().len();
                    return Some((item.start, end, String::new()));
                }
                let before = text[parent.start..item.start].trim_end();
                match before.strip_suffix(',') {
                    Some(b) => Some((parent.start + b.len(), item.end, String::new())),
                    None => Some((item.start, item.end, String::new())),
                }
            }
            _ => None,
        }
    }
}

struct Frame {
    path: String,
    /// A mapping's pending key, or a sequence's next index.
    key: Option<String>,
    next: Option<usize>,
    flow: bool,
    start: usize,
    end: usize,
}

struct Extents<'t> {
    text: &'t str,
    /// Character index to byte offset (yaml-rust2's markers count characters).
    bytes: Vec<usize>,
    nodes: HashMap<String, Node>,
    stack: Vec<Frame>,
}

impl Extents<'_> {
    /// The path of the next value; `None` when it is a mapping's key.
    fn slot(&mut self) -> Option<String> {
        let Some(f) = self.stack.last_mut() else {
            return Some(String::new());
        };
        if let Some(n) = f.next.as_mut() {
            let p = format!("{}[{n}]", f.path);
            *n += 1;
            return Some(p);
        }
        let k = f.key.take()?;
        Some(if f.path.is_empty() {
            k
        } else {
            format!("{}.{k}", f.path)
        })
    }

    fn done(&mut self, path: Option<String>, node: Node) {
        if let Some(f) = self.stack.last_mut() {
            f.end = f.end.max(node.end);
            f.start = f.start.min(node.start);
        }
        if let Some(p) = path {
            self.nodes.insert(p, node);
        }
    }

    /// Where a one-line scalar starting at `start` ends, if it is one whose text is `value`.
    fn scalar_end(&self, start: usize, style: TScalarStyle, value: &str) -> Option<usize> {
        let rest = &self.text[start..];
        let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let flow = self.stack.iter().any(|f| f.flow);
        match style {
            TScalarStyle::DoubleQuoted => {
                let mut escaped = false;
                line.char_indices().skip(1).find_map(|(i, c)| {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        return Some(start + i + 1);
                    }
                    None
                })
            }
            TScalarStyle::SingleQuoted => {
                let b = line.as_bytes();
                let mut i = 1;
                while i < b.len() {
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return Some(start + i + 1);
                    }
                    i += 1;
                }
                None
            }
            TScalarStyle::Plain => {
                let mut end = line.len();
                for (i, c) in line.char_indices() {
                    let comment = c == '#' && line[..i].ends_with([' ', '\t']);
                    if comment || (flow && matches!(c, ',' | ']' | '}')) {
                        end = i;
                        break;
                    }
                }
                let s = line[..end].trim_end();
                (s == value && !s.is_empty()).then_some(start + s.len())
            }
            _ => None,
        }
    }
}

impl MarkedEventReceiver for Extents<'_> {
    fn on_event(&mut self, ev: YamlEvent, mark: Marker) {
        let at = self.bytes[mark.index().min(self.bytes.len() - 1)];
        match ev {
            YamlEvent::Scalar(value, style, ..) => {
                let path = self.slot();
                if path.is_none() {
                    // A key: the mapping starts at its first key at the latest.
                    if let Some(f) = self.stack.last_mut() {
                        f.key = Some(value);
                        f.start = f.start.min(at);
                    }
                    return;
                }
                let node = match self.scalar_end(at, style, &value) {
                    Some(end) => Node {
                        start: at,
                        end,
                        form: Form::Scalar,
                    },
                    None => Node {
                        start: at,
                        end: at,
                        form: Form::Other,
                    },
                };
                self.done(path, node);
            }
            YamlEvent::Alias(_) => {
                let path = self.slot();
                self.done(
                    path,
                    Node {
                        start: at,
                        end: at,
                        form: Form::Other,
                    },
                );
            }
            YamlEvent::MappingStart(..) | YamlEvent::SequenceStart(..) => {
                let path = self.slot().unwrap_or_else(|| "?".into());
                let flow = matches!(self.text[at..].chars().next(), Some('[' | '{'));
                let seq = matches!(ev, YamlEvent::SequenceStart(..));
                self.stack.push(Frame {
                    path,
                    key: None,
                    next: seq.then_some(0),
                    flow,
                    start: at,
                    end: at,
                });
            }
            YamlEvent::MappingEnd | YamlEvent::SequenceEnd => {
                let Some(f) = self.stack.pop() else { return };
                let node = if f.flow {
                    Node {
                        start: f.start,
                        end: at + 1,
                        form: Form::Flow,
                    }
                } else {
                    Node {
                        start: f.start,
                        end: f.end,
                        form: Form::Block,
                    }
                };
                self.done(Some(f.path), node);
            }
            _ => {}
        }
    }
}
