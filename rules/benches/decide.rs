//! Decisions per second on the example organisation (`examples/city`), and the bare Rhai hook
//! calls they contain.
//!
//! Run: `cargo bench -p escalade-rules --bench decide`. Figures and targets: BENCHMARKS.md.
//!
//! In `examples/city` the meeting `joint` has a hook (`needs_joint_meeting`), which `decide`
//! calls on every `reported` decision that assigns fewer than three departments (decide.rs
//! `meeting_triggers`). So a decision whose route is pure YAML still runs one Rhai call there.
//! The `*_no_meeting_hook` cases decide the same issue on a copy of the organisation whose
//! `joint` meeting has no hook, to show that call's share; `decide_yaml/explosion` is a pure-YAML
//! route that assigns three departments, so the meeting is convened by count and no hook runs.

use std::hint::black_box;
use std::path::Path;

use chrono::{DateTime, Datelike, Timelike, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use escalade_rules::script::{map, string};
use escalade_rules::{Event, Issue, IssueState, Priority, RuleSet};
use rhai::{Dynamic, Map};

const CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/city");

/// Tuesday 2026-03-03 10:00 in Asia/Shanghai: working time, by day, no holiday.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-03T10:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn load(dir: &Path) -> RuleSet {
    RuleSet::load(dir).unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()))
}

/// A copy of `examples/city` whose meeting `joint` has no hook.
fn city_without_meeting_hook() -> RuleSet {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(Path::new(CITY), dir.path());
    let meetings = dir.path().join("meetings.yaml");
    let text = std::fs::read_to_string(&meetings).unwrap();
    let edited: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("hook: needs_joint_meeting"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text.len(), edited.len(), "meetings.yaml has no joint hook");
    std::fs::write(&meetings, edited).unwrap();
    load(dir.path())
}

fn issue(category: &str, unit: &str, description: &str, priority: Option<Priority>) -> Issue {
    Issue {
        id: "bench-1".into(),
        category: category.into(),
        unit: unit.into(),
        description: description.into(),
        priority,
        reporter: Some(format!("p-{unit}")),
        ..Default::default()
    }
}

/// Decides once outside the timing loop and checks the route, so each benchmark measures the
/// path its name says.
fn check(rs: &RuleSet, issue: &Issue, route: &str, departments: &[&str]) {
    let d = rs
        .decide(issue, &IssueState::default(), &Event::Reported, now())
        .expect("decision");
    assert_eq!(d.triage, None, "{:#?}", d.trace);
    assert_eq!(d.next.departments, departments, "{:#?}", d.trace);
    let matched = format!("route `{route}` matched");
    assert!(
        d.trace.iter().any(|t| t.starts_with(&matched)),
        "{:#?}",
        d.trace
    );
}

/// The map `decide` passes to a hook, built as decide.rs `Cx::call` builds it.
fn hook_map(rs: &RuleSet, issue: &Issue, priority: Priority, now: DateTime<Utc>) -> Map {
    let cal = &rs.org.calendars[rs.settings.calendar as usize];
    let local = now.with_timezone(&cal.tz());
    let unit = &rs.org.units[rs.org.unit(&issue.unit).unwrap() as usize];
    let weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [local.weekday().num_days_from_monday() as usize];
    map([
        ("id", string(&issue.id)),
        ("category", string(&issue.category)),
        ("unit", string(&issue.unit)),
        ("unit_tier", string(&rs.org.tiers[unit.tier as usize].id)),
        ("description", string(&issue.description)),
        ("priority", string(priority.as_str())),
        (
            "reporter",
            issue
                .reporter
                .as_deref()
                .map(string)
                .unwrap_or(Dynamic::UNIT),
        ),
        ("now", Dynamic::from_int(now.timestamp())),
        ("hour", Dynamic::from_int(local.hour() as i64)),
        ("minute", Dynamic::from_int(local.minute() as i64)),
        ("weekday", string(weekday)),
        ("working", Dynamic::from_bool(cal.is_working_time(now))),
    ])
}

fn bench_decide(c: &mut Criterion, group: &str, cases: &[(&str, &RuleSet, &Issue)]) {
    let state = IssueState::default();
    let at = now();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    for &(name, rs, issue) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                rs.decide(black_box(issue), &state, &Event::Reported, black_box(at))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rs = load(Path::new(CITY));
    let bare = city_without_meeting_hook();

    // Route jinshui-illegal-construction: category + units (g-0001 is in d-jinshui). Two
    // departments, so decide also asks the `joint` meeting's hook.
    let construction = issue(
        "illegal_construction",
        "g-0001",
        "小区楼顶有人私自加盖彩钢房",
        None,
    );
    check(
        &rs,
        &construction,
        "jinshui-illegal-construction",
        &["urban", "housing"],
    );
    check(
        &bare,
        &construction,
        "jinshui-illegal-construction",
        &["urban", "housing"],
    );
    // Route explosion-or-collapse: priority + text_any. road_damage has no priority hook; three
    // departments convene the joint meeting by count, so no hook runs at all.
    let explosion = issue(
        "road_damage",
        "g-0001",
        "路面坍塌出一个大坑",
        Some(Priority::Urgent),
    );
    check(
        &rs,
        &explosion,
        "explosion-or-collapse",
        &["emergency", "fire", "housing"],
    );
    bench_decide(
        c,
        "decide_yaml",
        &[
            ("illegal_construction", &rs, &construction),
            ("illegal_construction_no_meeting_hook", &bare, &construction),
            ("explosion", &rs, &explosion),
        ],
    );

    // Route noise-by-time-of-day: department_hook noise_department (10:00: urban). Plus the
    // joint meeting's hook, as above.
    let noise = issue("noise", "g-0001", "楼下广场舞音响声音太大", None);
    check(&rs, &noise, "noise-by-time-of-day", &["urban"]);
    check(&bare, &noise, "noise-by-time-of-day", &["urban"]);
    bench_decide(
        c,
        "decide_rhai",
        &[
            ("noise", &rs, &noise),
            ("noise_no_meeting_hook", &bare, &noise),
        ],
    );

    // The bare sandboxed calls: the same map decide builds, built (cloned) outside the timing;
    // the call consumes and drops it.
    let mut g = c.benchmark_group("hook_call");
    g.throughput(Throughput::Elements(1));
    for (hook, issue) in [
        ("noise_department", &noise),
        ("needs_joint_meeting", &construction),
    ] {
        let m = hook_map(&rs, issue, Priority::Normal, now());
        let v = rs.scripts.call(hook, m.clone()).unwrap();
        let ok = match hook {
            "noise_department" => v.into_immutable_string().is_ok_and(|s| s == "urban"),
            _ => v.as_bool() == Ok(false),
        };
        assert!(ok, "{hook} returned something else");
        g.bench_function(hook, |b| {
            b.iter_batched(
                || m.clone(),
                |m| rs.scripts.call(black_box(hook), m).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    // The same call with the map built inside the timing, as decide builds it for every hook.
    let at = now();
    g.bench_function("noise_department_build_map", |b| {
        b.iter(|| {
            let m = hook_map(&rs, black_box(&noise), Priority::Normal, black_box(at));
            rs.scripts.call("noise_department", m).unwrap()
        })
    });
    g.finish();
}

criterion_group!(decide, benches);
criterion_main!(decide);
