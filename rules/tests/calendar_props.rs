//! Business-calendar properties and examples: the mainland China 2026 calendar (Asia/Shanghai,
//! two spans, holidays and make-up days), a Berlin office calendar, and a Berlin 24/7 calendar
//! whose days cross the daylight-saving changes of 29 March and 25 October 2026.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use escalade_rules::calendar::{Calendar, CalendarError, Span, WorkDuration, parse_weekday};
use proptest::prelude::*;

const WEEKDAYS: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];
const ALL_DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn spans(list: &[&str]) -> Vec<Span> {
    list.iter().map(|s| Span::parse(s).unwrap()).collect()
}

/// Every date from `from` to `to`, inclusive.
fn range(from: &str, to: &str) -> Vec<NaiveDate> {
    let (mut d, to) = (date(from), date(to));
    let mut out = Vec::new();
    while d <= to {
        out.push(d);
        d = d.succ_opt().unwrap();
    }
    out
}

/// Mainland China 2026, from the State Council notice.
fn china_holidays() -> Vec<NaiveDate> {
    [
        ("2026-01-01", "2026-01-03"),
        ("2026-02-15", "2026-02-23"),
        ("2026-04-04", "2026-04-06"),
        ("2026-05-01", "2026-05-05"),
        ("2026-06-19", "2026-06-21"),
        ("2026-09-25", "2026-09-27"),
        ("2026-10-01", "2026-10-07"),
    ]
    .iter()
    .flat_map(|(a, b)| range(a, b))
    .collect()
}

fn china_makeup_days() -> Vec<NaiveDate> {
    [
        "2026-01-04",
        "2026-02-14",
        "2026-02-28",
        "2026-05-09",
        "2026-09-20",
        "2026-10-10",
    ]
    .iter()
    .map(|d| date(d))
    .collect()
}

static CHINA: LazyLock<Calendar> = LazyLock::new(|| {
    Calendar::new(
        "cn-2026",
        chrono_tz::Asia::Shanghai,
        &WEEKDAYS,
        spans(&["09:00-12:00", "13:30-17:30"]),
        china_holidays(),
        china_makeup_days(),
    )
    .unwrap()
});

static BERLIN: LazyLock<Calendar> = LazyLock::new(|| {
    Calendar::new(
        "berlin-office",
        chrono_tz::Europe::Berlin,
        &WEEKDAYS,
        spans(&["08:00-18:00"]),
        [],
        [],
    )
    .unwrap()
});

static BERLIN_24_7: LazyLock<Calendar> = LazyLock::new(|| {
    Calendar::new(
        "berlin-24-7",
        chrono_tz::Europe::Berlin,
        &ALL_DAYS,
        spans(&["00:00-24:00"]),
        [],
        [],
    )
    .unwrap()
});

/// A Berlin calendar whose spans meet inside the repeated hour of 25 October and start inside
/// the skipped hour of 29 March, so the resolution rules and the union of overlapping real
/// intervals are exercised.
static BERLIN_NIGHT: LazyLock<Calendar> = LazyLock::new(|| {
    Calendar::new(
        "berlin-night",
        chrono_tz::Europe::Berlin,
        &ALL_DAYS,
        spans(&["00:00-02:15", "02:45-05:00"]),
        [],
        [],
    )
    .unwrap()
});

fn calendars() -> [&'static Calendar; 4] {
    [&CHINA, &BERLIN, &BERLIN_24_7, &BERLIN_NIGHT]
}

fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn cn(m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    local(chrono_tz::Asia::Shanghai, 2026, m, d, h, min)
}

fn de(m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    local(chrono_tz::Europe::Berlin, 2026, m, d, h, min)
}

fn dur(s: &str) -> WorkDuration {
    WorkDuration::parse(s).unwrap()
}

const NS: TimeDelta = TimeDelta::nanoseconds(1);

/// Working time, or exactly the close of a span.
fn in_working_time_or_at_close(cal: &Calendar, t: DateTime<Utc>) -> bool {
    cal.is_working_time(t) || cal.is_working_time(t - NS)
}

// --- strategies -------------------------------------------------------------------------------

