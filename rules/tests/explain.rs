//! `explain` on the example city: each message rendered as its recipient reads it, and a ladder
//! that repeats forever projected only until it has nothing new to show.

use chrono::{DateTime, FixedOffset, Utc};
use escalade_rules::{Channel, Issue, RuleSet};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

fn at(s: &str) -> DateTime<Utc> {
    DateTime::<FixedOffset>::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&Utc)
}

fn issue(category: &str, text: &str) -> Issue {
    Issue {
        category: category.into(),
        unit: "g-0001".into(),
        description: text.into(),
        reporter: Some("p-g-0001".into()),
        ..Issue::default()
    }
}

#[test]
fn each_message_is_rendered_in_its_recipients_locale() {
    let rs = RuleSet::load(CITY).unwrap_or_else(|d| panic!("{d}"));
    let x = rs
        .explain(
            &issue("gas_leak", "燃气泄漏，闻到很重的煤气味"),
            at("2026-03-02T09:00:00+08:00"),
        )
        .unwrap();
    let find = |to: &str, channel: Channel| {
        x.messages
            .iter()
            .find(|m| m.to == to && m.channel == channel)
            .unwrap_or_else(|| panic!("no {channel:?} message to {to}: {:#?}", x.messages))
    };
    let sms = find("p-uti-yu", Channel::Sms);
    assert_eq!(
        (
            sms.template.as_str(),
            sms.locale.as_str(),
            sms.subject.as_deref()
        ),
        ("assigned", "zh-CN", None)
    );
    assert_eq!(
        sms.text,
        "【网格化管理】农科社区第1网格燃气泄漏问题已派遣公用事业局，请及时签收。"
    );
    // An English-speaking contact gets the English email, subject and body.
    let en = find("p-uti-bai", Channel::Email);
    assert_eq!(en.locale, "en");
    assert!(
        en.subject
            .as_deref()
            .is_some_and(|s| s.starts_with("[New assignment] Gas leak")),
        "{en:?}"
    );
    assert!(
        en.text
            .starts_with("Dear 白雪,\nNongke Community Grid 1 reported \"Gas leak\""),
        "{en:?}"
    );
    let v = serde_json::to_value(en).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["channel", "locale", "subject", "template", "text", "to"]
    );
    assert_eq!(v["channel"], "email");
}

#[test]
fn a_gas_leak_is_projected_until_its_ladder_only_repeats_at_the_top_tier() {
    let rs = RuleSet::load(CITY).unwrap();
    let x = rs
        .explain(
            &issue("gas_leak", "燃气泄漏，闻到很重的煤气味"),
            at("2026-03-02T09:00:00+08:00"),
        )
        .unwrap();
    // The urgent ladder climbs to the city in 45 minutes, convenes the joint meeting at the
    // second missed repair (15:00), then only repeats: acknowledge every 15 minutes, resolve
    // every 2 hours, each shown three times after the last change.
    let resolve: Vec<&str> = x
        .escalations
        .iter()
        .filter(|e| e.trigger == "resolve_overdue")
        .map(|e| e.at.as_str())
        .collect();
    assert_eq!(
        resolve,
        [
            "2026-03-02T13:00:00+08:00",
            "2026-03-02T15:00:00+08:00",
            "2026-03-02T17:00:00+08:00",
            "2026-03-02T19:00:00+08:00",
            "2026-03-02T21:00:00+08:00",
        ]
    );
    let tiers: Vec<&str> = x.escalations.iter().map(|e| e.tier.as_str()).collect();
    assert_eq!(&tiers[..3], ["street", "district", "city"]);
    assert!(x.escalations.len() < 20, "{}", x.escalations.len());
    assert_eq!(
        x.cut,
        [
            "acknowledge_overdue: ladder `urgent` step 2 repeats every 15m at the top tier (city) with nothing else changing: shown 3 times, then 17 more runs from 2026-03-02T11:00:00+08:00 to 2026-03-02T15:00:00+08:00 not shown",
            "acknowledge_overdue: ladder `urgent` step 2 repeats every 15m at the top tier (city) with nothing else changing: shown 3 times, then the projection stops",
            "resolve_overdue: ladder `urgent` step 4 repeats every 2h at the top tier (city) with nothing else changing: shown 3 times, then the projection stops",
        ]
    );
    let meetings: Vec<&str> = x.meetings.iter().map(|m| m.meeting.as_str()).collect();
    assert_eq!(meetings, ["supervision-review", "joint"]);
}

