//! The decision function on the small fixture: routing, deadlines, hooks failing safely,
//! escalation tier by tier, meetings, refusals, messages.

use chrono::{DateTime, FixedOffset, Utc};
use escalade_rules::issue::Outcome;
use escalade_rules::{DeadlineKind, Event, Issue, IssueState, Refusal, RuleSet, State, Timeline};

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mini");

fn rules() -> RuleSet {
    RuleSet::load(MINI).unwrap_or_else(|d| panic!("{d}"))
}

/// The fixture's rules with each file passed through `edit(path, text)`, loaded from memory.
fn mini_with(edit: impl Fn(&str, &str) -> String) -> RuleSet {
    let files = rules()
        .files
        .iter()
        .map(|(path, text)| (path.clone(), edit(path, text).into()))
        .collect();
    RuleSet::load_files(&files).unwrap_or_else(|d| panic!("{d}"))
}

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

fn report(rs: &RuleSet, i: &Issue, when: &str) -> escalade_rules::Decision {
    rs.decide(i, &IssueState::default(), &Event::Reported, at(when))
        .unwrap()
}

#[test]
fn noise_routes_by_time_of_day_through_the_hook() {
    let rs = rules();
    let night = report(
        &rs,
        &issue("noise", "loud music"),
        "2026-03-02T23:10:00+08:00",
    );
    assert_eq!(night.next.departments, ["police"]);
    assert!(
        night
            .trace
            .iter()
            .any(|t| t.contains("route `night-noise` matched"))
    );
    let day = report(
        &rs,
        &issue("noise", "loud music"),
        "2026-03-02T10:00:00+08:00",
    );
    assert_eq!(day.next.departments, ["urban"]);
    assert!(day.trace.iter().any(|t| t.contains("no route matched")));
}

#[test]
fn words_in_the_text_route_and_co_assign() {
    let rs = rules();
    let d = report(
        &rs,
        &issue("garbage", "A FIGHT over bins"),
        "2026-03-02T10:00:00+08:00",
    );
    assert_eq!(d.next.departments, ["police", "urban"]);
    let to: Vec<&str> = d.messages.iter().map(|m| &*m.to).collect();
    assert!(
        to.contains(&"p-police") && to.contains(&"p-urban"),
        "{to:?}"
    );
}

#[test]
fn deadlines_count_working_time() {
    let rs = rules();
    // Monday 10:00, office 09-12 and 13-17 (7 h a day): acknowledge 2h -> 12:00 (the lunch
    // break is not counted, so it ends at the close of the morning span); resolve 2d (14 h) ->
    // Mon 2 h + 4 h, Tue 7 h, Wed 1 h -> Wed 10:00, the same position two working days later.
    let d = report(&rs, &issue("noise", "drums"), "2026-03-02T10:00:00+08:00");
    assert_eq!(d.next.acknowledge_by, Some(at("2026-03-02T12:00:00+08:00")));
    assert_eq!(d.next.resolve_by, Some(at("2026-03-04T10:00:00+08:00")));
    // Timers: a reminder 30 working minutes before each deadline, and the deadlines.
    let timers: Vec<(DateTime<Utc>, &Event)> = d.timers.iter().map(|t| (t.at, &t.event)).collect();
    assert_eq!(
        timers,
        vec![
            (
                at("2026-03-02T11:30:00+08:00"),
                &Event::ReminderDue {
                    deadline: DeadlineKind::Acknowledge
                }
            ),
            (
                at("2026-03-02T12:00:00+08:00"),
                &Event::DeadlinePassed {
                    deadline: DeadlineKind::Acknowledge
                }
            ),
            (
                at("2026-03-04T09:30:00+08:00"),
                &Event::ReminderDue {
                    deadline: DeadlineKind::Resolve
                }
            ),
            (
                at("2026-03-04T10:00:00+08:00"),
                &Event::DeadlinePassed {
                    deadline: DeadlineKind::Resolve
                }
            ),
        ]
    );
}