/// 2026 (with a day either side), and the days around Berlin's 2026 clock changes, sometimes
/// with a fraction of a second.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let year = local(chrono_tz::UTC, 2025, 12, 31, 0, 0).timestamp()
        ..local(chrono_tz::UTC, 2027, 1, 2, 0, 0).timestamp();
    let spring = de(3, 27, 0, 0).timestamp()..de(3, 31, 0, 0).timestamp();
    let autumn = de(10, 23, 0, 0).timestamp()..de(10, 27, 0, 0).timestamp();
    let secs = prop_oneof![2 => year, 1 => spring, 1 => autumn];
    // Whole minutes often, so that starts hit span boundaries exactly.
    let rounding = prop_oneof![Just(60i64), Just(1), Just(0)];
    (secs, rounding, 0u32..1_000_000_000).prop_map(|(s, r, nanos)| match r {
        0 => DateTime::from_timestamp(s, nanos).unwrap(),
        r => DateTime::from_timestamp(s - s.rem_euclid(r), 0).unwrap(),
    })
}

/// Working-time amounts from a second to about a month of office days.
fn seconds() -> impl Strategy<Value = i64> {
    prop_oneof![1i64..=7_200, 1i64..=86_400, 1i64..=30 * 86_400]
}

fn duration() -> impl Strategy<Value = WorkDuration> {
    (0u32..=12, 0u32..=600)
        .prop_filter("positive", |&(d, m)| d + m > 0)
        .prop_map(|(days, minutes)| WorkDuration { days, minutes })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn deadline_lies_in_working_time_or_at_close(start in instant(), d in duration()) {
        for cal in calendars() {
            let deadline = cal.add(start, d);
            prop_assert!(deadline > start, "{}: {start} + {d} = {deadline}", cal.id());
            prop_assert!(
                in_working_time_or_at_close(cal, deadline),
                "{}: {start} + {d} = {deadline} is outside working time", cal.id()
            );
        }
    }

    #[test]
    fn add_then_measure_gives_the_duration_back(start in instant(), secs in seconds()) {
        for cal in calendars() {
            let end = cal.add_seconds(start, secs);
            prop_assert_eq!(cal.working_seconds_between(start, end), secs, "{}: from {}", cal.id(), start);
            prop_assert_eq!(cal.working_seconds_between(start, cal.add_seconds(start, 0)), 0);
        }
    }

    #[test]
    fn add_is_monotonic(a in instant(), b in instant(), d in duration()) {
        let (early, late) = if a <= b { (a, b) } else { (b, a) };
        for cal in calendars() {
            prop_assert!(cal.add(early, d) <= cal.add(late, d), "{}: {early} / {late} + {d}", cal.id());
        }
    }

    #[test]
    fn sub_seconds_inverts_measure(t in instant(), secs in seconds()) {
        for cal in calendars() {
            let end = cal.next_working_instant(t);
            prop_assert!(cal.is_working_time(end));
            let from = cal.sub_seconds(end, secs);
            prop_assert_eq!(cal.working_seconds_between(from, end), secs, "{}: {} before {}", cal.id(), secs, end);
            // The latest such instant: working time starts right there.
            prop_assert!(cal.is_working_time(from), "{}: {secs}s before {end} = {from}", cal.id());
        }
    }

    #[test]
    fn adding_in_two_steps_is_adding_once(start in instant(), a in seconds(), b in seconds()) {
        for cal in calendars() {
            let stepwise = cal.add_seconds(cal.add_seconds(start, a), b);
            prop_assert_eq!(stepwise, cal.add_seconds(start, a + b), "{}", cal.id());
        }
    }

    #[test]
    fn next_working_instant_skips_only_idle_time(t in instant()) {
        for cal in calendars() {
            let next = cal.next_working_instant(t);
            prop_assert!(next >= t);
            prop_assert!(cal.is_working_time(next));
            prop_assert_eq!(cal.working_seconds_between(t, next), 0);
            prop_assert_eq!(next == t, cal.is_working_time(t));
        }
    }

    #[test]
    fn add_traced_agrees_with_add(start in instant(), d in duration()) {
        for cal in calendars() {
            let (end, pieces) = cal.add_traced(start, d);
            prop_assert_eq!(end, cal.add(start, d));
            let counted: i64 = pieces.iter().map(|(s, e)| (*e - *s).num_nanoseconds().unwrap()).sum();
            prop_assert_eq!(counted, cal.duration_seconds(d) * 1_000_000_000);
            prop_assert!(pieces.windows(2).all(|w| w[0].1 < w[1].0));
            prop_assert_eq!(pieces.last().map(|p| p.1), Some(end));
        }
    }

    #[test]
    fn duration_display_round_trips(days in 0u32..=3660, minutes in 0u32..=100_000) {
        let d = WorkDuration { days, minutes };
        prop_assert_eq!(WorkDuration::parse(&d.to_string()), Ok(d));
    }
}

