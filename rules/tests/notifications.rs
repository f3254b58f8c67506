//! Message urgency, report rendering and the example organisation's notifications and jobs.

use chrono::{DateTime, FixedOffset, Utc};
use escalade_rules::jobs::{Named, OverdueDigestVars, OverdueIssue, ScorecardRow, ScorecardVars};
use escalade_rules::notify::{DigestItem, DigestVars};
use escalade_rules::{Channel, Event, Issue, IssueState, Report, RuleSet};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mini");
const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

fn at(s: &str) -> DateTime<Utc> {
    DateTime::<FixedOffset>::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&Utc)
}

fn issue(category: &str, text: &str) -> Issue {
    Issue {
        id: "i-1".into(),
        category: category.into(),
        unit: "g1".into(),
        description: text.into(),
        reporter: Some("p-g1".into()),
        ..Issue::default()
    }
}

#[test]
fn messages_of_urgent_issues_are_urgent() {
    let rs = RuleSet::load(MINI).unwrap_or_else(|d| panic!("{d}"));
    // The priority hook makes an explosion urgent.
    let d = rs
        .decide(
            &issue("noise", "an explosion"),
            &IssueState::default(),
            &Event::Reported,
            at("2026-03-01T10:00:00+08:00"),
        )
        .unwrap();
    assert!(!d.messages.is_empty());
    assert!(d.messages.iter().all(|m| m.urgent), "{:?}", d.messages);
    let d = rs
        .decide(
            &issue("garbage", "bins"),
            &IssueState::default(),
            &Event::Reported,
            at("2026-03-02T10:00:00+08:00"),
        )
        .unwrap();
    assert!(!d.messages.is_empty());
    assert!(d.messages.iter().all(|m| !m.urgent));
    // An urgent issue's later messages (a reminder timer) stay urgent.
    let urgent = Issue {
        priority: Some(escalade_rules::Priority::Urgent),
        ..issue("garbage", "bins")
    };
    let first = rs
        .decide(
            &urgent,
            &IssueState::default(),
            &Event::Reported,
            at("2026-03-02T10:00:00+08:00"),
        )
        .unwrap();
    let timer = first.timers.first().expect("a timer").clone();
    let later = rs
        .decide(&urgent, &first.next, &timer.event, timer.at)
        .unwrap();
    assert!(
        later.messages.iter().all(|m| m.urgent),
        "{:?}",
        later.messages
    );
}

#[test]
fn reports_render_from_typed_or_json_variables() {
    let rs = RuleSet::load(MINI).unwrap();
    let who = Named {
        id: "p-mayor".into(),
        name: "Mayor".into(),
    };
    let vars = OverdueDigestVars {
        recipient: who.clone(),
        unit: Named {
            id: "city".into(),
            name: "City".into(),
        },
        issues: vec![OverdueIssue {
            id: "I-7".into(),
            category_name: "Noise".into(),
            unit_name: "Grid One".into(),
            department_name: "Urban".into(),
            deadline_kind: "resolve".into(),
            deadline_at: "2026-03-02 17:00".into(),
            overdue_by: "1d 2h".into(),
        }],
        as_of: "2026-03-04 08:00".into(),
    };
    let r = rs
        .render_report("overdue_digest", "en", Channel::Email, &vars)
        .unwrap();
    assert_eq!(r.subject.as_deref(), Some("overdue City: 1"));
    assert!(
        r.body
            .contains("I-7 Noise Grid One Urban resolve 2026-03-02 17:00 1d 2h"),
        "{}",
        r.body
    );
    // The same as JSON.
    let json = serde_json::to_value(&vars).unwrap();
    assert_eq!(
        rs.render_report("overdue_digest", "zh-CN", Channel::Email, &json)
            .unwrap(),
        r
    );
    let card = ScorecardVars {
        recipient: who.clone(),
        rows: vec![ScorecardRow {
            department: "urban".into(),
            department_name: "Urban".into(),
            assigned: 3,
            acknowledged_on_time: 2,
            resolved_on_time: 1,
            reopened: 0,
            rated: 0,
            average_rating: None,
            score: None,
        }],
        ..ScorecardVars::default()
    };
    let r = rs
        .render_report("scorecard", "zh-CN", Channel::Email, &card)
        .unwrap();
    assert!(r.body.contains("urban Urban 3 2 1 0 0 None"), "{}", r.body);
    let digest = DigestVars {
        recipient: who,
        messages: vec![
            DigestItem {
                subject: "a".into(),
                body: "one".into(),
            },
            DigestItem {
                subject: "b".into(),
                body: "two".into(),
            },
        ],
    };
    let r = rs
        .render_report("digest", "zh-CN", Channel::Email, &digest)
        .unwrap();
    assert_eq!(r.subject.as_deref(), Some("2 messages for Mayor"));
    assert_eq!(r.body, "a: one\nb: two\n");
    // Not a report, no SMS variant, missing variables: errors, not panics.
    assert!(
        rs.render_report("assigned", "zh-CN", Channel::Email, &digest)
            .is_err()
    );
    assert!(
        rs.render_report("digest", "zh-CN", Channel::Sms, &digest)
            .is_err()
    );
    assert!(
        rs.render_report("scorecard", "zh-CN", Channel::Email, &serde_json::json!({}))
            .is_err()
    );
}

