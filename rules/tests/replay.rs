//! Replay on the example city: issues lived through the rules and through edited copies of
//! them, and what the comparison and the summary say.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use escalade_rules::replay::{Action, Cause, Change, History, IssueReplay, Summary, replay_issue};
use escalade_rules::{DeadlineKind, Event, Issue, IssueState, Priority, RuleSet};

mod common;

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// The example city with `edits` applied: `(file, from, to)` replaces the first occurrence of
/// `from` (which must exist); an empty `from` appends `to`.
fn edited(edits: &[(&str, &str, &str)]) -> (tempfile::TempDir, RuleSet) {
    let (tmp, dir) = common::edited(CITY, edits);
    let rules = RuleSet::load(&dir).unwrap_or_else(|d| panic!("edited rules: {d:?}"));
    (tmp, rules)
}

fn city() -> RuleSet {
    RuleSet::load(CITY).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::<FixedOffset>::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&Utc)
}

/// What the API allows, as far as these tests need: a department acts only on issues assigned
/// to it; other actors are not checked.
fn departments_only(
    _: &RuleSet,
    actor: &str,
    _: &Issue,
    state: &IssueState,
    _: &Event,
) -> Option<String> {
    let dept = actor.strip_prefix("department:")?.split('#').next()?;
    (!state.departments.iter().any(|d| d == dept)).then(|| format!("{dept} does not hold it"))
}

fn action(seq: i64, when: &str, actor: &str, event: Event) -> Action {
    Action {
        seq,
        at: at(when),
        actor: actor.into(),
        event,
    }
}

/// Street vendors in g-0001 (Jinshui) on a Tuesday morning: route `vendors-office-hours`, urban
/// with market; acknowledged by urban, resolved, confirmed.
fn vendors() -> History {
    History {
        issue: Issue {
            id: "7".into(),
            category: "street_vendors".into(),
            unit: "g-0001".into(),
            description: "占道经营".into(),
            reporter: Some("p-g-0001".into()),
            ..Issue::default()
        },
        reported_at: at("2026-03-03T10:00:00+08:00"),
        actions: vec![
            action(
                2,
                "2026-03-03T11:00:00+08:00",
                "department:urban#3",
                Event::Acknowledged,
            ),
            action(
                5,
                "2026-03-05T16:00:00+08:00",
                "department:urban#3",
                Event::Resolved {
                    note: "清理".into(),
                    photos: Vec::new(),
                },
            ),
            action(
                6,
                "2026-03-06T09:00:00+08:00",
                "reporter:g-0001#9",
                Event::Confirmed,
            ),
        ],
    }
}

const HORIZON: &str = "2026-04-30T00:00:00+08:00";

fn replay(recorded: &RuleSet, candidate: &RuleSet, h: &History) -> IssueReplay {
    replay_issue(recorded, candidate, h, at(HORIZON), &departments_only).unwrap()
}

#[test]
fn the_same_behaviour_under_another_version_changes_nothing() {
    let rules = city();
    let (_tmp, commented) = edited(&[("routes.yaml", "", "\n# reviewed, unchanged\n")]);
    assert_ne!(rules.version, commented.version);
    let r = replay(&rules, &commented, &vendors());
    assert!(!r.changed(), "{r:?}");
    // Left to itself, an issue climbs the ladder: the same climb in both lives.
    let idle = History {
        actions: Vec::new(),
        ..vendors()
    };
    let r = replay(&rules, &commented, &idle);
    assert!(!r.changed(), "{r:?}");
}

#[test]
fn a_moved_route_changes_the_departments_and_diverges_where_the_old_department_acted() {
    let rules = city();
    let (_tmp, moved) = edited(&[(
        "routes.yaml",
        "      working: true\n    department: urban\n    co_assign: [market]",
        "      working: true\n    department: market",
    )]);
    let r = replay(&rules, &moved, &vendors());
    assert_eq!(
        r.changes.first(),
        Some(&Change::Route {
            before: vec!["urban".into(), "market".into()],
            after: vec!["market".into()],
        })
    );
    let d = r.diverged.as_ref().expect("urban acted on market's issue");
    assert_eq!(
        (d.seq, d.event, d.cause),
        (2, "acknowledged", Cause::Forbidden)
    );
    assert_eq!(d.departments, vec!["market".to_string()]);
    // Compared up to the divergence: urban's contacts were told in one life only, and nothing
    // after the acknowledgement (the resolution's message to the reporter) is compared.
    assert!(r.changes.iter().any(|c| matches!(c,
        Change::Messages { recipient, template, before, after: 0 }
            if recipient == "p-urban-li" && template == "assigned" && *before > 0)));
    assert!(!r.changes.iter().any(|c| matches!(c,
        Change::Messages { template, .. } if template == "resolved")));

    let mut s = Summary::default();
    s.add(&r);
    let lines: Vec<String> = s.groups().into_iter().map(|g| g.line).collect();
    assert!(
        lines.contains(
            &"route: 1 issue urban+market -> market (street_vendors in d-jinshui)".into()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"diverged: 1 issue at `acknowledged` by department:urban (department:urban may no longer act: the candidate gave them to market)".into()),
        "{lines:#?}"
    );
}

