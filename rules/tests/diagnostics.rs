//! Every kind of bad rule input gets a diagnostic naming file, line and column.
//!
//! Each case copies the small valid rule directory in `fixtures/mini`, applies edits (replace
//! text in a file, or append to it), loads it, and expects a diagnostic whose one-line form
//! contains the expected text.

use std::path::PathBuf;

use escalade_rules::RuleSet;

mod common;

const MINI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mini");

/// A copy of the fixture with `edits` applied: `(file, from, to)` replaces the first
/// occurrence of `from` (which must exist); an empty `from` appends `to`.
fn edited(edits: &[(&str, &str, &str)]) -> (tempfile::TempDir, PathBuf) {
    common::edited(MINI, edits)
}

/// Loads the edited fixture and expects every `expected` text in some diagnostic.
fn check(edits: &[(&str, &str, &str)], expected: &[&str]) {
    let (_tmp, dir) = edited(edits);
    let diags = match RuleSet::load(&dir) {
        Ok(_) => panic!("expected errors {expected:?}, but the rules loaded"),
        Err(d) => d,
    };
    let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    for want in expected {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "no diagnostic contains {want:?}; got:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn the_fixture_itself_is_valid() {
    let rs = RuleSet::load(MINI).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(rs.summary().units, 4);
    assert_eq!(rs.version.len(), 64);
}

#[test]
fn version_changes_with_any_file() {
    let a = RuleSet::load(MINI).unwrap().version;
    let (_t, dir) = edited(&[("scripts/hooks.rhai", "", "\n// a comment\n")]);
    let b = RuleSet::load(&dir).unwrap().version;
    let (_t2, dir2) = edited(&[("units.csv", "Grid Two", "Grid 2")]);
    let c = RuleSet::load(&dir2).unwrap().version;
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(a, RuleSet::load(MINI).unwrap().version);
}

/// The one-line forms of the diagnostics of the fixture with `edits`.
fn diagnostics(edits: &[(&str, &str, &str)]) -> Vec<String> {
    let (_tmp, dir) = edited(edits);
    match RuleSet::load(&dir) {
        Ok(_) => panic!("expected errors, but the rules loaded"),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn an_unclosed_flow_sequence_is_reported_at_its_bracket() {
    // The parser notices only on the next line; the bracket that is never closed is on line 10.
    check(
        &[(
            "policy.yaml",
            "hours: [\"09:00-12:00\", \"13:00-17:00\"]",
            "hours: [\"09:00-12:00\", \"13:00-17:00\"",
        )],
        &[
            "policy.yaml:10:12: invalid YAML: this flow sequence is not closed",
            "(the parser stopped at line 11, column 5: invalid indentation)",
        ],
    );
}

#[test]
fn an_unclosed_flow_mapping_is_reported_at_its_brace() {
    // Only there: the sections of the file that did not parse are not reported missing.
    check_only(
        &[(
            "policy.yaml",
            "low: {acknowledge: 1d, resolve: 5d}",
            "low: {acknowledge: 1d, resolve: 5d",
        )],
        "policy.yaml:17:8: invalid YAML: this flow mapping is not closed (the parser stopped at line 18, column 9: while parsing a flow mapping, did not find expected ',' or '}')",
    );
}

#[test]
fn an_unclosed_flow_mapping_at_the_end_of_a_file_is_reported_at_its_brace() {
    check(
        &[("templates.yaml", "", "extra: {a: 1\n")],
        &["templates.yaml:71:8: invalid YAML: this flow mapping is not closed"],
    );
}

#[test]
fn a_duplicated_key_is_reported_where_it_is_repeated() {
    let got = diagnostics(&[(
        "policy.yaml",
        "  triage: triage\n",
        "  triage: triage\n  locale: en\n",
    )]);
    assert!(
        got.iter().any(|l| l
            == "policy.yaml:5:3: settings: duplicate key `locale` (first at line 2, column 3)"),
        "{got:#?}"
    );
    // Reported once, not again by the parse that follows.
    assert_eq!(got.len(), 1, "{got:#?}");
}

#[test]
fn a_duplicated_key_in_a_flow_mapping_is_reported_where_it_is_repeated() {
    check(
        &[(
            "policy.yaml",
            "low: {acknowledge: 1d, resolve: 5d}",
            "low: {acknowledge: 1d, resolve: 5d, acknowledge: 2d}",
        )],
        &[
            "policy.yaml:17:39: deadlines.low: duplicate key `acknowledge` (first at line 17, column 9)",
        ],
    );
}

#[test]
fn a_duplicated_key_of_a_holiday_file_is_reported_where_it_is_repeated() {
    check(
        &[("calendars/h.yaml", "", "holidays: []\n")],
        &["calendars/h.yaml:5:1: duplicate key `holidays` (first at line 1, column 1)"],
    );
}

#[test]
fn a_hook_error_prints_its_position_once() {
    let (_tmp, dir) = edited(&[(
        "scripts/hooks.rhai",
        "",
        "\nfn divides(issue) {\n    let x = 1 / 0;\n    x\n}\n",
    )]);
    let lines = std::fs::read_to_string(dir.join("scripts/hooks.rhai"))
        .unwrap()
        .lines()
        .count();
    let rules = RuleSet::load(&dir).unwrap_or_else(|d| panic!("{d}"));
    let err = rules
        .scripts
        .call(
            "divides",
            escalade_rules::script::map([("description", escalade_rules::script::string("x"))]),
        )
        .unwrap_err()
        .to_string();
    let at = format!("(scripts/hooks.rhai, line {}, column 15)", lines - 2);
    assert!(
        err.starts_with("hook `divides` failed: Division by zero") && err.ends_with(&at),
        "{err}"
    );
    assert_eq!(err.matches("line").count(), 1, "{err}");
}

#[test]
fn a_hook_error_in_a_function_it_calls_names_that_function_s_position() {
    let (_tmp, dir) = edited(&[
        (
            "scripts/hooks.rhai",
            "",
            "\nfn calls_helper(issue) {\n    helper(issue)\n}\n",
        ),
        (
            "scripts/helpers.rhai",
            "",
            "fn helper(issue) {\n    issue.missing.len()\n}\n",
        ),
    ]);
    let rules = RuleSet::load(&dir).unwrap_or_else(|d| panic!("{d}"));
    let err = rules
        .scripts
        .call(
            "calls_helper",
            escalade_rules::script::map([("description", escalade_rules::script::string("x"))]),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("(scripts/helpers.rhai, line 2, column 19)"),
        "{err}"
    );
    assert_eq!(err.matches("line").count(), 1, "{err}");
}

#[test]
fn unknown_field_suggests_the_known_one() {
    check(
        &[("policy.yaml", "co_assign: [urban]", "co_asign: [urban]")],
        &[
            "policy.yaml:50:5: routes[1]: unknown field `co_asign`",
            "did you mean `co_assign`?",
        ],
    );
}

#[test]
fn unknown_variant_suggests_the_known_one() {
    check(
        &[("policy.yaml", "- on: rejected", "- on: rejectd")],
        &[
            "policy.yaml:59:13:",
            "unknown variant `rejectd`",
            "did you mean `rejected`?",
        ],
    );
}

#[test]
fn unknown_department() {
    check(
        &[("policy.yaml", "department: police", "department: polise")],
        &["policy.yaml:49:17: unknown department `polise` (did you mean `police`?)"],
    );
}

#[test]
fn unknown_tier_in_csv() {
    check(
        &[("units.csv", "g2,grid", "g2,gird")],
        &["units.csv:3:4: unknown tier `gird` (did you mean `grid`?)"],
    );
}

#[test]
fn unknown_parent_and_leader_in_csv() {
    check(
        &[("units.csv", "g2,grid,s1,", "g2,grid,s2,p-g9")],
        &[
            "units.csv:3:9: unknown parent unit `s2`",
            "units.csv:3:12: unknown person `p-g9`",
        ],
    );
}

#[test]
fn unknown_unit_in_route() {
    check(
        &[(
            "policy.yaml",
            "when: {text_any: [fight, 打架]}",
            "when: {text_any: [fight, 打架], units: [s9]}",
        )],
        &["policy.yaml:48:43: unknown unit `s9`"],
    );
}

#[test]
fn unknown_category_in_route() {
    check(
        &[("policy.yaml", "category: [noise]", "category: [noize]")],
        &["policy.yaml:45:23: unknown category `noize` (did you mean `noise`?)"],
    );
}

#[test]
fn unknown_template() {
    check(
        &[(
            "policy.yaml",
            "[{remind: departments}, {extend: 1h}]",
            "[{remind: departments, template: overdu}, {extend: 1h}]",
        )],
        &["policy.yaml:55:51: unknown template `overdu` (did you mean `overdue`?)"],
    );
}

#[test]
fn unknown_script_function() {
    check(
        &[(
            "policy.yaml",
            "department_hook: noise_department",
            "department_hook: noise_dept",
        )],
        &[
            "policy.yaml:46:22: unknown script function `noise_dept` (did you mean `noise_department`?)",
        ],
    );
}

#[test]
fn hook_with_wrong_parameter_count() {
    check(
        &[(
            "scripts/hooks.rhai",
            "fn noise_department(issue) {",
            "fn noise_department(issue, extra) {",
        )],
        &["policy.yaml:46:22: script function `noise_department` takes 2 parameters"],
    );
}

#[test]
fn unknown_person_in_contacts() {
    check(
        &[("org.yaml", "contacts: [p-police]", "contacts: [p-polic]")],
        &["org.yaml:18:58: unknown person `p-polic` (did you mean `p-police`?)"],
    );
}

#[test]
fn duplicate_ids() {
    check(
        &[
            (
                "org.yaml",
                "  - {id: triage, contacts: [p-triage]}",
                "  - {id: triage, contacts: [p-triage]}\n  - {id: urban, contacts: [p-urban]}",
            ),
            ("units.csv", "", "g1,grid,s1,,dup,dup\n"),
        ],
        &[
            "org.yaml:20:10: duplicate department id `urban` (first defined at org.yaml:17:10)",
            "units.csv:4:1: duplicate unit id `g1` (first defined at units.csv:2:1)",
        ],
    );
}

#[test]
fn cycle_in_the_unit_tree() {
    check(
        &[(
            "org.yaml",
            "{id: city, tier: city,",
            "{id: city, tier: city, parent: g1,",
        )],
        &["cycle in the unit tree: "],
    );
}

#[test]
fn parent_on_a_lower_tier() {
    check(
        &[("units.csv", "g2,grid,s1,", "g2,grid,g1,")],
        &[
            "units.csv:3:9: parent `g1` is a grid but `g2` is a grid: a parent must sit on a higher tier",
        ],
    );
}

#[test]
fn overlapping_working_spans() {
    check(
        &[("policy.yaml", "\"13:00-17:00\"", "\"11:00-17:00\"")],
        &["policy.yaml:10:28: working spans 09:00-12:00 and 11:00-17:00 overlap"],
    );
}

#[test]
fn a_date_both_holiday_and_makeup_day() {
    check(
        &[("calendars/h.yaml", "date: 2026-10-10", "date: 2026-10-05")],
        &["calendars/h.yaml:4:12: 2026-10-05 is both a holiday and a make-up working day"],
    );
}

#[test]
fn unknown_time_zone() {
    check(
        &[(
            "policy.yaml",
            "timezone: Asia/Shanghai",
            "timezone: Asia/Shanghia",
        )],
        &["policy.yaml:8:15: unknown time zone `Asia/Shanghia`"],
    );
}

#[test]
fn invalid_duration() {
    check(
        &[(
            "policy.yaml",
            "normal: {acknowledge: 2h, resolve: 2d",
            "normal: {acknowledge: 2h, resolve: 2x",
        )],
        &["policy.yaml:18:38: deadlines.normal.resolve: invalid duration `2x`"],
    );
}

#[test]
fn template_with_unknown_variable() {
    check(
        &[(
            "templates.yaml",
            "body: \"Dear {{ recipient.name }}\"",
            "body: \"Dear {{ recipient.nmae }}\"",
        )],
        &[
            "templates.yaml:7:",
            "unknown variable `recipient.nmae` (did you mean `recipient.name`?)",
        ],
    );
}

#[test]
fn template_syntax_error() {
    check(
        &[(
            "templates.yaml",
            "sms: {body: \"assigned {{ issue.id }}\"}",
            "sms: {body: \"assigned {{ issue.id \"}",
        )],
        &["templates.yaml:5:", "template syntax error"],
    );
}

#[test]
fn rhai_syntax_error_names_the_script_line() {
    check(
        &[(
            "scripts/hooks.rhai",
            "if issue.hour >= 22",
            "if issue.hour >== 22",
        )],
        &["scripts/hooks.rhai:3:", "script error"],
    );
}

#[test]
fn section_defined_twice() {
    check(
        &[("org.yaml", "", "routes: []\n")],
        &["section `routes` is already defined in"],
    );
}

#[test]
fn file_outside_the_rule_directory() {
    check(
        &[(
            "policy.yaml",
            "holiday_files: [calendars/h.yaml]",
            "holiday_files: [../h.yaml]",
        )],
        &["policy.yaml:11:21: `../h.yaml` is outside the rule directory"],
    );
}

#[test]
fn missing_named_file() {
    check(
        &[(
            "org.yaml",
            "unit_files: [units.csv]",
            "unit_files: [unit.csv]",
        )],
        &["org.yaml:8:14: no file `unit.csv` in the rule directory"],
    );
}

#[test]
fn channel_without_address() {
    check(
        &[(
            "org.yaml",
            "{id: p-urban, name: Urban Desk, email: urban@example.org}",
            "{id: p-urban, name: Urban Desk, email: urban@example.org, channels: [sms]}",
        )],
        &["person `p-urban` uses channel sms but has no phone"],
    );
}

#[test]
fn csv_with_wrong_header() {
    check(
        &[(
            "units.csv",
            "id,tier,parent,leader,name_zh,name_en",
            "id,tier,parent,leader,name",
        )],
        &["units.csv:1:1: CSV header is `id,tier,parent,leader,name`"],
    );
}

/// Only the real problem: what depends on a broken definition is not reported again.
fn check_only(edits: &[(&str, &str, &str)], expected: &str) {
    let (_tmp, dir) = edited(edits);
    let d = RuleSet::load(&dir).unwrap_err();
    let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected only {expected:?}, got:\n{}",
        lines.join("\n")
    );
    assert!(lines[0].contains(expected), "{}", lines[0]);
}

#[test]
fn a_broken_calendar_does_not_cascade() {
    check_only(
        &[("policy.yaml", "\"13:00-17:00\"", "\"11:00-17:00\"")],
        "working spans 09:00-12:00 and 11:00-17:00 overlap",
    );
}

#[test]
fn a_file_that_does_not_parse_does_not_cascade() {
    check_only(
        &[("policy.yaml", "resolve: 2d,", "resolve: 2x,")],
        "invalid duration `2x`",
    );
}

#[test]
fn all_errors_are_reported_in_one_run() {
    let (_tmp, dir) = edited(&[
        ("policy.yaml", "department: police", "department: polise"),
        ("units.csv", "g2,grid", "g2,gird"),
        (
            "templates.yaml",
            "body: \"Dear {{ recipient.name }}\"",
            "body: \"Dear {{ nobody }}\"",
        ),
    ]);
    let d = RuleSet::load(&dir).unwrap_err();
    assert_eq!(d.len(), 3, "{d}");
}

// ---- notifications and jobs ----

/// A valid `notifications` and `jobs` file for the fixture; the cases below break one thing.
const JOBS: &str = r#"notifications:
  quiet_hours: {from: "22:00", to: "07:00", calendar: office, channels: [sms]}
  digest: {window: 15m}
  sms: {max_segments: 3}
jobs:
  - id: overdue-digest
    cron: "0 8 * * Mon-Fri"
    report: overdue_digest
    tiers: [street, city]
  - id: weekly-scorecard
    cron: "0 9 * * Mon"
    calendar: always
    report: scorecard
    period: 7d
"#;

/// The fixture with `JOBS` added as `jobs.yaml`, then `edits`.
fn check_jobs(edits: &[(&str, &str, &str)], expected: &[&str]) {
    let mut all = vec![("jobs.yaml", "", JOBS)];
    all.extend_from_slice(edits);
    check(&all, expected);
}

#[test]
fn notifications_and_jobs_load() {
    let (_tmp, dir) = edited(&[("jobs.yaml", "", JOBS)]);
    let rs = RuleSet::load(&dir).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(rs.jobs.len(), 2);
    assert_eq!(rs.summary().jobs, 2);
    let j = rs.job("overdue-digest").unwrap();
    assert_eq!(j.tz, chrono_tz::Asia::Shanghai);
    assert_eq!(
        j.report,
        escalade_rules::Report::OverdueDigest {
            tiers: vec![rs.org.tier("street").unwrap(), rs.org.tier("city").unwrap()]
        }
    );
    let q = rs.notifications.quiet_hours.as_ref().unwrap();
    assert_eq!(q.channels, [escalade_rules::Channel::Sms]);
    assert_eq!(
        rs.notifications.digest.as_ref().unwrap().window,
        chrono::Duration::minutes(15)
    );
    assert_eq!(rs.notifications.sms_max_segments, 3);
    // Without the file: nothing held, nothing merged, 3 segments.
    let plain = RuleSet::load(MINI).unwrap();
    assert!(plain.jobs.is_empty());
    assert!(plain.notifications.quiet_hours.is_none() && plain.notifications.digest.is_none());
    assert_eq!(plain.notifications.sms_max_segments, 3);
}

#[test]
fn numeric_weekday_is_refused_at_the_field() {
    check_jobs(
        &[("jobs.yaml", "Mon-Fri", "1-5")],
        &[
            "jobs.yaml:7:20: day-of-week `1-5` is numeric; write names (Mon-Fri): numbering differs between cron dialects (write `0 8 * * Mon-Fri`",
        ],
    );
    // Unquoted, and a single number.
    check_jobs(
        &[("jobs.yaml", "cron: \"0 9 * * Mon\"", "cron: 0 9 * * 1")],
        &["jobs.yaml:11:19: day-of-week `1` is numeric; write names (Mon)"],
    );
}

#[test]
fn six_field_cron_is_refused() {
    check_jobs(
        &[("jobs.yaml", "\"0 9 * * Mon\"", "\"0 0 9 * * Mon\"")],
        &[
            "jobs.yaml:11:11: cron `0 0 9 * * Mon` has 6 fields: write the standard five (minute hour day-of-month month day-of-week) (without the seconds field: `0 9 * * Mon`)",
        ],
    );
}

#[test]
fn cron_alias_is_refused() {
    check_jobs(
        &[("jobs.yaml", "\"0 9 * * Mon\"", "\"@weekly\"")],
        &[
            "jobs.yaml:11:11: cron alias `@weekly` is not accepted",
            "`@weekly` is `0 0 * * Sun`",
        ],
    );
}

#[test]
fn cron_restricting_both_days_is_refused() {
    check_jobs(
        &[("jobs.yaml", "\"0 9 * * Mon\"", "\"0 9 1 * Mon\"")],
        &[
            "jobs.yaml:11:16: cron `0 9 1 * Mon` restricts both the day of the month (`1`) and the day of the week (`Mon`)",
        ],
    );
}

#[test]
fn garbage_cron_gets_the_crate_message() {
    check_jobs(
        &[("jobs.yaml", "\"0 9 * * Mon\"", "\"0 9 * * Mnn\"")],
        &["jobs.yaml:11:11: invalid cron `0 9 * * Mnn`: 'Mnn' is not a valid day of the week."],
    );
    check_jobs(
        &[("jobs.yaml", "\"0 9 * * Mon\"", "\"0 25 * * Mon\"")],
        &["jobs.yaml:11:11: invalid cron `0 25 * * Mon`: "],
    );
}

#[test]
fn unknown_report_kind() {
    check_jobs(
        &[("jobs.yaml", "report: scorecard", "report: scorecards")],
        &["jobs.yaml:13:13: unknown report `scorecards` (did you mean `scorecard`?)"],
    );
    check_jobs(
        &[("jobs.yaml", "report: scorecard", "report: summary")],
        &[
            "jobs.yaml:13:13: unknown report `summary` (a job's report is one of: overdue_digest, scorecard)",
        ],
    );
}

#[test]
fn unknown_calendar_in_a_job_and_in_quiet_hours() {
    check_jobs(
        &[
            ("jobs.yaml", "calendar: always", "calendar: alway"),
            ("jobs.yaml", "calendar: office", "calendar: ofice"),
        ],
        &[
            "jobs.yaml:12:15: unknown calendar `alway` (did you mean `always`?)",
            "jobs.yaml:2:55: unknown calendar `ofice` (did you mean `office`?)",
        ],
    );
}

#[test]
fn unknown_tier_in_a_job() {
    check_jobs(
        &[("jobs.yaml", "tiers: [street, city]", "tiers: [stret, city]")],
        &["jobs.yaml:9:13: unknown tier `stret` (did you mean `street`?)"],
    );
    check_jobs(
        &[("jobs.yaml", "    period: 7d\n", "    tiers: [city]\n")],
        &["jobs.yaml:14:12: `tiers` applies to `overdue_digest` reports only"],
    );
}

#[test]
fn bad_quiet_hours_time() {
    check_jobs(
        &[("jobs.yaml", "from: \"22:00\"", "from: \"25:00\"")],
        &["jobs.yaml:2:23: invalid time `25:00`: expected HH:MM between 00:00 and 23:59"],
    );
    check_jobs(
        &[("jobs.yaml", "to: \"07:00\"", "to: \"22:00\"")],
        &["jobs.yaml:2:36: quiet hours from 22:00 to 22:00 are empty"],
    );
}

#[test]
fn digest_window_must_be_positive() {
    check_jobs(
        &[("jobs.yaml", "window: 15m", "window: 0m")],
        &["jobs.yaml:3:20: a digest window must be longer than zero, not `0m`"],
    );
    check_jobs(
        &[("jobs.yaml", "window: 15m", "window: -15m")],
        &["jobs.yaml:3:20: a digest window must be longer than zero, not `-15m`"],
    );
    check_jobs(
        &[("jobs.yaml", "window: 15m", "window: 15 minutes")],
        &["jobs.yaml:3:20: invalid duration `15 minutes`"],
    );
    check_jobs(
        &[("jobs.yaml", "window: 15m", "window: 15m, channels: [sms]")],
        &["jobs.yaml:3:35: only email is merged into digests"],
    );
}

#[test]
fn sms_max_segments_zero() {
    check_jobs(
        &[("jobs.yaml", "max_segments: 3", "max_segments: 0")],
        &["jobs.yaml:4:23: sms.max_segments is 0: it must be between 1 and 255"],
    );
}

#[test]
fn duplicate_job_id() {
    check_jobs(
        &[("jobs.yaml", "id: weekly-scorecard", "id: overdue-digest")],
        &["jobs.yaml:10:9: duplicate job id `overdue-digest` (first defined at jobs.yaml:6:9)"],
    );
}

#[test]
fn missing_report_template() {
    check_jobs(
        &[("templates.yaml", "  scorecard:", "  scorecard_old:")],
        &[
            "jobs.yaml:13:13: no template `scorecard`: job `weekly-scorecard` sends this report (add `templates.scorecard`",
        ],
    );
    check_jobs(
        &[("templates.yaml", "  digest:", "  digest_old:")],
        &["jobs.yaml:3:3: no template `digest`: merging messages into a digest needs one"],
    );
}

#[test]
fn report_templates_are_checked_at_load() {
    // A misspelt field of a list item: only rendering sample data finds it.
    check(
        &[(
            "templates.yaml",
            "{{ r.department_name }}",
            "{{ r.department_nmae }}",
        )],
        &["templates.yaml:", "template fails on sample data: "],
    );
    // A variable of messages is not one of reports.
    check(
        &[(
            "templates.yaml",
            "subject: \"scorecard {{ period.from }}",
            "subject: \"scorecard {{ issue.id }}",
        )],
        &[
            "unknown variable `issue`",
            "known variables: recipient, period, rows, as_of",
        ],
    );
    // The digest is an email.
    check(
        &[(
            "templates.yaml",
            "body: \"{% for m in messages %}{{ m.subject }}: {{ m.body }}\\n{% endfor %}\"",
            "body: \"{% for m in messages %}{{ m.subject }}: {{ m.body }}\\n{% endfor %}\"\n      sms: {body: \"{{ messages | length }}\"}",
        )],
        &["template `digest` merges emails: it has no sms variant"],
    );
    // A message action cannot use a report template.
    check(
        &[(
            "policy.yaml",
            "[{remind: departments}, {extend: 1h}]",
            "[{remind: departments, template: scorecard}, {extend: 1h}]",
        )],
        &["policy.yaml:55:51: template `scorecard` is a report template"],
    );
}

// ---- the case flow and scoring ----

/// A valid `case_flow` and `scoring` file for the fixture (its templates lack `request` and
/// `decided`, so it allows no requests); the cases below break one thing each.
const FLOW: &str = r#"case_flow:
  triage: {acknowledge: 1h, resolve: 1d}
  verification: {within: 2d, on_lapse: escalate}
  after_photos: [garbage]
scoring:
  departments:
    - {figure: resolved_on_time, points: 60}
    - {figure: satisfaction, points: 40}
  units:
    tier: grid
    figures:
      - {figure: valid_reports, points: 100}
"#;

fn check_flow(edits: &[(&str, &str, &str)], expected: &[&str]) {
    let mut all = vec![("case_flow.yaml", "", FLOW)];
    all.extend_from_slice(edits);
    check(&all, expected);
}

#[test]
fn the_case_flow_and_scoring_load() {
    let (_tmp, dir) = edited(&[("case_flow.yaml", "", FLOW)]);
    let rs = RuleSet::load(&dir).unwrap_or_else(|d| panic!("{d}"));
    assert!(rs.case_flow.triage.is_some());
    assert_eq!(rs.case_flow.after_photos, [rs.category("garbage").unwrap()]);
    assert_eq!(rs.scoring.departments.len(), 2);
    assert_eq!(rs.scoring.unit_tier, rs.org.tier("grid").unwrap());
}

#[test]
fn requests_need_their_templates_and_a_decider_who_is_not_the_asker() {
    let requests = "  extensions: {decided_by: {tier: street}, decide_within: 4h}\n";
    check_flow(
        &[(
            "case_flow.yaml",
            "  after_photos",
            &format!("{requests}  after_photos"),
        )],
        &["no template `request`", "no template `decided`"],
    );
    check_flow(
        &[(
            "case_flow.yaml",
            "  after_photos",
            "  suspensions: {decided_by: departments, decide_within: 1d}\n  after_photos",
        )],
        &["case_flow.yaml:", "a request is decided by"],
    );
    check_flow(
        &[(
            "case_flow.yaml",
            "  after_photos",
            "  extensions: {decided_by: {tier: county}, decide_within: 4h}\n  after_photos",
        )],
        &["unknown tier `county`"],
    );
}

#[test]
fn case_flow_durations_limits_and_categories_are_checked_where_written() {
    for (from, to, want) in [
        (
            "triage: {acknowledge: 1h",
            "triage: {acknowledge: 0m",
            "the triage department's deadlines must be longer than zero",
        ),
        (
            "within: 2d",
            "within: 0d",
            "the time to verify must be longer than zero",
        ),
        (
            "on_lapse: escalate",
            "on_lapse: shrug",
            "unknown variant `shrug`",
        ),
        (
            "after_photos: [garbage]",
            "after_photos: [garbge]",
            "unknown category `garbge` (did you mean `garbage`?)",
        ),
    ] {
        check_flow(&[("case_flow.yaml", from, to)], &["case_flow.yaml:", want]);
    }
    check_flow(
        &[(
            "case_flow.yaml",
            "  after_photos",
            "  suspensions: {decided_by: {department: triage}, decide_within: 1d, longest: 2d, max: 0}\n  after_photos",
        )],
        &[
            "`longest` limits an extension",
            "`max: 0` allows no suspensions",
        ],
    );
}

#[test]
fn scoring_figures_and_points_are_checked_where_written() {
    for (from, to, want) in [
        (
            "figure: resolved_on_time",
            "figure: resolved_ontime",
            "unknown figure `resolved_ontime`",
        ),
        (
            "points: 60",
            "points: -5",
            "points must be a positive number, not -5",
        ),
        (
            "figure: satisfaction",
            "figure: resolved_on_time",
            "figure `resolved_on_time` is scored twice",
        ),
        ("tier: grid", "tier: gird", "unknown tier `gird`"),
        (
            "figure: valid_reports",
            "figure: satisfaction",
            "unknown figure `satisfaction`: expected one of valid_reports, verified_on_time",
        ),
    ] {
        check_flow(&[("case_flow.yaml", from, to)], &["case_flow.yaml:", want]);
    }
}

#[test]
fn a_routes_return_to_is_a_department() {
    check(
        &[(
            "policy.yaml",
            "co_assign: [urban]",
            "co_assign: [urban]\n    return_to: parks",
        )],
        &["unknown department `parks`"],
    );
}