#[test]
fn the_example_city_has_notifications_and_jobs() {
    let rs = RuleSet::load(CITY).unwrap_or_else(|d| panic!("{d}"));
    let n = &rs.notifications;
    let q = n.quiet_hours.as_ref().expect("quiet hours");
    assert_eq!(q.tz, chrono_tz::Asia::Shanghai);
    // 23:00 Shanghai: a normal SMS waits until 07:00, an urgent one goes.
    let night = at("2026-03-02T23:00:00+08:00");
    assert_eq!(
        n.release(Channel::Sms, false, night),
        Some(at("2026-03-03T07:00:00+08:00"))
    );
    assert_eq!(n.release(Channel::Sms, true, night), None);
    assert_eq!(n.release(Channel::Email, false, night), None);
    assert!(n.digest.is_some());
    let digest = rs.job("overdue-digest").expect("overdue-digest");
    assert!(matches!(digest.report, Report::OverdueDigest { .. }));
    let runs: Vec<String> = digest
        .upcoming(at("2026-11-24T21:00:00+08:00"), 3)
        .iter()
        .map(|t| t.format("%Y-%m-%d %H:%M %:z").to_string())
        .collect();
    assert_eq!(
        runs,
        [
            "2026-11-25 08:00 +08:00",
            "2026-11-26 08:00 +08:00",
            "2026-11-27 08:00 +08:00"
        ]
    );
    let card = rs.job("weekly-scorecard").expect("weekly-scorecard");
    assert_eq!(
        card.report,
        Report::Scorecard {
            period: chrono::Duration::days(7)
        }
    );
    // Every report renders in both locales from sample-shaped data.
    for locale in ["zh-CN", "en"] {
        let r = rs
            .render_report(
                "scorecard",
                locale,
                Channel::Email,
                &ScorecardVars {
                    rows: vec![ScorecardRow {
                        average_rating: Some(4.25),
                        ..ScorecardRow::default()
                    }],
                    ..ScorecardVars::default()
                },
            )
            .unwrap();
        assert!(r.html.is_some(), "{locale}");
    }
}

#[test]
fn html_parts_escape_what_they_insert() {
    let rs = RuleSet::load(CITY).unwrap();
    let digest = DigestVars {
        recipient: Named {
            id: "p".into(),
            name: "A & B".into(),
        },
        messages: vec![DigestItem {
            subject: "<b>x</b>".into(),
            body: "<script>alert(1)</script>".into(),
        }],
    };
    let r = rs
        .render_report("digest", "en", Channel::Email, &digest)
        .unwrap();
    let html = r.html.unwrap();
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script>"),
        "{html}"
    );
    assert!(html.contains("A &amp; B"), "{html}");
    // The text parts are left as written.
    assert!(r.body.contains("<script>alert(1)</script>"));
    assert_eq!(r.subject.as_deref(), Some("[Digest] 1 notifications"));
}