// --- China 2026 -------------------------------------------------------------------------------

#[test]
fn china_day_is_seven_hours() {
    assert_eq!(CHINA.day_minutes(), 420);
    assert_eq!(CHINA.duration_seconds(dur("1d")), 7 * 3600);
    assert_eq!(CHINA.duration_seconds(dur("1d30m")), 7 * 3600 + 1800);
}

#[test]
fn china_working_days() {
    assert!(CHINA.is_working_day(date("2026-02-14")), "make-up Saturday");
    assert!(CHINA.is_working_day(date("2026-01-04")), "make-up Sunday");
    assert!(
        !CHINA.is_working_day(date("2026-02-18")),
        "Spring Festival Wednesday"
    );
    assert!(
        !CHINA.is_working_day(date("2026-02-21")),
        "ordinary Saturday"
    );
    assert!(CHINA.is_working_day(date("2026-03-10")), "ordinary Tuesday");
}

#[test]
fn china_spring_festival() {
    // Fri 13 Feb 15:00: 2h30m left that day, the other 4h30m on the make-up Saturday.
    assert_eq!(CHINA.add(cn(2, 13, 15, 0), dur("1d")), cn(2, 14, 15, 0));
    // From the make-up Saturday, the holiday runs 15-23 Feb; work resumes Tue 24 Feb.
    assert_eq!(CHINA.add(cn(2, 14, 15, 0), dur("1d")), cn(2, 24, 15, 0));
    // Fri 27 Feb is followed by the make-up Saturday 28 Feb.
    assert_eq!(CHINA.add(cn(2, 27, 10, 0), dur("1d")), cn(2, 28, 10, 0));
    assert_eq!(CHINA.next_working_instant(cn(2, 15, 9, 0)), cn(2, 24, 9, 0));
}

#[test]
fn china_spring_festival_trace() {
    let (end, pieces) = CHINA.add_traced(cn(2, 13, 15, 0), dur("1d"));
    assert_eq!(end, cn(2, 14, 15, 0));
    assert_eq!(
        pieces,
        vec![
            (cn(2, 13, 15, 0), cn(2, 13, 17, 30)),
            (cn(2, 14, 9, 0), cn(2, 14, 12, 0)),
            (cn(2, 14, 13, 30), cn(2, 14, 15, 0)),
        ]
    );
}

#[test]
fn china_new_year() {
    // Wed 31 Dec 2025; 1-3 Jan are holidays and Sun 4 Jan is worked.
    let start = local(chrono_tz::Asia::Shanghai, 2025, 12, 31, 10, 0);
    assert_eq!(CHINA.add(start, dur("1d")), cn(1, 4, 10, 0));
    assert_eq!(CHINA.add(start, dur("2d")), cn(1, 5, 10, 0));
}

#[test]
fn china_labour_day() {
    assert_eq!(CHINA.add(cn(4, 30, 10, 0), dur("1d")), cn(5, 6, 10, 0));
    // Thu 7, Fri 8, the make-up Sat 9, Mon 11, Tue 12 May.
    assert_eq!(CHINA.add(cn(5, 6, 10, 0), dur("5d")), cn(5, 12, 10, 0));
    assert_eq!(
        CHINA.working_seconds_between(cn(4, 30, 10, 0), cn(5, 6, 10, 0)),
        7 * 3600
    );
}

