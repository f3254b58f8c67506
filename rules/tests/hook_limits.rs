//! Hook limits and reproducible decisions: the operation limit stops a loop at the same point
//! on any machine and under any load, and sends the issue to triage; the wall clock, a last
//! resort, decides nothing (`Refusal::Overloaded`), and rule tests and `explain` say so.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Utc};
use escalade_rules::{Event, Issue, IssueState, Refusal, RuleSet};

mod common;

use common::copy_dir;

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mini");

/// A copy of the fixture whose hooks have a huge operation limit and a 1 ms wall clock, and a
/// meeting whose hook loops from noon on (local time): a report in the morning is decided,
/// a deadline passing at noon is not.
fn wall_clock_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rules");
    copy_dir(Path::new(MINI), &dir);
    let p = dir.join("policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text
        .replace(
            "  ladder: standard\n",
            "  ladder: standard\n  hook_limits: {max_operations: 1000000000000000, timeout_ms: 1}\n",
        )
        .replace(
            "meetings:\n",
            "meetings:
  - id: noon
    when: {hook: loops_from_noon}
    schedule: {working_days_later: 1, at: \"09:00\"}
    invite: [departments]
",
        );
    std::fs::write(&p, text).unwrap();
    let s = dir.join("scripts/hooks.rhai");
    let mut script = std::fs::read_to_string(&s).unwrap();
    script.push_str(
        "
fn loops_from_noon(issue) {
    if issue.hour >= 12 {
        loop { }
    }
    false
}
",
    );
    std::fs::write(&s, script).unwrap();
    (tmp, dir)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::<FixedOffset>::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&Utc)
}

fn issue(category: &str) -> Issue {
    Issue {
        id: "i-1".into(),
        category: category.into(),
        unit: "g1".into(),
        description: "x".into(),
        reporter: Some("p-g1".into()),
        ..Issue::default()
    }
}

#[test]
fn an_operation_limited_loop_goes_to_triage_with_the_same_error_under_any_load() {
    let rs = RuleSet::load(MINI).unwrap_or_else(|d| panic!("{d}"));
    let decide = || {
        rs.decide(
            &issue("spin"),
            &IssueState::default(),
            &Event::Reported,
            at("2026-03-02T10:00:00+08:00"),
        )
        .unwrap()
        .triage
        .expect("the issue goes to triage")
    };
    let alone = decide();
    assert_eq!(
        alone,
        "hook `endless` ran too long (operation limit: 100000 operations)"
    );
    // Eight at once on two cores: each hook gets a fraction of the machine, and stops at the
    // same operation with the same words.
    let together: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(decide)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(together.iter().all(|t| *t == alone), "{together:?}");
}

#[test]
fn a_hook_stopped_by_the_wall_clock_decides_nothing() {
    let (_t, dir) = wall_clock_copy();
    let rs = RuleSet::load(&dir).unwrap_or_else(|d| panic!("{d}"));
    let r = rs.decide(
        &issue("spin"),
        &IssueState::default(),
        &Event::Reported,
        at("2026-03-02T10:00:00+08:00"),
    );
    let Err(Refusal::Overloaded { hook, message }) = &r else {
        panic!("expected Overloaded, got {r:?}");
    };
    assert_eq!(hook, "endless");
    assert_eq!(
        message,
        "was stopped by the wall-clock limit (1 ms) before reaching its operation limit"
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        "hook `endless` was stopped by the wall-clock limit (1 ms) before reaching its operation limit: the machine is too busy to decide now; nothing changed, try again later"
    );

    // On a timer too: the report at 10:00 is decided, the deadline passing at noon is not.
    let i = issue("garbage");
    let first = rs
        .decide(
            &i,
            &IssueState::default(),
            &Event::Reported,
            at("2026-03-02T10:00:00+08:00"),
        )
        .unwrap();
    assert!(first.triage.is_none());
    let noon = rs.decide(
        &i,
        &first.next,
        &Event::DeadlinePassed {
            deadline: escalade_rules::DeadlineKind::Acknowledge,
        },
        at("2026-03-02T12:00:00+08:00"),
    );
    assert!(
        matches!(&noon, Err(Refusal::Overloaded { hook, .. }) if hook == "loops_from_noon"),
        "{noon:?}"
    );
}

#[test]
fn a_rule_test_whose_decision_the_wall_clock_stopped_fails_saying_so() {
    let (_t, dir) = wall_clock_copy();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("tests/t.yaml"),
        "cases:
  - name: decided before noon
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    until: 2026-03-02T11:59:00+08:00
    expect: {state: assigned}
  - name: the deadline at noon cannot be decided
    issue: {category: garbage, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    until: 2026-03-02T13:00:00+08:00
    expect: {state: assigned}
  - name: the report cannot be decided
    issue: {category: spin, unit: g1, description: bins}
    at: 2026-03-02T10:00:00+08:00
    expect: {triage: true}
",
    )
    .unwrap();
    let rs = RuleSet::load(&dir).unwrap();
    let r = escalade_rules::ruletest::run(&rs, &dir);
    let f: Vec<&Vec<String>> = r.cases.iter().map(|c| &c.failures).collect();
    assert!(f[0].is_empty(), "{f:?}");
    assert_eq!(
        *f[1],
        [
            "a decision could not be made: the deadline_passed timer at 2026-03-02T04:00:00+00:00 could not be decided: hook `loops_from_noon` was stopped by the wall-clock limit (1 ms) before reaching its operation limit: the machine is too busy to decide now; nothing changed, try again later"
        ]
    );
    assert!(
        f[2][0].starts_with("a decision could not be made: the report at 2026-03-02T02:00:00+00:00 could not be decided: hook `endless` was stopped by the wall-clock limit"),
        "{f:?}"
    );
    // No update mends a decision that was not made.
    assert!(r.cases[1].fixes.is_empty() && r.cases[2].fixes.is_empty());
    assert_eq!(r.failed(), 2);
}

#[test]
fn explain_stops_the_projection_where_a_decision_could_not_be_made() {
    let (_t, dir) = wall_clock_copy();
    let rs = RuleSet::load(&dir).unwrap();
    let x = rs
        .explain(&issue("garbage"), at("2026-03-02T10:00:00+08:00"))
        .unwrap();
    assert!(x.escalations.is_empty(), "{:?}", x.escalations);
    assert_eq!(x.cut.len(), 1, "{:?}", x.cut);
    assert!(
        x.cut[0].starts_with("stopped at 2026-03-02T12:00:00+08:00: the deadline_passed timer could not be decided: hook `loops_from_noon` was stopped by the wall-clock limit"),
        "{:?}",
        x.cut
    );
}
