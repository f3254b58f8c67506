//! Rule tests: `DIR/tests/*.yaml`, each case an issue, its later events and what must follow.

use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;

use crate::diag::{Diagnostic, SourceFile, from_serde};
use crate::issue::{Event, Issue, IssueState, State};
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
    /// Why the last failing rule failed, if one did.
    fn triage_reason(&self) -> Option<String>;
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
}

impl<'r> InMemory<'r> {
    pub fn new(rules: &'r RuleSet) -> InMemory<'r> {
        InMemory {
            rules,
            timeline: None,
        }
    }

    fn t(&self) -> &Timeline<'r> {
        self.timeline.as_ref().expect("the issue is reported first")
    }
}

impl Replay for InMemory<'_> {
    fn report(&mut self, issue: &Issue, at: DateTime<Utc>) -> Result<(), String> {
        self.timeline =
            Some(Timeline::report(self.rules, issue.clone(), at).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn apply(&mut self, at: DateTime<Utc>, event: Event) -> Result<(), String> {
        let t = self.timeline.as_mut().expect("the issue is reported first");
        t.apply(at, event).map(|_| ()).map_err(|e| e.to_string())
    }

    fn advance_to(&mut self, until: DateTime<Utc>) {
        if let Some(t) = self.timeline.as_mut() {
            t.advance_to(until);
        }
    }

    fn state(&self) -> IssueState {
        self.t().state.clone()
    }

    fn messages(&self) -> Vec<Sent> {
        self.t()
            .log
            .iter()
            .flat_map(|e| e.decision.messages.iter())
            .map(|m| Sent {
                to: m.to.to_string(),
                channel: m.channel,
                template: m.template.to_string(),
                kind: m.kind.to_string(),
            })
            .collect()
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
    triage: Option<bool>,
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
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    /// Empty when the case passed; else each line says expected against actual.
    pub failures: Vec<String>,
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
            let failures = run_case(rules, &mut replay(), &case, events);
            report.cases.push(CaseResult {
                file: rel.clone(),
                name: case.name,
                failures,
            });
        }
    }
    report
}

/// An event of a test: a map with `at`, `event` and the event's fields.
fn parse_event(v: &serde_yaml::Value) -> Result<(DateTime<Utc>, Event), String> {
    let mut m = v
        .as_mapping()
        .cloned()
        .ok_or("an event is a map with `at` and `event`")?;
    let at = m
        .remove("at")
        .ok_or("an event needs `at`, the time it happens")?;
    let at: DateTime<FixedOffset> =
        serde_yaml::from_value(at).map_err(|e| format!("invalid `at`: {e}"))?;
    let event: Event = serde_yaml::from_value(serde_yaml::Value::Mapping(m))
        .map_err(|e| format!("invalid event: {e}"))?;
    if event.is_timer() || event == Event::Reported {
        return Err(format!(
            "`{}` is not an event a test gives: timers fire on their own and the case reports the issue",
            event.name()
        ));
    }
    Ok((at.with_timezone(&Utc), event))
}