#[test]
fn china_mid_autumn_and_national_day() {
    // Fri 18 Sep is followed by the make-up Sunday 20 Sep.
    assert_eq!(CHINA.add(cn(9, 18, 15, 0), dur("1d")), cn(9, 20, 15, 0));
    // Mid-Autumn 25-27 Sep: Thu 24 -> Mon 28.
    assert_eq!(CHINA.add(cn(9, 24, 10, 0), dur("1d")), cn(9, 28, 10, 0));
    // National Day 1-7 Oct; Sat 10 Oct is worked.
    assert_eq!(CHINA.add(cn(9, 30, 10, 0), dur("1d")), cn(10, 8, 10, 0));
    assert_eq!(CHINA.add(cn(9, 30, 10, 0), dur("2d")), cn(10, 9, 10, 0));
    assert_eq!(CHINA.add(cn(9, 30, 10, 0), dur("3d")), cn(10, 10, 10, 0));
    assert_eq!(CHINA.add(cn(9, 30, 10, 0), dur("4d")), cn(10, 12, 10, 0));
}

#[test]
fn china_lunch_break_and_close_of_business() {
    // Tue 10 Mar 2026.
    assert_eq!(CHINA.add(cn(3, 10, 11, 0), dur("2h")), cn(3, 10, 14, 30));
    // Used up exactly at the end of the morning span: noon, not 13:30.
    assert_eq!(CHINA.add(cn(3, 10, 10, 0), dur("2h")), cn(3, 10, 12, 0));
    // Used up exactly at close of business: 17:30, not the next morning.
    assert_eq!(CHINA.add(cn(3, 10, 15, 30), dur("2h")), cn(3, 10, 17, 30));
    assert!(!CHINA.is_working_time(cn(3, 10, 12, 0)));
    assert!(CHINA.is_working_time(cn(3, 10, 11, 59)));
    assert_eq!(
        CHINA.next_working_instant(cn(3, 10, 12, 0)),
        cn(3, 10, 13, 30)
    );
    assert_eq!(
        CHINA.next_working_instant(cn(3, 10, 17, 30)),
        cn(3, 11, 9, 0)
    );
}

#[test]
fn china_sub_seconds() {
    // Wed 11 Mar 10:00 back one working day: Wed 1h, Tue afternoon 4h, Tue morning 2h.
    assert_eq!(
        CHINA.sub_seconds(cn(3, 11, 10, 0), CHINA.duration_seconds(dur("1d"))),
        cn(3, 10, 10, 0)
    );
    // Back over the lunch break.
    assert_eq!(CHINA.sub_seconds(cn(3, 10, 14, 0), 3600), cn(3, 10, 11, 30));
    // Back over Labour Day.
    assert_eq!(CHINA.sub_seconds(cn(5, 6, 9, 30), 3600), cn(4, 30, 17, 0));
}

// --- Berlin ------------------------------------------------------------------------------------

fn berlin_nine_to_five() -> Calendar {
    Calendar::new(
        "nine-to-five",
        chrono_tz::Europe::Berlin,
        &WEEKDAYS,
        spans(&["09:00-17:00"]),
        [],
        [],
    )
    .unwrap()
}

#[test]
fn working_days_keep_the_clock_position() {
    let cal = berlin_nine_to_five();
    // Tue 10 Mar 2026 10:00 -> Wed.
    assert_eq!(cal.add(de(3, 10, 10, 0), dur("1d")), de(3, 11, 10, 0));
    // Fri 13 Mar 15:00 -> Mon.
    assert_eq!(cal.add(de(3, 13, 15, 0), dur("1d")), de(3, 16, 15, 0));
    // From outside working time counting starts Monday 09:00 and ends at close.
    assert_eq!(cal.add(de(3, 13, 18, 0), dur("1d")), de(3, 16, 17, 0));
    assert_eq!(
        cal.working_seconds_between(de(3, 13, 18, 0), de(3, 16, 17, 0)),
        8 * 3600
    );
    // A reminder one hour before a Monday 09:30 deadline comes on Friday.
    assert_eq!(cal.sub_seconds(de(3, 16, 9, 30), 3600), de(3, 13, 16, 30));
    // An hour before Monday 10:00 is Monday 09:00, the span's start, not Friday's close.
    assert_eq!(cal.sub_seconds(de(3, 16, 10, 0), 3600), de(3, 16, 9, 0));
    assert_eq!(cal.sub_seconds(de(3, 16, 10, 0), 0), de(3, 16, 10, 0));
}

