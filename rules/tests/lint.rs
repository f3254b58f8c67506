//! Warnings of a rule set that loads: routes an earlier route always takes first, ladders no
//! category uses, a `repeat` a later step overrides. Each case edits a copy of `fixtures/mini`.

use std::path::PathBuf;

use escalade_rules::RuleSet;

mod common;

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mini");
const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// A copy of the fixture with `(from, to)` replaced in policy.yaml (each `from` must occur).
fn edited(edits: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let edits: Vec<(&str, &str, &str)> =
        edits.iter().map(|(f, t)| ("policy.yaml", *f, *t)).collect();
    common::edited(MINI, &edits)
}

/// The warnings of the edited fixture, in their one-line form; the rules must load.
fn warnings(edits: &[(&str, &str)]) -> Vec<String> {
    let (_tmp, dir) = edited(edits);
    let rs = RuleSet::load(&dir).unwrap_or_else(|d| panic!("the rules must load: {d}"));
    rs.warnings().iter().map(|d| d.to_string()).collect()
}

const AFTER_ROUTES: &str = "    co_assign: [urban]\n";

#[test]
fn the_fixture_and_the_example_city_have_no_warnings() {
    for dir in [MINI, CITY] {
        let rs = RuleSet::load(dir).unwrap_or_else(|d| panic!("{d}"));
        let w: Vec<String> = rs.warnings().iter().map(|d| d.to_string()).collect();
        assert!(w.is_empty(), "{dir}: {w:#?}");
    }
}

#[test]
fn a_route_an_earlier_route_always_takes_first_is_reported_at_its_line() {
    let w = warnings(&[(
        AFTER_ROUTES,
        "    co_assign: [urban]
  - name: night-noise-in-s1
    when: {category: [noise], units: [s1], working: false, time: \"22:00-06:00\"}
    department: police
  - name: street-fights
    when: {text_any: [street fight], priority: [high, urgent]}
    department: urban
  - name: loud-nights
    when: {category: [noise], time: \"22:00-06:00\"}
    department: police
  - name: brawls
    when: {text_any: [brawl]}
    department: police
",
    )]);
    assert_eq!(
        w,
        [
            "policy.yaml:51:5: route `night-noise-in-s1` can never match: route `night-noise` (line 44) comes first and matches every issue it would (routes are tried in order and the first match wins; move `night-noise-in-s1` above `night-noise`, or narrow `night-noise`)",
            // "street fight" contains "fight": every text with the one has the other.
            "policy.yaml:54:5: route `street-fights` can never match: route `fights` (line 47) comes first and matches every issue it would (routes are tried in order and the first match wins; move `street-fights` above `fights`, or narrow `fights`)",
        ],
        "night noise outside working time is not every noise at night, and brawls are no fights"
    );
}

#[test]
fn windows_units_and_priorities_shadow_only_when_they_cover_the_later_route() {
    let w = warnings(&[(
        AFTER_ROUTES,
        "    co_assign: [urban]
  - name: garbage-evenings
    when: {category: [garbage], time: \"20:00-08:00\", units: [s1], priority: [low, normal, high, urgent]}
    department: police
  - name: garbage-nights-grid
    when: {category: [garbage], time: \"22:00-06:00\", units: [g1]}
    department: urban
  - name: garbage-mornings
    when: {category: [garbage], time: \"07:00-09:00\"}
    department: urban
  - name: garbage-anywhere-late
    when: {category: [garbage], time: \"23:00-24:00\"}
    department: urban
",
    )]);
    // 22:00-06:00 lies inside 20:00-08:00 (both wrap midnight), g1 inside s1, and the four
    // priorities are every priority. 07:00-09:00 leaves 08:00-09:00 uncovered, and units
    // other than s1's subtree (the city itself) escape `garbage-evenings`.
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with(
            "policy.yaml:54:5: route `garbage-nights-grid` can never match: route `garbage-evenings` (line 51)"
        ),
        "{w:#?}"
    );
}

#[test]
fn a_route_after_one_without_conditions_is_unreachable_and_an_empty_list_matches_nothing() {
    let w = warnings(&[(
        AFTER_ROUTES,
        "    co_assign: [urban]
  - name: everything
    department: urban
  - name: nothing
    when: {category: []}
    department: police
  - name: too-late
    when: {units: [city]}
    department: police
",
    )]);
    assert_eq!(w.len(), 2, "{w:#?}");
    assert_eq!(
        w[0],
        "policy.yaml:54:22: route `nothing` matches no issue: `when.category` is empty (list at least one value, or remove `category`)"
    );
    assert!(
        w[1].starts_with(
            "policy.yaml:56:5: route `too-late` can never match: route `everything` (line 51)"
        ),
        "{w:#?}"
    );
}

#[test]
fn a_hook_route_takes_every_issue_its_conditions_let_through() {
    // A failing hook sends the issue to triage; it never falls through to a later route.
    let w = warnings(&[(
        AFTER_ROUTES,
        "    co_assign: [urban]
  - name: quiet-night-noise
    when: {category: [noise], working: false, priority: [low]}
    department: police
",
    )]);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with(
            "policy.yaml:51:5: route `quiet-night-noise` can never match: route `night-noise` (line 44)"
        ),
        "{w:#?}"
    );
}

#[test]
fn a_ladder_no_category_uses_and_a_repeat_a_later_step_overrides_are_reported() {
    let w = warnings(&[
        (
            "        actions: [{remind: departments}, {extend: 1h}]\n",
            "        actions: [{remind: departments}, {extend: 1h}]
        repeat: true
      - on: acknowledge_overdue
        actions: [{notify: leader}, {extend: 1h}]
",
        ),
        (
            "meetings:\n",
            "  - id: spare
    steps:
      - on: resolve_overdue
        actions: [{notify: leader}]
meetings:
",
        ),
    ]);
    assert_eq!(
        w,
        [
            "policy.yaml:56:9: `repeat` of step 1 never takes effect: step 2, also on acknowledge_overdue, runs at the next occurrence, and only the last step of a trigger repeats (remove `repeat` here, or make this the last acknowledge_overdue step)",
            "policy.yaml:64:9: ladder `spare` is used by no category: its steps never run (name it in a category's `ladder`, or in `settings.ladder` for the categories that name none)",
        ]
    );
}

#[test]
fn warnings_do_not_stop_the_rules_from_deciding() {
    let (_tmp, dir) = edited(&[(
        AFTER_ROUTES,
        "    co_assign: [urban]
  - name: street-fights
    when: {text_any: [street fight]}
    department: urban
",
    )]);
    let rs = RuleSet::load(&dir).unwrap();
    assert_eq!(rs.warnings().len(), 1);
    let d = rs
        .decide(
            &escalade_rules::Issue {
                category: "garbage".into(),
                unit: "g1".into(),
                description: "a street fight over bins".into(),
                ..Default::default()
            },
            &Default::default(),
            &escalade_rules::Event::Reported,
            "2026-03-02T02:00:00Z".parse().unwrap(),
        )
        .unwrap();
    // The earlier route takes it, as the warning says.
    assert_eq!(d.next.departments, ["police", "urban"]);
}