#[test]
fn a_longer_deadline_moves_the_deadline_and_the_steps_after_it() {
    let rules = city();
    let (_tmp, longer) = edited(&[(
        "categories.yaml",
        "low:    {acknowledge: 1d,",
        "low:    {acknowledge: 2d,",
    )]);
    let idle = History {
        actions: Vec::new(),
        ..vendors()
    };
    let r = replay(&rules, &longer, &idle);
    let Some(Change::Deadline {
        deadline,
        before: Some(b),
        after: Some(a),
        rule_before,
        rule_after,
    }) = r
        .changes
        .iter()
        .find(|c| matches!(c, Change::Deadline { .. }))
    else {
        panic!("no deadline change: {r:?}");
    };
    assert_eq!(*deadline, DeadlineKind::Acknowledge);
    assert!(a > b, "{a} is not after {b}");
    assert_eq!(rule_before.as_deref(), Some("1d on cn-office"));
    assert_eq!(rule_after.as_deref(), Some("2d on cn-office"));
    let Some(Change::Steps { before, after }) =
        r.changes.iter().find(|c| matches!(c, Change::Steps { .. }))
    else {
        panic!("no step change: {r:?}");
    };
    assert_eq!(before[0].trigger, "acknowledge_overdue");
    assert!(after[0].at > before[0].at);

    let mut s = Summary::default();
    s.add(&r);
    let line = s
        .groups()
        .into_iter()
        .find(|g| g.kind == "deadlines")
        .unwrap()
        .line;
    assert!(
        line.starts_with("deadlines: 1 issue acknowledge later by ")
            && line.ends_with("(1d on cn-office -> 2d on cn-office)"),
        "{line}"
    );
}

#[test]
fn a_ladder_that_no_longer_raises_reaches_fewer_tiers() {
    let rules = city();
    let (_tmp, flat) = edited(&[(
        "ladders.yaml",
        "          - raise: next\n          - notify: leader\n          - notify: departments",
        "          - notify: leader\n          - notify: departments",
    )]);
    // Acknowledged, never resolved: the resolve deadline passes and the ladder climbs.
    let h = History {
        actions: vec![vendors().actions[0].clone()],
        ..vendors()
    };
    let r = replay(&rules, &flat, &h);
    let Some(Change::Tiers { before, after }) =
        r.changes.iter().find(|c| matches!(c, Change::Tiers { .. }))
    else {
        panic!("no tier change: {r:?}");
    };
    assert!(after.is_empty());
    let reached: Vec<&str> = before.iter().map(|t| t.tier.as_str()).collect();
    assert_eq!(reached, ["community", "street", "district", "city"]);
    assert!(before.windows(2).all(|w| w[0].at < w[1].at));

    let mut s = Summary::default();
    s.add(&r);
    let lines: Vec<String> = s.groups().into_iter().map(|g| g.line).collect();
    for tier in ["community", "street", "district", "city"] {
        let want = format!("escalations: 1 fewer reached the {tier}");
        assert!(lines.contains(&want), "{want:?} not in {lines:#?}");
    }
}

#[test]
fn an_outcome_of_a_meeting_the_candidate_never_convened_diverges_as_refused() {
    let rules = city();
    let (_tmp, fewer) = edited(&[(
        "routes.yaml",
        "    department: emergency\n    co_assign: [fire, housing]",
        "    department: emergency\n    co_assign: [fire]",
    )]);
    let h = History {
        issue: Issue {
            id: "8".into(),
            category: "garbage".into(),
            unit: "g-0001".into(),
            description: "垃圾站爆炸".into(),
            priority: Some(Priority::Urgent),
            ..Issue::default()
        },
        reported_at: at("2026-03-03T10:00:00+08:00"),
        actions: vec![
            action(
                2,
                "2026-03-03T10:10:00+08:00",
                "department:emergency#4",
                Event::Acknowledged,
            ),
            action(
                9,
                "2026-03-04T10:00:00+08:00",
                "admin#1",
                Event::MeetingOutcome {
                    meeting: "joint".into(),
                    outcome: escalade_rules::Outcome::Noted,
                    departments: Vec::new(),
                    resolve: None,
                },
            ),
        ],
    };
    let r = replay(&rules, &fewer, &h);
    let d = r.diverged.as_ref().expect("the outcome is refused");
    assert_eq!((d.seq, d.cause), (9, Cause::Refused));
    assert!(d.reason.contains("was not convened"), "{}", d.reason);
    assert!(r.changes.iter().any(|c| matches!(c,
        Change::Meetings { before, after } if before.len() == 1 && after.is_empty())));
}