#[test]
fn berlin_office_across_clock_changes() {
    // The clocks change on Sundays at night: the office week keeps its length.
    assert_eq!(BERLIN.add(de(3, 27, 12, 0), dur("1d")), de(3, 30, 12, 0));
    assert_eq!(BERLIN.add(de(10, 23, 12, 0), dur("1d")), de(10, 26, 12, 0));
    assert_eq!(
        BERLIN.working_seconds_between(de(3, 23, 0, 0), de(3, 30, 23, 0)),
        6 * 10 * 3600
    );
}

#[test]
fn berlin_24_7_spring_forward() {
    // Sun 29 Mar 00:00 CET + 24h of work: that day has 23 real hours, so Mon 01:00 CEST.
    assert_eq!(
        BERLIN_24_7.add(de(3, 29, 0, 0), dur("24h")),
        de(3, 30, 1, 0)
    );
    assert_eq!(
        BERLIN_24_7.working_seconds_between(de(3, 29, 0, 0), de(3, 30, 0, 0)),
        23 * 3600
    );
    // "1d" is nominally 24h of work, whatever the real length of the day.
    assert_eq!(BERLIN_24_7.add(de(3, 29, 0, 0), dur("1d")), de(3, 30, 1, 0));
    assert!(BERLIN_24_7.is_working_time(de(3, 29, 3, 0)));
}

#[test]
fn berlin_24_7_fall_back() {
    // Sun 25 Oct has 25 real hours.
    assert_eq!(
        BERLIN_24_7.add(de(10, 25, 0, 0), dur("24h")),
        de(10, 25, 23, 0)
    );
    assert_eq!(
        BERLIN_24_7.working_seconds_between(de(10, 25, 0, 0), de(10, 26, 0, 0)),
        25 * 3600
    );
}

#[test]
fn spans_in_skipped_and_repeated_hours() {
    let two_to_four = Calendar::new(
        "small-hours",
        chrono_tz::Europe::Berlin,
        &ALL_DAYS,
        spans(&["02:00-04:00"]),
        [],
        [],
    )
    .unwrap();
    let day = |m, d| two_to_four.working_seconds_between(de(m, d, 0, 0), de(m, d, 12, 0));
    assert_eq!(day(3, 28), 2 * 3600);
    // 02:00 does not exist on 29 Mar: the span starts at 03:00 CEST.
    assert_eq!(day(3, 29), 3600);
    assert_eq!(
        two_to_four.next_working_instant(de(3, 29, 0, 0)),
        de(3, 29, 3, 0)
    );
    // 02:00 happens twice on 25 Oct: the span runs from the first 02:00 to 04:00 CET.
    assert_eq!(day(10, 25), 3 * 3600);
    assert_eq!(
        two_to_four.next_working_instant(de(10, 25, 0, 0)),
        Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).unwrap()
    );

    // Spans meeting inside the repeated hour overlap in real time; the overlap counts once.
    let night = |m, d| BERLIN_NIGHT.working_seconds_between(de(m, d, 0, 0), de(m, d, 12, 0));
    assert_eq!(BERLIN_NIGHT.day_minutes(), 270);
    assert_eq!(night(10, 24), 270 * 60);
    assert_eq!(night(10, 25), 6 * 3600);
    // 29 Mar: 00:00-02:15 becomes 00:00-03:00 CEST (2h), 02:45-05:00 becomes 03:00-05:00 (2h).
    assert_eq!(night(3, 29), 4 * 3600);
}

// --- searches that find nothing -----------------------------------------------------------------