#[test]
fn national_day_is_skipped_and_the_makeup_saturday_counts() {
    let rs = rules();
    // Wed 30 Sep 16:00: ack 2h -> 1 h on Sep 30, holidays 1-7 Oct, weekend 8-9 Oct? No: 8 Oct is
    // a Thursday and a working day; so ack -> Thu 8 Oct 10:00.
    let d = report(&rs, &issue("garbage", "bins"), "2026-09-30T16:00:00+08:00");
    assert_eq!(d.next.acknowledge_by, Some(at("2026-10-08T10:00:00+08:00")));
    // Garbage resolves in 1d (7 h): 1 h on Sep 30, 6 h on Oct 8 -> Oct 8 16:00.
    assert_eq!(d.next.resolve_by, Some(at("2026-10-08T16:00:00+08:00")));
    // Fri 9 Oct 16:00 + 2h: 1 h Friday, then Saturday 10 Oct is a make-up working day.
    let d = report(&rs, &issue("noise", "drums"), "2026-10-09T16:00:00+08:00");
    assert_eq!(d.next.acknowledge_by, Some(at("2026-10-10T10:00:00+08:00")));
}

#[test]
fn an_urgent_issue_counts_on_the_round_the_clock_calendar() {
    let rs = rules();
    // Sunday: the priority hook makes it urgent, and urgent deadlines use `always`.
    let d = report(
        &rs,
        &issue("noise", "an explosion"),
        "2026-03-01T10:00:00+08:00",
    );
    assert_eq!(d.next.priority, Some(escalade_rules::Priority::Urgent));
    assert_eq!(d.next.acknowledge_by, Some(at("2026-03-01T10:30:00+08:00")));
    assert_eq!(d.next.resolve_by, Some(at("2026-03-01T14:00:00+08:00")));
}

#[test]
fn a_looping_hook_fails_its_decision_alone_and_the_issue_goes_to_triage() {
    let rs = rules();
    let started = std::time::Instant::now();
    let d = report(&rs, &issue("spin", "x"), "2026-03-02T10:00:00+08:00");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(d.next.departments, ["triage"]);
    assert!(d.next.triage);
    assert_eq!(d.next.state, State::Assigned);
    let why = d.triage.unwrap();
    assert!(why.contains("hook `endless` ran too long"), "{why}");
    assert!(
        d.messages
            .iter()
            .all(|m| &*m.to == "p-triage" && m.kind == "triage")
    );
    assert!(d.timers.is_empty());
    // The same rule set keeps working for the next issue.
    let ok = report(&rs, &issue("garbage", "bins"), "2026-03-02T10:00:00+08:00");
    assert_eq!(ok.next.departments, ["urban"]);
}

#[test]
fn a_hook_that_grows_a_huge_string_is_cut_off() {
    let rs = rules();
    let d = report(&rs, &issue("big", "x"), "2026-03-02T10:00:00+08:00");
    let why = d.triage.unwrap();
    assert!(why.contains("hook `grows`"), "{why}");
}

#[test]
fn a_hook_returning_nonsense_is_refused() {
    let rs = rules();
    let d = report(&rs, &issue("odd", "x"), "2026-03-02T10:00:00+08:00");
    let why = d.triage.unwrap();
    assert!(why.contains("not a positive duration"), "{why}");
    // Triage can hand it to a real department; deadlines then run from the hand-over.
    let s = d.next.clone();
    let r = rs
        .decide(
            &issue("odd", "x"),
            &s,
            &Event::Reassigned {
                department: "urban".into(),
            },
            at("2026-03-02T11:00:00+08:00"),
        )
        .unwrap();
    assert!(!r.next.triage);
    assert_eq!(r.next.departments, ["urban"]);
    assert_eq!(r.next.acknowledge_by, Some(at("2026-03-02T14:00:00+08:00")));
}

#[test]
fn unresolved_issues_climb_tier_by_tier_to_the_top() {
    let rs = rules();
    let mut t = Timeline::report(
        &rs,
        issue("garbage", "bins"),
        at("2026-03-02T10:00:00+08:00"),
    )
    .unwrap();
    t.apply(at("2026-03-02T10:30:00+08:00"), Event::Acknowledged)
        .unwrap();
    assert_eq!(t.tier(), "grid");
    // Resolve due Tue 10:00; at each passing the tier rises and the deadline extends by 1d.
    t.advance_to(at("2026-03-03T10:00:00+08:00"));
    assert_eq!(t.tier(), "street");
    t.advance_to(at("2026-03-04T10:00:00+08:00"));
    assert_eq!(t.tier(), "city");
    t.advance_to(at("2026-03-20T10:00:00+08:00"));
    assert_eq!(t.tier(), "city");
    let notified: Vec<&str> = t
        .log
        .iter()
        .flat_map(|e| e.decision.messages.iter())
        .filter(|m| m.kind == "escalated")
        .map(|m| &*m.to)
        .collect();
    assert!(
        notified.starts_with(&["p-s1", "p-mayor", "p-mayor"]),
        "{notified:?}"
    );
}