#[test]
fn a_report_the_candidate_refuses_is_shown_refused() {
    let rules = city();
    let (_tmp, fewer) = edited(&[(
        "categories.yaml",
        "  - code: graffiti\n    names: {zh: 乱涂乱画, en: Graffiti}\n    department: urban\n    priority: low\n",
        "",
    )]);
    let h = History {
        issue: Issue {
            category: "graffiti".into(),
            ..vendors().issue
        },
        ..vendors()
    };
    let r = replay(&rules, &fewer, &h);
    assert!(r.changed());
    assert!(
        r.refused
            .as_deref()
            .unwrap()
            .contains("unknown category `graffiti`")
    );
    let mut s = Summary::default();
    s.add(&r);
    assert_eq!(
        s.groups()[0].line,
        "refused: 1 issue the candidate refuses at report: category: unknown category `graffiti`"
    );
}

#[test]
fn actions_neither_life_takes_are_passed_over() {
    let rules = city();
    let (_tmp, commented) = edited(&[("routes.yaml", "", "\n# reviewed\n")]);
    let mut h = vendors();
    // A confirmation before anything was resolved: both lives refuse it.
    h.actions.insert(
        1,
        action(
            3,
            "2026-03-03T12:00:00+08:00",
            "reporter:g-0001#9",
            Event::Confirmed,
        ),
    );
    let r = replay(&rules, &commented, &h);
    assert!(!r.changed(), "{r:?}");
}

#[test]
fn the_recorded_rules_refusing_the_report_is_a_reason_to_skip() {
    let (_tmp, commented) = edited(&[("routes.yaml", "", "\n# reviewed\n")]);
    let mut h = vendors();
    h.issue.unit = "g-9999".into();
    let err = replay_issue(&city(), &commented, &h, at(HORIZON), &departments_only).unwrap_err();
    assert!(
        err.contains("its recorded rules refuse its report") && err.contains("g-9999"),
        "{err}"
    );
}

#[test]
fn summaries_merge_to_the_same_groups_in_any_order() {
    let rules = city();
    let (_tmp, moved) = edited(&[(
        "routes.yaml",
        "      working: true\n    department: urban\n    co_assign: [market]",
        "      working: true\n    department: market",
    )]);
    // Three vendors' issues a day apart, one in Erqi; and an idle noise issue nothing changes.
    let mut replays = Vec::new();
    for (i, unit) in ["g-0001", "g-0002", "g-0300"].iter().enumerate() {
        let mut h = vendors();
        h.issue.unit = unit.to_string();
        h.reported_at += Duration::days(i as i64);
        for a in &mut h.actions {
            a.at += Duration::days(i as i64);
        }
        replays.push(replay(&rules, &moved, &h));
    }
    let noise = History {
        issue: Issue {
            category: "noise".into(),
            ..vendors().issue
        },
        actions: Vec::new(),
        ..vendors()
    };
    let quiet = replay(&rules, &moved, &noise);
    assert!(!quiet.changed(), "{quiet:?}");
    replays.push(quiet);

    let mut whole = Summary::default();
    for r in &replays {
        whole.add(r);
    }
    let mut a = Summary::default();
    a.add(&replays[2]);
    a.add(&replays[3]);
    let mut b = Summary::default();
    b.add(&replays[1]);
    b.add(&replays[0]);
    b.merge(a);
    assert_eq!(whole.groups(), b.groups());

    let area = rules.org.unit("g-0300").unwrap();
    let district = rules
        .org
        .unit_at_tier(area, rules.org.tier("district").unwrap())
        .unwrap();
    let district = &rules.org.units[district as usize].id;
    let route = whole
        .groups()
        .into_iter()
        .find(|g| g.kind == "route")
        .unwrap();
    assert_eq!(route.issues, 3);
    if district == "d-jinshui" {
        assert_eq!(
            route.line,
            "route: 3 issues urban+market -> market (street_vendors in d-jinshui)"
        );
    } else {
        assert_eq!(
            route.line,
            format!(
                "route: 3 issues urban+market -> market (street_vendors in d-jinshui 2, {district} 1)"
            )
        );
    }
    assert_eq!(route.detail["areas"]["d-jinshui"], 2);
}