#[test]
fn a_decade_of_holidays_ends_the_search_without_panicking() {
    let mondays = |from: &str, to: &str| {
        range(from, to)
            .into_iter()
            .filter(|d| chrono::Datelike::weekday(d) == Weekday::Mon)
            .collect::<Vec<_>>()
    };
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();

    // Five years of holidays: the search goes past them.
    let five = Calendar::new(
        "mondays",
        chrono_tz::UTC,
        &[Weekday::Mon],
        spans(&["09:00-10:00"]),
        mondays("2026-01-01", "2030-12-31"),
        [],
    )
    .unwrap();
    assert_eq!(
        five.add(start, dur("30m")),
        Utc.with_ymd_and_hms(2031, 1, 6, 9, 30, 0).unwrap()
    );
    assert_eq!(
        five.sub_seconds(Utc.with_ymd_and_hms(2031, 1, 6, 9, 30, 0).unwrap(), 3600),
        Utc.with_ymd_and_hms(2025, 12, 29, 9, 30, 0).unwrap()
    );

    // Twenty years: the search gives up 3660 days in.
    let twenty = Calendar::new(
        "mondays",
        chrono_tz::UTC,
        &[Weekday::Mon],
        spans(&["09:00-10:00"]),
        mondays("2026-01-01", "2045-12-31"),
        [],
    )
    .unwrap();
    let gave_up = twenty.add(start, dur("30m"));
    assert!(gave_up > Utc.with_ymd_and_hms(2035, 12, 1, 0, 0, 0).unwrap());
    assert!(gave_up < Utc.with_ymd_and_hms(2036, 2, 1, 0, 0, 0).unwrap());
    assert!(!twenty.is_working_time(gave_up));
    // Measuring does not search: it sees the working time after the holidays.
    assert_eq!(
        twenty.working_seconds_between(start, Utc.with_ymd_and_hms(2046, 1, 2, 0, 0, 0).unwrap()),
        3600
    );
}

#[test]
fn the_ends_of_time_are_clamped() {
    let max = DateTime::<Utc>::MAX_UTC;
    let min = DateTime::<Utc>::MIN_UTC;
    assert_eq!(BERLIN.add(max, dur("1d")), max);
    assert_eq!(BERLIN.sub_seconds(min, 3600), min);
    assert_eq!(BERLIN.add_seconds(min, -3600), min);
    assert_eq!(BERLIN.working_seconds_between(max, min), 0);
    assert!(BERLIN.add(max - TimeDelta::days(400), dur("1d")) <= max);
}

#[test]
fn absurd_amounts_stop_after_a_century() {
    let start = de(3, 10, 10, 0);
    let century = |t: DateTime<Utc>| {
        let days = (t - start).num_days().abs();
        (36_000..=36_700).contains(&days)
    };
    assert!(century(BERLIN.add_seconds(start, i64::MAX)));
    assert!(century(BERLIN.sub_seconds(start, i64::MAX)));
    assert!(century(BERLIN.add(
        start,
        WorkDuration {
            days: u32::MAX,
            minutes: u32::MAX
        }
    )));
    let everything =
        BERLIN.working_seconds_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    assert!(
        everything > 0 && everything <= 36_601 * 10 * 3600,
        "{everything}"
    );
}

#[test]
fn negative_amounts_walk_the_other_way() {
    assert_eq!(
        CHINA.add_seconds(cn(3, 10, 14, 0), -3600),
        cn(3, 10, 11, 30)
    );
    assert_eq!(
        CHINA.sub_seconds(cn(3, 10, 11, 30), -3600),
        cn(3, 10, 14, 0)
    );
}

// --- construction errors --------------------------------------------------------------------

#[test]
fn overlapping_spans_are_refused() {
    let err = Calendar::new(
        "x",
        chrono_tz::UTC,
        &WEEKDAYS,
        spans(&["13:00-17:00", "09:00-12:00", "11:00-13:30"]),
        [],
        [],
    )
    .unwrap_err();
    assert_eq!(
        err,
        CalendarError::Overlap {
            a: "09:00-12:00".into(),
            b: "11:00-13:30".into(),
            a_index: 1,
            b_index: 2,
        }
    );
    assert_eq!(
        err.to_string(),
        "working spans 09:00-12:00 and 11:00-13:30 overlap"
    );

    let same = Calendar::new(
        "x",
        chrono_tz::UTC,
        &WEEKDAYS,
        spans(&["09:00-12:00", "09:00-12:00"]),
        [],
        [],
    );
    assert!(matches!(
        same,
        Err(CalendarError::Overlap {
            a_index: 0,
            b_index: 1,
            ..
        })
    ));
}