#[test]
fn repeats_below_the_top_tier_are_shown_again_once_something_changes() {
    let rs = RuleSet::load(CITY).unwrap();
    let x = rs
        .explain(
            &issue("garbage", "小区门口垃圾三天未清运"),
            at("2026-03-02T10:00:00+08:00"),
        )
        .unwrap();
    // The resolve steps climb one tier a working day, each shown; the acknowledge reminders
    // between them, at a tier that does not change, are summed up.
    let climb: Vec<(&str, &str)> = x
        .escalations
        .iter()
        .filter(|e| e.trigger == "resolve_overdue")
        .map(|e| (e.at.as_str(), e.tier.as_str()))
        .take(5)
        .collect();
    assert_eq!(
        climb,
        [
            ("2026-03-09T10:00:00+08:00", "grid"),
            ("2026-03-10T10:00:00+08:00", "community"),
            ("2026-03-11T10:00:00+08:00", "street"),
            ("2026-03-12T10:00:00+08:00", "district"),
            ("2026-03-13T10:00:00+08:00", "city"),
        ]
    );
    assert_eq!(
        x.cut[0],
        "acknowledge_overdue: ladder `standard` step 2 repeats every 4h at tier grid with nothing else changing: shown 3 times, then 4 more runs from 2026-03-06T12:00:00+08:00 to 2026-03-10T10:00:00+08:00 not shown"
    );
    assert!(
        x.cut
            .last()
            .unwrap()
            .ends_with("at the top tier (city) with nothing else changing: shown 3 times, then the projection stops"),
        "{:?}",
        x.cut
    );
}

/// What lies ahead of an issue where it stands is the rest of the ladder `explain` projected
/// at its report: taken up with its state and timers after the first step, the steps to come
/// are the projection's later ones, and one acted on (acknowledged) drops the acknowledge
/// steps.
#[test]
fn what_lies_ahead_of_a_stored_issue_is_the_rest_of_its_projected_ladder() {
    let rs = RuleSet::load(CITY).unwrap_or_else(|d| panic!("{d}"));
    let reported = at("2026-03-02T09:00:00+08:00");
    let broken = issue("garbage", "垃圾堆放多日");
    let x = rs.explain(&broken, reported).unwrap();
    assert!(x.escalations.len() >= 2, "{:#?}", x.escalations);
    let steps = |v: &[escalade_rules::explain::Projected]| {
        v.iter()
            .map(|p| (p.at.clone(), p.trigger.clone(), p.tier.clone()))
            .collect::<Vec<_>>()
    };

    let mut t = escalade_rules::Timeline::report(&rs, broken.clone(), reported).unwrap();
    let now = reported + chrono::Duration::minutes(1);
    let ahead = rs.ahead(&broken, &t.state, t.timers.clone(), now);
    assert_eq!(steps(&ahead.escalations), steps(&x.escalations));
    assert_eq!(ahead.tier, "grid");

    // Past the first step: the rest, at the tier that step left.
    let first = DateTime::parse_from_rfc3339(&x.escalations[0].at)
        .unwrap()
        .with_timezone(&Utc);
    t.advance_to(first);
    let ahead = rs.ahead(&broken, &t.state, t.timers.clone(), first);
    assert_eq!(steps(&ahead.escalations), steps(&x.escalations[1..]));
    assert_eq!(ahead.tier, x.escalations[0].tier);

    // Acknowledged: no acknowledge step remains.
    let mut t = escalade_rules::Timeline::report(&rs, broken.clone(), reported).unwrap();
    t.apply(now, escalade_rules::Event::Acknowledged).unwrap();
    let ahead = rs.ahead(&broken, &t.state, t.timers.clone(), now);
    assert!(
        ahead
            .escalations
            .iter()
            .all(|p| p.trigger != "acknowledge_overdue"),
        "{:#?}",
        ahead.escalations
    );
    assert!(!ahead.escalations.is_empty());
}