#[test]
fn rejection_reopens_supervises_and_convenes_a_meeting() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let mut t = Timeline::report(&rs, i, at("2026-03-02T10:00:00+08:00")).unwrap();
    t.apply(at("2026-03-02T10:30:00+08:00"), Event::Acknowledged)
        .unwrap();
    t.apply(
        at("2026-03-02T15:00:00+08:00"),
        Event::Resolved {
            note: "swept".into(),
            photos: Vec::new(),
        },
    )
    .unwrap();
    let d = t
        .apply(
            at("2026-03-02T16:00:00+08:00"),
            Event::Rejected {
                reason: "still there".into(),
            },
        )
        .unwrap()
        .clone();
    assert_eq!(d.next.state, State::InProgress);
    assert_eq!(d.next.counts.rejected, 1);
    assert_eq!(d.supervision.len(), 1);
    assert_eq!(d.supervision[0].leader.as_deref(), Some("p-s1"));
    assert_eq!(d.meetings.len(), 1);
    assert_eq!(d.meetings[0].at, at("2026-03-03T09:00:00+08:00"));
    assert!(d.meetings[0].participants.contains(&"p-urban".to_string()));
    // The meeting orders joint enforcement by police with its own deadline.
    let e = t
        .apply(
            at("2026-03-03T10:00:00+08:00"),
            Event::MeetingOutcome {
                meeting: "joint".into(),
                outcome: Outcome::Enforcement,
                departments: vec!["police".into()],
                resolve: Some(escalade_rules::WorkDuration::parse("4h").unwrap()),
            },
        )
        .unwrap()
        .clone();
    let enf = e.enforcement.unwrap();
    assert_eq!(enf.departments, ["police"]);
    assert_eq!(e.next.departments, ["urban", "police"]);
    assert_eq!(enf.resolve_by, at("2026-03-03T15:00:00+08:00"));
}