fn run_case(
    rules: &RuleSet,
    t: &mut impl Replay,
    case: &Case,
    events: Vec<(DateTime<Utc>, Event)>,
) -> Vec<String> {
    let mut failures = Vec::new();
    if let Err(e) = t.report(&case.issue, case.at.with_timezone(&Utc)) {
        return vec![format!("the report was refused: {e}")];
    }
    // Events and tier checkpoints, in time order (events first at equal times).
    enum Point<'a> {
        Event(Event),
        Tier(&'a TierAt),
    }
    let mut points: Vec<(DateTime<Utc>, u8, Point)> = events
        .into_iter()
        .map(|(at, e)| (at, 0, Point::Event(e)))
        .collect();
    for c in case.expect.tier_at.iter().flatten() {
        points.push((c.at.with_timezone(&Utc), 1, Point::Tier(c)));
    }
    points.sort_by_key(|p| (p.0, p.1));
    let mut last = case.at.with_timezone(&Utc);
    for (at, _, p) in points {
        last = last.max(at);
        match p {
            Point::Event(e) => {
                let name = e.name();
                if let Err(r) = t.apply(at, e) {
                    failures.push(format!("event `{name}` at {at} was refused: {r}"));
                    return failures;
                }
            }
            Point::Tier(c) => {
                t.advance_to(at);
                let tier = tier_of(rules, &case.issue, &t.state());
                if tier != c.tier {
                    failures.push(format!("tier at {}: expected {}, got {tier}", c.at, c.tier));
                }
            }
        }
    }
    if let Some(u) = case.until {
        t.advance_to(u.with_timezone(&Utc));
    } else {
        t.advance_to(last);
    }
    let e = &case.expect;
    let st = &t.state();
    if let Some(d) = &e.departments
        && *d != st.departments
    {
        failures.push(format!(
            "departments: expected {d:?}, got {:?}",
            st.departments
        ));
    }
    if let Some(s) = e.state
        && s != st.state
    {
        failures.push(format!(
            "state: expected {}, got {}",
            s.as_str(),
            st.state.as_str()
        ));
    }
    if let Some(p) = e.priority
        && Some(p) != st.priority
    {
        failures.push(format!(
            "priority: expected {}, got {}",
            p.as_str(),
            st.priority.map(Priority::as_str).unwrap_or("none")
        ));
    }
    if let Some(d) = &e.deadlines {
        for (what, want, got) in [
            ("acknowledge", d.acknowledge, st.acknowledge_by),
            ("resolve", d.resolve, st.resolve_by),
        ] {
            let Some(want) = want else { continue };
            if want.map(|w| w.with_timezone(&Utc)) != got {
                let show = |x: Option<DateTime<Utc>>, tz: Option<FixedOffset>| match (x, tz) {
                    (Some(x), Some(tz)) => x.with_timezone(&tz).to_rfc3339(),
                    (Some(x), None) => x.to_rfc3339(),
                    (None, _) => "none".into(),
                };
                let tz = want.map(|w| *w.offset()).or(Some(*case.at.offset()));
                failures.push(format!(
                    "{what} deadline: expected {}, got {}",
                    show(want.map(|w| w.with_timezone(&Utc)), tz),
                    show(got, tz)
                ));
            }
        }
    }
    if let Some(want) = &e.tier {
        let got = tier_of(rules, &case.issue, st);
        if *want != got {
            failures.push(format!("tier: expected {want}, got {got}"));
        }
    }
    if let Some(m) = &e.meetings
        && *m != st.meetings
    {
        failures.push(format!("meetings: expected {m:?}, got {:?}", st.meetings));
    }
    if let Some(want) = e.triage
        && want != st.triage
    {
        let why = t.triage_reason().unwrap_or_else(|| "no rule failed".into());
        failures.push(format!(
            "triage: expected {want}, got {} ({why})",
            st.triage
        ));
    }
    if let Some(ms) = &e.messages {
        let sent = t.messages();
        for m in ms {
            let found = sent.iter().any(|s| {
                s.to == m.to
                    && m.channel.is_none_or(|c| c == s.channel)
                    && m.template.as_ref().is_none_or(|x| *x == s.template)
                    && m.kind.as_ref().is_none_or(|k| *k == s.kind)
            });
            if !found {
                let to_them: Vec<String> = sent
                    .iter()
                    .filter(|s| *s.to == *m.to)
                    .map(|s| format!("{}/{}", s.template, s.channel.as_str()))
                    .collect();
                failures.push(format!(
                    "message to {} ({}{}): not sent; sent to them: {}",
                    m.to,
                    m.template.as_deref().unwrap_or("any template"),
                    m.channel
                        .map(|c| format!(", {}", c.as_str()))
                        .unwrap_or_default(),
                    if to_them.is_empty() {
                        "nothing".into()
                    } else {
                        to_them.join(", ")
                    }
                ));
            }
        }
    }
    failures
}