#[test]
fn touching_spans_are_merged() {
    let cal = Calendar::new(
        "x",
        chrono_tz::UTC,
        &WEEKDAYS,
        spans(&["12:00-13:00", "09:00-12:00", "14:00-15:00"]),
        [],
        [],
    )
    .unwrap();
    assert_eq!(
        cal.spans(),
        spans(&["09:00-13:00", "14:00-15:00"]).as_slice()
    );
    assert_eq!(cal.day_minutes(), 300);
    assert_eq!(cal.id(), "x");
    assert_eq!(cal.tz(), chrono_tz::UTC);
}

#[test]
fn holiday_and_makeup_on_one_date_is_refused() {
    let err = Calendar::new(
        "x",
        chrono_tz::Asia::Shanghai,
        &WEEKDAYS,
        spans(&["09:00-17:00"]),
        [date("2026-10-01"), date("2026-10-10")],
        [date("2026-10-10")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        CalendarError::HolidayAndMakeup {
            date: date("2026-10-10")
        }
    );
    assert_eq!(
        err.to_string(),
        "2026-10-10 is both a holiday and a make-up working day"
    );
}

#[test]
fn calendars_without_working_time_are_refused() {
    let no_days = Calendar::new(
        "x",
        chrono_tz::UTC,
        &[],
        spans(&["09:00-17:00"]),
        [],
        [date("2026-02-14")],
    )
    .unwrap_err();
    assert!(matches!(no_days, CalendarError::Empty { .. }));
    assert!(no_days.to_string().starts_with("no working time: "));
    let no_spans = Calendar::new("x", chrono_tz::UTC, &WEEKDAYS, vec![], [], []).unwrap_err();
    assert!(matches!(no_spans, CalendarError::Empty { .. }));
}

#[test]
fn hand_built_invalid_spans_are_refused() {
    for bad in [
        Span {
            start: 600,
            end: 600,
        },
        Span {
            start: 700,
            end: 600,
        },
        Span {
            start: 0,
            end: 1441,
        },
    ] {
        let err = Calendar::new(
            "x",
            chrono_tz::UTC,
            &WEEKDAYS,
            vec![Span { start: 0, end: 60 }, bad],
            [],
            [],
        )
        .unwrap_err();
        assert!(
            matches!(err, CalendarError::InvalidSpan { index: 1, .. }),
            "{bad:?}: {err}"
        );
    }
}

// --- parsing ----------------------------------------------------------------------------------

#[test]
fn span_strings() {
    assert_eq!(
        Span::parse("09:00-12:00"),
        Ok(Span {
            start: 540,
            end: 720
        })
    );
    assert_eq!(
        Span::parse("13:30-17:30"),
        Ok(Span {
            start: 810,
            end: 1050
        })
    );
    assert_eq!(
        Span::parse("00:00-24:00"),
        Ok(Span {
            start: 0,
            end: 1440
        })
    );
    assert_eq!(
        Span::parse(" 9:00 - 12:00 "),
        Ok(Span {
            start: 540,
            end: 720
        })
    );
    for good in ["09:00-12:00", "13:30-17:30", "00:00-24:00"] {
        assert_eq!(Span::parse(good).unwrap().to_string(), good);
    }
    for bad in [
        "",
        "09:00",
        "9-12",
        "09:00-",
        "09.00-12.00",
        "09:0-12:00",
        "09:00-12:00-13:00",
        "12:00-09:00",
        "09:00-09:00",
        "24:00-24:00",
        "09:60-10:00",
        "25:00-26:00",
        "09:00-24:01",
        "-1:00-02:00",
        "0900-1200",
        "ab:cd-ef:gh",
    ] {
        let err = Span::parse(bad).expect_err(bad);
        assert!(
            err.starts_with(&format!("invalid working span `{bad}`: ")),
            "{err}"
        );
    }
    assert_eq!(
        Span::parse("12:00-09:00").unwrap_err(),
        "invalid working span `12:00-09:00`: the start must be before the end"
    );
    assert_eq!(
        Span::parse("09:00-24:30").unwrap_err(),
        "invalid working span `09:00-24:30`: `24:30` is not a time of day; use 00:00 to 24:00"
    );
    assert_eq!(
        Span::parse("9-12").unwrap_err(),
        "invalid working span `9-12`: expected HH:MM-HH:MM, such as 09:00-12:00 or 13:30-17:30"
    );
}

#[test]
fn duration_strings() {
    assert_eq!(
        dur("30m"),
        WorkDuration {
            days: 0,
            minutes: 30
        }
    );
    assert_eq!(
        dur("2h"),
        WorkDuration {
            days: 0,
            minutes: 120
        }
    );
    assert_eq!(
        dur("3d"),
        WorkDuration {
            days: 3,
            minutes: 0
        }
    );
    assert_eq!(
        dur("1d4h"),
        WorkDuration {
            days: 1,
            minutes: 240
        }
    );
    assert_eq!(dur("90m"), WorkDuration::minutes(90));
    assert_eq!(
        dur("1d 2h 30m"),
        WorkDuration {
            days: 1,
            minutes: 150
        }
    );
    assert!(dur("0m").is_zero());
    assert!(!dur("1m").is_zero());

    assert_eq!(
        WorkDuration::parse("3x").unwrap_err(),
        "invalid duration `3x`: expected a number followed by d, h or m, such as 30m, 4h or 2d"
    );
    for bad in [
        "",
        " ",
        "3",
        "d",
        "h4",
        "1.5h",
        "-1h",
        "+1h",
        "2 h",
        "4h1d",
        "1d1d",
        "30m2h",
        "2H",
        "1w",
        "99999999999999999999999m",
        "3661d",
        "100000h",
    ] {
        let err = WorkDuration::parse(bad).expect_err(bad);
        assert!(
            err.starts_with(&format!("invalid duration `{bad}`: ")),
            "{err}"
        );
    }
    assert!(
        WorkDuration::parse("4h1d")
            .unwrap_err()
            .contains("in that order")
    );
    assert!(
        WorkDuration::parse("3661d")
            .unwrap_err()
            .contains("3660 days")
    );
}

#[test]
fn duration_display_is_canonical() {
    for (text, shown) in [
        ("1d4h", "1d4h"),
        ("30m", "30m"),
        ("2h30m", "2h30m"),
        ("150m", "2h30m"),
        ("90m", "1h30m"),
        ("3d", "3d"),
        ("1d60m", "1d1h"),
        ("0h", "0m"),
    ] {
        let d = dur(text);
        assert_eq!(d.to_string(), shown, "{text}");
        assert_eq!(dur(shown), d);
    }
}

#[test]
fn durations_deserialize_from_strings() {
    let d: WorkDuration = serde_json::from_str("\"1d4h\"").unwrap();
    assert_eq!(
        d,
        WorkDuration {
            days: 1,
            minutes: 240
        }
    );
    let err = serde_json::from_str::<WorkDuration>("\"3x\"").unwrap_err();
    assert!(
        err.to_string().contains(
            "invalid duration `3x`: expected a number followed by d, h or m, such as 30m, 4h or 2d"
        ),
        "{err}"
    );
    let err = serde_json::from_str::<WorkDuration>("30").unwrap_err();
    assert!(err.to_string().contains("needs a unit"), "{err}");
    assert_eq!(serde_json::to_string(&dur("90m")).unwrap(), "\"1h30m\"");
}

#[test]
fn weekday_names() {
    assert_eq!(parse_weekday("Mon"), Ok(Weekday::Mon));
    assert_eq!(parse_weekday("monday"), Ok(Weekday::Mon));
    assert_eq!(parse_weekday("SUNDAY"), Ok(Weekday::Sun));
    assert_eq!(parse_weekday("tHu"), Ok(Weekday::Thu));
    assert_eq!(parse_weekday("Saturday"), Ok(Weekday::Sat));
    for bad in ["Funday", "", "M", "Mo", "Tues", "monday1"] {
        let err = parse_weekday(bad).expect_err(bad);
        assert!(
            err.starts_with(&format!("invalid weekday `{bad}`: expected Mon")),
            "{err}"
        );
    }
}