#[test]
fn an_action_the_state_forbids_is_refused_with_the_allowed_ones() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let d = report(&rs, &i, "2026-03-02T10:00:00+08:00");
    let err = rs
        .decide(
            &i,
            &d.next,
            &Event::Confirmed,
            at("2026-03-02T11:00:00+08:00"),
        )
        .unwrap_err();
    match err {
        Refusal::NotAllowed { state, allowed, .. } => {
            assert_eq!(state, "assigned");
            assert!(
                allowed.contains(&"acknowledged") && allowed.contains(&"closed_at_grid"),
                "{allowed:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_category_unit_or_reporter_is_refused() {
    let rs = rules();
    for (field, i) in [
        (
            "category",
            Issue {
                category: "nope".into(),
                ..issue("noise", "x")
            },
        ),
        (
            "unit",
            Issue {
                unit: "g9".into(),
                ..issue("noise", "x")
            },
        ),
        (
            "reporter",
            Issue {
                reporter: Some("p-x".into()),
                ..issue("noise", "x")
            },
        ),
    ] {
        match rs.decide(
            &i,
            &IssueState::default(),
            &Event::Reported,
            at("2026-03-02T10:00:00+08:00"),
        ) {
            Err(Refusal::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn closed_at_grid_clears_everything() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let d = report(&rs, &i, "2026-03-02T10:00:00+08:00");
    let c = rs
        .decide(
            &i,
            &d.next,
            &Event::ClosedAtGrid {
                note: "done".into(),
            },
            at("2026-03-02T10:05:00+08:00"),
        )
        .unwrap();
    assert_eq!(c.next.state, State::ClosedAtGrid);
    assert!(c.timers.is_empty());
    assert_eq!(c.next.acknowledge_by, None);
}

#[test]
fn a_stale_timer_is_ignored() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let d = report(&rs, &i, "2026-03-02T10:00:00+08:00");
    let a = rs
        .decide(
            &i,
            &d.next,
            &Event::Acknowledged,
            at("2026-03-02T10:10:00+08:00"),
        )
        .unwrap();
    let late = rs
        .decide(
            &i,
            &a.next,
            &Event::DeadlinePassed {
                deadline: DeadlineKind::Acknowledge,
            },
            at("2026-03-02T12:00:00+08:00"),
        )
        .unwrap();
    assert_eq!(late.next, a.next);
    assert!(late.messages.is_empty());
}

#[test]
fn decisions_are_pure() {
    let rs = rules();
    let i = issue("noise", "a fight at night");
    let a = report(&rs, &i, "2026-03-02T23:00:00+08:00");
    let b = report(&rs, &i, "2026-03-02T23:00:00+08:00");
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(a.rules_version, rs.version);
}

#[test]
fn messages_render_in_the_recipients_locale() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let mut t = Timeline::report(&rs, i.clone(), at("2026-03-02T10:00:00+08:00")).unwrap();
    t.advance_to(at("2026-03-04T10:00:00+08:00"));
    let esc = t
        .log
        .iter()
        .flat_map(|e| e.decision.messages.iter().map(move |m| (e, m)))
        .find(|(_, m)| &*m.to == "p-s1")
        .unwrap();
    // p-s1 reads English and has email only.
    assert_eq!(&*esc.1.locale, "en");
    let r = rs.render(&i, &esc.0.decision.next, esc.1).unwrap();
    assert_eq!(r.body, "Dear Street One");
    let assigned = &t.log[0].decision.messages[0];
    let r = rs.render(&i, &t.log[0].decision.next, assigned).unwrap();
    assert_eq!(r.subject.as_deref(), Some("assigned i-1"));
    assert_eq!(r.body, "Urban Desk: 垃圾 @ 一网格");
}

/// A message to a department names it; the daemon's links render only where it passes them.
#[test]
fn a_departments_message_names_it_and_renders_the_link_it_is_given() {
    let with_link = |text: &str, var: &str| {
        text.replacen(
            r#"email: {subject: "assigned {{ issue.id }}", body: "{{ recipient.name }}: {{ issue.category_name }} @ {{ issue.unit_name }}"}"#,
            &format!(
                r#"email: {{subject: "assigned {{{{ issue.id }}}}", body: "{{{{ recipient.name }}}}{{% if {var} %}} {{{{ {var} }}}}{{% endif %}}"}}"#
            ),
            1,
        )
    };
    let rs = mini_with(|_, text| with_link(text, "links.acknowledge"));
    let i = issue("garbage", "bins");
    let d = report(&rs, &i, "2026-03-02T10:00:00+08:00");
    let m = d
        .messages
        .iter()
        .find(|m| m.kind == "assigned" && &*m.to == "p-urban")
        .expect("an assigned email to urban's contact");
    assert_eq!(m.vars.department.as_deref(), Some("urban"));
    assert_eq!(
        m.vars.deadline,
        Some((DeadlineKind::Acknowledge, d.next.acknowledge_by.unwrap()))
    );
    // Without links (rule tests, explain) the template says nothing of one.
    assert_eq!(rs.render(&i, &d.next, m).unwrap().body, "Urban Desk");
    let links = escalade_rules::Links {
        acknowledge: Some("https://escalade.example.org/ack/t0k".into()),
    };
    assert_eq!(
        rs.render_with(&i, &d.next, m, &links).unwrap().body,
        "Urban Desk https://escalade.example.org/ack/t0k"
    );
    // A misspelt field of `links` is refused at load, naming it.
    let files = rules()
        .files
        .iter()
        .map(|(path, text)| (path.clone(), with_link(text, "links.acknowlege").into()))
        .collect();
    let e = RuleSet::load_files(&files).unwrap_err().to_string();
    assert!(e.contains("links.acknowlege"), "{e}");
}

#[test]
fn evaluation_happens_once_with_a_rating_from_1_to_5() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let d = report(&rs, &i, "2026-03-02T10:00:00+08:00");
    let r = rs
        .decide(
            &i,
            &d.next,
            &Event::Resolved {
                note: String::new(),
                photos: Vec::new(),
            },
            at("2026-03-02T11:00:00+08:00"),
        )
        .unwrap();
    let bad = rs.decide(
        &i,
        &r.next,
        &Event::Evaluated {
            rating: 6,
            comment: String::new(),
        },
        at("2026-03-02T12:00:00+08:00"),
    );
    assert!(matches!(
        bad,
        Err(Refusal::Invalid {
            field: "rating",
            ..
        })
    ));
    let e = rs
        .decide(
            &i,
            &r.next,
            &Event::Evaluated {
                rating: 4,
                comment: "ok".into(),
            },
            at("2026-03-02T12:00:00+08:00"),
        )
        .unwrap();
    assert_eq!(e.next.rating, Some(4));
    let again = rs.decide(
        &i,
        &e.next,
        &Event::Evaluated {
            rating: 5,
            comment: String::new(),
        },
        at("2026-03-02T13:00:00+08:00"),
    );
    assert!(matches!(
        again,
        Err(Refusal::Invalid {
            field: "rating",
            ..
        })
    ));
}

#[test]
fn a_comment_is_taken_in_any_state_and_changes_nothing_but_the_trace() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let d = report(&rs, &i, "2026-03-02T10:00:00+08:00");
    let c = rs
        .decide(
            &i,
            &d.next,
            &Event::Commented {
                text: "the bins are behind the school".into(),
            },
            at("2026-03-02T10:30:00+08:00"),
        )
        .unwrap();
    assert_eq!(c.next, d.next);
    assert_eq!(c.timers, d.timers);
    assert!(c.messages.is_empty());
    assert_eq!(c.trace, vec!["comment added".to_string()]);
    let closed = rs
        .decide(
            &i,
            &d.next,
            &Event::ClosedAtGrid {
                note: "cleared".into(),
            },
            at("2026-03-02T10:40:00+08:00"),
        )
        .unwrap();
    assert!(
        rs.decide(
            &i,
            &closed.next,
            &Event::Commented {
                text: "thanks".into()
            },
            at("2026-03-02T11:00:00+08:00"),
        )
        .is_ok()
    );
    for text in ["", "   ", &"x".repeat(4001)] {
        let bad = rs.decide(
            &i,
            &d.next,
            &Event::Commented { text: text.into() },
            at("2026-03-02T10:30:00+08:00"),
        );
        assert!(
            matches!(bad, Err(Refusal::Invalid { field: "text", .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn contains_any_finds_a_word_of_the_list() {
    use escalade_rules::script::{map, string};
    let rs = rules();
    let call = |text: &str| {
        rs.scripts
            .call("mentions_fire", map([("description", string(text))]))
            .unwrap()
            .as_bool()
            .unwrap()
    };
    assert!(call("thick smoke on the stairs"));
    assert!(call("a fire"));
    assert!(!call("a quiet street"));
    // Items that are not strings never match and do not fail the hook.
    assert!(!call("42"));
}

#[test]
fn a_late_reminder_keeps_the_deadline_timer_and_a_handled_deadline_does_not_fire_twice() {
    let rs = rules();
    let i = issue("garbage", "bins");
    let d = report(&rs, &i, "2026-03-02T10:00:00+08:00");
    // The daemon was down through the reminder (11:30) and the deadline (12:00): the reminder
    // fires late, at 12:30, and the deadline's timer must survive it.
    let late = rs
        .decide(
            &i,
            &d.next,
            &Event::ReminderDue {
                deadline: DeadlineKind::Acknowledge,
            },
            at("2026-03-02T12:30:00+08:00"),
        )
        .unwrap();
    assert!(late.timers.iter().any(|t| t.event
        == Event::DeadlinePassed {
            deadline: DeadlineKind::Acknowledge
        }));
    let passed = rs
        .decide(
            &i,
            &late.next,
            &Event::DeadlinePassed {
                deadline: DeadlineKind::Acknowledge,
            },
            at("2026-03-02T12:30:00+08:00"),
        )
        .unwrap();
    assert_eq!(passed.next.counts.acknowledge_overdue, 1);
    // The ladder extended it by 1h of working time: the lunch break 12:00-13:00 is skipped.
    assert_eq!(
        passed.next.acknowledge_by,
        Some(at("2026-03-02T14:00:00+08:00"))
    );
    assert!(
        passed.next.passed.is_empty(),
        "a new deadline has not passed"
    );
    // A deadline whose passing was handled (and not extended) neither fires twice nor gets its
    // timer back.
    let mut handled = passed.next.clone();
    handled.acknowledge_by = Some(at("2026-03-02T12:00:00+08:00"));
    handled.passed.push(DeadlineKind::Acknowledge);
    let again = rs
        .decide(
            &i,
            &handled,
            &Event::DeadlinePassed {
                deadline: DeadlineKind::Acknowledge,
            },
            at("2026-03-02T12:31:00+08:00"),
        )
        .unwrap();
    assert_eq!(again.next, handled);
    assert!(!again.timers.iter().any(|t| t.event
        == Event::DeadlinePassed {
            deadline: DeadlineKind::Acknowledge
        }));
}

/// `raise: street` on an issue already at the street tier leaves it there: the tier rises to
/// the one named, never past it.
#[test]
fn raising_to_a_tier_never_goes_past_it() {
    let rs = mini_with(|path, text| match path {
        "policy.yaml" => {
            let old = "actions: [{raise: next}, {notify: leader}, {extend: 1d}]";
            assert!(text.contains(old));
            text.replace(
                old,
                "actions: [{raise: street}, {notify: leader}, {extend: 1d}]",
            )
        }
        _ => text.to_string(),
    });
    let mut t = Timeline::report(
        &rs,
        issue("garbage", "bins"),
        at("2026-03-02T10:00:00+08:00"),
    )
    .unwrap();
    t.apply(at("2026-03-02T10:30:00+08:00"), Event::Acknowledged)
        .unwrap();
    t.advance_to(at("2026-03-03T10:00:00+08:00"));
    assert_eq!(t.tier(), "street");
    // The step repeats at each passing; the issue stays at the street.
    t.advance_to(at("2026-03-10T10:00:00+08:00"));
    assert_eq!(t.tier(), "street");
    let last = t
        .log
        .iter()
        .rev()
        .find(|e| e.event.name() == "deadline_passed")
        .unwrap();
    assert!(
        last.decision
            .trace
            .iter()
            .any(|l| l.contains("tier stays street")),
        "{:?}",
        last.decision.trace
    );
}

/// A progress note must say something and a rejection must say why: refused, naming the field,
/// changing nothing.
#[test]
fn a_blank_progress_note_or_rejection_reason_is_refused() {
    let rs = rules();
    let mut t = Timeline::report(
        &rs,
        issue("garbage", "bins"),
        at("2026-03-02T10:00:00+08:00"),
    )
    .unwrap();
    t.apply(at("2026-03-02T10:30:00+08:00"), Event::Acknowledged)
        .unwrap();
    let before = t.state.clone();
    for (event, field) in [
        (Event::Progress { note: "   ".into() }, "note"),
        (
            Event::Progress {
                note: "x".repeat(5000),
            },
            "note",
        ),
    ] {
        match rs.decide(&t.issue, &t.state, &event, at("2026-03-02T11:00:00+08:00")) {
            Err(Refusal::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(t.state, before);
    t.apply(
        at("2026-03-02T15:00:00+08:00"),
        Event::Resolved {
            note: String::new(),
            photos: Vec::new(),
        },
    )
    .unwrap();
    match rs.decide(
        &t.issue,
        &t.state,
        &Event::Rejected {
            reason: String::new(),
        },
        at("2026-03-02T16:00:00+08:00"),
    ) {
        Err(Refusal::Invalid { field, message }) => {
            assert_eq!(field, "reason");
            assert!(message.contains("why"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// Overdue is a fact: an issue whose resolve deadline passed stays overdue while the ladder
/// extends the next escalation, until it is resolved; a missed acknowledgement until it is
/// acknowledged.
#[test]
fn a_missed_deadline_stays_overdue_until_the_issue_catches_up() {
    let rs = rules();
    let mut t = Timeline::report(
        &rs,
        issue("garbage", "bins"),
        at("2026-03-02T10:00:00+08:00"),
    )
    .unwrap();
    // The acknowledge deadline (12:00) passes; the ladder reminds and extends it by 1h.
    t.advance_to(at("2026-03-02T12:00:00+08:00"));
    assert_eq!(
        t.state.acknowledge_by,
        Some(at("2026-03-02T14:00:00+08:00"))
    );
    assert_eq!(
        t.state.overdue.acknowledge,
        Some(at("2026-03-02T12:00:00+08:00"))
    );
    assert!(t.state.is_overdue(at("2026-03-02T12:30:00+08:00")));
    t.apply(at("2026-03-02T12:30:00+08:00"), Event::Acknowledged)
        .unwrap();
    assert!(t.state.overdue.is_empty());
    assert!(!t.state.is_overdue(at("2026-03-02T12:30:00+08:00")));
    // The resolve deadline (Tue 10:00) passes: raised and extended by a day, still overdue.
    t.advance_to(at("2026-03-03T10:00:00+08:00"));
    assert_eq!(t.tier(), "street");
    assert_eq!(t.state.resolve_by, Some(at("2026-03-04T10:00:00+08:00")));
    assert!(t.state.is_overdue(at("2026-03-03T11:00:00+08:00")));
    assert_eq!(
        t.state.promised(DeadlineKind::Resolve),
        Some(at("2026-03-03T10:00:00+08:00"))
    );
    // The second passing keeps the first as the promise missed.
    t.advance_to(at("2026-03-04T10:00:00+08:00"));
    assert_eq!(
        t.state.overdue.resolve,
        Some(at("2026-03-03T10:00:00+08:00"))
    );
    t.apply(
        at("2026-03-04T11:00:00+08:00"),
        Event::Resolved {
            note: String::new(),
            photos: Vec::new(),
        },
    )
    .unwrap();
    assert!(!t.state.is_overdue(at("2026-03-05T11:00:00+08:00")));
    assert!(t.state.overdue.is_empty());
}

/// A hook that fails on a later event does not strand a routed issue: it keeps its departments
/// and deadlines (and keeps escalating), the failure is recorded and the triage department told.
#[test]
fn a_hook_failing_on_a_later_event_keeps_the_issue_routed() {
    let rs = mini_with(|path, text| match path {
        "policy.yaml" => format!(
            "{text}\n  - id: noon\n    when: {{hook: fails_after_noon}}\n    schedule: {{working_days_later: 1, at: \"09:00\"}}\n    invite: [departments]\n"
        ),
        "scripts/hooks.rhai" => format!(
            "{text}\nfn fails_after_noon(issue) {{ if issue.hour >= 12 {{ throw \"no meetings after noon\"; }} false }}\n"
        ),
        _ => text.to_string(),
    });
    let mut t = Timeline::report(
        &rs,
        issue("garbage", "bins"),
        at("2026-03-02T10:00:00+08:00"),
    )
    .unwrap();
    assert_eq!(t.state.departments, ["urban"]);
    // The acknowledge deadline passes at 12:00; the meeting hook then fails.
    t.advance_to(at("2026-03-02T12:00:00+08:00"));
    let last = t.log.last().unwrap();
    assert_eq!(last.event.name(), "deadline_passed");
    let why = last
        .decision
        .triage
        .clone()
        .expect("the failure is recorded");
    assert!(why.contains("no meetings after noon"), "{why}");
    assert!(
        last.decision
            .messages
            .iter()
            .any(|m| &*m.to == "p-triage" && m.kind == "triage")
    );
    // Still urban's, with the extended deadline and its timers: it keeps escalating.
    assert_eq!(t.state.departments, ["urban"]);
    assert!(!t.state.triage);
    assert_eq!(
        t.state.acknowledge_by,
        Some(at("2026-03-02T14:00:00+08:00"))
    );
    assert!(!t.timers.is_empty());
}

/// `case_flow.verification.on_lapse`: a resolution nobody checks on site in time closes as
/// confirmed by lapse (`confirm`) or as unverified (`unverified`), once the time has passed.
#[test]
fn a_lapsed_check_on_site_closes_as_the_policy_says() {
    use escalade_rules::issue::Verification;
    for (lapse, want) in [
        ("confirm", Verification::AutoConfirmed),
        ("unverified", Verification::Unverified),
    ] {
        let rs = mini_with(|path, text| {
            if path == "policy.yaml" {
                format!("{text}\ncase_flow:\n  verification: {{within: 2h, on_lapse: {lapse}}}\n")
            } else {
                text.to_string()
            }
        });
        let mut t = Timeline::report(
            &rs,
            issue("garbage", "bins"),
            at("2026-03-02T09:00:00+08:00"),
        )
        .unwrap();
        t.apply(at("2026-03-02T09:30:00+08:00"), Event::Acknowledged)
            .unwrap();
        t.apply(
            at("2026-03-02T10:00:00+08:00"),
            Event::Resolved {
                note: "swept".into(),
                photos: Vec::new(),
            },
        )
        .unwrap();
        // 2h of working time from Monday 10:00: due at 12:00.
        assert_eq!(t.state.verify_by, Some(at("2026-03-02T12:00:00+08:00")));
        t.advance_to(at("2026-03-02T11:59:00+08:00"));
        assert_eq!(t.state.state, State::Resolved, "{lapse}: not yet due");
        t.advance_to(at("2026-03-02T12:00:00+08:00"));
        assert_eq!(t.state.state, State::Closed, "{lapse}");
        assert_eq!(t.state.verification, Some(want), "{lapse}");
        assert_eq!(t.state.counts.verification_lapses, 1);
        assert_eq!(t.state.verify_by, None);
    }
}
