//! Rule tests (`tests/*.yaml` of a rule directory): messages that must not be sent, the time a
//! message is queued, bad input, and `--update`'s rewriting of failing expectations. Each test
//! writes a test file into a copy of `fixtures/mini`.

use std::path::{Path, PathBuf};

use escalade_rules::RuleSet;
use escalade_rules::ruletest::{self, FixTo, Report};

mod common;

use common::copy_dir;

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mini");

/// A copy of the fixture with `tests/t.yaml` holding `cases`.
fn with_tests(cases: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    copy_dir(Path::new(MINI), &dir);
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("tests/t.yaml"), cases).unwrap();
    (tmp, dir)
}

fn run(dir: &Path) -> Report {
    let rs = RuleSet::load(dir).unwrap_or_else(|d| panic!("{d}"));
    ruletest::run(&rs, dir)
}

/// The failures of each case, by name.
fn failures(r: &Report) -> Vec<(String, Vec<String>)> {
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r.cases
        .iter()
        .map(|c| (c.name.clone(), c.failures.clone()))
        .collect()
}

// Garbage at g1 on Monday 10:00 goes to urban (p-urban, email): acknowledge by 12:00, a
// reminder at 11:30, and at 12:00 the ladder's first step reminds the department (`overdue`).

#[test]
fn messages_absent_passes_when_nothing_matches_and_fails_naming_what_was_sent() {
    let (_t, dir) = with_tests(
        "cases:
  - name: garbage is none of the police's business
    issue: {category: garbage, unit: g1, description: bins, reporter: p-g1}
    at: 2026-03-02T10:00:00+08:00
    expect:
      messages_absent:
        - {to: p-police}
        - {to: p-urban, template: overdue}
        - {to: p-urban, template: assigned, channel: sms}
  - name: the department is told after all
    issue: {category: garbage, unit: g1, description: bins, reporter: p-g1}
    at: 2026-03-02T10:00:00+08:00
    until: 2026-03-02T12:30:00+08:00
    expect:
      messages_absent:
        - {to: p-police}
        - {to: p-urban, template: overdue}
",
    );
    let f = failures(&run(&dir));
    assert_eq!(f[0].1, Vec::<String>::new());
    assert_eq!(
        f[1].1,
        ["message to p-urban (overdue): expected not sent, but sent: overdue/email"]
    );
}

#[test]
fn a_message_expected_at_a_time_must_be_queued_then() {
    let (_t, dir) = with_tests(
        "cases:
  - name: assigned on the report, reminded at 11:30, overdue at 12:00
    issue: {category: garbage, unit: g1, description: bins, reporter: p-g1}
    at: 2026-03-02T10:00:00+08:00
    until: 2026-03-02T12:30:00+08:00
    expect:
      messages:
        - {to: p-urban, template: assigned, at: 2026-03-02T10:00:00+08:00}
        - {to: p-urban, template: reminder, at: 2026-03-02T03:30:00Z}
        - {to: p-urban, template: overdue, at: 2026-03-02T12:00:00+08:00}
      messages_absent:
        - {to: p-urban, template: overdue, at: 2026-03-02T11:30:00+08:00}
  - name: the reminder is expected too early
    issue: {category: garbage, unit: g1, description: bins, reporter: p-g1}
    at: 2026-03-02T10:00:00+08:00
    until: 2026-03-02T12:30:00+08:00
    expect:
      messages:
        - {to: p-urban, template: reminder, at: 2026-03-02T11:00:00+08:00}
      messages_absent:
        - {to: p-urban, template: overdue, at: 2026-03-02T12:00:00+08:00}
",
    );
    let f = failures(&run(&dir));
    assert_eq!(f[0].1, Vec::<String>::new());
    assert_eq!(
        f[1].1,
        [
            "message to p-urban (reminder) at 2026-03-02T11:00:00+08:00: not sent; sent to them: assigned/email at 2026-03-02T10:00:00+08:00, reminder/email at 2026-03-02T11:30:00+08:00, overdue/email at 2026-03-02T12:00:00+08:00",
            "message to p-urban (overdue) at 2026-03-02T12:00:00+08:00: expected not sent, but sent: overdue/email at 2026-03-02T12:00:00+08:00",
        ]
    );
}

#[test]
fn bad_message_expectations_are_diagnostics_at_file_line_and_column() {
    let (_t, dir) = with_tests(
        "cases:
  - name: a misspelt key
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    expect:
      messages_absent:
        - {to: p-urban, tempate: overdue}
",
    );
    let r = run(&dir);
    let e: Vec<String> = r.errors.iter().map(|d| d.to_string()).collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("tests/t.yaml:7:25: ")
            && e[0].contains("unknown field `tempate`")
            && e[0].ends_with("(did you mean `template`?)"),
        "{e:?}"
    );

    let (_t, dir) = with_tests(
        "cases:
  - name: a time without its offset
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    expect:
      messages:
        - {to: p-urban, at: 2026-03-02 10:00}
",
    );
    let r = run(&dir);
    let e: Vec<String> = r.errors.iter().map(|d| d.to_string()).collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("tests/t.yaml:7:29: ") && e[0].contains("at: "),
        "{e:?}"
    );
    assert!(r.cases.is_empty());
}

const WRONG_STATE: &str = "# Garbage at g1.
cases:
  - name: passes
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    expect:
      state: assigned
  - name: the state is wrong
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    expect:
      departments: [urban]   # the category's department
      state: acknowledged    # nobody acknowledged it
      deadlines: {acknowledge: 2026-03-02T12:00:00+08:00}
";

#[test]
fn an_update_rewrites_only_the_failing_expectation_and_the_case_then_passes() {
    let (_t, dir) = with_tests(WRONG_STATE);
    let r = run(&dir);
    assert_eq!(r.failed(), 1);
    let case = &r.cases[1];
    assert_eq!(
        case.failures,
        ["state: expected acknowledged, got assigned"]
    );
    assert_eq!(case.fixes.len(), 1);
    assert_eq!(case.fixes[0].path, "cases[1].expect.state");
    assert_eq!(case.fixes[0].to, FixTo::Scalar("assigned".into()));
    assert!(case.unfixable.is_empty());

    let w = ruletest::rewrite("tests/t.yaml", WRONG_STATE, &case.fixes);
    assert!(w.skipped.is_empty(), "{:?}", w.skipped);
    assert_eq!(
        w.text,
        WRONG_STATE.replace(
            "      state: acknowledged    # nobody",
            "      state: assigned    # nobody"
        )
    );
    assert_eq!(w.applied.len(), 1);
    let a = &w.applied[0];
    assert_eq!((a.line, a.column), (13, 14));
    assert_eq!(
        (a.old.as_str(), a.new.as_deref()),
        ("acknowledged", Some("assigned"))
    );
    std::fs::write(dir.join("tests/t.yaml"), &w.text).unwrap();
    let again = run(&dir);
    assert_eq!((again.passed(), again.failed()), (2, 0));
}

#[test]
fn an_update_keeps_each_value_in_its_form_and_removes_expectations_that_no_longer_hold() {
    let before = "cases:
  - name: everything is wrong
    issue: {category: garbage, unit: g1, description: bins, reporter: p-g1}
    at: 2026-03-02T10:00:00+08:00
    until: 2026-03-02T12:30:00+08:00
    expect:
      departments:          # block form stays block form
        - police
        - fire
      meetings: [joint]
      priority: \"high\"
      tier: street
      triage: true
      deadlines: {acknowledge: 2026-03-02T12:00:00+08:00, resolve: 2026-03-05T10:00:00+08:00}
      tier_at: [{at: 2026-03-02T11:00:00+08:00, tier: city}]
      messages:
        - {to: p-urban, template: assigned}
        - {to: p-police, template: assigned}   # never sent: goes
        - {to: p-urban, template: reminder, at: 2026-03-02T11:00:00+08:00}
      messages_absent: [{to: p-police}, {to: p-urban, template: overdue}]
";
    let (_t, dir) = with_tests(before);
    let r = run(&dir);
    let case = &r.cases[0];
    assert_eq!(
        case.failures.len(),
        case.fixes.len(),
        "{:#?}",
        case.failures
    );
    let w = ruletest::rewrite("tests/t.yaml", before, &case.fixes);
    assert!(w.skipped.is_empty(), "{:?}", w.skipped);
    let after = "cases:
  - name: everything is wrong
    issue: {category: garbage, unit: g1, description: bins, reporter: p-g1}
    at: 2026-03-02T10:00:00+08:00
    until: 2026-03-02T12:30:00+08:00
    expect:
      departments:          # block form stays block form
        - urban
      meetings: []
      priority: normal
      tier: grid
      triage: false
      deadlines: {acknowledge: 2026-03-02T14:00:00+08:00, resolve: 2026-03-03T10:00:00+08:00}
      tier_at: [{at: 2026-03-02T11:00:00+08:00, tier: grid}]
      messages:
        - {to: p-urban, template: assigned}
        - {to: p-urban, template: reminder, at: 2026-03-02T11:30:00+08:00}
      messages_absent: [{to: p-police}]
";
    assert_eq!(w.text, after);
    let removed: Vec<&str> = w
        .applied
        .iter()
        .filter(|a| a.new.is_none())
        .map(|a| a.old.as_str())
        .collect();
    assert_eq!(
        removed,
        [
            "{to: p-police, template: assigned}",
            "{to: p-urban, template: overdue}"
        ]
    );
    std::fs::write(dir.join("tests/t.yaml"), &w.text).unwrap();
    assert_eq!(run(&dir).failed(), 0);
}

#[test]
fn a_value_that_cannot_be_rewritten_in_place_is_skipped_with_its_position() {
    let before = "cases:
  - name: a folded state
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    expect:
      state: >-
        acknowledged
";
    let (_t, dir) = with_tests(before);
    let r = run(&dir);
    let w = ruletest::rewrite("tests/t.yaml", before, &r.cases[0].fixes);
    assert_eq!(w.text, before);
    assert!(w.applied.is_empty());
    let s: Vec<String> = w.skipped.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        s,
        [
            "tests/t.yaml:7:9: cannot update `cases[0].expect.state`: its value is not written in a form that can be rewritten in place (one line, plain or quoted)"
        ]
    );
}

#[test]
fn refusals_are_failures_no_update_can_mend() {
    let (_t, dir) = with_tests(
        "cases:
  - name: confirmed before it was resolved
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    events:
      - {at: 2026-03-02T11:00:00+08:00, event: confirmed}
    expect:
      state: closed
",
    );
    let r = run(&dir);
    let c = &r.cases[0];
    assert_eq!(c.failures.len(), 1);
    assert!(c.fixes.is_empty());
    assert!(
        c.unfixable[0].starts_with("event `confirmed` at 2026-03-02 03:00:00 UTC was refused"),
        "{:?}",
        c.unfixable
    );
}

#[test]
fn events_only_the_daemon_makes_are_refused_with_their_position() {
    let (_t, dir) = with_tests(
        "cases:
  - name: timers and the daemon's own events are not given
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    events:
      - {at: 2026-03-02T11:00:00+08:00, event: deadline_passed, deadline: acknowledge}
      - {at: 2026-03-02T11:00:00+08:00, event: sent_to_triage, reason: x}
",
    );
    let r = run(&dir);
    let e: Vec<String> = r.errors.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        e,
        [
            "tests/t.yaml:6:10: `deadline_passed` is not an event a test gives: timers fire on their own and the case reports the issue",
            "tests/t.yaml:7:10: `sent_to_triage` is not an event a test gives: the daemon sends it when new rules no longer know an open issue",
        ]
    );
    assert!(r.cases.is_empty());
}
